"""The golden pcaps with the chains called (no inline forms, no specialised packet loop) give
exactly the records of the default flow table: same records, same order, same field order,
same counters. The inline forms and the specialised loop are an optimisation, nothing else."""
import json
from pathlib import Path

import pytest

from pathspider.observer.flowtable import FlowTable
from pathspider.observer.chains import observer_for

GOLDEN = Path(__file__).resolve().parents[1] / 'data' / 'golden'
MANIFEST = json.loads((GOLDEN / 'manifest.json').read_text())


def table_records(fname, **options):
    observer = observer_for('pcap:' + str(GOLDEN / fname), MANIFEST[fname]['chains'])
    source = observer.source
    source.open()
    try:
        table = FlowTable(source.linktype, observer.chains, observer.idle_timeout,
                          observer.expiry_timeout, **options)
        out = []
        while True:
            pkts, meta = source.next_batch(1024)
            if not meta:
                break
            table.process(pkts, meta)
            out += table.emitted
            table.emitted = []
        table.flush()
        out += table.emitted
    finally:
        source.close()
    return [list(rec.items()) for rec in out], table.ct.as_dict()


@pytest.mark.parametrize('fname', sorted(MANIFEST))
def test_called_chains_give_the_same_records(fname):
    default = table_records(fname)
    assert default[0]                               # the capture has flows
    assert table_records(fname, inline=False) == default
    assert table_records(fname, specialise=False) == default
