"""Unit tests of the ICMP chain functions (pure logic)."""
from chain_views import C4, S4, ip_icmp, ip_tcp
from pathspider.observer.dissector import DLT_RAW, dissect
from pathspider.testing import packets as pk
from pathspider.observer import icmp as I


def fresh():
    rec = {}
    assert I.icmp_setup(rec, None) is True
    assert rec == {'icmp_unreachable': False}
    return rec


def test_constants():
    assert I.ICMP_UNREACHABLE == I.ICMP4_UNREACHABLE == 3
    assert I.ICMP4_TTLEXCEEDED == 11 and I.ICMP6_UNREACHABLE == 1 and I.ICMP6_TTLEXCEEDED == 3


def test_v4_unreachable_reverse_completes():
    rec = fresh()
    assert I.icmp_unreachable(rec, ip_icmp(3), None, True) is False
    assert rec['icmp_unreachable'] is True
    assert I.icmp_unreachable(rec, ip_icmp(11), None, True) is False   # stays complete


def test_v4_forward_or_other_types_ignored():
    rec = fresh()
    assert I.icmp_unreachable(rec, ip_icmp(3), None, False) is True
    assert I.icmp_unreachable(rec, ip_icmp(11), None, True) is True
    assert rec['icmp_unreachable'] is False


def test_v6_unreachable_reads_icmp6_header():
    rec = fresh()
    packet = ip_icmp(1, version=6)
    assert packet.icmp is None                # an IPv4 accessor would find nothing
    assert I.icmp6_unreachable(rec, packet, None, True) is False
    assert rec['icmp_unreachable'] is True


def test_v6_other_types_ignored():
    rec = fresh()
    assert I.icmp6_unreachable(rec, ip_icmp(3, version=6), None, True) is True   # time exceeded
    assert I.icmp6_unreachable(rec, ip_icmp(1, version=6), None, False) is True
    assert rec['icmp_unreachable'] is False


def test_missing_header_is_not_unreachable():
    rec = fresh()
    packet = dissect(pk.ip4(C4, S4, 1, b'\x03\x00'), DLT_RAW)    # 2 bytes of ICMP header
    assert packet.icmp is None
    assert I.icmp_unreachable(rec, packet, None, True) is True


def test_is_icmp_error():
    assert I.is_icmp_error(ip_icmp(3)) and I.is_icmp_error(ip_icmp(11))
    assert not I.is_icmp_error(ip_icmp(0)) and not I.is_icmp_error(ip_icmp(8))
    assert I.is_icmp_error(ip_icmp(1, version=6)) and I.is_icmp_error(ip_icmp(2, version=6))
    assert not I.is_icmp_error(ip_icmp(128, version=6))
    assert not I.is_icmp_error(ip_tcp(0x02))
