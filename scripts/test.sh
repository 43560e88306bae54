#!/usr/bin/env bash
# Installs everything, then runs the linters, the type checker and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Ray backend's tests need the optional ray extra.
FEDGE_EXTRAS="${FEDGE_EXTRAS:-ray}" bash scripts/setup.sh
bash scripts/setup_schemathesis.sh
bash scripts/setup_browser.sh
bash scripts/setup_postgres.sh

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/python scripts/typecheck.py
echo "==> import contracts"
.venv/bin/python scripts/check_imports.py
echo "==> pytest"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
.venv/bin/python -m pytest "$@"
