#!/usr/bin/env bash
# Creates .schemathesis-venv/ with Schemathesis for tests/server/api/test_schemathesis.py.
#
# Like Flower for the benchmarks (bench/setup_flower.sh), Schemathesis needs
# its own environment: its dependencies conflict with the pinned TensorFlow
# Federated stack in .venv/. The test runs its CLI from this venv as a
# subprocess against a live `fedge serve`. Skips the install when the pinned
# version is already there, so scripts/test.sh can call it on every run.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
VENV=.schemathesis-venv

# Runs the CLI itself, so a venv whose script no longer starts is reinstalled.
installed="$("$VENV/bin/schemathesis" --version 2>/dev/null || true)"
if [ "$installed" = "schemathesis, version ${SCHEMATHESIS_VERSION}" ]; then
    echo "==> schemathesis ${SCHEMATHESIS_VERSION} already in ${VENV}/"
    exit 0
fi

# The same uv as scripts/setup.sh (which installs it into .tools/ if missing).
if [ -n "${UV:-}" ]; then
    :
elif [ -x .tools/bin/uv ]; then
    UV=.tools/bin/uv
elif command -v uv >/dev/null 2>&1; then
    UV="$(command -v uv)"
else
    echo "uv not found: run scripts/setup.sh first (it installs uv into .tools/)" >&2
    exit 1
fi

echo "==> installing schemathesis ${SCHEMATHESIS_VERSION} into ${VENV}/"
"$UV" venv --clear --quiet "$VENV" --python "${PYTHON:-3.11}"
"$UV" pip install --quiet --python "$VENV" "schemathesis==${SCHEMATHESIS_VERSION}"
"$VENV/bin/schemathesis" --version
