"""Unit tests of the DSCP chain functions (pure logic)."""
from chain_views import ip_icmp, ip_tcp, ip_udp
from pathspider.observer import dscp as D
from pathspider.observer.tcp import TCP_ACK, TCP_SA, TCP_SYN


def test_setup_tcp_and_other():
    rec = {}
    assert D.dscp_setup(rec, ip_tcp(TCP_SYN)) is True
    assert rec == dict.fromkeys(('fwd_syn_dscp', 'rev_syn_dscp', 'fwd_data_dscp',
                                 'rev_data_dscp'))
    rec = {}
    D.dscp_setup(rec, ip_udp())
    assert rec == {'fwd_data_dscp': None, 'rev_data_dscp': None}


def test_syn_last_wins_and_data_first_nonzero():
    rec = {}
    D.dscp_setup(rec, ip_tcp(TCP_SYN))
    seq = [(ip_tcp(TCP_SYN, traffic_class=46 << 2), False),
           (ip_tcp(TCP_SYN, traffic_class=10 << 2 | 2), False),      # retransmit, new mark
           (ip_tcp(TCP_SA, traffic_class=0), True),
           (ip_tcp(TCP_ACK, traffic_class=8 << 2), False),            # pure ACK: ignored
           (ip_tcp(TCP_ACK, traffic_class=0, payload=b'GET'), False),  # data 0 ...
           (ip_tcp(TCP_ACK, traffic_class=46 << 2, payload=b'x'), False),  # ... replaced
           (ip_tcp(TCP_ACK, traffic_class=12 << 2, payload=b'y'), False),  # kept 46
           (ip_tcp(TCP_ACK, traffic_class=18 << 2, payload=b'z'), True)]
    for packet, rev in seq:
        assert D.dscp_extract(rec, packet, rev) is True
    assert rec == {'fwd_syn_dscp': 10, 'rev_syn_dscp': 0, 'fwd_data_dscp': 46,
                   'rev_data_dscp': 18}


def test_icmp_error_codepoint_not_taken_as_reply_mark():
    rec = {}
    D.dscp_setup(rec, ip_tcp(TCP_SYN))
    D.dscp_extract(rec, ip_icmp(3, traffic_class=48 << 2), True)
    assert rec['rev_data_dscp'] is None


def test_udp_data():
    rec = {}
    D.dscp_setup(rec, ip_udp())
    D.dscp_extract(rec, ip_udp(traffic_class=34 << 2), False)
    assert rec == {'fwd_data_dscp': 34, 'rev_data_dscp': None}
