"""Unit tests of the IPv4 evil-bit chain functions (pure logic)."""
from chain_views import ip_icmp, ip_tcp, ip_udp
from pathspider.observer import evil as V
from pathspider.observer.tcp import TCP_ACK, TCP_SA, TCP_SYN

FIELDS = ('evilbit_syn_fwd', 'evilbit_syn_rev', 'evilbit_data_fwd', 'evilbit_data_rev')


def fresh():
    rec = {}
    assert V.evil_setup(rec, None) is True
    assert rec == dict.fromkeys(FIELDS)
    return rec


def test_syn_and_first_data_per_direction():
    rec = fresh()
    seq = [(ip_tcp(TCP_SYN, has_rf=True), False),
           (ip_tcp(TCP_SA, has_rf=False), True),
           (ip_tcp(TCP_ACK, has_rf=False), False),                 # pure ACK ignored
           (ip_tcp(TCP_ACK, has_rf=True, payload=b'a'), False),
           (ip_tcp(TCP_ACK, has_rf=False, payload=b'b'), False),   # first data kept
           (ip_tcp(TCP_ACK, has_rf=False, payload=b'c'), True),
           (ip_tcp(TCP_ACK, has_rf=True, payload=b'd'), True)]
    for packet, rev in seq:
        # 2.0 returned None (= flow complete) from the second data packet on
        assert V.evil_extract(rec, packet, rev) is True
    assert rec == {'evilbit_syn_fwd': True, 'evilbit_syn_rev': False,
                   'evilbit_data_fwd': True, 'evilbit_data_rev': False}


def test_udp_data_and_icmp_error_skipped():
    rec = fresh()
    assert V.evil_extract(rec, ip_icmp(3, has_rf=True), True) is True
    assert V.evil_extract(rec, ip_udp(has_rf=True), False) is True
    assert rec['evilbit_data_rev'] is None and rec['evilbit_data_fwd'] is True
