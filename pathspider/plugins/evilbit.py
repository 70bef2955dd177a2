"""``evilbit``: is an IPv4 packet with the reserved ("evil") flag bit dropped on the path?

RFC 3514 (an April 1st RFC) gave the reserved bit of the IPv4 flags a meaning: set on
malicious packets. Firewalls that take it at its word drop such packets, and some stacks and
middleboxes treat any reserved bit as an error. Each target gets two forged packets (the
packet-forging model, :class:`~pathspider.base.ForgeSpider`): packet 0 plain, packet 1 with
the evil bit set, otherwise alike. ``--connect tcpsyn`` (the default) sends a TCP SYN to the
target's port and counts a SYN-ACK as the answer; ``--connect dnsudp`` sends a DNS query over
UDP (for the target's hostname) and counts a valid DNS response. The Observer records the bit
on the packets each way (does the target, or the path, set it on replies?).

IPv6 has no evil bit. For IPv6 targets both packets are sent unmarked (``evilbit_sent``
false on packet 1), which makes the job an A/A control (reachability, transient loss), and
the conditions say ``evilbit.mark.not_applicable``; see docs/plugins/evilbit.md.

Differences from PATHspider 2.0.1 are listed in docs/plugins/evilbit.md.
"""
import logging

from pathspider.base import ForgeSkip, ForgeSpider, PluggableSpider
from pathspider.client import forging
from pathspider.client.packets import PROTO_TCP, TCPSyn, UDPDatagram
from pathspider.client.pluginkit import (EVIDENCE_COLUMNS, add_command, combine_pair,
                                         connectivity_columns, has_condition,
                                         positive_seconds)
from pathspider.client.locatekit import LocatePlugin, add_locate_options
from pathspider.client.tcpclient import job_host
from pathspider.observer.chains import observer_for

log = logging.getLogger("pathspider.plugins.evilbit")

#: Observer chains (2.0's BasicChain, TCPChain, DNSChain, EvilChain, plus ICMP evidence).
CHAINS = ["basic", "tcp", "icmp", "evil", "dns"]
CONNECT_MODES = ("tcpsyn", "dnsudp")
DEFAULT_TIMEOUT = 5.0


# ---- interpretation (used by pathspider.cli.summary, combine_flows and the tests) ------------

def _ipv6(record):
    return ":" in ((record or {}).get("dip") or "")


def _mark_seen(record):
    """The evil bit on the answer: the SYN-ACK's (TCP) or the first reply datagram's (UDP)."""
    tcp = record.get("proto") == PROTO_TCP
    field = "evilbit_syn_rev" if tcp else "evilbit_data_rev"
    return bool(record.get(field))


def conditions(baseline, experiment):
    """2.0.1's conditions for one target from its plain (packet 0) and evil (packet 1)
    records, either possibly None.

    ``evilbit.connectivity.works|broken|transient|offline`` (answered: both / only the plain
    packet / only the evil one / neither); ``pathspider.not_observed`` if a record has no
    flow; ``evilbit.mark.seen|not_seen`` (the bit on the answer to the evil packet) when that
    was answered and observed; ``evilbit.mark.not_applicable`` instead for IPv6 targets, whose
    packets carry no bit; ``pathspider.forge_skipped`` if a packet could not be made (e.g. a
    host name that is not a DNS name).
    """
    conds = forging.connectivity_conditions("evilbit", baseline, experiment)
    if conds == [forging.SKIPPED]:
        return conds
    if _ipv6(experiment) or _ipv6(baseline):
        conds.append("evilbit.mark.not_applicable")
    elif experiment and experiment.get("observed") and forging.answered(experiment):
        conds.append("evilbit.mark.seen" if _mark_seen(experiment) else "evilbit.mark.not_seen")
    return conds


SUMMARY_COLUMNS = (
    ("plain ok", forging.answered_column(0)),
    ("evil ok", forging.answered_column(1)),
    *connectivity_columns("works", "broken", "transient", "offline"),
    ("mark seen", has_condition("evilbit.mark.seen")),
    ("n/a (IPv6)", has_condition("evilbit.mark.not_applicable")),
    *EVIDENCE_COLUMNS,
)
SUMMARY_LEGEND = (
    "plain ok / evil ok: the packet without / with the IPv4 evil bit was answered (SYN-ACK, "
    "or a DNS response with --connect dnsudp); works/broken/transient/offline: both / only "
    "the plain one / only the evil one / neither; mark seen: the answer to the evil packet "
    "carried the bit; n/a (IPv6): IPv6 targets, sent two unmarked packets (no evil bit in "
    "IPv6).")


# ---- the plugin ------------------------------------------------------------------------------

class EvilBit(LocatePlugin, ForgeSpider, PluggableSpider):
    """Two forged packets per target: plain, then with the IPv4 reserved flag bit."""

    command_name = "evilbit"
    packets = 2
    summary_columns = SUMMARY_COLUMNS
    summary_legend = SUMMARY_LEGEND
    conditions = staticmethod(conditions)
    combine_flows = combine_pair(conditions)
    probe_fields = {"evilbit_sent": "evil"}

    #: ``--locate``: the IPv4 reserved bit as quoted; a drop (``*.connectivity.broken``) is located.
    locate_fields = ("evil",)

    def locate_probes(self, job):
        """The two forged packets themselves: A is packet 0, B packet 1."""
        return {"A": self.forge(job, 0), "B": self.forge(job, 1)}

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = getattr(args, "timeout", None) or DEFAULT_TIMEOUT
        self.connect_mode = getattr(args, "connect", None) or CONNECT_MODES[0]
        self.ipv6_noted = False

    def setup(self, job):
        """Say once per run what happens to IPv6 targets (no evil bit to set)."""
        if ":" in job[0] and not self.ipv6_noted:
            self.ipv6_noted = True
            log.info("IPv6 has no evil bit: IPv6 targets get two unmarked packets (an A/A "
                     "control; their records say evilbit_sent false)")

    def forge(self, job, seq):
        """Packet ``seq``: a TCP SYN or a DNS query, with the evil bit if ``seq`` is 1 and
        the target is IPv4."""
        evil = seq == 1 and ":" not in job[0]
        if self.connect_mode == "tcpsyn":
            return TCPSyn(job[1], evil=evil)
        try:
            query = forging.dns_query_for(job_host(job))
        except ValueError as exc:
            raise ForgeSkip(f"hostname is not a DNS name: {exc}") from None
        return UDPDatagram(job[1], query, evil=evil)

    def create_observer(self):
        """Observer with the basic, TCP, ICMP, evil-bit and DNS chains."""
        return observer_for(self.libtrace_uri, CHAINS)

    @staticmethod
    def register_args(subparsers):
        parser = add_command(
            subparsers, EvilBit,
            help="IPv4 evil bit (RFC 3514): are packets with the reserved flag bit dropped, "
                 "is the bit seen on replies",
            description="Sends every target two forged packets, plain and with the IPv4 "
                        "reserved (evil) flag bit set, and records which were answered and "
                        "whether the answers carried the bit. IPv6 targets, which have no "
                        "such bit, get two plain packets.")
        parser.add_argument("--connect", choices=CONNECT_MODES, default=CONNECT_MODES[0],
                            help="tcpsyn: a TCP SYN to the target's port, answered by a "
                                 "SYN-ACK (default); dnsudp: a DNS query over UDP for the "
                                 "target's hostname (the root zone without one) to the "
                                 "target's port, answered by a DNS response")
        parser.add_argument("--timeout", "-t", type=positive_seconds, default=DEFAULT_TIMEOUT,
                            help="seconds to wait for a DNS answer in dnsudp mode (default "
                                 "%(default)s); a SYN's answer is the Observer's to see")
        add_locate_options(parser)
        return parser
