#!/usr/bin/env bash
# The README's main command: measure ECN across a lab of impaired paths, in one go.
#
#   sudo bash scripts/demo.sh [RESULTS_FILE]
#
# On a fresh Debian 12 machine (as root) this
#   1. installs what pathspider needs (scripts/install.sh: system packages, .venv),
#   2. brings up a lab (network namespaces client / middlebox / server, one target subnet per
#      impairment class, addresses from 198.18.0.0/15 and 2001:db8::/32 only),
#   3. writes a few hundred lab targets spread over every impairment class, IPv4 and IPv6,
#   4. runs the ecn measurement from the lab's client namespace, with --locate: the targets
#      where ECN breaks or is bleached are traced to the hop that does it,
#   5. prints a per-class summary (worked without ECN, with ECN, negotiated, marks seen...)
#      and where --locate placed each impairment (hop, as `lab status` numbers them),
#   6. keeps the raw results (one JSON record per connection) in RESULTS_FILE
#      (default: ecn-lab-results.ndjson in the current directory),
#   7. takes the lab down again - also when something fails or it is interrupted.
#
# Environment: DEMO_TARGETS (default 330: 15 per class and address family), DEMO_WORKERS (50),
# DEMO_TIMEOUT (seconds per connection, 3), PATHSPIDER_LAB_NAME (lab name, default psdemo),
# DEMO_SKIP_INSTALL (set: skip step 1, for an already installed checkout).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
results="$(realpath -m "${1:-ecn-lab-results.ndjson}")"
lab="${PATHSPIDER_LAB_NAME:-psdemo}"
count="${DEMO_TARGETS:-330}"
workers="${DEMO_WORKERS:-50}"
timeout="${DEMO_TIMEOUT:-3}"

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (the lab creates network namespaces and firewall rules)" >&2
  exit 1
fi

cd "$here"
if [ -z "${DEMO_SKIP_INSTALL:-}" ]; then
  bash scripts/install.sh
fi
pathspider="$here/.venv/bin/pathspider"

targets="$(mktemp --suffix=.csv)"
cleanup() {
  status=$?
  "$pathspider" lab --name "$lab" down >/dev/null 2>&1 || echo "demo.sh: could not take lab $lab down" >&2
  rm -f "$targets"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== bringing up lab $lab" >&2
"$pathspider" lab --name "$lab" up

echo "== $count targets over every impairment class, IPv4 and IPv6" >&2
"$pathspider" lab --name "$lab" targets --count "$count" --out "$targets"

echo "== measuring ECN (pathspider -i eth0 ecn --timeout $timeout --locate) from the lab client" >&2
"$pathspider" lab --name "$lab" exec -- "$pathspider" -i eth0 -w "$workers" \
  --input "$targets" --output "$results" ecn --timeout "$timeout" --locate

echo >&2
echo "== per impairment class: targets, connections that worked without and with ECN, ..." >&2
"$pathspider" summary --plugin ecn --group lab --by-family "$results"
echo >&2
echo "== where --locate placed the impairments (hop 1 = first router; lab status --json:" \
     "impairment_hop)" >&2
"$here/.venv/bin/python" - "$results" <<'PY'
import collections, json, sys
from pathspider.lab.plan import class_of
seen = collections.Counter()
for line in open(sys.argv[1]):
    rec = json.loads(line)
    loc = rec.get("locate")
    if rec.get("config") == 1 and loc:
        hop = loc.get("dropped_at" if loc.get("effect") == "dropped" else "changed_at")
        seen[class_of(rec["dip"]), loc.get("effect"), hop] += 1
for (cls, effect, hop), n in sorted(seen.items(), key=str):
    print(f"{cls:<14} {effect:<8} at hop {hop if hop is not None else 'unknown'}: {n} targets")
if not seen:
    print("no target needed locating")
PY
echo >&2
echo "raw results: $results ($(wc -l <"$results") records, one per connection;" \
     "see docs/plugins/ecn.md)" >&2
