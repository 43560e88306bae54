#!/usr/bin/env bash
# The PostgreSQL store's tests start a throw-away cluster of their own
# (tests/helpers/postgres.py) with Debian's server binaries
# (/usr/lib/postgresql/<major>/bin). Installs the `postgresql` package when
# they are missing and this user can (root with apt-get); otherwise says
# which package to install. The package's own cluster is not used.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing PostgreSQL for the store's tests (Debian package postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    exit 0
fi
echo "the PostgreSQL tests need Debian's \`postgresql\` package" \
    "(sudo apt-get install postgresql)" >&2
exit 1
