#!/usr/bin/env bash
# Installs everything, then runs `fedge demo`: train the reference CNN on the
# public 30% of the digits (reused from runs/ when there), convert it to a
# verified bundle (TFLite, TF.js, Core ML), serve it with the browser demo
# and the dashboard, let 20 simulated devices fine-tune it for 5 rounds,
# cut a release, run its canary on the devices and promote or roll it back,
# then keep serving until Ctrl-C. Arguments go to `fedge demo`
# (e.g. --rounds 2 --no-browser --exit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
exec .venv/bin/fedge demo "$@"
