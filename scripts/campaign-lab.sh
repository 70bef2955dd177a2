#!/usr/bin/env bash
# A three-vantage ECN campaign on the lab, as root: starts a private broker (scripts/broker.sh),
# brings the lab up with 3 vantages (v2 bleaches the ECN field of all its traffic), starts one
# agent per vantage (Celery workers on this host, measuring inside their vantage's namespace),
# runs `pathspider campaign run` over every class, prints `campaign status` and the attribution
# summary (`campaign analyse`), and stops everything it started (agents by PID, the broker, and
# the lab if it was not up before). Results stay in $OUT (default ./campaign-lab).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SKIP_INSTALL:-}" ] || bash scripts/install.sh     # SKIP_INSTALL=1: already installed
ps=.venv/bin/pathspider
lab="${PATHSPIDER_LAB_NAME:-psl}"
out="${OUT:-campaign-lab}"
hosts="${HOSTS:-4}"
rundir="$(mktemp -d /tmp/pathspider-campaign-lab.XXXXXX)"
agents=()
lab_was_up=0
"$ps" lab --name "$lab" status >/dev/null 2>&1 && lab_was_up=1

cleanup() {
  for pid in "${agents[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${agents[@]}"; do wait "$pid" 2>/dev/null || true; done
  bash scripts/broker.sh stop "$rundir/broker" >/dev/null 2>&1 || true
  if [ "$lab_was_up" = 0 ]; then "$ps" lab --name "$lab" down >/dev/null 2>&1 || true; fi
  rm -rf "$rundir"
}
trap cleanup EXIT

url="$(bash scripts/broker.sh start "$rundir/broker")"
export PATHSPIDER_BROKER="$url"          # read by every campaign command below, never logged
"$ps" lab --name "$lab" up --vantages 3 >/dev/null
for v in v1 v2 v3; do
  PATHSPIDER_IN_LAB="$lab" "$ps" campaign agent --vantage "$v" --netns "$lab-$v" \
      --visibility-timeout 60 -w 32 >"$rundir/agent-$v.log" 2>&1 &
  agents+=($!)
done
"$ps" lab targets --count $((13 * hosts * 2)) >"$rundir/targets.csv"
rm -rf "$out"
"$ps" campaign run --dir "$out" --vantages v1,v2,v3 --chunk-size 26 \
    --input "$rundir/targets.csv" --progress-interval 2 ecn
"$ps" campaign status "$out"
"$ps" campaign analyse "$out" --group lab --output "$out/analysis.ndjson" \
    --report "$out/campaign.html"
.venv/bin/python - "$out/analysis.ndjson" <<'PY'
import collections, json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
count = collections.Counter((r["class"], r["attribution"]) for r in rows
                            if r["condition"] == "ecn.ipmark.ect0.not_seen")
print("ECT(0) marks not seen, targets per class and attribution:")
for (cls, attribution), n in sorted(count.items()):
    print(f"  {cls:14s} {attribution:12s} {n}")
PY
echo "campaign-lab.sh: results in $out/ (records/, campaign.json, analysis.ndjson, campaign.html)"
