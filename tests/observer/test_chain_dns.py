"""Unit tests of the DNS chain functions (dnspython parsing of reverse payloads)."""
import dns.message
from hypothesis import given, settings
from hypothesis import strategies as st

from chain_views import TCP, UDP
from pathspider.observer import dns as N
from pathspider.observer.tcp import TCP_ACK, TCP_PSH

QUERY = dns.message.make_query('example.com', 'A', id=4242)
RESPONSE = dns.message.make_response(QUERY).to_wire()


def fresh():
    rec = {}
    assert N.dns_setup(rec, None) is True
    assert rec == {'dns_response_valid': False}
    return rec


def test_udp_response_completes_flow():
    rec = fresh()
    assert N.dns_udp(rec, UDP(payload=QUERY.to_wire()), False) is True
    assert N.dns_udp(rec, UDP(payload=RESPONSE), False) is True     # wrong direction
    assert N.dns_udp(rec, UDP(payload=RESPONSE), True) is False
    assert rec['dns_response_valid'] is True
    # completion is signalled once; later packets pass on to the next chain functions
    assert N.dns_udp(rec, UDP(payload=RESPONSE), True) is True


def test_query_in_reverse_and_garbage_are_not_responses():
    rec = fresh()
    assert N.dns_udp(rec, UDP(payload=QUERY.to_wire()), True) is True
    assert N.dns_udp(rec, UDP(payload=b'\xff' * 40), True) is True
    assert N.dns_udp(rec, UDP(payload=RESPONSE[:-3]), True) is True  # truncated
    assert N.dns_udp(rec, UDP(payload=b''), True) is True
    assert rec['dns_response_valid'] is False


def test_tcp_needs_length_prefix():
    rec = fresh()
    flags = TCP_ACK | TCP_PSH
    assert N.dns_tcp(rec, TCP(flags, payload=RESPONSE), True) is True     # no prefix
    half = len(RESPONSE).to_bytes(2, 'big') + RESPONSE[:10]
    assert N.dns_tcp(rec, TCP(flags, payload=half), True) is True        # split segment
    assert rec['dns_response_valid'] is False
    whole = len(RESPONSE).to_bytes(2, 'big') + RESPONSE
    assert N.dns_tcp(rec, TCP(flags, payload=whole), True) is False
    assert rec['dns_response_valid'] is True


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_random_payload_never_raises(raw):
    rec = fresh()
    N.dns_udp(rec, UDP(payload=raw), True)
    N.dns_tcp(rec, TCP(TCP_ACK, payload=raw), True)
    N.dns_tcp(rec, TCP(TCP_ACK, payload=len(raw).to_bytes(2, 'big') + raw), True)
    assert isinstance(rec['dns_response_valid'], bool)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(RESPONSE) - 1), st.integers(0, 255))
def test_mutated_response_never_raises(pos, byte):
    wire = bytearray(RESPONSE)
    wire[pos] = byte
    assert N.is_dns_response(bytes(wire)) in (True, False)
