#!/usr/bin/env bash
# Installs everything, then runs the linters, the type checker and the tests.
# The tests run in parallel (pytest-xdist): PYTEST_WORKERS processes (default
# 4: many tests wait on servers, browsers and subprocesses, so more workers
# than a 2-core machine's cores keep it busy; not a FEDGE_* name, which the
# servers the tests start would refuse), each test module on one worker
# (--dist loadfile: its module fixtures are built once), the modules of the
# tests marked `long` first, the longest first (tests/conftest.py orders them;
# --no-loadscope-reorder keeps that order); then the tests
# marked `serial` (timing-bound) run alone. Arguments go to both pytest runs, after these
# (`bash scripts/test.sh tests/web -n 0` runs serially).
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
# Exit status 5 is "no tests collected": a targeted run may hold no serial
# test, or nothing but serial tests.
status=0
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-4}" --dist loadfile --no-loadscope-reorder --durations=25 \
    -m "not serial" "$@" || status=$?
[ "$status" -eq 5 ] && status=0
echo "==> pytest: the serial tests (timing-bound), alone"
serial=0
.venv/bin/python -m pytest -n 0 -m serial "$@" || serial=$?
[ "$serial" -eq 5 ] && serial=0
[ "$status" -ne 0 ] && exit "$status"
exit "$serial"
