#!/usr/bin/env bash
# Install callcontrol and run the demo on the embedded default (SQLite).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec .venv/bin/callcontrol demo "$@"
