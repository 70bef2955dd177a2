"""Unit tests of the TCP Fast Open chain functions (pure logic)."""
import pytest

from chain_views import TCP
from pathspider.observer import tfo as F
from pathspider.observer.tcp import TCP_ACK, TCP_SA, TCP_SYN

COOKIE = bytes(range(1, 9))


def opt(kind, value=b''):
    return bytes([kind, len(value) + 2]) + value


def fresh():
    rec = {}
    assert F.tfo_setup(rec, None) is True
    assert rec == dict.fromkeys(F.TFO_FIELDS, 0)
    return rec


def test_private_aliases():
    assert F._tfosetup is F.tfo_setup and F._tfopacket is F.tfo_packet


def test_cookie_request_and_grant_iana():
    rec = fresh()
    F.tfo_packet(rec, TCP(TCP_SYN, seq=1000, options=opt(34)), False)
    F.tfo_packet(rec, TCP(TCP_SA, seq=5, ack=1001, options=opt(34, COOKIE)), True)
    F.tfo_packet(rec, TCP(TCP_ACK, seq=1001, ack=6), False)
    assert rec == {'tfo_synkind': 34, 'tfo_ackkind': 34, 'tfo_synclen': 0, 'tfo_ackclen': 8,
                   'tfo_seq': 1000, 'tfo_dlen': 0, 'tfo_ack': 1001}


@pytest.mark.parametrize('kind', [254, 255, 253])
def test_data_on_syn_experimental(kind):
    rec = fresh()
    data = b'GET / HTTP/1.1\r\n\r\n'
    F.tfo_packet(rec, TCP(TCP_SYN, seq=2**32 - 5, options=opt(kind, b'\xf9\x89' + COOKIE),
                          payload=data), False)
    F.tfo_packet(rec, TCP(TCP_SA, ack=(2**32 - 5 + len(data) + 1) % 2**32), True)
    assert rec['tfo_synkind'] == kind and rec['tfo_synclen'] == 8
    assert rec['tfo_dlen'] == len(data)
    assert rec['tfo_ack'] == (rec['tfo_seq'] + rec['tfo_dlen'] + 1) % 2**32
    assert rec['tfo_ackkind'] == 0 and rec['tfo_ackclen'] == 0


def test_option_b_alone_does_not_crash():
    """1.0 read option A's bytes for option B and raised when only B was there."""
    seg = TCP(TCP_SYN, options=opt(255, b'\xf9\x89' + COOKIE))
    assert F.tfo_cookie(seg) == (255, COOKIE)


def test_experimental_without_magic_is_not_tfo():
    rec = fresh()
    F.tfo_packet(rec, TCP(TCP_SYN, options=opt(254, b'\x12\x34' + COOKIE)), False)
    assert rec == dict.fromkeys(F.TFO_FIELDS, 0)


def test_iana_preferred_over_experimental():
    seg = TCP(TCP_SYN, options=opt(254, b'\xf9\x89') + opt(34, COOKIE[:4]))
    assert F.tfo_cookie(seg) == (34, COOKIE[:4])


def test_synack_without_tfo_syn_ignored_and_non_syn_ignored():
    rec = fresh()
    F.tfo_packet(rec, TCP(TCP_SA, ack=77, options=opt(34, COOKIE)), True)
    F.tfo_packet(rec, TCP(TCP_ACK, options=opt(34, COOKIE), payload=b'x'), False)
    assert rec == dict.fromkeys(F.TFO_FIELDS, 0)


def test_malformed_options_never_raise():
    rec = fresh()
    assert F.tfo_packet(rec, TCP(TCP_SYN, options=b'\x22\x00\x22\x02'), False) is True
    assert F.tfo_packet(rec, TCP(TCP_SYN, options=b'\x01\x01\x22\x09\x00'), False) is True
    assert rec['tfo_synkind'] == 0


def test_retransmitted_syn_resets_ack():
    rec = fresh()
    F.tfo_packet(rec, TCP(TCP_SYN, seq=10, options=opt(34)), False)
    F.tfo_packet(rec, TCP(TCP_SA, ack=11), True)
    F.tfo_packet(rec, TCP(TCP_SYN, seq=10, options=opt(34)), False)
    assert rec['tfo_ack'] == 0
