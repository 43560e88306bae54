#!/usr/bin/env bash
# Creates .bench-venv/ with Flower (flwr) for bench/aggregation_bench.py, and
# Flower's simulation (Ray) with PyTorch on the CPU for bench/flower_sim_bench.py.
#
# Flower is only a point of comparison: its dependencies conflict with the
# pinned TensorFlow Federated stack, so it lives in its own environment and
# the benchmarks run it in a subprocess of this venv.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-$(command -v uv || echo .tools/bin/uv)}"
# Kept if it is there, so that running this again adds what is missing.
[ -x .bench-venv/bin/python ] || "$UV" venv .bench-venv --python 3.11
# safetensors: fedge's update codec, which bench/flower_worker.py imports.
"$UV" pip install --python .bench-venv flwr numpy safetensors
.bench-venv/bin/python -c "import flwr; print('flwr', flwr.__version__, 'in .bench-venv')"

# The simulation's clients train the reference CNN in PyTorch, CPU build: a
# local wheel where the machine keeps one (TORCH_WHEELS), else PyTorch's CPU
# index (PyPI's torch would bring several GB of CUDA packages).
TORCH_WHEELS="${TORCH_WHEELS:-/opt/wheels}"
if compgen -G "$TORCH_WHEELS/torch-2.13.0+cpu-*.whl" >/dev/null; then
    torch_from=(--find-links "$TORCH_WHEELS")
else
    torch_from=(--index https://download.pytorch.org/whl/cpu)
fi
"$UV" pip install --python .bench-venv "${torch_from[@]}" "flwr[simulation]" "torch==2.13.0+cpu"
.bench-venv/bin/python -c "import ray, torch; print('ray', ray.__version__, 'torch', torch.__version__, 'in .bench-venv')"
