"""Packet sources: libtrace URIs, pcap/pcapng files, link types, batches, live errors."""
import os
import pickle

import pytest

from core_craft import data_path, mk
from pathspider.observer.source import META, PacketSource, PacketSourceError, parse_uri


@pytest.mark.parametrize("uri,expected", [
    ("int:eth0", (True, "eth0")),
    ("ring:veth-a", (True, "veth-a")),
    ("pcap:/tmp/x.pcap", (False, "/tmp/x.pcap")),
    ("pcapfile:rel/x.pcapng", (False, "rel/x.pcapng")),
    ("/tmp/x.pcap", (False, "/tmp/x.pcap")),
    ("trace.pcap", (False, "trace.pcap")),
])
def test_parse_uri(uri, expected):
    assert parse_uri(uri) == expected


@pytest.mark.parametrize("uri", ["dag:/dev/dag0", "erf:x.erf", "int:", "pcap:", "", None])
def test_bad_uris_raise_one_clear_error(uri):
    with pytest.raises(PacketSourceError):
        PacketSource(uri)


def test_missing_file(tmp_path):
    src = PacketSource("pcap:%s" % (tmp_path / "nope.pcap"))
    with pytest.raises(PacketSourceError, match="no such file"):
        src.open()


def test_not_a_capture_file(tmp_path):
    path = tmp_path / "junk.pcap"
    path.write_bytes(b"this is not a capture file at all")
    with pytest.raises(PacketSourceError, match="cannot open"):
        PacketSource(str(path)).open()


def test_unknown_link_type(tmp_path):
    path = str(tmp_path / "ppp.pcap")
    mk.write_pcap(path, [(1.0, b"\xff\x03\x00\x21" + mk.tcp4(mk.C4, mk.S4, 1, 2, mk.SYN))], 9)
    with pytest.raises(PacketSourceError, match="unsupported link type 9"):
        PacketSource(path).open()


@pytest.mark.parametrize("name,linktype", [
    ("link_eth.pcap", 1), ("link_sll.pcap", 113), ("link_sll2.pcap", 276),
    ("link_raw.pcap", 12), ("link_null.pcap", 0), ("link_loop.pcap", 108),
    ("link_ipv4.pcap", 228), ("link_ipv6.pcap", 229), ("link_vlan.pcap", 1),
    ("link_eth.pcapng", 1), ("link_eth_nano.pcap", 1),
])
def test_every_capture_file_opens_with_its_link_type(name, linktype):
    with PacketSource("pcap:" + data_path(name)) as src:
        assert src.linktype == linktype and not src.live
        pkts, meta = src.next_batch(1000)
        n = len(meta) // META.size
        assert n in (8, 16)
        sec, usec, off, caplen = META.unpack_from(meta, 0)
        assert sec == 1000 and usec in (0, 500000) and off == 0 and caplen > 20
        last = META.unpack_from(meta, len(meta) - META.size)
        assert last[2] + last[3] == len(pkts)
        assert src.next_batch(10)[1] == b""          # end of file: empty meta
        assert src.stats() == {"received": 0, "dropped": 0, "ifdropped": 0}


def test_pcap_pcapng_and_nanosecond_files_give_identical_packets():
    def read(name):
        with PacketSource(data_path(name)) as src:
            return list(src.packets())
    eth = read("link_eth.pcap")
    assert len(eth) == 16
    assert read("link_eth.pcapng") == eth
    nano = read("link_eth_nano.pcap")
    assert [p for _, p in nano] == [p for _, p in eth]
    assert all(abs(a[0] - b[0]) < 1e-6 for a, b in zip(nano, eth))


def test_bpf_filter_on_a_file():
    with PacketSource(data_path("link_eth.pcap"), bpf="ip6") as src:
        assert len(list(src.packets())) == 8


def test_bad_bpf_filter_is_a_clear_error():
    with pytest.raises(PacketSourceError, match="cannot open"):
        PacketSource(data_path("link_eth.pcap"), bpf="this is not bpf").open()


def test_batches_are_bounded():
    with PacketSource(data_path("link_eth.pcap")) as src:
        sizes = []
        while True:
            _, meta = src.next_batch(5)
            if not meta:
                break
            sizes.append(len(meta) // 16)
    assert sizes == [5, 5, 5, 1]


def test_picklable_before_and_after_open():
    src = PacketSource(data_path("link_eth.pcap"), bpf="tcp")
    clone = pickle.loads(pickle.dumps(src))
    assert (clone.uri, clone.bpf, clone.live) == (src.uri, "tcp", False)
    src.open()
    try:
        again = pickle.loads(pickle.dumps(src))
        assert not again.is_open
        assert len(list(again.open().packets())) == 16
        again.close()
    finally:
        src.close()


@pytest.mark.root
def test_live_open_failure_names_the_interface():
    src = PacketSource("int:psobs-none%d" % os.getpid())
    with pytest.raises(PacketSourceError, match="psobs-none.*no such device"):
        src.open()


@pytest.mark.root
def test_live_source_is_nonblocking_and_waits_with_timeout():
    import time
    with PacketSource("int:lo", bpf="udp port 9 and host 127.0.0.66") as src:
        assert src.live and src.linktype == 1
        t = time.monotonic()
        pkts, meta = src.next_batch(10)
        assert meta == b""
        assert src.wait(0.2) is False
        assert time.monotonic() - t < 1.0
        stats = src.stats()
        assert set(stats) == {"received", "dropped", "ifdropped"}
