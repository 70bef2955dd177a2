#!/usr/bin/env bash
# Installs pathspider (scripts/install.sh) and runs the whole test suite. Tests that need root and
# network namespaces run when this is run as root and skip with a reason otherwise.
#
# The Observer's meter is one source that runs compiled (when install.sh could build it) or
# interpreted. The suite runs with the meter install.sh built; then, if that one is compiled,
# the Observer's own tests (tests/observer: golden captures, property tests) run again on the
# interpreted meter, from a copy of the package without its extension modules. Both runs must
# pass: the two meters give the same records and counters.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
meter="$(.venv/bin/python -c 'from pathspider.observer import meter_mode; print(meter_mode())')"
status=0
PATHSPIDER_EXPECT_METER="$meter" .venv/bin/python -m pytest -ra tests "$@" || status=$?
if [ "$meter" = compiled ]; then
  copy="$(mktemp -d)"
  trap 'rm -rf "$copy"' EXIT
  tar cf - --exclude='__pycache__' --exclude='*.so' pathspider | tar xf - -C "$copy"
  echo "test.sh: tests/observer again on the interpreted meter ($copy)" >&2
  repo="$(pwd)"
  (cd "$copy" && PYTHONPATH="$copy" PATHSPIDER_EXPECT_METER=interpreted \
     "$repo/.venv/bin/python" -m pytest -ra -p no:cacheprovider \
     --rootdir "$repo" "$repo/tests/observer" "$@") || status=$?
fi
exit "$status"
