#!/usr/bin/env bash
# Create the virtualenv. Debian ships `venv` in a separate package (python3-venv): install it when
# it is missing and we can, otherwise say exactly what to do.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

if ! command -v "$python" >/dev/null; then
    echo "Gatehouse needs Python 3.11 or newer ($python not found). On Debian: apt-get install python3 python3-venv" >&2
    exit 1
fi
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "Gatehouse needs Python 3.11 or newer; $python is $("$python" --version 2>&1)." >&2
    exit 1
}
if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
    pkg="python3-venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing $pkg (Debian keeps venv in a separate package)..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"
    else
        echo "Python's venv module is missing. Run: sudo apt-get install $pkg   then run make again." >&2
        exit 1
    fi
fi
"$python" -m venv "$venv"
