"""Upstream PATHspider's own test captures (tests/data/upstream) through this Observer.

One test per capture (parametrized by file name). Each capture is run with the chain(s) that
upstream's test for it used, named as here (2.0's ``BasicChain`` is ``basic``, ``TCPChain``
``tcp``, ``ECNChain`` ``ecn_split``, ``DSCPChain`` ``dscp``, ``EvilChain`` ``evil``,
``ICMPChain`` ``icmp``, ``MSSChain`` ``mss``, ``TFOChain`` ``tfo``, ``UDPChain`` ``udp``,
``DNSChain`` ``dns``; an empty chain list is upstream's ``Observer(uri, [])``), and the
record fields are checked under upstream's names, translated by :data:`NAMES_20`.

In :data:`CASES` an expected value is either

* a plain value: what upstream's test expects, and this Observer gives the same (equal), or
* :class:`Differs`: upstream's value and this project's differ on purpose; the test asserts
  this project's value and that the difference is documented, with its reason, in the
  "Fixes" section of the chain concerned (or the Observer notes) that docs/chains.md shows.

Sources of the expectations (upstream's test modules are not in Debian's package; they were
read in upstream's repository, mami-project/pathspider): ``pathspider/tests/test_chain_*.py``
and ``test_observer_matching.py`` of 2.0.x; for ``tcp_ecn.pcap`` and ``tcp_http.pcap`` 1.0.1's
``tests/test_observer_ecn.py`` (the ECN plugin's chains, 1.0 names) and 2.0's earlier
``tests/test_observer_tcp.py``. Where no upstream test exists (``tcp_ipv4_only_rst.pcap``, the
TCP flags of ``tfo_cookie_request.pcap``) the expected values are those of 2.0.1's chain code
as read, and the run says so.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from pathspider.observer import Observer
from pathspider.observer.chains import OBSERVER_NOTES, REGISTRY, observer_for
from pathspider.observer.tcp import TCP_ACK, TCP_SA, TCP_SAE, TCP_SEC, TCP_SYN

UPSTREAM = Path(__file__).resolve().parents[1] / 'data' / 'upstream'

#: 2.0 field name -> this project's (1.0) name; names not listed are the same in both.
NAMES_20 = {
    'pkt_first': 'first', 'pkt_last': 'last',
    'tcp_synflags_fwd': 'fwd_syn_flags', 'tcp_synflags_rev': 'rev_syn_flags',
    'tcp_fin_fwd': 'fwd_fin', 'tcp_fin_rev': 'rev_fin',
    'tcp_rst_fwd': 'fwd_rst', 'tcp_rst_rev': 'rev_rst',
    'dscp_mark_syn_fwd': 'fwd_syn_dscp', 'dscp_mark_syn_rev': 'rev_syn_dscp',
    'dscp_mark_data_fwd': 'fwd_data_dscp', 'dscp_mark_data_rev': 'rev_data_dscp',
}


class _Absent:
    def __repr__(self):
        return '<no such field>'


ABSENT = _Absent()
"""This project's record has no such field."""


@dataclass(frozen=True)
class Differs:
    """A deliberate difference: upstream's value, this project's, and where it is documented
    (a chain name, whose module's "Fixes" section must contain ``phrase``, or ``'observer'``
    for the Observer notes of the registry)."""
    upstream: object
    ours: object
    doc: str
    phrase: str


@dataclass(frozen=True)
class Run:
    """One Observer run over a capture, as one upstream test did it."""
    chains: tuple           # this project's chain names; () = no chain at all
    source: str             # the upstream test (or code) that states the expectation
    flows: int              # number of records upstream expects
    expect: tuple = ()      # ((selector, {2.0 field: value or Differs}), ...)


def one(**fields):
    """Expectations for a capture with a single flow (no selector)."""
    return (({}, fields),)


def ecn(**true_fields):
    """The twelve ECNChain fields, all False but the ones given."""
    names = [f'ecn_{cp}_{kind}_{d}' for cp in ('ect0', 'ect1', 'ce') for kind in ('syn', 'data')
             for d in ('fwd', 'rev')]
    assert set(true_fields) <= set(names)
    return {n: true_fields.get(n, False) for n in names}


def tcp(syn_fwd, syn_rev, connected, fin_fwd=False, fin_rev=False, rst_fwd=False,
        rst_rev=False):
    """The seven TCPChain fields (2.0 names)."""
    return {'tcp_synflags_fwd': syn_fwd, 'tcp_synflags_rev': syn_rev,
            'tcp_connected': connected, 'tcp_fin_fwd': fin_fwd, 'tcp_fin_rev': fin_rev,
            'tcp_rst_fwd': rst_fwd, 'tcp_rst_rev': rst_rev}


def evil(syn_fwd, syn_rev, data_fwd, data_rev):
    return {'evilbit_syn_fwd': syn_fwd, 'evilbit_syn_rev': syn_rev,
            'evilbit_data_fwd': data_fwd, 'evilbit_data_rev': data_rev}


def dscp(syn_fwd, syn_rev, data_fwd, data_rev):
    return {'dscp_mark_syn_fwd': syn_fwd, 'dscp_mark_syn_rev': syn_rev,
            'dscp_mark_data_fwd': data_fwd, 'dscp_mark_data_rev': data_rev}


def mss(len_fwd, len_rev, value_fwd, value_rev):
    return {'mss_len_fwd': len_fwd, 'mss_len_rev': len_rev,
            'mss_value_fwd': value_fwd, 'mss_value_rev': value_rev}


def tfo(ack, ackclen, ackkind, dlen, seq, synclen, synkind):
    return {'tfo_ack': ack, 'tfo_ackclen': ackclen, 'tfo_ackkind': ackkind, 'tfo_dlen': dlen,
            'tfo_seq': seq, 'tfo_synclen': synclen, 'tfo_synkind': synkind}


# The documented differences, named once.
PADDING = 'Ethernet padding'                                    # basic: octets from headers
UDP_SYN_DSCP = Differs(None, ABSENT, 'dscp', 'exist only on flows whose first packet is TCP')
MSS_3 = Differs(1460, None, 'mss', 'None unless the option carries exactly two bytes')
FIN_SWAP = 'stored a reverse-direction FIN in the *forward* field'

T_BASIC = 'pathspider/tests/test_chain_basic.py (2.0.x)'
T_TCP = 'pathspider/tests/test_chain_tcp.py (2.0.x)'
T_ECN = 'pathspider/tests/test_chain_ecn.py (2.0.x)'
T_DSCP = 'pathspider/tests/test_chain_dscp.py (2.0.x)'
T_EVIL = 'pathspider/tests/test_chain_evilbit.py (2.0.x)'
T_ICMP = ('pathspider/tests/test_chain_icmp.py (2.0.x, the version that tests IPv6 and notes '
          'that a lone ICMP error registers in the forward direction)')
T_MSS = 'pathspider/tests/test_chain_mss.py (2.0.x, lengths including kind and length bytes)'
T_TFO = 'pathspider/tests/test_chain_tfo.py (2.0.x, option A captures)'
T_UDP = 'pathspider/tests/test_chain_udp.py (2.0.x)'
T_DNS = 'pathspider/tests/test_chain_dns.py (2.0.x)'
T_MATCH = 'pathspider/tests/test_observer_matching.py (2.0.x)'
CODE_TCP = "no upstream test: the values of 2.0.1's TCPChain code, as read"

CASES = {
    # -- BasicChain
    'basic_ipv4_tcp.pcap': [Run(('basic',), T_BASIC, 1, one(
        sip='139.133.208.62', dip='139.133.1.4', proto=6, sp=38878, dp=80,
        pkt_fwd=32, pkt_rev=32, oct_fwd=1747, oct_rev=41030))],
    'basic_ipv6_tcp.pcap': [Run(('basic',), T_BASIC, 1, one(
        sip='2001:630:241:20f:c2ea:e939:f310:9c32', dip='2a00:1450:4009:810::200e', proto=6,
        sp=39956, dp=80, pkt_fwd=6, pkt_rev=4, oct_fwd=514, oct_rev=799))],
    'basic_ipv4_udp.pcap': [Run(('basic',), T_BASIC, 1, one(
        sip='172.22.152.138', dip='8.8.8.8', proto=17, sp=57606, dp=53,
        pkt_fwd=1, pkt_rev=1, oct_fwd=56, oct_rev=267))],
    'basic_ipv6_udp.pcap': [Run(('basic',), T_BASIC, 1, one(
        sip='2001:470:1d58:1337:4100:e1a1:8dcf:488', dip='2001:4860:4860::8888', proto=17,
        sp=40672, dp=53, pkt_fwd=1, pkt_rev=1, oct_fwd=76, oct_rev=287))],
    # 11 VRRP packets of 40 IP bytes, each frame padded to 60: python-libtrace counted 46 each
    'basic_ipv4_non_udp_tcp.pcap': [Run(('basic',), T_BASIC, 1, one(
        sip='192.168.0.10', dip='224.0.0.18', proto=112, sp=None, dp=None,
        pkt_fwd=11, pkt_rev=0, oct_fwd=Differs(506, 440, 'basic', PADDING), oct_rev=0))],

    # -- TCPChain (2.0 names; values equal, FIN direction only differs on half-closed flows)
    'tcp_ipv4_simple.pcap': [Run(('tcp',), T_TCP, 1, one(
        **tcp(TCP_SYN, TCP_SA, True, fin_fwd=True, fin_rev=True)))],
    'tcp_ipv6_simple.pcap': [Run(('tcp',), T_TCP, 1, one(
        **tcp(TCP_SYN, TCP_SA, True, fin_fwd=True, fin_rev=True)))],
    'tcp_ipv4_ecn.pcap': [Run(('tcp',), T_TCP, 1, one(
        **tcp(TCP_SEC, TCP_SAE, True, fin_fwd=True, fin_rev=True)))],
    'tcp_ipv6_ecn.pcap': [Run(('tcp',), T_TCP, 1, one(
        **tcp(TCP_SEC, TCP_SAE, True, fin_fwd=True, fin_rev=True)))],
    'tcp_ipv4_rst.pcap': [Run(('tcp',), T_TCP, 1, one(
        **tcp(TCP_SYN, TCP_SA, True, rst_rev=True)))],
    'tcp_ipv4_only_rst.pcap': [Run(('tcp',), CODE_TCP, 1, one(
        **tcp(None, None, False, rst_fwd=True)))],

    # -- ECNChain = ecn_split (all twelve fields equal)
    'ecn_ipv6_unreachable_ce_on_syn.pcap': [Run(('ecn_split',), T_ECN, 1, one(
        **ecn(ecn_ce_syn_fwd=True)))],
    'ecn_ipv4_nice_ect0.pcap': [Run(('ecn_split',), T_ECN, 1, one(
        **ecn(ecn_ect0_data_fwd=True, ecn_ect0_data_rev=True)))],
    'ecn_ipv6_nice_ect0.pcap': [Run(('ecn_split',), T_ECN, 1, one(
        **ecn(ecn_ect0_data_fwd=True, ecn_ect0_data_rev=True)))],
    'ecn_fake_fwd_ect1.pcap': [Run(('ecn_split',), T_ECN, 1, one(
        **ecn(ecn_ect1_syn_fwd=True, ecn_ect1_data_fwd=True)))],
    'ecn_fake_fwd_ce.pcap': [Run(('ecn_split',), T_ECN, 1, one(
        **ecn(ecn_ce_syn_fwd=True, ecn_ce_data_fwd=True)))],

    # -- DSCPChain = dscp (1.0 names; no SYN fields on UDP flows)
    'dscp_tcp_allzero.pcap': [Run(('dscp',), T_DSCP, 1, one(**dscp(0, 0, 0, 0)))],
    'dscp_tcp_fwd3.pcap': [Run(('dscp',), T_DSCP, 1, one(**dscp(3, 0, 3, 0)))],
    'dscp_ipv6_tcp_fwd3.pcap': [Run(('dscp',), T_DSCP, 1, one(**dscp(3, 0, 3, 0)))],
    'dscp_udp_allzero.pcap': [Run(('dscp',), T_DSCP, 1, one(
        **dscp(UDP_SYN_DSCP, UDP_SYN_DSCP, 0, 0)))],
    'dscp_udp_fwd3.pcap': [Run(('dscp',), T_DSCP, 1, one(
        **dscp(UDP_SYN_DSCP, UDP_SYN_DSCP, 3, 0)))],

    # -- EvilChain = evil (two-packet flows: 2.0's early completion does not show)
    'evilbit_tcp_none.pcap': [Run(('evil',), T_EVIL, 1, one(**evil(False, False, None, None)))],
    'evilbit_udp_none.pcap': [Run(('evil',), T_EVIL, 1, one(**evil(None, None, False, False)))],
    'evilbit_tcp_fwd.pcap': [Run(('evil',), T_EVIL, 1, one(**evil(True, False, None, None)))],
    'evilbit_tcp_rev.pcap': [Run(('evil',), T_EVIL, 1, one(**evil(False, True, None, None)))],
    'evilbit_udp_fwd.pcap': [Run(('evil',), T_EVIL, 1, one(**evil(None, None, True, False)))],
    'evilbit_udp_rev.pcap': [Run(('evil',), T_EVIL, 1, one(**evil(None, None, False, True)))],

    # -- ICMPChain = icmp
    # a lone ICMP error creates the flow it quotes, forward: not "unreachable" (equal)
    'icmp_single_unreachable.pcap': [Run(('icmp',), T_ICMP, 1, one(icmp_unreachable=False))],
    'icmp_single_unreachable_nopayload.pcap': [Run(('icmp',), T_ICMP, 1, one(
        icmp_unreachable=False))],
    'icmp_ipv6_unreachable.pcap': [Run(('icmp',), T_ICMP, 1, one(icmp_unreachable=True))],
    'icmp_ttl_exceeded.pcap': [Run(('icmp',), T_ICMP, 1, one(icmp_unreachable=False))],
    'icmp_synack_unreachable.pcap': [Run(('icmp',), T_ICMP, 1, one(icmp_unreachable=True))],

    # -- MSSChain = mss
    'mss_ipv4.pcap': [Run(('mss',), T_MSS, 1, one(**mss(4, 4, 1460, 1452)))],
    'mss_ipv6.pcap': [Run(('mss',), T_MSS, 1, one(**mss(4, 4, 1440, 1360)))],
    'mss_none.pcap': [Run(('mss',), T_MSS, 1, one(**mss(None, None, None, None)))],
    'mss_3bytes.pcap': [Run(('mss',), T_MSS, 1, one(**mss(5, None, MSS_3, None)))],

    # -- TFOChain = tfo
    'tfo_cookie_request.pcap': [
        Run(('tfo',), T_TFO, 1, one(**tfo(3865413713, 8, 254, 0, 3865413712, 0, 254))),
        # the client sends FIN then RST, the server no FIN: 2.0's TCPChain swapped the FIN
        Run(('tcp',), CODE_TCP, 1, one(**tcp(
            TCP_SYN, TCP_SA, True, rst_fwd=True,
            fin_fwd=Differs(False, True, 'tcp', FIN_SWAP),
            fin_rev=Differs(True, False, 'tcp', FIN_SWAP)))),
    ],
    'tfo_data_on_syn.pcap': [Run(('tfo',), T_TFO, 1, one(
        **tfo(3108342141, 0, 0, 39, 3108342101, 8, 254)))],

    # -- UDPChain = udp
    'udp_zerochecksum.pcap': [Run(('udp',), T_UDP, 1, one(
        udp_zero_checksum_fwd=True, udp_zero_checksum_rev=True))],
    'udp_nonzerochecksum.pcap': [Run(('udp',), T_UDP, 1, one(
        udp_zero_checksum_fwd=False, udp_zero_checksum_rev=False))],

    # -- DNSChain = dns
    'dns_valid_response.pcap': [Run(('dns',), T_DNS, 1, one(dns_response_valid=True))],
    'dns_valid_response_tcp.pcap': [Run(('dns',), T_DNS, 1, one(dns_response_valid=True))],
    'dns_no_response.pcap': [Run(('dns',), T_DNS, 1, one(dns_response_valid=False))],

    # -- the Observer alone: flow counts (no chain)
    'random.pcap': [Run((), T_MATCH, 0)],                       # no IP packet at all
    'real.pcap': [Run((), T_MATCH, 6317)],
    'icmp_ttl.pcap': [
        Run((), T_MATCH, 297),
        # 1.0.1's tests/test_observer_dscp.py ran the DSCP plugin over it (no crash wanted)
        Run(('basic', 'dscp'), "1.0.1's tests/test_observer_dscp.py (smoke test)", 297),
    ],

    # -- 1.0.1's ECN plugin chains (basic_flow, tcp, ecn: 1.0 names, the same here)
    'tcp_ecn.pcap': [Run(('basic', 'tcp', 'ecn'), "1.0.1's tests/test_observer_ecn.py", 1, one(
        sp=46557, dp=80, fwd_syn_flags=TCP_SEC, rev_syn_flags=TCP_SAE, tcp_connected=True,
        fwd_fin=True, rev_fin=True, fwd_rst=False, rev_rst=False,
        fwd_ez=True, rev_ez=True, fwd_eo=False, rev_eo=False, fwd_ce=False, rev_ce=True))],
    'tcp_http.pcap': [
        Run(('basic', 'tcp', 'ecn'), "1.0.1's tests/test_observer_ecn.py (partial flows)", 3,
            tuple(({'dip': dip}, dict(fwd_ez=False, rev_ez=False, fwd_eo=False, rev_eo=False,
                                      fwd_ce=False, rev_ce=False))
                  for dip in ('65.208.228.223', '216.239.59.99', '145.253.2.203'))),
        Run(('basic', 'tcp'), "2.0's earlier tests/test_observer_tcp.py", 3, (
            ({'dip': '65.208.228.223'}, dict(sp=3372, dp=80, **tcp(
                TCP_SYN, TCP_SYN | TCP_ACK, True, fin_fwd=True, fin_rev=True))),
            ({'dip': '216.239.59.99'}, dict(sp=3371, dp=80, **tcp(None, None, False))),
            ({'dip': '145.253.2.203'}, dict(sp=3009, dp=53, **tcp(None, None, False))),
        )),
    ],
}


def records(fname, chains):
    uri = 'pcap:' + str(UPSTREAM / fname)
    observer = observer_for(uri, list(chains)) if chains else Observer(uri)
    recs = list(observer.flows())
    return recs, observer.stats()


def documentation(where):
    """The text documenting differences: a chain's "Fixes" items or the Observer notes."""
    items = OBSERVER_NOTES if where == 'observer' else REGISTRY[where].fixes()
    return ' '.join(' '.join(item.split()) for item in items)


def check_run(fname, run):
    recs, stats = records(fname, run.chains)
    where = f'{fname} with {run.chains or "no chain"} ({run.source})'
    assert len(recs) == run.flows, where
    assert stats['chain_errors'] == 0, where
    for selector, fields in run.expect:
        hits = [r for r in recs if all(r.get(k) == v for k, v in selector.items())]
        assert len(hits) == 1, (where, selector)
        rec = hits[0]
        for name20, want in fields.items():
            ours = rec.get(NAMES_20.get(name20, name20), ABSENT)
            if isinstance(want, Differs):
                # differs on purpose: this project's value, and the reason is documented
                assert ours == want.ours, (where, name20)
                assert want.upstream != want.ours
                assert want.phrase in documentation(want.doc), (where, name20, want.doc)
            else:
                # equal: the value upstream's test expects
                assert ours == want, (where, name20, ours, want)


#: Captures too large to keep in the repository (10.7 MB together; they only count flows).
#: ``tests/data/upstream/fetch-large.sh`` puts them here from Debian's package.
LARGE = ('random.pcap', 'real.pcap')


@pytest.mark.parametrize('fname', sorted(CASES))
def test_upstream_capture(fname):
    if fname in LARGE and not (UPSTREAM / fname).exists():
        pytest.skip(f'{fname} is not kept in the repository; fetch it with '
                    'tests/data/upstream/fetch-large.sh')
    for run in CASES[fname]:
        check_run(fname, run)


def test_every_upstream_capture_has_a_case():
    present = sorted(p.name for p in UPSTREAM.glob('*.pcap'))
    assert set(present) <= set(CASES) and set(CASES) - set(present) <= set(LARGE)
    assert len(CASES) == 48


def test_captures_are_unchanged():
    sums = {}
    for line in (UPSTREAM / 'SHA256SUMS').read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    assert set(sums) == set(CASES)
    for name, digest in sums.items():
        if name in LARGE and not (UPSTREAM / name).exists():
            continue
        assert hashlib.sha256((UPSTREAM / name).read_bytes()).hexdigest() == digest, name


def test_readme_names_the_source():
    text = (UPSTREAM / 'README.md').read_text()
    for words in ('2.0.1-3', 'mami-project/pathspider', 'GPL-2+', 'unchanged'):
        assert words in text


def test_the_differences_are_the_documented_ones():
    """The complete list of fields where this Observer gives another value than upstream's
    expectation: a new difference must be added here and documented."""
    found = {}
    for fname, runs in CASES.items():
        for run in runs:
            for _, fields in run.expect:
                for name, want in fields.items():
                    if isinstance(want, Differs):
                        found.setdefault(fname, set()).add(name)
    assert found == {
        'basic_ipv4_non_udp_tcp.pcap': {'oct_fwd'},
        'dscp_udp_allzero.pcap': {'dscp_mark_syn_fwd', 'dscp_mark_syn_rev'},
        'dscp_udp_fwd3.pcap': {'dscp_mark_syn_fwd', 'dscp_mark_syn_rev'},
        'mss_3bytes.pcap': {'mss_value_fwd'},
        'tfo_cookie_request.pcap': {'tcp_fin_fwd', 'tcp_fin_rev'},
    }
