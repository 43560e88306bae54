#!/usr/bin/env bash
# Creates .bench-venv/ with Flower (flwr) for bench/aggregation_bench.py.
#
# Flower is only a point of comparison: its dependencies conflict with the
# pinned TensorFlow Federated stack, so it lives in its own environment and
# the benchmark runs its aggregation functions in a subprocess of this venv.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-$(command -v uv || echo .tools/bin/uv)}"
"$UV" venv .bench-venv --python 3.11
"$UV" pip install --python .bench-venv flwr numpy
.bench-venv/bin/python -c "import flwr; print('flwr', flwr.__version__, 'in .bench-venv')"
