#!/usr/bin/env bash
# Installs what the project needs on a fresh machine: system tools, the CPU torch wheel first
# (a bare torch requirement would pull a multi-GB CUDA build), then the package.
#   bash scripts/install.sh        the package alone (what the quickstart needs)
#   bash scripts/install.sh dev    with the test extras (what scripts/run_tests.sh installs)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq espeak-ng sox >/dev/null
    else
        echo "note: espeak-ng/sox not installed (speech tests will be skipped); install them with your package manager" >&2
    fi
fi
python -m pip install -q "torch==2.13.0"
extras="${1:-}"
python -m pip install -q -e ".${extras:+[$extras]}"
