#!/usr/bin/env bash
# The browser tests' Chromium: the system's (Debian's `chromium` package),
# driven by Playwright from .venv. Playwright cannot download its own browser
# here, so nothing else is tried. Installs the package when it is missing and
# this user can (root with apt-get); otherwise says which package to install.
set -euo pipefail

if [ -n "${FEDGE_CHROMIUM:-}" ]; then
    [ -x "$FEDGE_CHROMIUM" ] && exit 0
    echo "FEDGE_CHROMIUM=$FEDGE_CHROMIUM is not an executable file" >&2
    exit 1
fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Chromium for the browser tests (Debian package chromium)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
    exit 0
fi
echo "the browser tests need Chromium: install Debian's \`chromium\` package" \
    "(sudo apt-get install chromium), or set FEDGE_CHROMIUM to a Chromium binary" >&2
exit 1
