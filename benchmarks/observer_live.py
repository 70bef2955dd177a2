#!/usr/bin/env python3
"""Live Observer: the highest replay rate a live capture keeps with no packet lost.

Replays the pcap of ``benchmarks/observer.py`` (~200k packets in ~20k TCP flows, half IPv4 and
half IPv6, addresses in 198.18.0.0/15 and 2001:db8::/32; generated once and cached under /tmp)
onto a veth pair at rising rates, and checks what the Observer captured each time.

Set-up, all of it made by this script and removed again on every ending (normal end, error,
Ctrl-C, SIGTERM, SIGHUP): two network namespaces ``psl-live-<pid>-a`` (capture side) and
``psl-live-<pid>-b`` (replay side) joined by a veth pair ``pslv<pid>a``/``pslv<pid>b``, IPv6
off on both ends so that the kernel sends nothing of its own on the link. Nothing in the root
namespace is touched (no sysctl, firewall or route).

For each rate (default 50k, 100k, 200k, 400k, 600k, 800k packets/s, then ``--topspeed``;
each once):

1. a fresh Observer on the capture end, started the way a measurement starts it:
   ``ObserverRunner(observer_for("int:pslv<pid>a", ["basic", "tcp", "ecn"]), deliver,
   on_failure)``, its process forked from a thread inside the capture namespace;
2. ``tcpreplay --intf1=pslv<pid>b --preload-pcap --pps=RATE`` (or ``--topspeed``) in the
   replay namespace, the pcap looped for ``--seconds`` s (default 10: one pass of 200k
   packets fits in the Observer's 64 MiB capture ring whatever the rate, so a single pass
   would measure the ring, not the Observer; 10 s overflow it unless the Observer keeps up
   to within a few tens of thousands of packets/s);
3. once the Observer process's CPU time stops growing (it has caught up; at most
   ``--settle`` s), ``request_stop()``, then ``runner.stats`` once its stream has ended.

Reported per rate: packets sent (tcpreplay's "Successful packets") and the rate tcpreplay
really achieved; the Observer's ``packets`` (processed), ``received``, ``flows`` and the flow
records it delivered (the pcap's flows recur on every loop, so both exceed 20k); kernel drops,
shown as ``dropped+ifdropped+veth``: libpcap's ``dropped`` (capture ring full) and
``ifdropped``, and the capture veth's own rx/tx drop counters read over netlink (libpcap reads
``ifdropped`` from sysfs, which shows the root namespace here, so it stays 0); ``lag s``: how
long the Observer was still busy after tcpreplay ended (the backlog it had in the ring); and
whether the rate was kept: no kernel drop and every sent packet processed. Then the highest
rate kept. A rate tcpreplay could not reach is flagged ("achieved" well below "asked"): the
sender is then a limit too (it shares the CPUs with the Observer, and on a veth the kernel
copies each packet into the capture ring on the sender's CPU, so the capture slows it down).

Run as root from the repository (about 1.5 minutes with the defaults)::

    .venv/bin/python benchmarks/observer_live.py [--seconds 10] [--flows 20000] [--settle 30]
        [--rates 50000,100000,200000,400000,600000,800000,top]

Installs Debian's ``tcpreplay`` with ``apt-get install -y tcpreplay`` if it is missing (and
says so on stderr). The report names the meter that ran (compiled or interpreted).
"""

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import observer as bench_observer  # noqa: E402  (benchmarks/observer.py: the pcap generator)

from pathspider.engine.handoff import ObserverRunner  # noqa: E402
from pathspider.lab import netns  # noqa: E402
from pathspider.observer.chains import observer_for  # noqa: E402

CHAINS = ["basic", "tcp", "ecn"]
DEFAULT_RATES = "50000,100000,200000,400000,600000,800000,top"
MAX_RATES = 20                  # bound on the number of replays in one run
MAX_LOOPS = 1000                # bound on tcpreplay's --loop
TOPSPEED_GUESS = 2_000_000      # packets/s assumed for --topspeed when choosing --loop


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived: clean up and exit."""


def _on_signal(signum, frame):
    raise Interrupted(signum)


def say(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- set-up

def ensure_tcpreplay():
    if shutil.which("tcpreplay"):
        return
    say("tcpreplay is missing: installing Debian's package (apt-get install -y tcpreplay)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "tcpreplay"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        say("apt-get install failed; running apt-get update once and trying again")
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not shutil.which("tcpreplay"):
        raise SystemExit("could not install tcpreplay: " + (done.stderr or "").strip()[-500:])


def benchmark_pcap(flows):
    """Path of benchmarks/observer.py's pcap for ``flows`` flows, generated if not cached."""
    path = bench_observer.PCAP % flows
    if not os.path.exists(path):
        tmp = "%s.%d.tmp" % (path, os.getpid())
        t = time.perf_counter()
        try:
            n = bench_observer.generate(tmp, flows)
            os.replace(tmp, path)       # atomic: a concurrent reader never sees half a file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        say("generated %s: %d packets, %d flows in %.1f s" % (
            path, n, flows, time.perf_counter() - t))
    return path


def count_packets(path):
    import pcapy
    cap = pcapy.open_offline(path)
    n = 0
    for _ in range(10_000_000):         # bounded: 1024 packets a batch
        _, meta = cap.next_batch(1024)
        if not meta:
            break
        n += len(meta) // struct.calcsize("=IIII")
    return n


def run_ip(argv, ns=None, check=True):
    cmd = netns.command(ns, argv) if ns else argv
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), done.stderr.strip()))
    return done


class Link:
    """Two namespaces of our own joined by a veth pair; ``remove()`` undoes everything."""

    def __init__(self):
        pid = os.getpid()
        self.ns_cap = "psl-live-%d-a" % pid
        self.ns_rep = "psl-live-%d-b" % pid
        self.if_cap = "pslv%da" % pid
        self.if_rep = "pslv%db" % pid
        self.made = []

    def create(self):
        for ns in (self.ns_cap, self.ns_rep):
            if netns.exists(ns):        # a leftover of an earlier run with the same pid
                raise RuntimeError("namespace %s exists already; remove it first "
                                   "(ip netns del %s)" % (ns, ns))
        for ns in (self.ns_cap, self.ns_rep):
            run_ip(["ip", "netns", "add", ns])
            self.made.append(ns)
        run_ip(["ip", "link", "add", self.if_cap, "netns", self.ns_cap, "type", "veth",
                "peer", "name", self.if_rep, "netns", self.ns_rep])
        for ns, ifname in ((self.ns_cap, self.if_cap), (self.ns_rep, self.if_rep)):
            # inside our own namespaces only: no IPv6 address, so no DAD/RS/MLD on the link
            for key in ("all", "default", ifname):
                netns.sysctl_set(ns, "net.ipv6.conf.%s.disable_ipv6" % key, 1, missing_ok=True)
            run_ip(["ip", "link", "set", "lo", "up"], ns)
            run_ip(["ip", "link", "set", ifname, "up"], ns)

    def counters(self, ns, ifname):
        out = run_ip(["ip", "-s", "-j", "link", "show", "dev", ifname], ns).stdout
        stats = json.loads(out)[0]["stats64"]
        return {"rx_packets": stats["rx"]["packets"], "rx_dropped": stats["rx"]["dropped"],
                "tx_packets": stats["tx"]["packets"], "tx_dropped": stats["tx"]["dropped"]}

    def remove(self):
        for ns in reversed(self.made):
            for pid in netns.pids(ns):  # only processes this run started can be in there
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                run_ip(["ip", "netns", "del", ns], check=False)
            except Exception as exc:    # keep removing the others
                say("could not remove namespace %s: %s" % (ns, exc))
        self.made = [ns for ns in self.made if netns.exists(ns)]
        if self.made:
            say("namespaces left behind: %s" % ", ".join(self.made))


# --------------------------------------------------------------------------- one rate

def cpu_ticks(pid):
    """utime + stime of ``pid`` in clock ticks, None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def wait_caught_up(pid, limit):
    """Wait until the Observer's CPU time stops growing (it has read all it was sent).

    Returns ``(caught_up, lag)``: whether it went quiet within ``limit`` seconds, and how long
    after the call it was last seen busy (0.2 s resolution).
    """
    hz = os.sysconf("SC_CLK_TCK")
    start = time.monotonic()
    deadline = start + limit
    prev = cpu_ticks(pid)
    quiet = 0
    last_busy = start
    while time.monotonic() < deadline and prev is not None:
        time.sleep(0.2)
        now = cpu_ticks(pid)
        if now is None:
            break
        if now - prev <= max(1, hz // 50):         # <= ~10 % of a core: idle polling
            quiet += 1
        else:
            quiet = 0
            last_busy = time.monotonic()
        prev = now
        if quiet >= 3:
            return True, last_busy - start
    return False, time.monotonic() - start


def parse_tcpreplay(text):
    out = {}
    m = re.search(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", text)
    if m:
        out["actual"] = int(m.group(1))
        out["seconds"] = float(m.group(3))
    m = re.search(r"Rated: [\d.]+ Bps, ([\d.]+) Mbps, ([\d.]+) pps", text)
    if m:
        out["mbps"] = float(m.group(1))
        out["pps"] = float(m.group(2))
    for key, label in (("sent", "Successful packets"), ("failed", "Failed packets"),
                       ("truncated", "Truncated packets"),
                       ("enobufs", r"Retried packets \(ENOBUFS\)"),
                       ("eagain", r"Retried packets \(EAGAIN\)")):
        m = re.search(label + r":\s+(\d+)", text)
        if m:
            out[key] = int(m.group(1))
    return out


class Replay:
    """tcpreplay in the replay namespace, in its own process group (killable as one)."""

    def __init__(self):
        self.proc = None

    def run(self, link, pcap, npkts, rate, seconds, timeout):
        """Replay ``pcap`` (``npkts`` packets) for ``seconds`` s at ``rate`` (looped)."""
        want = (TOPSPEED_GUESS if rate == "top" else rate) * seconds
        loops = max(1, min(MAX_LOOPS, -(-int(want) // npkts) + (rate == "top")))
        argv = ["tcpreplay", "--intf1=" + link.if_rep, "--preload-pcap",
                "--loop=%d" % loops, "--duration=%d" % seconds]
        argv += ["--topspeed"] if rate == "top" else ["--pps=%d" % rate]
        self.proc = subprocess.Popen(netns.command(link.ns_rep, argv + [pcap]),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, _ = self.proc.communicate(timeout=10)
            self.proc = None
            return {"error": "tcpreplay did not finish in %d s" % timeout}, out
        code = self.proc.returncode
        self.proc = None
        res = parse_tcpreplay(out)
        if code != 0 or "sent" not in res:
            res["error"] = "tcpreplay exit %s: %s" % (code, out.strip()[-300:])
        return res, out

    def kill(self):
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)     # its own session: only tcpreplay
            except ProcessLookupError:
                pass


def one_rate(link, pcap, npkts, rate, args, live):
    records = [0]
    failures = []

    def deliver(flows):
        if isinstance(flows, list):
            records[0] += len(flows)

    observer = observer_for("int:" + link.if_cap, CHAINS)
    runner = ObserverRunner(observer, deliver, failures.append)
    live["runner"] = runner
    before = link.counters(link.ns_cap, link.if_cap)
    before_rep = link.counters(link.ns_rep, link.if_rep)
    # forked from a thread inside the capture namespace: the Observer process lives there
    netns.call_in(link.ns_cap, runner.start)
    replay, _ = live["replay"].run(link, pcap, npkts, rate, args.seconds, args.seconds + 60)
    caught_up, lag = wait_caught_up(runner.process.pid, args.settle)
    runner.request_stop()
    if not runner.join(30):
        say("the Observer did not end its stream in 30 s; killing it")
        runner.kill()
        runner.join(10)
    live["runner"] = None
    after = link.counters(link.ns_cap, link.if_cap)
    after_rep = link.counters(link.ns_rep, link.if_rep)
    stats = runner.stats or {}
    res = {
        "rate": rate, "replay": replay, "stats": stats, "records": records[0],
        "caught_up": caught_up, "lag": lag,
        "error": runner.error or (str(failures[0]) if failures else None)
        or replay.get("error"),
        "veth_rx": after["rx_packets"] - before["rx_packets"],
        "veth_rx_dropped": after["rx_dropped"] - before["rx_dropped"],
        "veth_tx_dropped": after_rep["tx_dropped"] - before_rep["tx_dropped"],
    }
    sent = replay.get("sent", 0)
    res["kernel_drops"] = (stats.get("dropped", 0) + stats.get("ifdropped", 0)
                           + res["veth_rx_dropped"] + res["veth_tx_dropped"])
    res["kept"] = (not res["error"] and bool(stats) and sent > 0 and res["kernel_drops"] == 0
                   and stats.get("packets", -1) == sent)
    return res


# --------------------------------------------------------------------------- report

def implementation():
    """Which meter runs (compiled or interpreted, see pathspider.observer.build)."""
    from pathspider.observer import meter_mode
    return "meter: %s" % meter_mode()


def rate_label(rate):
    return "topspeed" if rate == "top" else "%d" % rate


def print_row(res):
    rp, st = res["replay"], res["stats"]
    kd = "%d+%d+%d" % (st.get("dropped", 0), st.get("ifdropped", 0),
                       res["veth_rx_dropped"] + res["veth_tx_dropped"])
    print("%9s %9s %9s %9s %9s %7s %7s %9s %5.1f %-4s %s" % (
        rate_label(res["rate"]), rp.get("sent", "-"),
        "%.0f" % rp["pps"] if "pps" in rp else "-",
        st.get("packets", "-"), st.get("received", "-"), st.get("flows", "-"),
        res["records"], kd, res["lag"], "yes" if res["kept"] else "NO",
        (res["error"] or "") + ("" if res["caught_up"] else " (Observer still busy at stop)")),
        flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default=DEFAULT_RATES,
                    help="comma-separated packets/s, 'top' for --topspeed (default: %(default)s)")
    ap.add_argument("--flows", type=int, default=20000,
                    help="flows in the pcap of benchmarks/observer.py (default: %(default)s)")
    ap.add_argument("--settle", type=float, default=30.0,
                    help="at most this many s for the Observer to catch up after a replay")
    ap.add_argument("--seconds", type=int, default=10,
                    help="replay this many s per rate, looping the pcap (default: %(default)s; "
                         "long enough to overflow the capture ring if the Observer falls "
                         "behind)")
    args = ap.parse_args(argv)
    rates = []
    for item in (r.strip() for r in args.rates.split(",")):
        if item == "top":
            rates.append("top")
        elif item:
            try:
                rates.append(int(float(item)))
            except ValueError:
                ap.error("bad rate %r" % item)
            if rates[-1] <= 0:
                ap.error("a rate must be positive")
    if not rates or len(rates) > MAX_RATES:
        ap.error("give 1 to %d rates" % MAX_RATES)
    args.settle = min(max(args.settle, 1.0), 300.0)
    args.seconds = min(max(args.seconds, 1), 120)
    if os.geteuid() != 0:
        ap.error("run as root (network namespaces, live capture)")

    ensure_tcpreplay()
    pcap = benchmark_pcap(args.flows)
    npkts = count_packets(pcap)
    version = subprocess.run(["tcpreplay", "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=30).stdout
    tcpreplay_version = (version.splitlines() or ["tcpreplay"])[0].strip()

    # Ctrl-C stops the run even if SIGINT came in ignored (a background job of a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    link = Link()
    live = {"replay": Replay(), "runner": None}
    results = []
    try:
        link.create()
        print("pcap %s: %d packets, %d flows; %s" % (pcap, npkts, args.flows, tcpreplay_version))
        print("capture on %s in %s (Observer chains %s), replay from %s in %s" % (
            link.if_cap, link.ns_cap, "+".join(CHAINS), link.if_rep, link.ns_rep))
        print("python %s, %d CPUs; %s" % (sys.version.split()[0], os.cpu_count(),
                                          implementation()))
        print("kernel drops = libpcap dropped + libpcap ifdropped + veth rx/tx dropped; "
              "kept = 0 kernel drops and processed == sent")
        print("%9s %9s %9s %9s %9s %7s %7s %9s %5s %-4s" % (
            "asked pps", "sent", "achieved", "processed", "received", "flows", "records",
            "k.drops", "lag s", "kept"), flush=True)
        for rate in rates:
            res = one_rate(link, pcap, npkts, rate, args, live)
            results.append(res)
            print_row(res)
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = exc.args[0] if isinstance(exc, Interrupted) else signal.SIGINT
        say("interrupted (%s): cleaning up" % signal.Signals(signum).name)
        return 128 + signum
    finally:
        live["replay"].kill()
        if live["runner"] is not None:
            live["runner"].kill()
            live["runner"].join(5)
        for signum in (signal.SIGTERM, signal.SIGHUP):   # the clean-up is not interrupted
            signal.signal(signum, signal.SIG_IGN)
        link.remove()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)

    kept = [r for r in results if r["kept"]]
    if kept:
        best = max(kept, key=lambda r: r["replay"].get("pps", 0))
        print("highest rate kept with 0 kernel drops: %.0f packets/s achieved (asked %s)" % (
            best["replay"]["pps"], rate_label(best["rate"])))
    else:
        print("highest rate kept with 0 kernel drops: none of the rates tried")
    lost = [r for r in results if not r["kept"]]
    if lost:
        first = lost[0]
        print("first rate not kept: asked %s, achieved %s packets/s" % (
            rate_label(first["rate"]),
            "%.0f" % first["replay"]["pps"] if "pps" in first["replay"] else "-"))
        if kept and first["replay"].get("pps", 0) < best["replay"]["pps"]:
            print("note: that is below the highest rate kept: the Observer is at its edge "
                  "between these rates, where one replay keeps up and another does not")
    short = [r for r in results if r["rate"] != "top" and "pps" in r["replay"]
             and r["replay"]["pps"] < 0.9 * r["rate"]]
    for r in short:
        print("note: tcpreplay reached only %.0f of the %d packets/s asked: the sender is a "
              "limit at that rate (it shares the CPUs with the Observer, and on a veth the "
              "kernel copies each packet into the capture ring on the sender's CPU)" % (
                  r["replay"]["pps"], r["rate"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
