#!/usr/bin/env bash
# Sets pathspider up on a Debian 12 machine, as root: the system packages it needs (nftables and
# iproute2 for the lab, the venv module, redis-server for campaigns), a virtual environment in
# .venv, and pathspider installed in it (editable, with the test and campaign extras). Safe to
# run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v tc >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ethtool >/dev/null 2>&1 || need_apt+=(ethtool)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# Debian's Redis: the broker of campaigns on one machine, the lab and the campaign tests
# (pathspider campaign, docs/campaign.md). Installed only; the scripts start their own.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
# A C compiler and the Python headers build the Observer's compiled meter (setup.py). Without
# them pathspider still installs and the meter runs interpreted: same records, slower.
want_apt=()
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || want_apt+=(gcc libc6-dev)
if ! python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    >/dev/null 2>&1; then
  want_apt+=(python3-dev)
fi
# Headless Chromium renders the HTML report in its test (tests/cli/test_report*.py); the
# report itself does not need it.
test_apt=()
command -v chromium >/dev/null 2>&1 || test_apt+=(chromium)
if [ "$(id -u)" -ne 0 ]; then
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "install.sh: missing system packages (${need_apt[*]}); run as root to install them" >&2
    exit 1
  fi
  if [ ${#want_apt[@]} -gt 0 ]; then
    echo "install.sh: no ${want_apt[*]} (run as root to install them): the Observer's meter" \
         "will run interpreted" >&2
  fi
  if [ ${#test_apt[@]} -gt 0 ]; then
    echo "install.sh: no ${test_apt[*]} (run as root to install it): the report's screenshot" \
         "test will fail" >&2
  fi
else
  need_apt+=("${want_apt[@]}" "${test_apt[@]}")
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install.sh: installing system packages: ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
log="$(mktemp)"
# editable_mode=compat puts the checkout on sys.path (a .pth line) instead of an import hook, so
# that a plugin tree run with PYTHONPATH=. (the plugin guide's workflow) still sees this
# package's own modules and plugins through the pathspider namespace package.
if ! .venv/bin/python -m pip install -q -e '.[test,campaign]' --config-settings editable_mode=compat >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "install.sh: installing pathspider into .venv failed (see above)" >&2
  exit 1
fi
grep -h "^setup.py:" "$log" >&2 || true      # e.g. the meter did not compile
rm -f "$log"
meter="$(.venv/bin/python -c 'from pathspider.observer import meter_mode; print(meter_mode())')"
echo "install.sh: pathspider installed in $(pwd)/.venv (run .venv/bin/pathspider);" \
     "Observer meter: $meter" >&2
