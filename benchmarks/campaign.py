"""Campaign throughput with 1, 2 and 3 vantages against a local run, and the broker's cost per
record (issue 15).

On the lab with three vantages, with a private Redis (``LocalBroker``) and three agents (Celery
workers on this host, each measuring inside its vantage's namespace), this script runs:

1. a local run: ``pathspider -i eth0 -w W ecn`` over the target list inside vantage v1 (the
   same engine and settings an agent uses for a chunk, over the whole list at once);
2. the same list as a campaign from v1; from v1 and v2; from v1, v2 and v3 (``--chunk-size``
   targets per chunk). Throughput is jobs/s: targets x vantages over the campaign's wall time
   (submission to the last stored chunk);
3. the broker's cost per record: the bytes through Redis (its ``total_net_input_bytes`` and
   ``total_net_output_bytes`` during the 3-vantage campaign) per record, and the time to put a
   real chunk result (``--chunk-size`` targets' records) into the backend and to receive it on
   the result channel, per record (``--repeat`` times, median).

The targets are the lab's answering classes (``clean``, ``clean2``, ``ecn-bleach``,
``dscp-bleach``, ``mss-rewrite``), both families, ``--count`` of them (at most 2,540). Note
that the three vantages share this host's CPUs: on a 2-core machine, three agents measuring at
once compete with each other, which real vantages on their own hosts do not.

    .venv/bin/python benchmarks/campaign.py [--lab NAME] [--count 2000] [--chunk-size 500]
        [--workers 100] [--repeat 20] [--json FILE]

Needs root; the lab (``$PATHSPIDER_LAB_NAME`` or ``--lab``) is brought up if needed and given
three vantages; its vantage count is put back and it is taken down at the end if this script
brought it up.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from pathspider.campaign.broker import make_app
from pathspider.campaign.localbroker import LocalBroker
from pathspider.lab import Lab
from pathspider.lab.lab import default_name

CLASSES = ["clean", "clean2", "ecn-bleach", "dscp-bleach", "mss-rewrite"]
VANTAGES = ["v1", "v2", "v3"]


def start_agents(lab, url, workers):
    """One agent per vantage; returns the Popen objects once each says it is ready."""
    agents = []
    for vantage in VANTAGES:
        log = open(os.path.join(tempfile.gettempdir(), f"bench-agent-{vantage}.log"), "w+")
        argv = [sys.executable, "-m", "pathspider.run", "campaign", "agent", "--vantage",
                vantage, "--netns", lab.vantage_netns(vantage), "--broker", url, "-w",
                str(workers), "--visibility-timeout", "600"]
        agents.append(subprocess.Popen(argv, env=lab.vantage_env(vantage), stdout=log,
                                       stderr=subprocess.STDOUT))
    app = make_app(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:          # bounded: each ping blocks up to 1 s
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= len(VANTAGES):
            return agents
    raise SystemExit("the agents did not answer within 60 s")


def local_run(lab, targets, workers, tmp):
    """Wall time of one local run over ``targets`` in vantage v1."""
    out = os.path.join(tmp, "local.ndjson")
    argv = [sys.executable, "-m", "pathspider.run", "-i", "eth0", "-w", str(workers),
            "--input", targets, "--output", out, "--no-progress", "ecn"]
    started = time.monotonic()
    proc = lab.exec_in_vantage("v1", argv, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"local run failed: {proc.stderr[-2000:]}")
    with open(out) as stream:
        return elapsed, sum(1 for _ in stream)


def campaign(url, vantages, targets, chunk_size, tmp):
    """Wall time and records of a campaign from ``vantages``."""
    cdir = os.path.join(tmp, f"camp-{len(vantages)}-{uuid.uuid4().hex[:6]}")
    argv = [sys.executable, "-m", "pathspider.run", "campaign", "run", "--dir", cdir,
            "--vantages", ",".join(vantages), "--broker", url, "--chunk-size",
            str(chunk_size), "--input", targets, "--no-progress", "ecn"]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"campaign failed: {proc.stderr[-2000:]}")
    with open(os.path.join(cdir, "campaign.json")) as stream:
        journal = json.load(stream)
    records = sum(e.get("records") or 0 for chunks in journal["chunks"].values()
                  for e in chunks.values())
    return elapsed, records, cdir


def redis_bytes(url):
    import redis
    info = redis.Redis.from_url(url).info("stats")
    return info["total_net_input_bytes"] + info["total_net_output_bytes"]


def result_path_cost(url, cdir, repeat):
    """Seconds and bytes to pass one real chunk result through the backend: stored as a
    worker stores it, received on the result channel as the submitter receives it."""
    from celery.result import ResultSet
    path = os.path.join(cdir, "records", "v1", "00000.ndjson")
    with open(path) as stream:
        records = [json.loads(line) for line in stream]
    with open(os.path.join(cdir, "metadata", "v1", "00000.json")) as stream:
        metadata = json.load(stream)
    result = {"records": records, "metadata": metadata, "campaign": "bench", "chunk": 0,
              "vantage": "v1", "agent": "bench", "elapsed": 0.0, "exit_status": 0}
    size = len(json.dumps(result))
    producer, consumer = make_app(url), make_app(url)
    times = []
    for _ in range(repeat):
        task_id = str(uuid.uuid4())
        waiting = ResultSet([consumer.AsyncResult(task_id)], app=consumer)
        consumer.backend.result_consumer.start(task_id)
        started = time.perf_counter()
        producer.backend.mark_as_done(task_id, result)
        for _id, meta in consumer.backend.iter_native(waiting, timeout=30, no_ack=True):
            assert len(meta["result"]["records"]) == len(records)
        times.append(time.perf_counter() - started)
    return len(records), size, statistics.median(times)


def make_targets(lab, count, tmp):
    path = os.path.join(tmp, "targets.csv")
    rows = lab.targets(count, CLASSES)
    with open(path, "w") as stream:
        stream.writelines(",".join(str(c) for c in row) + "\n" for row in rows)
    return path, len(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default=default_name())
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    lab = Lab(args.lab)
    built = lab.ensure_up() == "built"
    before = len(lab.vantage_names())
    lab.set_vantages(3)
    out = {}
    agents = []
    with LocalBroker() as broker, tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
        try:
            agents = start_agents(lab, broker.url, args.workers)
            targets, n = make_targets(lab, args.count, tmp)
            elapsed, records = local_run(lab, targets, args.workers, tmp)
            out["local"] = {"targets": n, "seconds": round(elapsed, 2),
                            "jobs_per_s": round(n / elapsed, 1), "records": records}
            print(f"local run (v1): {n} jobs in {elapsed:.1f} s = {n / elapsed:,.0f} jobs/s")
            for count in (1, 2, 3):
                before_bytes = redis_bytes(broker.url)
                elapsed, records, cdir = campaign(broker.url, VANTAGES[:count], targets,
                                                  args.chunk_size, tmp)
                moved = redis_bytes(broker.url) - before_bytes
                jobs = n * count
                out[f"campaign_{count}"] = {
                    "vantages": count, "jobs": jobs, "records": records,
                    "seconds": round(elapsed, 2), "jobs_per_s": round(jobs / elapsed, 1),
                    "redis_bytes_per_record": round(moved / max(records, 1), 1)}
                print(f"campaign, {count} vantage(s): {jobs} jobs ({records} records) in "
                      f"{elapsed:.1f} s = {jobs / elapsed:,.0f} jobs/s; Redis traffic "
                      f"{moved / max(records, 1):,.0f} bytes/record")
            rec, size, seconds = result_path_cost(broker.url, cdir, args.repeat)
            out["result_path"] = {"records": rec, "bytes": size,
                                  "bytes_per_record": round(size / rec, 1),
                                  "ms_per_record": round(1000 * seconds / rec, 4),
                                  "ms_per_chunk": round(1000 * seconds, 2)}
            print(f"result path: a chunk of {rec} records = {size:,} bytes of JSON "
                  f"({size / rec:,.0f} bytes/record), stored and received in "
                  f"{1000 * seconds:.1f} ms ({1000 * seconds / rec:.3f} ms/record, median of "
                  f"{args.repeat})")
        finally:
            for agent in agents:
                agent.terminate()
            for agent in agents:
                try:
                    agent.wait(30)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait(10)
            lab.set_vantages(before)
            if built:
                lab.down()
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(out, stream, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
