"""The golden pcaps with every packet through the dissector (the general path) give exactly the
records of the default flow table, which reads plain packets in place: same records, same
order, same field order, same counters (but ``slowpath``). The plain path is an optimisation,
nothing else."""
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
def test_the_general_path_gives_the_same_records(fname):
    records, counters = table_records(fname)
    assert records                                  # the capture has flows
    general, general_counters = table_records(fname, plain_path=False)
    assert general == records
    assert general_counters.pop('slowpath') == general_counters['packets']
    counters.pop('slowpath')
    assert general_counters == counters
