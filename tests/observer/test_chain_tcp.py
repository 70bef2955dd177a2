"""Unit tests of the TCP chain functions and the TCP option parser (pure logic)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from chain_views import TCP
from pathspider.observer import tcp as T


def fresh():
    rec = {}
    assert T.tcp_setup(rec, None) is True
    return rec


def test_flag_constants_have_1_0_values():
    assert (T.TCP_CWR, T.TCP_ECE, T.TCP_URG, T.TCP_ACK) == (0x80, 0x40, 0x20, 0x10)
    assert (T.TCP_PSH, T.TCP_RST, T.TCP_SYN, T.TCP_FIN) == (0x08, 0x04, 0x02, 0x01)
    assert T.TCP_SA == 0x12 and T.TCP_SEC == 0xC2 and T.TCP_SAEC == 0xD2 and T.TCP_SAE == 0x52


def test_setup_fields():
    assert fresh() == {'fwd_syn_flags': None, 'rev_syn_flags': None, 'fwd_fin': False,
                       'rev_fin': False, 'fwd_rst': False, 'rev_rst': False,
                       'tcp_connected': False}


def run(rec, segments):
    """Feed (flags, rev) pairs through handshake+complete with short-circuit; return results."""
    out = []
    for flags, rev in segments:
        seg = TCP(flags)
        out.append(T.tcp_handshake(rec, seg, rev) and T.tcp_complete(rec, seg, rev))
    return out


def test_full_connection():
    rec = fresh()
    res = run(rec, [(T.TCP_SEC, False), (T.TCP_SAE, True), (T.TCP_ACK, False),
                    (T.TCP_ACK | T.TCP_FIN, False), (T.TCP_ACK | T.TCP_FIN, True),
                    (T.TCP_ACK, False)])
    assert res == [True, True, True, True, False, False]
    assert rec['fwd_syn_flags'] == T.TCP_SEC and rec['rev_syn_flags'] == T.TCP_SAE
    assert rec['tcp_connected'] and rec['fwd_fin'] and rec['rev_fin']
    assert not rec['fwd_rst'] and not rec['rev_rst']


def test_later_syn_overwrites_until_connected():
    rec = fresh()
    run(rec, [(T.TCP_SEC, False), (T.TCP_SYN, False), (T.TCP_SA, True), (T.TCP_ACK, False),
              (T.TCP_SYN, False)])
    assert rec['fwd_syn_flags'] == T.TCP_SYN      # retransmitted SYN without ECN wins
    assert rec['tcp_connected']


def test_not_connected_without_synack():
    """The 1.0 test accepted any reverse SYN; a reverse SYN without ACK is not a handshake."""
    rec = fresh()
    run(rec, [(T.TCP_SYN, False), (T.TCP_SYN, True), (T.TCP_ACK, False)])
    assert rec['tcp_connected'] is False


def test_reverse_ack_does_not_connect():
    rec = fresh()
    run(rec, [(T.TCP_SYN, False), (T.TCP_SA, True), (T.TCP_ACK, True)])
    assert rec['tcp_connected'] is False


def test_half_close_fin_directions():
    """2.0 swapped FIN directions; a FIN travelling in reverse sets rev_fin only."""
    rec = fresh()
    res = run(rec, [(T.TCP_SYN, False), (T.TCP_SA, True), (T.TCP_ACK, False),
                    (T.TCP_FIN | T.TCP_ACK, True), (T.TCP_ACK, False)])
    assert rec['rev_fin'] is True and rec['fwd_fin'] is False
    assert res[-1] is True          # half-closed: not complete


def test_rst_completes_either_direction():
    for rev in (False, True):
        rec = fresh()
        assert run(rec, [(T.TCP_SYN, False), (T.TCP_RST | T.TCP_ACK, rev)]) == [True, False]
        assert rec['rev_rst' if rev else 'fwd_rst'] is True
        assert rec['fwd_rst' if rev else 'rev_rst'] is False


def opt(kind, value=b''):
    return bytes([kind, len(value) + 2]) + value


def test_options_all_occurrences_in_order():
    raw = opt(T.TO_MSS, b'\x05\xb4') + b'\x01' + opt(T.TO_MSS, b'\x05\x78') + opt(T.TO_SACKOK)
    seg = TCP(T.TCP_SYN, options=raw)
    assert T.tcp_options(seg) == {T.TO_MSS: [b'\x05\xb4', b'\x05\x78'], T.TO_SACKOK: [b'']}
    assert T._tcpoptions(seg) == {T.TO_MSS: b'\x05\x78', T.TO_SACKOK: b''}
    assert T.find_option(seg, T.TO_MSS) == b'\x05\xb4'
    assert T.find_option(seg, T.TO_TS) is None


def test_options_eol_stops():
    raw = opt(T.TO_SACKOK) + b'\x00' + opt(T.TO_MSS, b'\x05\xb4')
    assert T.tcp_options(TCP(T.TCP_SYN, options=raw)) == {T.TO_SACKOK: [b'']}


def test_zero_length_option_does_not_loop():
    raw = opt(T.TO_MSS, b'\x05\xb4') + b'\x08\x00' + opt(T.TO_SACKOK)
    assert list(T.iter_options(raw)) == [(T.TO_MSS, b'\x05\xb4')]
    assert list(T.iter_options(b'\x08\x01\x02\x03')) == []


def test_truncated_option_stops_without_raising():
    raw = opt(T.TO_MSS, b'\x05\xb4') + b'\x08\x0a\x00\x00'
    assert list(T.iter_options(raw)) == [(T.TO_MSS, b'\x05\xb4')]
    assert list(T.iter_options(b'\x02')) == []      # kind without a length byte


def test_doff_past_capture_and_no_options():
    assert T.tcp_options(TCP(T.TCP_SYN)) == {}
    seg = TCP(T.TCP_SYN, options=opt(T.TO_MSS, b'\x05\xb4'), doff=15)  # claims 40, has 4
    assert T.tcp_options(seg) == {T.TO_MSS: [b'\x05\xb4']}


def test_payload_len():
    assert T.tcp_payload_len(TCP(T.TCP_ACK)) == 0
    assert T.tcp_payload_len(TCP(T.TCP_ACK, options=opt(T.TO_SACKOK), payload=b'abc')) == 3
    assert T.tcp_payload_len(TCP(T.TCP_ACK, doff=15)) == 0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=60))
def test_iter_options_never_raises_and_terminates(raw):
    parsed = list(T.iter_options(raw))
    assert sum(len(v) + 2 for _, v in parsed) <= len(raw)
    assert all(k not in (T.TO_EOL, T.TO_NOP) for k, _ in parsed)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(2, 255), st.binary(max_size=8)), max_size=5))
def test_well_formed_options_round_trip(options):
    raw = b''.join(opt(k, v) for k, v in options)
    assert list(T.iter_options(raw)) == [(k, v) for k, v in options]
