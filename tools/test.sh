#!/usr/bin/env bash
# Install everything and run every gate: ruff, mypy --strict, pytest with a coverage floor.
# PostgreSQL and MariaDB tests need the servers on 127.0.0.1 (see README); with CI=true a
# missing server fails the run instead of skipping its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh dev

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy callcontrol dialplan models locutions
echo "== pytest"
.venv/bin/python -m pytest --cov --cov-report=term --cov-fail-under="$(cat .ci/coverage-floor)" "$@"
