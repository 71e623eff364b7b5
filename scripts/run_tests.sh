#!/usr/bin/env bash
# The project's test command (README and .ci/run): install, lint and format check (ruff), then the CPU suite without slow tests.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev || exit 1
python -m ruff check . || { echo "error: ruff check failed (settings in pyproject.toml)" >&2; exit 1; }
python -m ruff format --check . || { echo "error: ruff format would change files: run 'ruff format .'" >&2; exit 1; }
python -m pytest -m "not slow" -q --timeout 900 "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests; refusing to pass an empty run" >&2
    exit 1
fi
exit "$status"
