"""How fast the tracer of ``--locate`` locates: targets per second and packets per target.

``--count`` targets (default 500), half ``ecn-syn-drop`` (an ECN-setup SYN vs a plain SYN:
a drop to locate) and half ``ecn-bleach`` (a SYN with ECT(0) vs a plain SYN: a rewrite to
locate), IPv4 and IPv6 alternately, all submitted at once to one
:class:`pathspider.client.trace.Tracer` at ``--concurrency`` (default 100) in the lab's client
namespace; each result is analysed (:func:`pathspider.client.hops.analyse`) and checked
against the hop the lab states (``lab status`` -> classes -> ``impairment_hop``). Prints the
targets located per second, the packets sent per target, rounds, how many named the right
hop, and the tracer's counters. Bounded by the tracer (rounds x ``--timeout`` per trace) and
a 300-second wait.

Run as root from the repository: ``.venv/bin/python benchmarks/locate.py [--name NAME]
[--count N] [--concurrency N] [--timeout S] [--repeat N]``. The lab name defaults to
``$PATHSPIDER_LAB_NAME``, else ``psl``. Brings the lab up if needed and takes it down again
only if it brought it up.
"""
import argparse
import socket
import statistics
import time

from pathspider.client import hops, packets, trace
from pathspider.client.locatekit import ECN_SETUP_FLAGS, ECT0
from pathspider.lab import Lab, plan
from pathspider.lab.lab import default_name

#: class -> (probes, fields, key of the analysis that names the hop)
CASES = {
    "ecn-syn-drop": ({"A": packets.TCPSyn(80), "B": packets.TCPSyn(80, flags=ECN_SETUP_FLAGS)},
                     ("tcp_flags",), "dropped_at"),
    "ecn-bleach": ({"A": packets.TCPSyn(80), "B": packets.TCPSyn(80, tos=ECT0)},
                   ("ecn",), "changed_at"),
}


def jobs(count):
    """(class, family, address) for ``count`` targets, classes and families alternating."""
    out = []
    classes = list(CASES)
    for i in range(count):
        cls = classes[i % 2]
        family = 4 if (i // 2) % 2 == 0 else 6
        host = plan.HOSTS[(i // 4) % len(plan.HOSTS)]
        out.append((cls, family, str(plan.target_address(cls, host, family))))
    return out


def run(todo, concurrency, timeout):
    """Trace every job at once (runs in the client namespace); (seconds, results, stats)."""
    results = [None] * len(todo)
    with trace.Tracer(concurrency=concurrency, timeout=timeout) as tracer:
        started = time.monotonic()
        for i, (cls, family, dst) in enumerate(todo):
            tracer.submit(socket.AF_INET if family == 4 else socket.AF_INET6, dst,
                          CASES[cls][0], lambda res, i=i: results.__setitem__(i, res))
        finished = tracer.drain(300)
        seconds = time.monotonic() - started
        stats = dict(tracer.stats)
    if not finished:
        raise SystemExit("traces did not finish within 300 s")
    return seconds, results, stats


def judge(todo, results, where):
    """How many traces named the hop the lab states."""
    right = 0
    for (cls, _, _), res in zip(todo, results):
        _, fields, key = CASES[cls]
        loc = hops.analyse(res, fields)
        named = loc[key] if key == "dropped_at" else loc[key][fields[0]]
        right += named == where.get(cls, 1)
    return right


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default=default_name(), help="lab name")
    parser.add_argument("--count", type=int, default=500, help="targets (at most 20,000)")
    parser.add_argument("--concurrency", type=int, default=100, help="traces in flight")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per round")
    parser.add_argument("--repeat", type=int, default=1, help="runs (at most 20)")
    args = parser.parse_args()
    count, repeat = min(max(args.count, 1), 20000), min(max(args.repeat, 1), 20)
    lab = Lab(args.name)
    built = lab.ensure_up() == "built"
    try:
        status = lab.status()
        where = {name: info.get("impairment_hop", 1)
                 for name, info in (status.get("classes") or {}).items()}
        todo = jobs(count)
        rates = []
        for _ in range(repeat):
            seconds, results, stats = lab.call_in_client(run, todo, args.concurrency,
                                                         args.timeout)
            sent = sum(res.packets_sent for res in results)
            rounds = statistics.mean(res.rounds for res in results)
            right = judge(todo, results, where)
            rates.append(count / seconds)
            print(f"{count} targets at concurrency {args.concurrency}: {seconds:.2f} s, "
                  f"{count / seconds:.0f} targets/s, {sent / count:.1f} packets/target "
                  f"(mean {rounds:.2f} rounds), right hop named for {right}/{count}; "
                  f"tracer counters {stats}")
        if repeat > 1:
            print(f"targets/s over {repeat} runs: min {min(rates):.0f}, "
                  f"median {statistics.median(rates):.0f}, max {max(rates):.0f}")
    finally:
        if built:
            lab.down()


if __name__ == "__main__":
    main()
