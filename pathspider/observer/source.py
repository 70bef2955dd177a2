"""Packet sources behind libtrace-style URIs, on top of pcapy-ng (libpcap).

PATHspider 1.0 read packets with python-libtrace, which no longer builds on Python 3.10 and
later (every trace URI is rejected with "Expected a string for URI"). This module keeps
libtrace's URI syntax so that ``-i``/``libtrace_uri`` values keep working, and reads through
libpcap instead:

=====================  =======================================================================
URI                    Meaning
=====================  =======================================================================
``int:IFACE``          live capture on IFACE (promiscuous mode off)
``ring:IFACE``         the same (libpcap always uses the kernel's mmap ring on Linux)
``pcap:PATH``          offline: a pcap or pcapng file
``pcapfile:PATH``      the same
``PATH``               a bare path (``/``, ``./`` or an existing file): the same
=====================  =======================================================================

Anything else (``dag:``, ``erf:``, a missing file, an unknown link type, an interface that does
not exist or may not be opened) raises :class:`PacketSourceError` with one readable line.

Reading is done in batches: :meth:`PacketSource.next_batch` returns pcapy-ng's
``(packet_bytes, packed_meta)``; ``packed_meta`` holds one 16-byte record per packet, four
native-endian ``uint32`` ``(sec, usec, offset, caplen)`` (:data:`META`); an empty ``packed_meta``
means "no packet right now" on a live source and end of file offline.

Live handles are non-blocking. libpcap's read timeout does not fire on Linux while no packet
passes the filter, so a blocking read on a quiet interface would never return; instead callers
wait on :meth:`PacketSource.wait` (``poll`` on the handle's file descriptor with a timeout),
which always comes back in time to notice a shutdown request.

The source object is picklable until it is opened: only :meth:`PacketSource.open` touches
libpcap, so an Observer holding one can be sent to a ``spawn``-ed child process.
"""

import logging
import os
import select
import struct

from pathspider.observer.dissector import SUPPORTED_LINKTYPES

logger = logging.getLogger("pathspider.observer.source")

#: Layout of one packed_meta record: seconds, microseconds, offset in packet_bytes, captured length.
META = struct.Struct("=IIII")

DEFAULT_SNAPLEN = 65535
"""Capture length: whole packets (loopback MTU is 64 KiB), so payload-based chains see data."""
DEFAULT_BUFFER = 32 * 1024 * 1024
"""Kernel ring size for live capture. The ring is mapped into the Observer process and, once
the capture has gone round it, counts whole in its resident memory. 32 MiB holds about two
seconds of the lab's fastest measurement traffic (~6,000 connections and 60,000 packets a
second), far longer than the Observer takes to read a batch; 64 MiB added 32 MB to every
run's Observer for no drop saved (``benchmarks/memory.py``, ``benchmarks/e2e.py``)."""
DEFAULT_TIMEOUT_MS = 50
"""libpcap buffer timeout: how long a partly filled kernel block may wait before delivery."""

LIVE_SCHEMES = ("int", "ring")
FILE_SCHEMES = ("pcap", "pcapfile")

# pcap_activate() status codes (pcap/pcap.h); pcapy-ng returns them instead of raising.
_ACTIVATE_ERRORS = {
    -1: "generic libpcap error",
    -3: "handle not activated",
    -4: "handle already activated",
    -5: "no such device",
    -6: "monitor mode not supported",
    -8: "permission denied (capture needs root or CAP_NET_RAW)",
    -9: "interface is not up",
    -10: "cannot set time stamp type",
    -11: "permission denied for promiscuous mode",
    -12: "time stamp precision not supported",
}


class PacketSourceError(Exception):
    """A packet source cannot be opened or read (bad URI, missing file, unknown link type...)."""


def parse_uri(uri):
    """Split a libtrace-style URI into ``(live, target)``.

    ``live`` is True for ``int:``/``ring:`` (target = interface name) and False for offline
    files (target = path). Raises :class:`PacketSourceError` for anything else.
    """
    if not isinstance(uri, str) or not uri:
        raise PacketSourceError("packet source URI must be a non-empty string, got %r" % (uri,))
    scheme, sep, rest = uri.partition(":")
    if sep and scheme in LIVE_SCHEMES:
        if not rest:
            raise PacketSourceError("packet source %r: missing interface name" % uri)
        return True, rest
    if sep and scheme in FILE_SCHEMES:
        if not rest:
            raise PacketSourceError("packet source %r: missing file name" % uri)
        return False, rest
    if os.path.exists(uri) or uri.startswith(("/", "./", "../")) or not sep:
        return False, uri
    raise PacketSourceError(
        "packet source %r: unknown URI scheme %r (use int:IFACE, ring:IFACE, pcap:PATH, "
        "pcapfile:PATH or a file path)" % (uri, scheme))


class PacketSource:
    """One libpcap handle behind a libtrace-style URI, read in batches.

    Construct cheaply (nothing is opened, the object stays picklable), then :meth:`open` in
    the process that reads. ``bpf`` is an optional kernel filter expression (tcpdump syntax).
    """

    def __init__(self, uri, bpf=None, snaplen=DEFAULT_SNAPLEN, buffer_size=DEFAULT_BUFFER,
                 timeout_ms=DEFAULT_TIMEOUT_MS):
        self.uri = uri
        self.live, self.target = parse_uri(uri)
        self.bpf = bpf
        self.snaplen = snaplen
        self.buffer_size = buffer_size
        self.timeout_ms = timeout_ms
        self.linktype = None
        self._pcap = None
        self._fd = None
        self._poller = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pcap"] = None       # a libpcap handle cannot cross a process boundary
        state["_fd"] = None
        state["_poller"] = None
        return state

    @property
    def is_open(self):
        return self._pcap is not None

    def open(self):
        """Open the handle; raise :class:`PacketSourceError` with a one-line reason on failure."""
        if self._pcap is not None:
            return self
        import pcapy  # imported here: the parent process of a capture never needs libpcap
        try:
            handle = self._open_live(pcapy) if self.live else self._open_offline(pcapy)
            if self.bpf:
                handle.setfilter(self.bpf)
            linktype = handle.datalink()
        except pcapy.PcapError as err:
            raise PacketSourceError("cannot open packet source %r: %s" % (self.uri, err)) from None
        if linktype not in SUPPORTED_LINKTYPES:
            handle.close()
            raise PacketSourceError(
                "packet source %r: unsupported link type %d (supported: %s)" % (
                    self.uri, linktype,
                    ", ".join("%d %s" % kv for kv in sorted(SUPPORTED_LINKTYPES.items()))))
        self._pcap = handle
        self.linktype = linktype
        logger.debug("opened %s (link type %d, %s)", self.uri, linktype,
                     SUPPORTED_LINKTYPES[linktype])
        return self

    def _open_offline(self, pcapy):
        if not os.path.isfile(self.target):
            raise PacketSourceError("packet source %r: no such file %r" % (self.uri, self.target))
        return pcapy.open_offline(self.target)

    def _open_live(self, pcapy):
        handle = pcapy.create(self.target)
        handle.set_snaplen(self.snaplen)
        handle.set_promisc(0)
        handle.set_buffer_size(self.buffer_size)
        handle.set_timeout(self.timeout_ms)
        status = handle.activate()
        if status < 0:
            reason = _ACTIVATE_ERRORS.get(status, "libpcap error %d" % status)
            raise PacketSourceError("cannot capture on %r: %s" % (self.target, reason))
        if status > 0:
            logger.warning("capture on %r activated with libpcap warning %d", self.target, status)
        handle.setnonblock(1)
        self._fd = handle.getfd()
        return handle

    def next_batch(self, n=1024):
        """Return ``(packet_bytes, packed_meta)`` for up to ``n`` packets (see :data:`META`).

        Never blocks on a live source; an empty ``packed_meta`` means no packet is pending
        (live) or end of file (offline).
        """
        return self._pcap.next_batch(n)

    def wait(self, timeout):
        """Block until a live source may have packets, at most ``timeout`` seconds.

        Returns True when the descriptor became readable (or reports an error, which the next
        read raises). Offline sources are always ready.
        """
        if self._fd is None:
            return True
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self._fd, select.POLLIN)
        try:
            return bool(poller.poll(timeout * 1000))
        except InterruptedError:
            return False

    def stats(self):
        """Kernel counters of a live source: ``received``, ``dropped``, ``ifdropped``."""
        if self._pcap is None or not self.live:
            return {"received": 0, "dropped": 0, "ifdropped": 0}
        try:
            received, dropped, ifdropped = self._pcap.stats()
        except Exception as err:     # pcapy raises PcapError; be safe at shutdown
            logger.debug("capture statistics unavailable: %s", err)
            return {"received": 0, "dropped": 0, "ifdropped": 0}
        return {"received": received, "dropped": dropped, "ifdropped": ifdropped}

    def close(self):
        if self._pcap is not None:
            try:
                self._pcap.close()
            except Exception as err:   # closing twice or after an error must not mask it
                logger.debug("closing %s: %s", self.uri, err)
            self._pcap = None
            self._fd = None
            self._poller = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def packets(self, idle=0.1):
        """Yield ``(seconds, packet_bytes)`` one by one (tests and tools, not the hot path).

        Offline: until end of file. Live: until no packet arrived for ``idle`` seconds.
        """
        unpack = META.iter_unpack
        while True:
            pkts, meta = self.next_batch(1024)
            if not meta:
                if self.live and self.wait(idle):
                    continue
                return
            for sec, usec, off, caplen in unpack(meta):
                yield sec + usec * 1e-6, pkts[off:off + caplen]
