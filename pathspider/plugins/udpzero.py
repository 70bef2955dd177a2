"""``udpzero``: is a UDP datagram with checksum zero dropped on the path?

In IPv4 a UDP checksum of zero means "no checksum" (RFC 768) and is legal; middleboxes that
validate UDP checksums, or that treat zero as corrupt, drop such datagrams, which matters to
tunnelling protocols that send them. Each target gets two forged DNS queries over UDP (the
packet-forging model, :class:`~pathspider.base.ForgeSpider`) to the target's port, for the
target's hostname: packet 0 with its checksum, packet 1 with checksum 0. A valid DNS response
is the answer. The Observer records the checksums each way (``udp_zero_checksum_fwd`` shows
the zero left as forged) and whether a valid DNS response came back.

IPv6: a zero UDP checksum is invalid (RFC 8200 section 8.1; RFC 6935/6936 allow it only on
tunnel endpoints that opt in), so every compliant receiver drops it whatever the path does,
and the test measures the receiver, not the path. By default IPv6 targets therefore get two
datagrams with valid checksums (an A/A control, ``udp_zero_checksum_sent`` false) and the
conditions say ``udpzero.zero_checksum.not_applicable``; ``--ipv6-zero-checksum`` sends the
zero checksum to IPv6 targets anyway, as 2.0.1 did (expect ``broken`` everywhere). See
docs/plugins/udpzero.md.
"""
import logging

from pathspider.base import ForgeSkip, ForgeSpider, PluggableSpider
from pathspider.client import forging
from pathspider.client.packets import UDPDatagram
from pathspider.client.pluginkit import (EVIDENCE_COLUMNS, add_command, combine_pair,
                                         connectivity_columns, has_condition,
                                         positive_seconds)
from pathspider.client.locatekit import LocatePlugin, add_locate_options
from pathspider.client.tcpclient import job_host
from pathspider.observer.chains import observer_for

log = logging.getLogger("pathspider.plugins.udpzero")

#: Observer chains (2.0's BasicChain and DNSChain, plus the UDPChain 2.0.1 left out, and ICMP).
CHAINS = ["basic", "icmp", "udp", "dns"]
DEFAULT_TIMEOUT = 5.0


# ---- interpretation (used by pathspider.cli.summary, combine_flows and the tests) ------------

def conditions(baseline, experiment):
    """2.0.1's conditions for one target from its checksummed (packet 0) and zero-checksum
    (packet 1) records, either possibly None.

    ``udpzero.connectivity.works|broken|transient|offline`` (a valid DNS response to both /
    only the checksummed one / only the zero one / neither); ``pathspider.not_observed`` if a
    record has no flow; ``udpzero.zero_checksum.not_applicable`` when packet 1 was sent with
    a valid checksum (IPv6 targets, by default); ``pathspider.forge_skipped`` if a query could
    not be made (a host name that is not a DNS name).
    """
    conds = forging.connectivity_conditions("udpzero", baseline, experiment)
    if conds == [forging.SKIPPED]:
        return conds
    if experiment and experiment.get("udp_zero_checksum_sent") is False:
        conds.append("udpzero.zero_checksum.not_applicable")
    return conds


SUMMARY_COLUMNS = (
    ("csum ok", forging.answered_column(0)),
    ("zero ok", forging.answered_column(1)),
    *connectivity_columns("works", "broken", "transient", "offline"),
    ("n/a (IPv6)", has_condition("udpzero.zero_checksum.not_applicable")),
    *EVIDENCE_COLUMNS,
)
SUMMARY_LEGEND = (
    "csum ok / zero ok: the DNS query with its checksum / with checksum 0 got a valid DNS "
    "response; works/broken/transient/offline: both / only the checksummed one / only the "
    "zero one / neither; n/a (IPv6): IPv6 targets, where a zero checksum is invalid, were "
    "sent two checksummed queries (see --ipv6-zero-checksum).")


# ---- the plugin ------------------------------------------------------------------------------

class UDPZero(LocatePlugin, ForgeSpider, PluggableSpider):
    """Two forged DNS queries per target: with a checksum, then with checksum 0."""

    command_name = "udpzero"
    packets = 2
    summary_columns = SUMMARY_COLUMNS
    summary_legend = SUMMARY_LEGEND
    conditions = staticmethod(conditions)
    combine_flows = combine_pair(conditions)
    probe_fields = {"udp_zero_checksum_sent": "zero_checksum"}

    #: ``--locate``: the UDP checksum as quoted; a drop (``*.connectivity.broken``) is located.
    locate_fields = ("udp_checksum",)

    def locate_probes(self, job):
        """The two forged packets themselves: A is packet 0, B packet 1."""
        return {"A": self.forge(job, 0), "B": self.forge(job, 1)}

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = getattr(args, "timeout", None) or DEFAULT_TIMEOUT
        self.ipv6_zero = bool(getattr(args, "ipv6_zero_checksum", False))
        self.ipv6_noted = False

    def setup(self, job):
        """Say once per run what happens to IPv6 targets."""
        if ":" in job[0] and not self.ipv6_noted:
            self.ipv6_noted = True
            if self.ipv6_zero:
                log.info("sending zero UDP checksums to IPv6 targets (--ipv6-zero-checksum): "
                         "invalid in IPv6 (RFC 8200), compliant receivers drop them")
            else:
                log.info("IPv6 targets get two checksummed queries (a zero UDP checksum is "
                         "invalid in IPv6, RFC 8200); --ipv6-zero-checksum sends it anyway")

    def zero_checksum(self, job, seq):
        """Whether packet ``seq`` of ``job`` goes with checksum 0."""
        return seq == 1 and (self.ipv6_zero or ":" not in job[0])

    def forge(self, job, seq):
        """Packet ``seq``: a DNS query for the target's hostname, checksum 0 if ``seq`` is 1
        (IPv4 targets, or every target with ``--ipv6-zero-checksum``)."""
        try:
            query = forging.dns_query_for(job_host(job))
        except ValueError as exc:
            raise ForgeSkip(f"hostname is not a DNS name: {exc}") from None
        return UDPDatagram(job[1], query, zero_checksum=self.zero_checksum(job, seq))

    def create_observer(self):
        """Observer with the basic, ICMP, UDP zero-checksum and DNS chains."""
        return observer_for(self.libtrace_uri, CHAINS)

    @staticmethod
    def register_args(subparsers):
        parser = add_command(
            subparsers, UDPZero,
            help="UDP zero checksum: are UDP datagrams with checksum 0 dropped",
            description="Sends every target two forged DNS queries over UDP (to the "
                        "target's port, for its hostname, or for the root zone without "
                        "one), with a valid checksum and with checksum 0, and records which "
                        "got a valid DNS response. IPv6 targets get two checksummed "
                        "queries unless --ipv6-zero-checksum is given.")
        parser.add_argument("--timeout", "-t", type=positive_seconds, default=DEFAULT_TIMEOUT,
                            help="seconds to wait for a DNS answer (default %(default)s)")
        parser.add_argument("--ipv6-zero-checksum", action="store_true",
                            help="send the zero checksum to IPv6 targets too, as 2.0.1 did "
                                 "(invalid in IPv6: compliant receivers drop it)")
        add_locate_options(parser)
        return parser
