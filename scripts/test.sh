#!/usr/bin/env bash
# Installs everything, then runs the linters, the type checker and the tests.
# The tests run in parallel (pytest-xdist): PYTEST_WORKERS processes (default
# 4: many tests wait on servers, browsers and subprocesses, so more workers
# than a 2-core machine's cores keep it busy; not a FEDGE_* name, which the
# servers the tests start would refuse), each test module on one worker
# (--dist loadgroup; see tests/conftest.py). Arguments go to pytest after
# these (`bash scripts/test.sh tests/web -n 0` runs serially).
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
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-4}" --dist loadgroup --durations=25 "$@"
