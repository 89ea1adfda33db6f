#!/usr/bin/env bash
# Creates the virtual environment and installs OmniCC with its test tools.
# Debian packages that later features need are installed here too, so a fresh machine works.
set -euo pipefail
venv=${1:-.venv}
py=${PYTHON:-python3}
if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -q && apt-get install -y -q python3-venv
  fi
fi
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[dev]"
