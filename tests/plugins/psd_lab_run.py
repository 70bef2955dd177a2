"""Helpers for the plugin end-to-end tests: run ``pathspider`` in the lab's client namespace.

The tests run the real command line (``python -m pathspider.run``) inside the lab client
namespace through ``ip netns exec``, exactly as a user would, and read the records it wrote.
"""
import collections
import json
import os
import select
import subprocess
import sys
import time

from pathspider.lab import netns, plan


def targets(lab, classes, hosts, family="both"):
    """Lab target rows for ``hosts`` host numbers of each class (and family)."""
    families = 2 if family == "both" else 1
    return lab.targets(len(classes) * hosts * families, classes, family)


def write_targets(path, rows):
    path.write_text("".join(",".join(str(c) for c in row) + "\n" for row in rows))
    return path


def command(tmp_path, rows, plugin, *plugin_args, workers=16, verbose=False):
    """argv of a pathspider run over ``rows``; returns (argv, output path)."""
    infile = write_targets(tmp_path / f"{plugin}-targets.csv", rows)
    outfile = tmp_path / f"{plugin}-results.ndjson"
    argv = [sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE, "-w",
            str(workers), "--input", str(infile), "--output", str(outfile)]
    if verbose:
        argv.append("-v")
    return argv + [plugin, *plugin_args], outfile


def run_plugin(lab, tmp_path, rows, plugin, *plugin_args, workers=16, timeout=120):
    """Run a plugin in the client namespace; returns (records, completed process)."""
    argv, outfile = command(tmp_path, rows, plugin, *plugin_args, workers=workers)
    proc = lab.exec_in_client(argv, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"pathspider exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return read_records(outfile), proc


def read_records(path):
    with open(path) as stream:
        return [json.loads(line) for line in stream if line.strip()]


def by_target(records):
    """{ip: {config: record}}; fails on a duplicate (target, config)."""
    out = collections.defaultdict(dict)
    for rec in records:
        assert rec["config"] not in out[rec["dip"]], f"duplicate record {rec}"
        out[rec["dip"]][rec["config"]] = rec
    return out


def of_class(table, cls):
    """The entries of ``table`` (from :func:`by_target`) whose target is in class ``cls``."""
    found = {ip: recs for ip, recs in table.items() if plan.class_of(ip) == cls}
    assert found, f"no target of class {cls} in the results"
    return found


def families(table):
    """The IP versions present among the targets of ``table``."""
    return {6 if ":" in ip else 4 for ip in table}


def start_plugin(lab, tmp_path, rows, plugin, *plugin_args, workers=16):
    """Start a verbose run in the background; returns (Popen, output path)."""
    argv, outfile = command(tmp_path, rows, plugin, *plugin_args, workers=workers,
                            verbose=True)
    proc = subprocess.Popen(netns.command(lab.client_netns, argv), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=lab.client_env())
    return proc, outfile


def wait_for_log(proc, needle, timeout=30):
    """Read the process's stderr until a line contains ``needle`` (bounded by ``timeout``).

    Returns the lines read; fails if the process ends or the time runs out first.
    """
    lines = []
    deadline = time.monotonic() + timeout
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    buffer = ""
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{needle!r} not logged within {timeout} s:\n" + "\n".join(lines)
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536).decode(errors="replace")
        assert chunk, f"process ended before logging {needle!r}:\n" + "\n".join(lines)
        buffer += chunk
        *complete, buffer = buffer.split("\n")
        lines.extend(complete)
        if any(needle in line for line in complete):
            os.set_blocking(fd, True)
            return lines
