#!/usr/bin/env bash
# Installs everything fedge needs, from nothing but Python 3.11, git, Node.js
# with npm and the package registries: uv (in .tools/, if not already on
# PATH), then the locked environment in .venv/ (uv.lock: the verified
# dependency set), then web/node_modules/ (web/package-lock.json).
# See docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    for candidate in "${PYTHON:-}" python3.11 python3 python; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "fedge needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

PY="$(find_python)"
UV_VERSION="0.13.8"
if [ -x .tools/bin/uv ]; then
    UV=.tools/bin/uv
elif command -v uv >/dev/null 2>&1; then
    UV="$(command -v uv)"
else
    echo "==> installing uv ${UV_VERSION} into .tools/"
    "$PY" -m venv .tools
    .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
    UV=.tools/bin/uv
fi

# FEDGE_EXTRAS: optional extras to install as well, space-separated (e.g.
# "ray", which scripts/test.sh asks for); none by default, to stay lean.
# This is the way to add an extra in a checkout: .venv/ is uv's and has no
# pip, so `pip install 'fedge[ray]'` cannot.
EXTRA_ARGS=()
for extra in ${FEDGE_EXTRAS:-}; do
    EXTRA_ARGS+=(--extra "$extra")
done
echo "==> installing the locked Python environment into .venv/${FEDGE_EXTRAS:+ (extras: $FEDGE_EXTRAS)}"
"$UV" sync --frozen --python "$PY" ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}

echo "==> installing web/ node packages (@tensorflow/tfjs, from web/package-lock.json)"
for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "fedge needs Node.js >= 18 with npm for the TF.js target and web/ ($tool not found on PATH)" >&2
        exit 1
    fi
done
npm --prefix web ci --no-audit --no-fund
