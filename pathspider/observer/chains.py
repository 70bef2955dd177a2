"""The chain registry: which functions each named chain puts into which Observer chain list,
and every field it produces (name, type, meaning).

This is the single place that ``pathspider observe --list-chains``, ``docs/chains.md`` and
:func:`observer_for` read from. Functions are referenced as ``"module:function"`` strings and
resolved when used, so the registry can be imported (and listed) cheaply.

Build an Observer from chain names::

    from pathspider.observer.chains import observer_for
    observer = observer_for("pcap:trace.pcap", ["basic", "tcp", "ecn"])

Chain lists are concatenated in registry order (the order of :data:`REGISTRY`, whatever the
order of the names given; a chain named twice is used once), so ``tfo,basic,tcp`` gives
``tcp_chain = [tcp_handshake, tcp_complete, tfo_packet]`` as PATHspider 1.0's TFO plugin had.
A fixed order matters because of the Observer's short-circuit: once a function returns False
for a packet, later functions do not see that packet; ``basic`` and ``tcp`` come first so
their counters and FIN/RST flags see every packet.

Regenerate the documentation with ``python -m pathspider.observer.chains > docs/chains.md``.
"""
import importlib
import inspect
import sys
from dataclasses import dataclass, field

#: The Observer's chain lists, in the order the Observer calls them.
CHAIN_LISTS = ('new_flow_chain', 'ip4_chain', 'ip6_chain', 'icmp4_chain', 'icmp6_chain',
               'tcp_chain', 'udp_chain', 'l4_chain')


class UnknownChainError(ValueError):
    """A chain name that is not in the registry."""


@dataclass(frozen=True)
class Field:
    """One field of a flow record: its name, JSON type and meaning."""
    name: str
    type: str
    meaning: str


@dataclass(frozen=True)
class Chain:
    """A named chain: Observer hooks (list name -> function references) and fields."""
    name: str
    summary: str
    module: str
    hooks: tuple            # ((chain list name, ("module:function", ...)), ...)
    fields: tuple           # (Field, ...)
    origin: str = ''        # where the names and fields come from (1.0 / 2.0)
    notes: tuple = field(default=())

    def hook_names(self):
        """``{chain list: [function reference, ...]}`` for this chain."""
        return {lst: list(refs) for lst, refs in self.hooks}

    def functions(self):
        """``{chain list: [callable, ...]}``, resolving the references (imports modules)."""
        return {lst: [resolve(ref) for ref in refs] for lst, refs in self.hooks}

    def fixes(self):
        """The bullet list of the module docstring's "Fixes" section (one string per fix)."""
        return docstring_fixes(importlib.import_module(self.module).__doc__ or '')


def resolve(ref):
    """Import ``"package.module:function"`` and return the function."""
    modname, _, attr = ref.partition(':')
    return getattr(importlib.import_module(modname), attr)


def _f(name, type_, meaning):
    return Field(name, type_, meaning)


def _dir_fields(prefix_fmt, type_, meaning_fmt):
    """Two fields, forward and reverse, from format strings taking ``{d}`` / ``{dirn}``."""
    return tuple(Field(prefix_fmt.format(d=d), type_, meaning_fmt.format(dirn=dirn))
                 for d, dirn in (('fwd', 'forward'), ('rev', 'reverse')))


_M = 'pathspider.observer.'

#: Fields the Observer itself puts in every record, whatever the chains.
OBSERVER_FIELDS = (
    _f('first', 'float', "timestamp (s since the epoch) of the flow's first packet"),
    _f('last', 'float', "timestamp of the flow's latest packet"),
)

#: Differences against PATHspider 1.0/2.0 that belong to the Observer, not to one chain
#: (the chains' own are in their modules' "Fixes" sections). docs/chains.md lists both.
OBSERVER_NOTES = (
    "Names: the records use the 1.0 names `first`/`last` (2.0: `pkt_first`/`pkt_last`, the "
    "same capture timestamps in float seconds) and the 1.0 field names of the chains 1.0 had "
    "(`basic`, `tcp`, `ecn`, `dscp`, `tfo`, `icmp`); 2.0 renamed the `tcp` and `dscp` fields "
    "(see those chains) and split ECN by SYN and data (the `ecn_split` chain). "
    "tests/observer/test_upstream_pcaps.py runs upstream's own test captures (Debian's "
    "pathspider 2.0.1, in tests/data/upstream) and checks that every value upstream's tests "
    "expect is produced here, except the differences listed on this page.",
    "Flow splitting: a pure SYN with a new initial sequence number on an existing TCP flow "
    "ends that flow and starts a new one; 1.0 and 2.0 merged both connections into one "
    "record. No upstream capture holds such a SYN, so the flow counts upstream expects are "
    "the same here (real.pcap 6317, icmp_ttl.pcap 297, random.pcap 0).",
    "ICMP linking: an ICMP error is attached to the flow it quotes when the quotation holds "
    "the quoted IP header (IPv6: with its extension headers) and 8 transport bytes; a "
    "shorter one forms a flow of its own (3-tuple), as in 2.0 for "
    "icmp_single_unreachable_nopayload.pcap. 2.0 linked any quotation of at least 20 (IPv4) "
    "or 40 (IPv6) bytes, keying one without ports by the bytes that followed its header, and "
    "1.0 linked no ICMPv6 error. As in 1.0 and 2.0, an ICMP error that arrives before any "
    "packet of the flow it quotes creates that flow with the ICMP packet's addresses and "
    "protocol, its direction forward (upstream's icmp_single_unreachable.pcap: "
    "`icmp_unreachable` False).",
    "Octet counts: IP lengths from the headers, not captured bytes (see the `basic` chain).",
)

_ECN_SPLIT_FIELDS = tuple(
    Field(f'ecn_{cp}_{kind}_{d}', 'bool',
          f"a {dirn} {what} carried {label}")
    for cp, label in (('ect0', 'ECT(0)'), ('ect1', 'ECT(1)'), ('ce', 'CE'))
    for kind, what in (('syn', 'TCP SYN'),
                       ('data', 'TCP segment with payload or non-TCP packet'))
    for d, dirn in (('fwd', 'forward'), ('rev', 'reverse')))

REGISTRY = {c.name: c for c in (
    Chain(
        name='basic', module=_M + 'basic',
        origin='1.0 basic_flow/basic_count (2.0 BasicChain)',
        summary='addresses, protocol, ports, packet and byte counters per direction',
        hooks=(('new_flow_chain', (_M + 'basic:basic_flow',)),
               ('ip4_chain', (_M + 'basic:basic_count',)),
               ('ip6_chain', (_M + 'basic:basic_count',))),
        fields=(
            _f('sip', 'str', "source address of the flow's first packet (the forward "
                             "direction is the direction of the first packet)"),
            _f('dip', 'str', "destination address of the flow's first packet"),
            _f('proto', 'int', 'IP protocol number (IPv6: transport next header)'),
            _f('sp', 'int or null', 'source port (TCP/UDP), else null'),
            _f('dp', 'int or null', 'destination port (TCP/UDP), else null'),
            _f('pkt_fwd', 'int', 'packets in the forward direction'),
            _f('pkt_rev', 'int', 'packets in the reverse direction (ICMP errors quoting '
                                 'the flow included)'),
            _f('oct_fwd', 'int', 'IP-layer bytes (IP total length) in the forward direction'),
            _f('oct_rev', 'int', 'IP-layer bytes in the reverse direction'),
        ),
        notes=('Needed by the merger of a measurement: it matches flows on dip and sp.',)),
    Chain(
        name='tcp', module=_M + 'tcp', origin='1.0 pathspider.observer.tcp',
        summary='TCP handshake flags, connection establishment, FIN and RST per direction',
        hooks=(('new_flow_chain', (_M + 'tcp:tcp_setup',)),
               ('tcp_chain', (_M + 'tcp:tcp_handshake', _M + 'tcp:tcp_complete'))),
        fields=(
            _f('fwd_syn_flags', 'int or null', 'TCP flag byte of the latest forward SYN before '
                                               'the handshake completed (e.g. 2 = SYN, '
                                               '194 = SYN+ECE+CWR)'),
            _f('rev_syn_flags', 'int or null', 'TCP flag byte of the latest reverse SYN before '
                                               'the handshake completed (18 = SYN+ACK, '
                                               '82 = SYN+ACK+ECE)'),
            _f('fwd_fin', 'bool', 'a forward segment had FIN'),
            _f('rev_fin', 'bool', 'a reverse segment had FIN'),
            _f('fwd_rst', 'bool', 'a forward segment had RST'),
            _f('rev_rst', 'bool', 'a reverse segment had RST'),
            _f('tcp_connected', 'bool', 'three-way handshake seen: forward SYN, reverse '
                                        'SYN+ACK, then a forward ACK'),
        ),
        notes=('The flow completes (is emitted 5 s of packet time later) after FINs in both '
               'directions or any RST.',)),
    Chain(
        name='icmp', module=_M + 'icmp', origin='1.0 pathspider.observer.icmp (2.0 ICMPChain)',
        summary='ICMPv4/ICMPv6 Destination Unreachable quoting the flow',
        hooks=(('new_flow_chain', (_M + 'icmp:icmp_setup',)),
               ('icmp4_chain', (_M + 'icmp:icmp_unreachable',)),
               ('icmp6_chain', (_M + 'icmp:icmp6_unreachable',))),
        fields=(
            _f('icmp_unreachable', 'bool', 'a reverse-direction ICMPv4 type 3 or ICMPv6 type '
                                           '1 quoting a packet of this flow was seen (this '
                                           'completes the flow)'),
        )),
    Chain(
        name='ecn', module=_M + 'ecn', origin='1.0 plugins.ecn ecn_setup/ecn_code',
        summary='IP ECN codepoints seen per direction (any packet)',
        hooks=(('new_flow_chain', (_M + 'ecn:ecn_setup',)),
               ('ip4_chain', (_M + 'ecn:ecn_code',)),
               ('ip6_chain', (_M + 'ecn:ecn_code',))),
        fields=(_dir_fields('{d}_ez', 'bool', 'a {dirn} packet carried ECT(0)')
                + _dir_fields('{d}_eo', 'bool', 'a {dirn} packet carried ECT(1)')
                + _dir_fields('{d}_ce', 'bool', 'a {dirn} packet carried CE'))),
    Chain(
        name='ecn_split', module=_M + 'ecn', origin='2.0 ECNChain fields',
        summary='IP ECN codepoints per direction, separately for SYNs and data packets',
        hooks=(('new_flow_chain', (_M + 'ecn:ecn_split_setup',)),
               ('ip4_chain', (_M + 'ecn:ecn_split_code',)),
               ('ip6_chain', (_M + 'ecn:ecn_split_code',))),
        fields=_ECN_SPLIT_FIELDS),
    Chain(
        name='dscp', module=_M + 'dscp', origin='1.0 plugins.dscp dscp_setup/dscp_extract',
        summary='DiffServ codepoints of SYNs and of the first marked data packets',
        hooks=(('new_flow_chain', (_M + 'dscp:dscp_setup',)),
               ('ip4_chain', (_M + 'dscp:dscp_extract',)),
               ('ip6_chain', (_M + 'dscp:dscp_extract',))),
        fields=(
            _dir_fields('{d}_syn_dscp', 'int or null',
                        'DSCP of the latest {dirn} TCP SYN (present only when the '
                        "flow's first packet is TCP)")
            + _dir_fields('{d}_data_dscp', 'int or null',
                          'first non-zero DSCP of a {dirn} data packet (TCP with payload, '
                          'or non-TCP), 0 if only zero was seen, null if none'))),
    Chain(
        name='tfo', module=_M + 'tfo', origin='1.0 plugins.tfo _tfosetup/_tfopacket',
        summary='TCP Fast Open options, cookies and data on SYN',
        hooks=(('new_flow_chain', (_M + 'tfo:tfo_setup',)),
               ('tcp_chain', (_M + 'tfo:tfo_packet',))),
        fields=(
            _f('tfo_synkind', 'int', 'Fast Open option kind on the SYN: 34 (IANA), 253/254/'
                                     '255 (experimental with magic F9 89), 0 if none'),
            _f('tfo_ackkind', 'int', 'Fast Open option kind on the SYN+ACK, 0 if none'),
            _f('tfo_synclen', 'int', 'cookie length on the SYN (0 with a non-zero kind = '
                                     'cookie request)'),
            _f('tfo_ackclen', 'int', 'cookie length on the SYN+ACK (a cookie granted by the '
                                     'server)'),
            _f('tfo_seq', 'int', 'sequence number of the Fast Open SYN'),
            _f('tfo_dlen', 'int', 'payload bytes carried by the Fast Open SYN'),
            _f('tfo_ack', 'int', 'acknowledgement number of the SYN+ACK that followed; data '
                                 'on SYN was accepted when it equals tfo_seq + tfo_dlen + 1 '
                                 '(mod 2**32)'),
        )),
    Chain(
        name='mss', module=_M + 'mss', origin='2.0 MSSChain',
        summary='TCP Maximum Segment Size option on SYNs per direction',
        hooks=(('new_flow_chain', (_M + 'mss:mss_setup',)),
               ('tcp_chain', (_M + 'mss:mss_extract',))),
        fields=(
            _dir_fields('mss_len_{d}', 'int or null',
                        'length byte of the MSS option of the latest {dirn} SYN (4 when '
                        'well formed), null if none')
            + _dir_fields('mss_value_{d}', 'int or null',
                          'MSS advertised by the latest {dirn} SYN, null if none or '
                          'malformed'))),
    Chain(
        name='evil', module=_M + 'evil', origin='2.0 EvilChain',
        summary='IPv4 reserved ("evil", RFC 3514) bit on SYNs and first data packets',
        hooks=(('new_flow_chain', (_M + 'evil:evil_setup',)),
               ('ip4_chain', (_M + 'evil:evil_extract',))),
        fields=(
            _dir_fields('evilbit_syn_{d}', 'bool or null',
                        'reserved bit of the latest {dirn} TCP SYN (null: none seen, or '
                        'IPv6)')
            + _dir_fields('evilbit_data_{d}', 'bool or null',
                          'reserved bit of the first {dirn} data packet (TCP with payload, '
                          'or non-TCP)'))),
    Chain(
        name='udp', module=_M + 'udp', origin='2.0 UDPChain',
        summary='UDP zero checksum per direction',
        hooks=(('new_flow_chain', (_M + 'udp:udp_setup',)),
               ('udp_chain', (_M + 'udp:udp_zero_checksum',))),
        fields=_dir_fields('udp_zero_checksum_{d}', 'bool or null',
                           'the latest {dirn} UDP datagram had checksum 0 (null: none seen)')),
    Chain(
        name='dns', module=_M + 'dns', origin='2.0 DNSChain (dnspython instead of pldns)',
        summary='a well-formed DNS response came back (UDP, or TCP with length prefix)',
        hooks=(('new_flow_chain', (_M + 'dns:dns_setup',)),
               ('tcp_chain', (_M + 'dns:dns_tcp',)),
               ('udp_chain', (_M + 'dns:dns_udp',))),
        fields=(
            _f('dns_response_valid', 'bool', 'a reverse-direction payload parsed as a DNS '
                                             'response (this completes the flow)'),
        )),
)}


def parse_names(text):
    """Split a comma-separated chain list (``"basic, tcp,ecn"``) and check every name.

    Raises :class:`UnknownChainError` naming the unknown chains and the known ones.
    """
    names = [n.strip() for n in text.split(',') if n.strip()]
    check_names(names)
    return names


def check_names(names):
    """Raise :class:`UnknownChainError` unless every name is a registered chain."""
    if isinstance(names, str):
        raise TypeError('chain names must be a list of names, not a string')
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise UnknownChainError('unknown chain%s: %s (known chains: %s)' % (
            's' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(REGISTRY)))
    if not names:
        raise UnknownChainError('no chain given (known chains: %s)' % ', '.join(REGISTRY))


def chain_lists(names):
    """``{chain list name: [function, ...]}`` for the Observer, from chain names.

    Chains are taken in registry order; every list of :data:`CHAIN_LISTS` is present; a
    function named by two chains is used once.
    """
    check_names(names)
    lists = {lst: [] for lst in CHAIN_LISTS}
    for name in (n for n in REGISTRY if n in names):
        for lst, funcs in REGISTRY[name].functions().items():
            for fn in funcs:
                if fn not in lists[lst]:
                    lists[lst].append(fn)
    return lists


def observer_for(lturi, names, **kwargs):
    """Build a :class:`pathspider.observer.Observer` on ``lturi`` running the named chains.

    ``kwargs`` (e.g. ``idle_timeout``, ``expiry_timeout``) are passed to the Observer.
    """
    from pathspider.observer.meter import Observer
    return Observer(lturi, **chain_lists(names), **kwargs)


def docstring_fixes(doc):
    """Extract the bullet items following a line starting with "Fixes" in a docstring."""
    lines = inspect.cleandoc(doc).splitlines()
    items = []
    inside = False
    for line in lines:
        if not inside:
            inside = line.startswith('Fixes')
            continue
        if line.startswith('* '):
            items.append(line[2:].strip())
        elif line.startswith('  ') and items:
            items[-1] += ' ' + line.strip()
        elif line.strip():
            break
    return items


def _short(ref):
    return ref.rpartition(':')[2]


def describe(names=None):
    """Plain-text description of chains (all by default) for ``--list-chains``."""
    names = list(REGISTRY) if names is None else names
    out = ['Every record also has:']
    out += [f'    {f.name:<22} {f.type:<12} {f.meaning}' for f in OBSERVER_FIELDS]
    for name in names:
        chain = REGISTRY[name]
        out.append('')
        out.append(f'{chain.name}: {chain.summary}')
        hooks = '; '.join(f'{lst}: {", ".join(_short(r) for r in refs)}'
                          for lst, refs in chain.hooks)
        out.append(f'  hooks: {hooks}')
        for f in chain.fields:
            out.append(f'    {f.name:<22} {f.type:<12} {f.meaning}')
    return '\n'.join(out) + '\n'


def markdown():
    """The text of ``docs/chains.md``, generated from the registry and module docstrings."""
    out = ['# Observer chains', '',
           '<!-- Generated by `python -m pathspider.observer.chains > docs/chains.md`; '
           'tests/observer/test_chain_registry.py checks it is up to date. -->', '',
           'A chain is a set of functions the Observer calls for every packet of a flow; each '
           'adds fields to the flow record. Select chains with '
           '`pathspider observe --chains basic,tcp,ecn SOURCE`, list them with '
           '`pathspider observe --list-chains`, or build an Observer in a plugin with '
           '`pathspider.observer.chains.observer_for(lturi, ["basic", "tcp"])`.', '',
           'Functions return True to continue and False when the flow is complete; the first '
           'False stops the remaining functions for that packet (1.0 short-circuit '
           'semantics). Selected chains run in the order of this page (basic and tcp first, '
           'so their counters and flags see every packet), whatever the order they are '
           'named in. Forward is the direction of the flow\'s first packet.', '',
           'Every record also has:', '',
           '| Field | Type | Meaning |', '|---|---|---|']
    out += [f'| `{f.name}` | {f.type} | {f.meaning} |' for f in OBSERVER_FIELDS]
    out += ['', 'Differences against PATHspider 1.0/2.0 that belong to the Observer:', '']
    out += [f'- {note}' for note in OBSERVER_NOTES]
    for chain in REGISTRY.values():
        summary = chain.summary[:1].upper() + chain.summary[1:] + '.'
        out += ['', f'## `{chain.name}`', '', summary, '',
                f'Origin: {chain.origin}. Module: `{chain.module}`.', '', 'Hooks:', '']
        out += [f'- `{lst}`: ' + ', '.join(f'`{r.replace(":", ".")}`' for r in refs)
                for lst, refs in chain.hooks]
        out += ['', '| Field | Type | Meaning |', '|---|---|---|']
        out += [f'| `{f.name}` | {f.type} | {f.meaning} |' for f in chain.fields]
        for note in chain.notes:
            out += ['', note]
        fixes = chain.fixes()
        if fixes:
            out += ['', f'Fixes and differences against PATHspider 1.0/2.0 '
                        f'(module `{chain.module}`):', '']
            out += [f'- {fix}' for fix in fixes]
    return '\n'.join(out) + '\n'


if __name__ == '__main__':
    sys.stdout.write(markdown())
