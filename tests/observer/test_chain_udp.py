"""Unit tests of the UDP zero-checksum chain functions (pure logic)."""
from chain_views import UDP
from pathspider.observer import udp as U


def test_last_datagram_per_direction():
    rec = {}
    assert U.udp_setup(rec, None) is True
    assert rec == {'udp_zero_checksum_fwd': None, 'udp_zero_checksum_rev': None}
    assert U.udp_zero_checksum(rec, UDP(checksum=0), False) is True
    assert rec == {'udp_zero_checksum_fwd': True, 'udp_zero_checksum_rev': None}
    U.udp_zero_checksum(rec, UDP(checksum=0xBEEF), True)
    U.udp_zero_checksum(rec, UDP(checksum=0x0001), False)
    assert rec == {'udp_zero_checksum_fwd': False, 'udp_zero_checksum_rev': False}
