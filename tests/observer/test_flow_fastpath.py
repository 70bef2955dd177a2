"""Inline forms of chain functions (pathspider.observer.fastpath): a table that pastes them into
its compiled runners must give exactly what a table that calls the functions gives: the same
records (field order included), the same counters, the same completions and errors."""
import builtins
import importlib
import linecache
import logging
import pkgutil

import pytest
from hypothesis import given, settings, strategies as st

import pathspider.observer
from core_craft import mk
from pathspider.observer.flowtable import FlowTable, compile_runner, specialise_process
from pathspider.observer import basic_count, basic_flow
from pathspider.observer.ecn import ecn_code, ecn_setup
from pathspider.observer.fastpath import FAST_NAMES, NEW_FLOW_NAMES, FastPath, fast_path
from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup

C4, S4, C6, S6 = mk.C4, mk.S4, mk.C6, mk.S6
RAW = 12


def inlinable_functions():
    """Every function of the chain library that carries an inline form."""
    found = {}
    modules = [pathspider.observer] + [
        importlib.import_module("pathspider.observer." + m.name)
        for m in pkgutil.iter_modules(pathspider.observer.__path__)]
    for module in modules:
        for value in vars(module).values():
            if isinstance(getattr(value, "fast_path", None), FastPath):
                found[value.__qualname__] = value
    return found


def test_the_library_forms_are_found_and_well_formed():
    forms = inlinable_functions()
    assert {"basic_count", "ecn_code", "tcp_handshake", "tcp_complete"} <= set(forms)
    assert {"basic_flow", "tcp_setup", "ecn_setup"} <= set(forms)
    for fn in forms.values():
        form = fn.fast_path
        names = FAST_NAMES if form.chain == "packet" else NEW_FLOW_NAMES
        assert form.uses <= set(names), fn
        assert fn.__code__.co_argcount == (3 if form.chain == "packet" else 2), fn
        compile(form.code + "\n", fn.__name__, "exec")      # valid on its own
        compile(form.result, fn.__name__, "eval")
        assert form.globals_read <= set(form.env) | set(dir(builtins)), fn
        assert all(t.startswith(fn.__name__) for t in form.temporaries), fn


def _chains(order):
    """The benchmark's chains (basic + tcp + ECN) plus a called function, in some order."""
    seen = []

    def spy(rec, hdr, rev):             # not inlinable: the runner must fill in the views
        seen.append((rev, getattr(hdr, "size", None), getattr(hdr, "flags", None),
                     hdr.payload_len if hasattr(hdr, "payload_len") else hdr.traffic_class))
        return True

    ip = [basic_count, ecn_code, spy] if order else [ecn_code, basic_count]
    tcp = [tcp_handshake, tcp_complete] if order else [tcp_complete, spy, tcp_handshake]
    return {"new_flow": [basic_flow, tcp_setup, ecn_setup], "ip4": ip, "ip6": list(ip),
            "tcp": tcp, "udp": [spy] if order else []}, seen


FLAG_SETS = [mk.SYN, mk.SYN | mk.ECE | mk.CWR, mk.SYN | mk.ACK, mk.SYN | mk.ACK | mk.ECE,
             mk.ACK, mk.PSH | mk.ACK, mk.FIN | mk.ACK, mk.RST, mk.RST | mk.ACK, 0,
             mk.FIN | mk.SYN | mk.RST | mk.ECE | mk.CWR | mk.URG]

events = st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, len(FLAG_SETS) - 1),
                            st.integers(0, 255), st.binary(max_size=12)), max_size=40)


def _packet(flow, reverse, flags, tos, payload):
    c, s = (C6, S6) if flow & 1 else (C4, S4)
    cp, sp = 40000 + flow, 80
    if reverse:
        c, s, cp, sp = s, c, sp, cp
    if flow == 3:
        return mk.udp6(c, s, cp, sp, b"d" * 8 + payload, tc=tos)     # long enough for the fast path
    make = mk.tcp6 if flow & 1 else mk.tcp4
    return make(c, s, cp, sp, FLAG_SETS[flags], payload=payload,
                **{("tc" if flow & 1 else "tos"): tos})


def _run(packets, chains, inline, specialise=True, linktype=RAW, wrap=lambda p: p):
    t = FlowTable(linktype, chains, idle_timeout=3, expiry_timeout=1, inline=inline,
                  specialise=specialise)
    assert ("process" in vars(t)) == (inline and specialise)     # the specialised copy
    for ts, pkt in packets:
        t.process_packet(wrap(pkt), ts)
    t.flush()
    return t


@settings(max_examples=150, deadline=None)
@given(events, st.booleans(), st.sampled_from([RAW, 1]))
def test_inlined_and_called_chains_give_the_same_records(evs, order, linktype):
    packets = [(1.0 + 0.4 * i, _packet(*ev)) for i, ev in enumerate(evs)]
    wrap = mk.LINK[linktype]
    chains, seen_called = _chains(order)
    called = _run(packets, chains, False, linktype=linktype, wrap=wrap)
    assert called.ct.slowpath == 0
    for specialise in (True, False):
        chains, seen = _chains(order)
        inlined = _run(packets, chains, True, specialise, linktype, wrap)
        assert seen == seen_called              # the called function saw the same views
        assert ([list(r.items()) for r in inlined.emitted]
                == [list(r.items()) for r in called.emitted])
        assert inlined.ct.as_dict() == called.ct.as_dict()


def test_runner_inlines_what_it_can_and_calls_the_rest():
    def mine(rec, tcp, rev):
        return True

    run = compile_runner([basic_count, ecn_code], [tcp_handshake, tcp_complete], ("flags",))
    assert not run.views and "fn_" not in run.source
    run = compile_runner([basic_count], [tcp_handshake, mine], ("flags",))
    assert run.views and "fn_2(rec, l4, rev)" in run.source
    # a form reading TCP flags is not pasted where there are none: it is called (and fails
    # there exactly as it does when called)
    run = compile_runner([], [tcp_complete], ())
    assert run.views and "fn_0(rec, l4, rev)" in run.source
    assert compile_runner([], [], ("flags",)) is None


@pytest.mark.parametrize("specialise", [True, False])
def test_an_inlined_function_that_raises_is_counted_and_named(caplog, specialise):
    # no basic_flow: no counters to add to
    t = FlowTable(RAW, {"ip4": [basic_count]}, specialise=specialise)
    with caplog.at_level(logging.WARNING, logger="pathspider.observer.flowtable"):
        t.process_packet(mk.tcp4(C4, S4, 1, 2, mk.SYN), 1.0)
        t.process_packet(mk.tcp4(C4, S4, 1, 2, mk.ACK), 1.1)
    assert t.ct.chain_errors == 2
    assert "in a chain function basic_count (basic.py:" in caplog.text
    assert "inlined): KeyError: 'pkt_fwd'" in caplog.text


def test_the_specialised_process_pastes_the_chains_and_is_cached():
    chains = ((basic_count, ecn_code), (basic_count, ecn_code), (tcp_handshake, tcp_complete),
              ())
    fn, views = specialise_process(*chains)
    assert not views and specialise_process(*chains)[0] is fn
    source = "".join(linecache.getlines(fn.__code__.co_filename))     # tracebacks show it
    pasted = source[source.index("# ---- chains"):source.index("except Exception")]
    assert "run(" not in pasted and "fn" not in pasted
    assert "rec[\"oct_fwd\"] += size" in pasted and "rec['tcp_connected'] = True" in pasted

    def mine(rec, ip, rev):
        return True

    fn, views = specialise_process((mine,), (), (), ())
    assert views and "fn4t_0(rec, ip, rev)" in "".join(linecache.getlines(
        fn.__code__.co_filename))


def test_a_form_clashing_with_the_loop_locals_is_called_instead():
    @fast_path(code="key = None")                   # would overwrite the loop's flow key
    def clobbers(rec, tcp, rev):
        return True

    @fast_path(result="ts > 0")                     # reads the loop's local, not a global
    def peeks(rec, tcp, rev):
        return True

    for fn in (clobbers, peeks):
        special, views = specialise_process((), (), (fn,), ())
        assert views, fn                            # called, with the views


def test_forms_are_only_pasted_into_chains_of_their_kind():
    # a new_flow form in a packet chain (or the reverse) is called, and fails as when called
    run = compile_runner([tcp_setup], [], ())
    assert run.views and "fn_0(rec, ip, rev)" in run.source
    for inline in (True, False):
        t = FlowTable(RAW, {"new_flow": [basic_count], "ip4": [tcp_setup]}, inline=inline)
        t.process_packet(mk.tcp4(C4, S4, 1, 2, mk.SYN), 1.0)
        assert t.ct.chain_errors == 1 and t.ct.flows == 0


def test_a_completed_flow_still_stops_the_functions_after_tcp_complete():
    seen = []

    def after(rec, tcp, rev):
        seen.append(tcp.flags)
        return True

    packets = [(1.0, mk.tcp4(C4, S4, 1, 2, mk.SYN)), (1.1, mk.tcp4(C4, S4, 1, 2, mk.RST)),
               (1.2, mk.tcp4(C4, S4, 1, 2, mk.ACK))]
    for inline, specialise in ((True, True), (True, False), (False, False)):
        seen.clear()
        t = _run(packets, {"new_flow": [tcp_setup], "tcp": [tcp_complete, after]}, inline,
                 specialise)
        assert seen == [mk.SYN] and t.ct.flows == 1


# a fresh SYN (a pure SYN with another sequence number) ends a flow and starts a new one: the
# same records and counters whatever runs the chains and whichever path the packets take
SEQS = (1000, 2000, 0xFFFFFFFF)
reuse_events = st.lists(st.tuples(st.sampled_from([0, 0, 1, 1, 2, 3]), st.booleans(),
                                  st.sampled_from([0, 0, 0, 1, 2, 3, 4, 6, 7, 8, 10]),
                                  st.integers(0, len(SEQS) - 1), st.integers(1, 12)),
                        min_size=8, max_size=40)


def _reuse_packet(flow, reverse, flags, seq, tos=0):
    c, s = (C6, S6) if flow & 1 else (C4, S4)
    cp, sp = 40000 + (flow & 1), 80          # two flows per version share their 5-tuple
    if reverse:
        c, s, cp, sp = s, c, sp, cp
    if flow >= 2:                            # UDP on the same ports: not TCP, never a SYN
        make = mk.udp6 if flow & 1 else mk.udp4
        return make(c, s, cp, sp, b"\0\0\0\0\x50" + bytes([FLAG_SETS[flags]]) + bytes(8))
    make = mk.tcp6 if flow & 1 else mk.tcp4
    return make(c, s, cp, sp, FLAG_SETS[flags], seq=SEQS[seq])


@settings(max_examples=150, deadline=None)
@given(reuse_events, st.booleans())
def test_fresh_syns_give_the_same_flows_on_every_path(evs, order):
    packets, ts = [], 1.0
    for flow, reverse, flags, seq, gap in evs:
        ts += gap / 10
        packets.append((ts, _reuse_packet(flow, reverse, flags, seq)))
    vlan = lambda p: mk.eth(p, vlans=((0x8100, 7),))   # noqa: E731  (the general path)
    chains, _ = _chains(order)
    called = _run(packets, chains, False)
    assert called.ct.slowpath == 0
    runs = [_run(packets, _chains(order)[0], True, specialise) for specialise in (True, False)]
    runs.append(_run(packets, _chains(order)[0], True, linktype=1, wrap=vlan))
    assert runs[-1].ct.slowpath == runs[-1].ct.packets
    for table in runs:
        assert ([list(r.items()) for r in table.emitted]
                == [list(r.items()) for r in called.emitted])
        a, b = table.ct.as_dict(), called.ct.as_dict()
        a.pop("slowpath"), b.pop("slowpath")
        assert a == b
    # every packet is counted in exactly one record, every record is emitted once
    assert sum(r["pkt_fwd"] + r["pkt_rev"] for r in called.emitted) == len(packets)
    assert len({id(r) for r in called.emitted}) == len(called.emitted) == called.ct.flows
