#!/usr/bin/env bash
# Installs pathspider (scripts/install.sh) and runs the whole test suite. Tests that need root and
# network namespaces run when this is run as root and skip with a reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest -ra tests "$@"
