"""The chain registry: references resolve, declared fields match what setup functions create,
field names are unique across chains, docs/chains.md is generated from it."""
from pathlib import Path

import pytest

from chain_views import ip_tcp
from pathspider.observer import chains as C
from pathspider.observer.tcp import TCP_SYN

DOC = Path(__file__).resolve().parents[2] / 'docs' / 'chains.md'
EXPECTED_NAMES = {'basic', 'tcp', 'icmp', 'ecn', 'ecn_split', 'dscp', 'tfo', 'mss', 'evil',
                  'udp', 'dns'}


def test_names():
    assert set(C.REGISTRY) == EXPECTED_NAMES


@pytest.mark.parametrize('name', sorted(EXPECTED_NAMES))
def test_hooks_resolve_to_module_level_functions(name):
    chain = C.REGISTRY[name]
    funcs = chain.functions()
    assert set(funcs) <= set(C.CHAIN_LISTS)
    assert 'new_flow_chain' in funcs
    for fns in funcs.values():
        for fn in fns:
            assert callable(fn) and '.' not in fn.__qualname__    # picklable by reference


@pytest.mark.parametrize('name', sorted(EXPECTED_NAMES - {'basic'}))
def test_setup_creates_exactly_the_declared_fields(name):
    rec = {}
    for fn in C.REGISTRY[name].functions()['new_flow_chain']:
        assert fn(rec, ip_tcp(TCP_SYN)) is True
    assert set(rec) == {f.name for f in C.REGISTRY[name].fields}


def test_field_names_unique_across_chains():
    seen = {f.name: 'observer' for f in C.OBSERVER_FIELDS}
    for chain in C.REGISTRY.values():
        for f in chain.fields:
            assert f.name not in seen, (f.name, chain.name, seen.get(f.name))
            seen[f.name] = chain.name
            assert f.type and f.meaning


def test_chain_lists_order_and_dedup():
    lists = C.chain_lists(['basic', 'tcp', 'tfo', 'tcp'])
    assert set(lists) == set(C.CHAIN_LISTS)
    names = [fn.__name__ for fn in lists['tcp_chain']]
    assert names == ['tcp_handshake', 'tcp_complete', 'tfo_packet']
    assert [fn.__name__ for fn in lists['new_flow_chain']] == ['basic_flow', 'tcp_setup',
                                                               'tfo_setup']


def test_chain_lists_use_registry_order():
    lists = C.chain_lists(['dns', 'tfo', 'tcp', 'basic'])
    assert [fn.__name__ for fn in lists['tcp_chain']] == ['tcp_handshake', 'tcp_complete',
                                                          'tfo_packet', 'dns_tcp']
    assert [fn.__name__ for fn in lists['ip4_chain']] == ['basic_count']


def test_unknown_and_empty_names_are_errors():
    with pytest.raises(C.UnknownChainError, match='unknown chains: foo, bar'):
        C.parse_names('basic,foo,bar')
    with pytest.raises(C.UnknownChainError, match='no chain'):
        C.parse_names(' , ')
    assert C.parse_names(' basic, tcp ,ecn') == ['basic', 'tcp', 'ecn']


def test_every_chain_module_documents_its_fixes():
    for chain in C.REGISTRY.values():
        if chain.name in ('basic', 'udp'):
            continue
        assert chain.fixes(), chain.name


def test_describe_lists_every_field():
    text = C.describe()
    for chain in C.REGISTRY.values():
        assert f'{chain.name}: {chain.summary}' in text
        for f in chain.fields:
            assert f.name in text and f.meaning in text


def test_docs_generated_from_registry():
    assert DOC.read_text() == C.markdown(), (
        'docs/chains.md is stale: python -m pathspider.observer.chains > docs/chains.md')


def test_observer_with_every_chain_pickles_and_runs(tmp_path):
    """The engine may start the Observer with the spawn method: it must pickle, with its
    chain functions, before capture starts, and run the same afterwards."""
    import json
    import pickle
    golden = Path(__file__).resolve().parents[1] / 'data' / 'golden'
    observer = C.observer_for('pcap:' + str(golden / 'dns.pcap'), list(C.REGISTRY))
    clone = pickle.loads(pickle.dumps(observer))
    records = sorted(json.dumps(r, sort_keys=True) for r in clone.flows())
    assert len(records) == 4
    fields = {f.name for chain in C.REGISTRY.values() for f in chain.fields}
    fields |= {f.name for f in C.OBSERVER_FIELDS}
    for line in records:
        rec = json.loads(line)
        assert set(rec) <= fields
        assert {'sip', 'dip', 'first', 'last', 'dns_response_valid'} <= set(rec)
