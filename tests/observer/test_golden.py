"""Golden pcap tests: every pcap of tests/data/golden through the real Observer and chains.

Each pcap is one parametrized case (by file name). Its records must equal the checked-in
``<pcap>.jsonl`` as a multiset, the hand-written partial records of ``manifest.json`` must
each match exactly one record, and the Observer's counters must equal ``stats.json`` (no
chain function may raise). Regenerate with ``tests/data/golden/regenerate.py``.
"""
import collections
import importlib.util
import json
from pathlib import Path

import pytest

from pathspider.observer.chains import observer_for

GOLDEN = Path(__file__).resolve().parents[1] / 'data' / 'golden'
MANIFEST = json.loads((GOLDEN / 'manifest.json').read_text())
STATS = json.loads((GOLDEN / 'stats.json').read_text())


def load_regenerate():
    spec = importlib.util.spec_from_file_location('golden_regenerate', GOLDEN / 'regenerate.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def multiset(records):
    return collections.Counter(json.dumps(r, sort_keys=True) for r in records)


def run(fname):
    observer = observer_for('pcap:' + str(GOLDEN / fname), MANIFEST[fname]['chains'])
    records = list(observer.flows())
    return records, observer.stats()


@pytest.mark.parametrize('fname', sorted(MANIFEST))
def test_golden_records(fname):
    records, stats = run(fname)
    expected = [json.loads(line) for line in (GOLDEN / (fname + '.jsonl')).open()]
    got, want = multiset(records), multiset(expected)
    assert got == want, ('missing: %s\nunexpected: %s' % (list((want - got).elements()),
                                                          list((got - want).elements())))
    for partial in MANIFEST[fname]['expect']:
        hits = [r for r in records if all(k in r and r[k] == v for k, v in partial.items())]
        assert len(hits) == 1, partial
    assert stats['chain_errors'] == 0
    assert {k: stats[k] for k in STATS[fname]} == STATS[fname]


def test_every_pcap_is_in_the_manifest():
    pcaps = {p.name for p in GOLDEN.iterdir() if p.suffix in ('.pcap', '.pcapng')}
    assert pcaps == set(MANIFEST)
    assert {'crafted', 'real'} == {e['kind'] for e in MANIFEST.values()}


def test_records_are_json_ready_without_internal_keys():
    for fname in MANIFEST:
        for line in (GOLDEN / (fname + '.jsonl')).open():
            rec = json.loads(line)
            assert not any(k.startswith('_') for k in rec), (fname, rec)
            assert {'first', 'last'} <= set(rec)


def test_crafted_pcaps_are_reproduced_by_the_script(tmp_path):
    regen = load_regenerate()
    regen.write_crafted(outdir=tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(n for n, e in MANIFEST.items() if e['kind'] == 'crafted')
    for name in written:
        assert (tmp_path / name).read_bytes() == (GOLDEN / name).read_bytes(), name


def test_manifest_matches_the_script():
    regen = load_regenerate()
    crafted = {k: v for k, v in MANIFEST.items() if v['kind'] == 'crafted'}
    assert json.loads(json.dumps(regen.crafted_manifest())) == crafted


@pytest.mark.root
@pytest.mark.parametrize('fname', sorted(n for n, e in MANIFEST.items() if e['kind'] == 'real'))
def test_fresh_real_capture_meets_expectations(fname, tmp_path):
    """Capture the real traffic again (namespaces, veth, pcapy-ng) and check the hand-written
    expectations on the new pcap: the checked-in capture is not a lucky one."""
    regen = load_regenerate()
    regen.capture_real(fname, regen.REAL_CLIENT[fname], outdir=tmp_path)
    records, stats = regen.observe(tmp_path / fname, MANIFEST[fname]['chains'])
    assert regen.check_expectations(fname, records, MANIFEST[fname]['expect']) == []
    assert stats['chain_errors'] == 0 and stats['short'] == 0 and stats['malformed'] == 0
