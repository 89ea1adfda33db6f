#!/usr/bin/env bash
# Creates the virtual environment and installs OmniCC with its test tools.
# Debian packages that features need are installed here too, so a fresh machine works.
set -euo pipefail
venv=${1:-.venv}
py=${PYTHON:-python3}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "bootstrap: need root (or sudo) to run: $*" >&2; return 1; fi
}

if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  as_root apt-get update -q
  as_root apt-get install -y -q python3-venv python3-pip
fi
# The routing engine is compiled with mypyc at install time: it needs a C compiler and headers.
include=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if ! command -v gcc >/dev/null 2>&1 || [ ! -f "$include/Python.h" ]; then
  as_root apt-get update -q
  as_root apt-get install -y -q build-essential python3-dev
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[dev]"
