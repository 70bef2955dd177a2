"""Every chain function on real dissector views of mutated and truncated packets: no
exception, and a boolean verdict (the Observer counts a raising chain as an error)."""
import importlib.util
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pathspider.observer.dissector import DissectError, dissect
from pathspider.observer.chains import REGISTRY, chain_lists

GOLDEN = Path(__file__).resolve().parents[1] / 'data' / 'golden'
_spec = importlib.util.spec_from_file_location('golden_regenerate', GOLDEN / 'regenerate.py')
regen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regen)

FRAMES = [frame[1] for name in ('ecn', 'dscp', 'tfo_iana', 'tfo_experimental', 'mss', 'evil',
                                'dns', 'icmp4', 'icmp6', 'fragments', 'ipv6_ext_headers')
          for frame in regen.frames_for(name, regen.SCENARIOS[name])[1]]
LISTS = chain_lists(list(REGISTRY))


def run_all_chains(frame):
    """Run every registered chain function on ``frame`` as the Observer would (without the
    short-circuit, so every function sees the packet); return the verdicts."""
    try:
        ip = dissect(frame)
    except DissectError:
        return []
    verdicts = []
    for rev in (False, True):
        rec = {}
        verdicts += [fn(rec, ip) for fn in LISTS['new_flow_chain']]
        v4 = ip.version == 4
        verdicts += [fn(rec, ip, rev) for fn in LISTS['ip4_chain' if v4 else 'ip6_chain']]
        icmp = ip.icmp if v4 else ip.icmp6
        if icmp is not None:
            q = icmp.quoted
            verdicts += [fn(rec, ip, q, rev)
                         for fn in LISTS['icmp4_chain' if v4 else 'icmp6_chain']]
        if ip.tcp is not None:
            verdicts += [fn(rec, ip.tcp, rev) for fn in LISTS['tcp_chain']]
        elif ip.udp is not None:
            verdicts += [fn(rec, ip.udp, rev) for fn in LISTS['udp_chain']]
    return verdicts


def test_every_golden_frame_runs_clean():
    seen = 0
    for frame in FRAMES:
        verdicts = run_all_chains(frame)
        assert all(v is True or v is False for v in verdicts)
        seen += bool(verdicts)
    assert seen == len(FRAMES)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(FRAMES), st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)),
                                         max_size=6),
       st.integers(14, 400))
def test_mutated_frames_never_raise(frame, flips, cut):
    buf = bytearray(frame)
    for pos, value in flips:
        if pos < len(buf):
            buf[pos] = value
    verdicts = run_all_chains(bytes(buf[:cut]))
    assert all(v is True or v is False for v in verdicts)
