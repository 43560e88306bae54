#!/usr/bin/env bash
# Installs everything, then runs fedge's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p runs
echo "==> fedge train --out runs/model.keras"
.venv/bin/fedge train --out runs/model.keras
