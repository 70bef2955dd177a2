"""Packet capture inside a lab namespace, in a subprocess (pcapy-ng), for checks and tests.

``Capture(netns, bpf)`` is a context manager: on entry it starts ``python -m
pathspider.lab.capture`` inside the namespace and returns once the capture is live (so no
packet sent afterwards is missed); on exit it tells the capturer to stop (closing its stdin),
which drains what the kernel still holds and reports every packet; ``.packets`` then holds
them summarised by :func:`pathspider.lab.packets.parse`.

The capturer waits on the pcap descriptor and its stdin with select: it never polls, and stops
on its own after ``count`` packets or ``timeout`` seconds. Packets stream to the parent as
they are captured, so a test can :meth:`Capture.wait` for the reply it expects.
"""
import argparse
import os
import select
import subprocess
import sys
import time

from . import netns, packets

START_TIMEOUT = 15.0
_BLOCK_MS = 10  # libpcap hands over buffered packets at least this often


class CaptureError(RuntimeError):
    """The capture could not be started or did not finish."""


class Capture:
    """Capture on ``iface`` in namespace ``ns`` with BPF filter ``bpf``; see module doc."""

    def __init__(self, ns, bpf="", iface="eth0", count=10000, timeout=60.0):
        self.ns, self.bpf, self.iface = ns, bpf, iface
        self.count, self.timeout = count, timeout
        self.proc = None
        self.packets = []
        self.linktype = None
        self._partial = b""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        """Start the capturer; returns once it captures."""
        argv = [sys.executable, "-m", "pathspider.lab.capture", "--iface", self.iface,
                "--filter", self.bpf, "--count", self.count, "--timeout", self.timeout]
        self.proc = subprocess.Popen(netns.command(self.ns, argv), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else b""
        if not line.startswith(b"ready"):
            self.proc.kill()
            _, err = self.proc.communicate()
            self.proc = None
            raise CaptureError(f"capture in {self.ns} on {self.iface} did not start: "
                               f"{err.decode(errors='replace').strip() or 'timeout'}")
        self.linktype = int(line.split()[1])

    def _take(self, data):
        """Parse the complete lines in ``data`` (plus what was left over) into packets."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line:
                continue
            ts, hexdata = line.split()
            pkt = packets.parse(bytes.fromhex(hexdata.decode()), self.linktype)
            if pkt is not None:
                pkt["time"] = float(ts)
                self.packets.append(pkt)

    def wait(self, predicate=None, count=1, timeout=2.0):
        """Block until ``count`` captured packets satisfy ``predicate`` (all, if None) or
        ``timeout`` seconds pass; returns the matching packets."""
        match = predicate or (lambda pkt: True)
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while sum(1 for p in self.packets if match(p)) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            data = os.read(fd, 1 << 16)
            if not data:
                break
            self._take(data)
        return [p for p in self.packets if match(p)]

    def stop(self):
        """Stop capturing; returns (and keeps in ``.packets``) the parsed packets."""
        if self.proc is None:
            return self.packets
        proc, self.proc = self.proc, None
        try:
            out, err = proc.communicate(input=b"", timeout=self.timeout + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise CaptureError(f"capture in {self.ns} did not stop") from None
        if proc.returncode != 0:
            raise CaptureError(f"capture in {self.ns} failed: {err.decode(errors='replace')}")
        self._take(out + b"\n")
        return self.packets


def _open(iface, bpf):
    import pcapy  # only the capturing subprocess needs it
    reader = pcapy.create(iface)
    reader.set_snaplen(65535)
    reader.set_timeout(_BLOCK_MS)
    reader.set_buffer_size(8 << 20)
    reader.activate()
    if bpf:
        reader.setfilter(bpf)
    reader.setnonblock(1)
    return reader


def run(iface, bpf, count, timeout, out=sys.stdout):
    """Capture until ``count`` packets, ``timeout`` seconds or EOF on stdin; print hex lines."""
    reader = _open(iface, bpf)
    out.write(f"ready {reader.datalink()}\n")
    out.flush()
    seen = 0

    def keep(header, data):
        nonlocal seen
        if seen < count:
            sec, usec = header.getts()
            out.write(f"{sec}.{usec:06d} {data.hex()}\n")
            seen += 1

    fd, stdin = reader.getfd(), sys.stdin.fileno()
    deadline = time.monotonic() + timeout
    while seen < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd, stdin], [], [], left)
        if fd in ready:
            reader.dispatch(-1, keep)
            out.flush()
        if stdin in ready:
            break
    # Drain: packets may sit in the kernel's current block until it times out.
    while seen < count and select.select([fd], [], [], 3 * _BLOCK_MS / 1000)[0]:
        if not reader.dispatch(-1, keep):
            break
    out.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description="capture packets; print 'ready', then hex")
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--filter", default="")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    try:
        run(args.iface, args.filter, args.count, args.timeout)
    except Exception as exc:  # one clear line for the parent, not a traceback
        print(f"capture failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
