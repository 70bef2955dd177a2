"""Unit tests of the ECN chain functions (pure logic)."""
from chain_views import ip_icmp, ip_tcp, ip_udp
from pathspider.observer import ecn as E
from pathspider.observer.tcp import TCP_ACK, TCP_SYN

FIELDS_10 = ('fwd_ez', 'fwd_eo', 'fwd_ce', 'rev_ez', 'rev_eo', 'rev_ce')


def fresh():
    rec = {}
    assert E.ecn_setup(rec, None) is True
    assert rec == dict.fromkeys(FIELDS_10, False)
    return rec


def true_fields(rec):
    return {k for k, v in rec.items() if v is True}


def test_codepoints_by_direction():
    rec = fresh()
    for tc, rev in ((0x02, False), (0x01, True), (0x03, True), (0x00, False), (0xB8, True)):
        assert E.ecn_code(rec, ip_tcp(TCP_ACK, traffic_class=tc), rev) is True
    assert true_fields(rec) == {'fwd_ez', 'rev_eo', 'rev_ce'}


def test_dscp_bits_do_not_leak_into_ecn():
    rec = fresh()
    E.ecn_code(rec, ip_tcp(TCP_SYN, traffic_class=0xB8 | 0x02), False)   # EF + ECT(0)
    assert true_fields(rec) == {'fwd_ez'}


def test_icmp_error_marks_ignored_echo_counted():
    rec = fresh()
    E.ecn_code(rec, ip_icmp(3, traffic_class=0x03), True)
    E.ecn_code(rec, ip_icmp(1, traffic_class=0x03, version=6), True)
    assert true_fields(rec) == set()
    E.ecn_code(rec, ip_icmp(0, traffic_class=0x02), True)                 # echo reply
    assert true_fields(rec) == {'rev_ez'}


def test_split_fields_and_setup():
    rec = {}
    assert E.ecn_split_setup(rec, None) is True
    assert len(rec) == 12 and not any(rec.values())
    assert set(rec) == set(E.SPLIT_FIELDS)


def test_split_syn_data_and_pure_ack():
    rec = {}
    E.ecn_split_setup(rec, None)
    E.ecn_split_code(rec, ip_tcp(TCP_SYN | 0xC0, traffic_class=0x02), False)
    E.ecn_split_code(rec, ip_tcp(TCP_SYN | TCP_ACK, traffic_class=0x01), True)
    E.ecn_split_code(rec, ip_tcp(TCP_ACK, traffic_class=0x03), False)       # pure ACK: skip
    E.ecn_split_code(rec, ip_tcp(TCP_ACK, traffic_class=0x03, payload=b'x'), True)
    E.ecn_split_code(rec, ip_udp(traffic_class=0x02), False)
    E.ecn_split_code(rec, ip_icmp(3, traffic_class=0x01), True)             # error: skip
    assert true_fields(rec) == {'ecn_ect0_syn_fwd', 'ecn_ect1_syn_rev', 'ecn_ce_data_rev',
                                'ecn_ect0_data_fwd'}
