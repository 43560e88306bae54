#!/usr/bin/env bash
# Installs everything, then runs fedge's loop once on one model: train the
# reference CNN centrally on the public 30% of the digits, convert it to a
# verified bundle (TFLite, TF.js, Core ML), deploy that bundle to an
# embedded server and let 20 simulated devices, each holding its share of
# the other 70% in its own handwriting style, fine-tune it in federated
# rounds (round 0 is the deployed model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
mkdir -p runs
echo "==> fedge train --out runs/model.keras (the public 30% of the digits)"
.venv/bin/fedge train --out runs/model.keras
echo "==> fedge convert runs/model.keras --out runs/bundle"
.venv/bin/fedge convert runs/model.keras --out runs/bundle --force
echo "==> fedge simulate --model runs/bundle (20 devices, 10 rounds, FedAvg)"
.venv/bin/fedge simulate --model runs/bundle --devices 20 --per-round 20 --rounds 10 \
    --strategy fedavg \
    --local-epochs 3 --report runs/simulation.json --plot runs/simulation.png
echo "==> done: runs/bundle (manifest.json, MODEL_CARD.md), runs/simulation.png"
