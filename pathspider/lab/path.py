"""Delay and loss on the lab path (fault tests), applied in the middlebox.

- Loss: an nftables rule in the lab table's ``loss`` chain drops each forwarded packet with
  the given probability (``numgen random``), in both directions. Works on every kernel.
- Delay: ``tc netem`` on both middlebox egresses when the kernel has it; otherwise the
  user-space :mod:`pathspider.lab.delayer` behind a TUN device, to which policy routing sends
  everything arriving from the client or the server link. Either way the delay applies once in
  each direction, so the round-trip time grows by twice ``delay_ms``.

The state (what is in force and how) is a small dict the Lab keeps in its state file.
"""
import logging
import os
import socket
import subprocess
import sys

from pyroute2 import NetNS

from . import impair, netns, plan, procs

log = logging.getLogger("pathspider.lab")

DELAY_TABLE = 100
DELAY_RULE_PRIORITY = 1000
START_TIMEOUT = 10.0
_IFACES = (plan.MBOX_CLIENT_IFACE, plan.MBOX_SERVER_IFACE)
_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def validate(delay_ms, loss_pct):
    """Checked floats for a delay (>= 0 ms) and a loss percentage (0..100)."""
    delay_ms, loss_pct = float(delay_ms), float(loss_pct)
    if delay_ms < 0 or delay_ms > 60000:
        raise ValueError(f"delay_ms must be between 0 and 60000, got {delay_ms}")
    if not 0 <= loss_pct <= 100:
        raise ValueError(f"loss_pct must be between 0 and 100, got {loss_pct}")
    return delay_ms, loss_pct


def set_loss(mbox, loss_pct):
    """Drop forwarded packets with probability ``loss_pct`` percent (0 removes the rule)."""
    script = f"flush chain inet {impair.TABLE} {impair.LOSS_CHAIN}\n"
    if loss_pct > 0:
        per_10k = round(loss_pct * 100)
        chance = f"numgen random mod 10000 < {per_10k} " if per_10k < 10000 else ""
        script += (f"add rule inet {impair.TABLE} {impair.LOSS_CHAIN} "
                   f'iifname != "{impair.DELAYER_IFACE}" {chance}'
                   f'counter drop comment "path loss {loss_pct:g}%"\n')
    netns.run(mbox, ["nft", "-f", "-"], input=script)


def _netem(mbox, delay_ms):
    """Try netem on both egresses; False if this kernel has no netem."""
    for iface in _IFACES:
        done = netns.run(mbox, ["tc", "qdisc", "replace", "dev", iface, "root", "netem",
                                "limit", "100000", "delay", f"{delay_ms}ms"], check=False)
        if done.returncode != 0:
            if "unknown" in done.stderr.lower():
                return False
            raise RuntimeError(f"tc netem on {iface} failed: {done.stderr.strip()}")
    return True


def _clear_netem(mbox):
    for iface in _IFACES:
        if "netem" in netns.run(mbox, ["tc", "qdisc", "show", "dev", iface]).stdout:
            netns.run(mbox, ["tc", "qdisc", "del", "dev", iface, "root"])


def _start_delayer(mbox, rundir, delay_ms):
    """Start the TUN delayer in the middlebox and route the path through it; returns its PID."""
    logf = open(os.path.join(rundir, "delayer.log"), "ab")
    with logf:
        done = subprocess.run(
            netns.command(mbox, [sys.executable, "-m", "pathspider.lab.delayer",
                                 "--delay-ms", delay_ms, "--daemon"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf,
            timeout=START_TIMEOUT, check=False, cwd=rundir)
    if done.returncode != 0 or not done.stdout.startswith(b"ready"):
        raise RuntimeError("delayer did not start: "
                           + (done.stdout.decode(errors="replace").strip() or "see delayer.log"))
    pid = _delayer_pid(mbox)
    with NetNS(mbox) as ipr:
        idx = ipr.link_lookup(ifname=impair.DELAYER_IFACE)[0]
        ipr.link("set", index=idx, state="up")
        ipr.route("add", dst="0.0.0.0/0", oif=idx, table=DELAY_TABLE)
        ipr.route("add", dst="::/0", oif=idx, table=DELAY_TABLE, family=socket.AF_INET6)
        for family in _FAMILIES:
            for iface in _IFACES:
                ipr.rule("add", family=family, iifname=iface, table=DELAY_TABLE,
                         priority=DELAY_RULE_PRIORITY)
    return pid


def _delayer_pid(mbox):
    """The PID of the delayer running in ``mbox`` (found by its command line)."""
    for pid in netns.pids(mbox):
        if procs.is_lab_process(pid, b"pathspider.lab.delayer"):
            return pid
    raise RuntimeError("delayer started but is not running (see delayer.log)")


def _stop_delayer(mbox, pid):
    """Remove the policy rules and stop the delayer (its TUN device and routes go with it)."""
    with NetNS(mbox) as ipr:
        for family in _FAMILIES:
            for iface in _IFACES:
                try:
                    ipr.rule("del", family=family, iifname=iface, table=DELAY_TABLE,
                             priority=DELAY_RULE_PRIORITY)
                except Exception as exc:  # pyroute2 raises NetlinkError; absent is fine
                    log.debug("no delay rule for %s to remove: %s", iface, exc)
    if pid and pid in netns.pids(mbox) and procs.is_lab_process(pid):
        procs.stop([pid])


def clear(mbox, state):
    """Undo whatever ``state`` says is in force; returns the empty state."""
    state = state or {}
    set_loss(mbox, 0)
    if state.get("mode") == "netem":
        _clear_netem(mbox)
    elif state.get("mode") == "delayer":
        _stop_delayer(mbox, state.get("delayer_pid"))
    return {}


def apply(mbox, rundir, state, delay_ms, loss_pct):
    """Put ``delay_ms`` and ``loss_pct`` in force (replacing ``state``); returns the new state."""
    delay_ms, loss_pct = validate(delay_ms, loss_pct)
    clear(mbox, state)
    new = {"delay_ms": delay_ms, "loss_pct": loss_pct}
    if loss_pct > 0:
        set_loss(mbox, loss_pct)
    if delay_ms > 0:
        if _netem(mbox, delay_ms):
            new["mode"] = "netem"
        else:
            log.info("no tc netem in this kernel; delaying in user space through a TUN device")
            new["mode"] = "delayer"
            new["delayer_pid"] = _start_delayer(mbox, rundir, delay_ms)
    return new if (delay_ms or loss_pct) else {}
