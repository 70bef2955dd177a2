"""Unit tests of the MSS chain functions (pure logic)."""
from chain_views import TCP
from pathspider.observer import mss as M
from pathspider.observer.tcp import TCP_ACK, TCP_SA, TCP_SYN


def fresh():
    rec = {}
    assert M.mss_setup(rec, None) is True
    assert rec == dict.fromkeys(('mss_len_fwd', 'mss_len_rev', 'mss_value_fwd',
                                 'mss_value_rev'))
    return rec


def test_both_directions():
    rec = fresh()
    M.mss_extract(rec, TCP(TCP_SYN, options=b'\x02\x04\x05\xb4'), False)
    M.mss_extract(rec, TCP(TCP_SA, options=b'\x01\x01\x02\x04\x05\x78'), True)
    M.mss_extract(rec, TCP(TCP_ACK, options=b'\x02\x04\x00\x10'), False)   # not a SYN
    assert rec == {'mss_len_fwd': 4, 'mss_value_fwd': 1460, 'mss_len_rev': 4,
                   'mss_value_rev': 1400}


def test_malformed_length_reported_value_none():
    rec = fresh()
    M.mss_extract(rec, TCP(TCP_SYN, options=b'\x02\x05\x05\xb4\x00'), False)
    assert rec['mss_len_fwd'] == 5 and rec['mss_value_fwd'] is None


def test_first_duplicate_and_no_option():
    rec = fresh()
    M.mss_extract(rec, TCP(TCP_SYN, options=b'\x02\x04\x05\xb4\x02\x04\x02\x18'), False)
    assert rec['mss_value_fwd'] == 1460
    M.mss_extract(rec, TCP(TCP_SA), True)
    assert rec['mss_len_rev'] is None
