"""The Lab: builds, checks, describes and removes one named lab.

A lab named ``N`` is seven network namespaces: ``N-client``, a chain of routers ``N-mbox``
(hop 1), ``N-r2`` ... ``N-r5`` and ``N-server`` (see :mod:`pathspider.lab.plan`), a supervisor
with the HTTP and DNS servers in ``N-server``, the impairment rulesets in the routers (each
class at its hop, the placement kept in the state file), a resolver file
``/etc/netns/N-client/resolv.conf`` (which ``ip netns exec`` shows as ``/etc/resolv.conf``
inside the client, pointing at the lab DNS) and a run directory (default
``/run/pathspider-lab/N``) with the state file, PID file and logs. With vantages
(``Lab(N, vantages=K)``, ``set_vantages``) it also has ``N-v1`` ... ``N-vK``, extra clients
joined to hop 1 by their own access links (:mod:`plan`), each with its own resolver file; their
number is kept in the state file and changed by adding or removing the last ones.

``up``, ``down``, the path changes (``set_netem``, ``clear_netem``) and the placement changes
(``set_impairment_hops``) of one lab hold an exclusive lock (``flock`` on ``N.lock`` beside
the run directory), so concurrent calls run one after the other: a second ``up`` finds the
lab up, a ``down`` during an ``up`` waits for it.

The state file ``lab.json`` is written before anything is created and records each namespace's
identity (inode) as it is made, so ``down`` removes exactly what this lab made, also after a
crash half-way through ``up``; a namespace of the same name that the lab did not make is never
touched and makes ``up`` fail before it builds anything.
"""
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from . import impair, netns, path, pki, plan, probe, procs, targets, topology

log = logging.getLogger("pathspider.lab")

RUN_ROOT = "/run/pathspider-lab"
STATE_FILE = "lab.json"
PIDS_FILE = "pids.json"
RESOLV_ROOT = "/etc/netns"
ROLES = topology.ROLES
SUPERVISOR_START_TIMEOUT = 40.0
MAX_HTTP_WORKERS = 32
#: Linux interface names (IFNAMSIZ - 1) and the longest name derived from a lab name.
IFNAME_MAX = 15
NAME_MAX = IFNAME_MAX - len("-server")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: The lab name when none is given: ``$PATHSPIDER_LAB_NAME``, else this.
DEFAULT_NAME = "psl"
NAME_ENV = "PATHSPIDER_LAB_NAME"
#: The test fixtures' old variable, still read when ``$PATHSPIDER_LAB_NAME`` is unset.
DEPRECATED_NAME_ENV = "PATHSPIDER_TEST_LAB"
#: Set to the lab's name for commands run in its client namespace (``exec_in_client``,
#: ``exec_foreground``, ``pathspider lab exec``): a pathspider run that also finds itself in
#: that namespace measures the lab's ranges, which the default blocklist otherwise skips
#: (``pathspider.engine.scope.IN_LAB_ENV``, docs/scope.md).
IN_LAB_ENV = "PATHSPIDER_IN_LAB"
#: Set to the vantage's name (``v2``) for commands run in a vantage's namespace.
VANTAGE_ENV = "PATHSPIDER_LAB_VANTAGE"
REQUIRED_TOOLS = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables", "ethtool": "ethtool"}

#: Client-namespace sysctls that measurement plugins change (and must restore).
SNAPSHOT_SYSCTLS = (
    "net.ipv4.tcp_ecn",
    "net.ipv4.tcp_ecn_fallback",
    "net.ipv4.tcp_fastopen",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_sack",
    "net.ipv4.tcp_window_scaling",
)


def _vantage_count(state):
    """How many vantages the lab ``state`` describes has (0 for none, or no state)."""
    count = (state or {}).get("vantages") or 0
    return count if isinstance(count, int) and 0 <= count <= plan.MAX_VANTAGES else 0


def _recorded_roles(state):
    """The roles whose namespaces ``state`` records: the base roles, then any vantages (in
    order), also one recorded half-way through being added."""
    recorded = (state or {}).get("namespaces", {})
    return tuple(ROLES) + tuple(v for v in plan.VANTAGE_NAMES if v in recorded)


class LabError(Exception):
    """A lab operation could not be done; the message says why and what to do."""


class LabNameError(LabError, ValueError):
    """A lab name the lab cannot use (a usage error)."""


def check_name(name):
    """Return ``name`` if a lab can be called that, else raise LabNameError saying why.

    The namespaces are ``NAME-client``, ``NAME-mbox``, ``NAME-r2`` ... ``NAME-r5`` and
    ``NAME-server``; the longest must fit
    Linux's limit for interface names, 15 bytes, so a lab name has at most 8 characters. Only
    letters, digits, '-' and '_' (safe in interface and file names), starting with a letter or
    a digit.
    """
    if not isinstance(name, str) or not name:
        raise LabNameError("bad lab name: it is empty")
    if not NAME_RE.fullmatch(name) or not name.isascii():
        raise LabNameError(f"bad lab name {name!r}: use only letters, digits, '-' and '_', "
                           f"starting with a letter or a digit")
    if len(name) > NAME_MAX:
        raise LabNameError(f"bad lab name {name!r}: at most {NAME_MAX} characters (it names "
                           f"namespaces such as {name}-server, which must fit the "
                           f"{IFNAME_MAX}-byte limit of Linux interface names)")
    return name


def default_name(environ=None):
    """The lab name to use when none is given, the same for the command, the pytest fixtures
    and the benchmarks: ``$PATHSPIDER_LAB_NAME``; else the deprecated
    ``$PATHSPIDER_TEST_LAB`` (with a DeprecationWarning); else ``psl``. Not checked here
    (``Lab`` checks it)."""
    environ = os.environ if environ is None else environ
    name = environ.get(NAME_ENV)
    if name:
        return name
    name = environ.get(DEPRECATED_NAME_ENV)
    if name:
        warnings.warn(f"${DEPRECATED_NAME_ENV} is deprecated: set ${NAME_ENV} instead",
                      DeprecationWarning, stacklevel=2)
        return name
    return DEFAULT_NAME


def preflight():
    """Raise LabError unless we are root and the needed tools are installed."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it creates network namespaces, links and "
                       "nftables rules (run it as root, e.g. with sudo)")
    for tool, package in REQUIRED_TOOLS.items():
        if not netns.which(tool):
            raise LabError(f"'{tool}' not found on PATH: install the Debian package {package} "
                           f"(scripts/install.sh does)")


def _ancestors():
    """This process and its ancestors' PIDs (never to be killed by a clean-up)."""
    pid, out = os.getpid(), set()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


class Lab:
    """One named lab; see the module docstring. All methods except ``targets`` need root."""

    def __init__(self, name=DEFAULT_NAME, rundir=None, http_workers=None,
                 impairment_hops=None, vantages=None):
        self.name = check_name(name)
        self.rundir = (rundir or os.path.join(RUN_ROOT, name)).rstrip("/")
        self.lock_path = self.rundir + ".lock"
        self.namespaces = {role: f"{name}-{role}" for role in ROLES}
        self.client_netns = self.namespaces["client"]
        self.mbox_netns = self.namespaces["mbox"]
        self.server_netns = self.namespaces["server"]
        #: hop (1..plan.ROUTERS) -> the router's namespace; hop 1 is ``mbox_netns``.
        self.router_netns = {hop: self.namespaces[plan.router_role(hop)] for hop in plan.HOPS}
        #: Placements (class -> hop) ``up`` applies over the kept (or default) one.
        self.impairment_hops_wanted = plan.check_impairment_hops(impairment_hops or {})
        #: Vantages ``up`` gives the lab (None: as many as it has, 0 for a new lab).
        self.vantages_wanted = None if vantages is None else plan.check_vantages(vantages)
        self.client_interface = plan.CLIENT_IFACE
        if http_workers is not None and not 1 <= int(http_workers) <= MAX_HTTP_WORKERS:
            raise ValueError(f"http_workers must be between 1 and {MAX_HTTP_WORKERS}, "
                             f"got {http_workers}")
        self.http_workers = http_workers or min(4, max(2, os.cpu_count() or 2))
        self.resolv_dir = os.path.join(RESOLV_ROOT, self.client_netns)
        #: The lab CA's certificate (made by ``up``): HTTPS clients verify targets with it.
        self.ca_file = os.path.join(self.rundir, pki.CA_FILE)

    def __repr__(self):
        return f"Lab(name={self.name!r}, rundir={self.rundir!r})"

    # -- state file ---------------------------------------------------------------------
    @property
    def state_path(self):
        return os.path.join(self.rundir, STATE_FILE)

    def _read_state(self):
        try:
            with open(self.state_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise LabError(f"lab state file {self.state_path} is corrupt ({exc}); "
                           f"remove the lab's namespaces by hand (ip netns del)") from exc

    def _write_state(self, state):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, self.state_path)

    def _read_pids(self):
        try:
            with open(os.path.join(self.rundir, PIDS_FILE)) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    # -- the lock --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, what):
        """Hold the lab's exclusive lock (waiting for whoever holds it) while changing it.

        The lock file is removed when the lab is gone, so a waiter that gets the lock of a file
        removed meanwhile tries again on the current one.
        """
        os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("lab %s: another up, down or path change is running; %s "
                             "waits for it", self.name, what)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(self.lock_path).st_ino
                except FileNotFoundError:
                    current = None
                if current == os.fstat(fd).st_ino:
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)            # locked a file that was removed meanwhile: again
        try:
            yield
        finally:
            try:
                if not os.path.exists(self.state_path):
                    os.unlink(self.lock_path)   # the lab is gone: leave nothing behind
            finally:
                os.close(fd)

    # -- identity and health -------------------------------------------------------------
    def _owned(self, state, role):
        """Whether namespace ``role`` exists and is the one this lab made."""
        info = (state or {}).get("namespaces", {}).get(role)
        if info is None:
            return False
        ino = netns.inode(info["name"])
        return ino is not None and info.get("inode") in (None, ino)

    def _server_process_alive(self, pid, state):
        """Whether ``pid`` is a live lab process inside this lab's server namespace."""
        if not pid or not procs.is_lab_process(pid):
            return False
        try:
            return (os.stat(f"/proc/{pid}/ns/net").st_ino
                    == state["namespaces"]["server"]["inode"])
        except (OSError, KeyError):
            return False

    def _servers(self, state):
        """{service: {"pid", "alive"}} for the supervisor and every service."""
        pids = self._read_pids()
        out = {"supervisor": pids.get("supervisor") or (state or {}).get("supervisor")}
        out.update(pids.get("services", {}))
        # A stopped process (SIGSTOP) serves nobody: not alive for health's sake.
        return {name: {"pid": pid, "alive": self._server_process_alive(pid, state or {})
                       and procs.state(pid) not in ("T", "t")}
                for name, pid in out.items()}

    def _problems(self, state):
        """What is wrong with a lab that claims to be up (empty list: healthy): its phase,
        namespaces, servers, impairment ruleset, links, addresses and routes."""
        if not state:
            return ["no state file"]
        problems = []
        if state.get("phase") != "up":
            problems.append(f"phase is {state.get('phase')!r}")
        count = _vantage_count(state)
        names = self._all_namespaces(count)
        for role in topology.roles(count):
            if not self._owned(state, role) or state["namespaces"][role].get("inode") is None:
                problems.append(f"namespace {names[role]} missing or replaced")
        problems += [f"namespace {self.name}-{v} left over (the lab has {count} vantages)"
                     for v in _recorded_roles(state)
                     if v in plan.VANTAGE_NAMES and plan.vantage_number(v) > count]
        if problems:
            return problems
        problems += [f"{name} (pid {s['pid']}) not running"
                     + (" (stopped)" if procs.state(s["pid"]) in ("T", "t") else "")
                     for name, s in self._servers(state).items() if not s["alive"]]
        try:
            placement = self._placement(state)
            problems += [f"{ns}: impairment ruleset of hop {hop} not loaded"
                         for hop, ns in self.router_netns.items()
                         if not impair.loaded(ns, hop, placement)]
            problems += topology.check(names, count)
            problems += self._vantage_impairment_problems(count)
        except (OSError, RuntimeError) as exc:     # e.g. a namespace removed meanwhile
            problems.append(f"cannot inspect the lab: {exc}")
        return problems

    def is_up(self):
        """Whether the lab is built and its servers and impairments are in place."""
        return not self.problems()

    def problems(self):
        """What is wrong with the lab (``["no state file"]`` if it is not up at all); an
        empty list when :meth:`is_up`."""
        preflight()
        return self._problems(self._read_state())

    # -- up -------------------------------------------------------------------------------
    def up(self):
        """Build the lab (idempotent), with the impairment placement it kept (the defaults
        for a new lab) changed by the ``impairment_hops`` given to the constructor. Returns
        True if it changed anything, False if the lab was already up and answering as asked.
        Raises LabError, leaving nothing behind, on failure. Waits while another ``up`` or
        ``down`` of this lab runs."""
        return self.ensure_up() != "unchanged"

    def ensure_up(self):
        """:meth:`up`, saying what it did: ``"built"`` (there was no lab of this name),
        ``"rebuilt"`` (there was one, but broken: removed and built again, with the
        placement it kept), ``"moved"`` (it was up and answering; only impairments moved to
        the hops given as ``impairment_hops``), ``"changed"`` (it was up and answering;
        vantages were added or removed to match ``vantages``, impairments perhaps moved too)
        or ``"unchanged"`` (it was up and answering).
        Decided under the lab's lock, so of several callers at once exactly one gets
        ``"built"``: the one that owns the lab."""
        preflight()
        with self._locked("up"):
            return self._up()

    def _up(self):
        state = self._read_state()
        placement = dict(self._placement(state), **self.impairment_hops_wanted)
        vantages = (_vantage_count(state) if self.vantages_wanted is None
                    else self.vantages_wanted)
        if state is not None:
            problems = self._problems(state)
            if not problems:
                failures = netns.call_in(self.client_netns, probe.wait_ready, attempts=1)
                if not failures:
                    try:
                        moved = self._move(state, placement)
                    except RuntimeError as exc:
                        raise LabError(f"lab {self.name}: cannot move impairments: {exc} "
                                       f"(run up again to repair)") from exc
                    if self._resize(state, vantages):
                        return "changed"
                    if moved:
                        return "moved"
                    log.info("lab %s is already up; nothing changed", self.name)
                    return "unchanged"
                problems = failures
            log.warning("lab %s is not healthy (%s); rebuilding it", self.name,
                        "; ".join(problems))
            self._teardown(state)
        self._check_clash(vantages)
        try:
            self._build(placement, vantages)
        except BaseException as exc:
            self._teardown(self._read_state())
            if not isinstance(exc, Exception):
                raise
            raise LabError(f"lab {self.name}: up failed: {exc} "
                           f"(everything it had built was removed)") from exc
        log.info("lab %s is up", self.name)
        return "built" if state is None else "rebuilt"

    def _placement(self, state):
        """The placement (class -> hop of every impaired class) ``state`` keeps; the default
        (``plan.IMPAIRMENT_HOPS``) for no state or one from before placements were kept."""
        placement = {c: h for c, h in plan.IMPAIRMENT_HOPS.items() if h is not None}
        kept = (state or {}).get("impairment_hops") or {}
        try:
            placement.update(plan.check_impairment_hops(kept))
        except ValueError as exc:
            log.warning("lab %s: ignoring a bad kept placement (%s)", self.name, exc)
        return placement

    def _move(self, state, placement):
        """Put ``placement`` in force on the running lab ``state`` describes and keep it
        there; returns the classes that moved. The state is written only once every router
        has changed: should this be interrupted, the health check finds the routers not
        matching the kept placement and ``up`` rebuilds the lab with it."""
        old = self._placement(state)
        moved = impair.place(self.router_netns, old, placement)
        if moved or state.get("impairment_hops") != placement:
            state["impairment_hops"] = placement
            self._write_state(state)
        return moved

    # -- vantages -------------------------------------------------------------------------
    def _all_namespaces(self, vantages=0):
        """{role: namespace} of the base roles and the first ``vantages`` vantages."""
        out = dict(self.namespaces)
        out.update({v: f"{self.name}-{v}" for v in plan.VANTAGE_NAMES[:vantages]})
        return out

    def _vantage_impairment_problems(self, count):
        """What is wrong with hop 1's vantage chains for ``count`` vantages: a missing or
        changed access impairment, or the chain of a vantage the lab does not have."""
        problems = [f"{self.mbox_netns}: access impairment of vantage {v} not loaded"
                    for v in plan.VANTAGE_NAMES[:count] if v in plan.VANTAGE_IMPAIRMENTS
                    and not impair.vantage_loaded(self.mbox_netns, v)]
        problems += [f"{self.mbox_netns}: chain of vantage {v} left over"
                     for v in impair.vantage_chains(self.mbox_netns)
                     if v not in plan.VANTAGE_NAMES[:count]]
        return problems

    def _remove_namespace(self, role, keep=()):
        """Stop the processes left in ``role``'s namespace (but ``keep``) and delete it."""
        ns = self._all_namespaces(plan.MAX_VANTAGES)[role]
        leftovers = [p for p in netns.pids(ns) if p not in keep]
        if leftovers:
            log.info("stopping processes left in %s: %s", ns, leftovers)
            procs.stop(leftovers, timeout=3.0)
        netns.remove(ns)

    def _resize(self, state, count):
        """Give the running lab ``state`` describes ``count`` vantages, adding or removing the
        last ones (the others, the client, the routers and the servers are not touched);
        returns whether anything changed. A failed addition is undone (LabError)."""
        current = _vantage_count(state)
        if count == current:
            return False
        if count < current:
            self._remove_vantages(state, count)
        else:
            try:
                self._add_vantages(state, count)
            except BaseException as exc:        # also Ctrl-C: never leave a half vantage
                self._remove_vantages(state, current)
                if not isinstance(exc, Exception):
                    raise
                raise LabError(f"lab {self.name}: cannot add vantages: {exc} (what was added "
                               f"was removed; the lab keeps {current})") from exc
        log.info("lab %s: %d vantage(s) -> %d", self.name, current, count)
        return True

    def _add_vantages(self, state, count):
        """Add vantages after the last one up to ``count``: each namespace recorded in the
        state before it is made, then linked to hop 1, its access impairment (if any) and
        resolver file in place; then each must reach the services. Returns their names."""
        first = _vantage_count(state) + 1
        names = self._all_namespaces(count)
        new = plan.VANTAGE_NAMES[first - 1:count]
        clash = [names[v] for v in new if netns.exists(names[v])]
        if clash:
            raise LabError(f"network namespace(s) {', '.join(clash)} already exist but were "
                           f"not made by lab {self.name}; remove them (ip netns del NAME)")
        if new and first == 1:
            topology.route_vantage_space(names, True)
        for v in new:
            state["namespaces"][v] = {"name": names[v], "inode": None}
            self._write_state(state)
            state["namespaces"][v]["inode"] = netns.create(names[v])
            self._write_state(state)
            topology.add_vantage(names, v)
            impair.load_vantage(self.mbox_netns, v)
            self._write_resolv(names[v])
            state["vantages"] = plan.vantage_number(v)
            self._write_state(state)
        for v in new:
            failures = netns.call_in(names[v], probe.wait_ready)
            if failures:
                raise RuntimeError(f"services do not answer from vantage {v}: "
                                   + "; ".join(failures))
        return list(new)

    def _remove_vantages(self, state, keep):
        """Remove every vantage after the first ``keep`` (last first): its access chain, its
        link, its processes, its namespace and its resolver file; the routers' routes to the
        vantage space go with the last vantage."""
        names = self._all_namespaces(plan.MAX_VANTAGES)
        spare = _ancestors()
        gone = [v for v in _recorded_roles(state)
                if v in plan.VANTAGE_NAMES and plan.vantage_number(v) > keep]
        for v in reversed(gone):
            impair.unload_vantage(self.mbox_netns, v)
            topology.remove_vantage_link(names, v)
            if self._owned(state, v):
                self._remove_namespace(v, spare)
            shutil.rmtree(os.path.join(RESOLV_ROOT, names[v]), ignore_errors=True)
            del state["namespaces"][v]
            state["vantages"] = min(_vantage_count(state), plan.vantage_number(v) - 1)
            self._write_state(state)
        if keep == 0:
            topology.route_vantage_space(names, False)

    def _vantages_status(self, state):
        """Each vantage: name, namespace, its addresses and gateway, and its access link's
        own impairment (None, or what it does with its rules' counters in hop 1)."""
        out = []
        for v in plan.VANTAGE_NAMES[:_vantage_count(state)]:
            entry = {"name": v, "namespace": f"{self.name}-{v}",
                     "interface": plan.VANTAGE_IFACE,
                     "address4": str(plan.vantage_address(v, 4)),
                     "address6": str(plan.vantage_address(v, 6)),
                     "gateway4": str(plan.vantage_gateway(v, 4)),
                     "gateway6": str(plan.vantage_gateway(v, 6)),
                     "access_impairment": None}
            imp = plan.VANTAGE_IMPAIRMENTS.get(v)
            if imp is not None:
                entry["access_impairment"] = {"name": imp.name, "hop": 1,
                                              "description": imp.description,
                                              "counters": self._vantage_counters(state, v)}
            out.append(entry)
        return out

    def _vantage_counters(self, state, v):
        """Vantage ``v``'s access-rule counters in hop 1 ([] if they cannot be read)."""
        if not self._owned(state, "mbox"):
            return []
        try:
            return impair.vantage_counters(self.mbox_netns, v) or []
        except (RuntimeError, ValueError):
            return []

    def _check_clash(self, vantages=0):
        clash = [ns for ns in self._all_namespaces(vantages).values() if netns.exists(ns)]
        if clash:
            raise LabError(f"network namespace(s) {', '.join(clash)} already exist but were "
                           f"not made by lab {self.name} (no state in {self.rundir}); "
                           f"remove them (ip netns del NAME) or choose another lab name")

    def _build(self, placement, vantages=0):
        os.makedirs(self.rundir, exist_ok=True)
        state = {"name": self.name, "phase": "building", "created": time.time(),
                 "namespaces": {role: {"name": ns, "inode": None}
                                for role, ns in self.namespaces.items()},
                 "resolv": None, "supervisor": None, "path": {},
                 "impairment_hops": placement, "vantages": 0}
        self._write_state(state)
        for role, ns in self.namespaces.items():
            state["namespaces"][role]["inode"] = netns.create(ns)
            self._write_state(state)
        topology.build(self.namespaces)
        for hop, ns in self.router_netns.items():
            impair.load(ns, hop, placement)
        state["resolv"] = self._write_resolv(self.client_netns)
        self._write_state(state)
        pki.make(self.rundir)                   # a new lab CA and HTTPS certificate
        state["supervisor"] = self._start_servers()
        self._write_state(state)
        failures = netns.call_in(self.client_netns, probe.wait_ready)
        if failures:
            raise RuntimeError("services do not answer from the client: " + "; ".join(failures))
        self._add_vantages(state, vantages)
        state["phase"] = "up"
        self._write_state(state)

    def _write_resolv(self, ns):
        """Point namespace ``ns``'s resolver (via ``ip netns exec``) at the lab DNS; returns
        the directory ``/etc/netns/<ns>``."""
        directory = os.path.join(RESOLV_ROOT, ns)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "resolv.conf"), "w") as f:
            f.write(f"# pathspider lab {self.name}: the lab DNS server\n"
                    f"nameserver {plan.DNS_V4}\nnameserver {plan.DNS_V6}\n"
                    f"search {plan.DOMAIN}\noptions timeout:1 attempts:2\n")
        return directory

    def _start_servers(self):
        """Start the supervisor in the server namespace; returns its PID once all serve."""
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "pathspider.lab.supervisor", "--rundir", self.rundir,
                "--http-workers", self.http_workers, "--daemon"]
        with open(os.path.join(self.rundir, "supervisor.log"), "ab") as logf:
            done = subprocess.run(netns.command(self.server_netns, argv), env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf,
                                  timeout=SUPERVISOR_START_TIMEOUT, check=False,
                                  cwd=self.rundir)
        verdict = done.stdout.decode(errors="replace").strip()
        pid = self._read_pids().get("supervisor")
        if done.returncode != 0 or not verdict.startswith("ready") or not pid:
            raise RuntimeError(f"servers did not start ({verdict or 'no report'}); "
                               f"see the logs in {self.rundir}")
        return pid

    # -- down -----------------------------------------------------------------------------
    def down(self):
        """Remove everything this lab made. Returns True if there was anything to remove.
        Waits while another ``up`` or ``down`` of this lab runs."""
        preflight()
        with self._locked("down"):
            return self._down()

    def _down(self):
        state = self._read_state()
        if state is None:
            if os.path.isdir(self.rundir) and not os.listdir(self.rundir):
                os.rmdir(self.rundir)
            strays = [ns for ns in self._all_namespaces(plan.MAX_VANTAGES).values()
                      if netns.exists(ns)]
            if strays:
                raise LabError(f"lab {self.name} has no state in {self.rundir} but namespace(s) "
                               f"{', '.join(strays)} exist; not removing what this lab did "
                               f"not make (ip netns del NAME removes them)")
            return False
        self._teardown(state)
        log.info("lab %s is down", self.name)
        return True

    def _teardown(self, state):
        """Stop processes, delete owned namespaces, the resolver file and the run directory."""
        state = state or {}
        sup = self._read_pids().get("supervisor") or state.get("supervisor")
        if self._server_process_alive(sup, state):
            procs.stop([sup])
        keep = _ancestors()
        roles = _recorded_roles(state)
        for role in roles:
            if self._owned(state, role):
                self._remove_namespace(role, keep)
        names = self._all_namespaces(plan.MAX_VANTAGES)
        for role in roles:
            ns = names[role]
            if netns.exists(ns) and not self._owned(state, role):
                log.warning("namespace %s was not made by lab %s; left alone", ns, self.name)
        if state.get("resolv") or os.path.isdir(self.resolv_dir):
            shutil.rmtree(self.resolv_dir, ignore_errors=True)
        for role in roles:
            if role in plan.VANTAGE_NAMES:
                shutil.rmtree(os.path.join(RESOLV_ROOT, names[role]), ignore_errors=True)
        if os.path.exists(self.state_path):
            shutil.rmtree(self.rundir, ignore_errors=True)

    # -- status ---------------------------------------------------------------------------
    def status(self):
        """A JSON-ready description: phase, namespaces, servers, the hops, each class's
        impairment hop, rule counters (each with the ``hop`` of its router), path faults.

        ``up`` is true only if nothing is wrong: every check of :meth:`is_up` passes and the
        services answer from the client; ``problems`` says what is wrong otherwise."""
        preflight()
        state = self._read_state()
        problems = self._problems(state)
        out = {"name": self.name, "rundir": self.rundir, "up": not problems,
               "phase": state.get("phase") if state else "down",
               "problems": problems if state else [],
               "namespaces": {role: {"name": ns, "exists": netns.exists(ns),
                                     "ours": self._owned(state, role)}
                              for role, ns in self._all_namespaces(
                                  _vantage_count(state)).items()},
               "servers": self._servers(state) if state else {},
               "hops": self._hops(state), "classes": self._classes(state),
               "counters": [], "path": (state or {}).get("path", {}),
               "vantages": self._vantages_status(state)}
        out["services_checked"] = bool(state) and not problems and not out["path"]
        if out["services_checked"]:
            # Everything is in place; do the services answer through the middlebox? (Not
            # asked while delay or loss is in force: a lost probe would be no fault.)
            failures = netns.call_in(self.client_netns, probe.wait_ready, attempts=1)
            out["problems"] += [f"service check failed: {f}" for f in failures]
        out["counters"] = self._counters(state, out["problems"])
        out["up"] = bool(state) and not out["problems"]
        return out

    def _counters(self, state, problems):
        """Every router's rule counters, hop 1 first, each entry with its ``hop``; a router
        whose counters cannot be read adds to ``problems``."""
        out = []
        for hop, ns in self.router_netns.items():
            if not state or not self._owned(state, plan.router_role(hop)):
                continue
            try:
                out += [dict(c, hop=hop) for c in impair.counters(ns)]
            except (RuntimeError, ValueError) as exc:
                problems.append(f"cannot read the counters of {ns}: {exc}")
        return out

    def _hops(self, state):
        """The routers, hop 1 first: hop, namespace, the addresses it answers ICMP from,
        whether it is silent (and then how many time-exceeded messages it dropped)."""
        out = []
        for hop, ns in self.router_netns.items():
            entry = {"hop": hop, "namespace": ns, "address4": str(plan.hop_address(hop, 4)),
                     "address6": str(plan.hop_address(hop, 6)),
                     "silent": hop == plan.SILENT_HOP}
            if entry["silent"] and state and self._owned(state, plan.router_role(hop)):
                entry["time_exceeded_dropped"] = impair.silenced(ns)
            out.append(entry)
        return out

    def _classes(self, state):
        """Each class: the hop whose router impairs it (None: it impairs nothing) and what
        is done to it."""
        placement = self._placement(state)
        return {cls: {"impairment_hop": placement.get(cls),
                      "description": plan.CLASSES[cls].description}
                for cls in plan.CLASS_NAMES}

    # -- using the lab --------------------------------------------------------------------
    @staticmethod
    def targets(count=None, classes=None, family="both", port=plan.HTTP_PORT):
        """``count`` rows ``[ip, port, hostname, rank]`` over the chosen impairment classes
        (None: one per class and family)."""
        return targets.make_targets(count, classes, family, port)

    def exec_in_client(self, argv, **kwargs):
        """Run ``argv`` in the client namespace (``ip netns exec``); a CompletedProcess.

        The command gets SIGTERM should the calling process die (see
        :func:`pathspider.lab.procs.die_with_parent`; the calling thread waits for it), and
        its environment (``env``, default this process's) names the lab (:meth:`client_env`).
        """
        kwargs.setdefault("check", False)
        kwargs.setdefault("preexec_fn", procs.die_with_parent())
        kwargs["env"] = self.client_env(kwargs.get("env"))
        return subprocess.run(netns.command(self.client_netns, argv), **kwargs)

    def exec_foreground(self, argv, vantage=None):
        """Run ``argv`` in the client namespace (or in vantage ``vantage``'s) as ``pathspider
        lab exec`` does; its status.

        Signals are forwarded to the command, which dies with this process, and the status is
        the command's, or 128+N if it died of signal N (see
        :func:`pathspider.lab.procs.run_foreground`; main thread only).
        """
        if vantage is None:
            return procs.run_foreground(netns.command(self.client_netns, argv),
                                        env=self.client_env())
        return procs.run_foreground(netns.command(self.vantage_netns(vantage), argv),
                                    env=self.vantage_env(vantage))

    def client_env(self, env=None):
        """The environment for a command in the client namespace: ``env`` (default: this
        process's) with ``$PATHSPIDER_IN_LAB`` naming this lab, so that a pathspider run
        there measures the lab's addresses (it checks that it really is in this lab's client
        namespace). Use it when starting a command with ``netns.command`` by hand."""
        env = dict(os.environ if env is None else env)
        env[IN_LAB_ENV] = self.name
        return env

    def call_in_client(self, fn, *args, **kwargs):
        """Call ``fn`` on a thread inside the client namespace (sockets made there stay)."""
        return netns.call_in(self.client_netns, fn, *args, **kwargs)

    def call_in_server(self, fn, *args, **kwargs):
        """Call ``fn`` on a thread inside the server namespace."""
        return netns.call_in(self.server_netns, fn, *args, **kwargs)

    # -- using the vantages ---------------------------------------------------------------
    def vantage_names(self):
        """The running lab's vantages, ``["v1", ...]`` (empty without vantages or when the
        lab is not up)."""
        return list(plan.VANTAGE_NAMES[:_vantage_count(self._read_state())])

    def vantage_netns(self, name):
        """The namespace of vantage ``name`` (``"v2"``) of the running lab, ``<lab>-v2``.
        ValueError for a name that is no vantage's, LabError if the lab has no such one."""
        name = plan.vantage_name(name)
        have = self.vantage_names()
        if name not in have:
            raise LabError(f"lab {self.name} has no vantage {name} (it has "
                           f"{', '.join(have) if have else 'none'}; add vantages with: "
                           f"pathspider lab --name {self.name} up --vantages N)")
        return f"{self.name}-{name}"

    def vantage_env(self, name, env=None):
        """The environment for a command in vantage ``name``'s namespace: as
        :meth:`client_env` (``$PATHSPIDER_IN_LAB`` names the lab; a pathspider run checks
        that it really is in one of the lab's client or vantage namespaces), plus
        ``$PATHSPIDER_LAB_VANTAGE`` naming the vantage."""
        env = self.client_env(env)
        env[VANTAGE_ENV] = plan.vantage_name(name)
        return env

    def exec_in_vantage(self, name, argv, **kwargs):
        """Run ``argv`` in vantage ``name``'s namespace, as :meth:`exec_in_client` does in the
        client's; a CompletedProcess."""
        ns = self.vantage_netns(name)
        kwargs.setdefault("check", False)
        kwargs.setdefault("preexec_fn", procs.die_with_parent())
        kwargs["env"] = self.vantage_env(name, kwargs.get("env"))
        return subprocess.run(netns.command(ns, argv), **kwargs)

    def call_in_vantage(self, name, fn, *args, **kwargs):
        """Call ``fn`` on a thread inside vantage ``name``'s namespace."""
        return netns.call_in(self.vantage_netns(name), fn, *args, **kwargs)

    def set_vantages(self, count):
        """Give the running lab ``count`` vantages (0..``plan.MAX_VANTAGES``): the last ones
        are added or removed, nothing else changes. True if it changed anything. ValueError
        for a bad count, LabError if the lab is not up or a vantage cannot be added."""
        count = plan.check_vantages(count)
        with self._locked("the vantage change"):
            return self._resize(self._require_up(), count)

    def _require_up(self):
        state = self._read_state()
        if state is None or state.get("phase") != "up":
            raise LabError(f"lab {self.name} is not up (run: pathspider lab --name "
                           f"{self.name} up)")
        return state

    def set_netem(self, delay_ms=0, loss_pct=0):
        """Add ``delay_ms`` one-way delay (each direction) and ``loss_pct`` % loss to the
        path; zero for both clears. See :mod:`pathspider.lab.path`."""
        with self._locked("the path change"):
            state = self._require_up()
            try:
                state["path"] = path.apply(self.mbox_netns, self.rundir, state.get("path"),
                                           delay_ms, loss_pct)
            except (RuntimeError, ValueError) as exc:
                state["path"] = path.clear(self.mbox_netns, state.get("path"))
                raise LabError(f"lab {self.name}: cannot set delay/loss: {exc}") from exc
            finally:
                self._write_state(state)

    def clear_netem(self):
        """Remove any delay and loss from the path."""
        with self._locked("the path change"):
            state = self._require_up()
            state["path"] = path.clear(self.mbox_netns, state.get("path"))
            self._write_state(state)

    def impairment_hops(self):
        """The placement in force: {class: hop} for every impaired class (the defaults,
        ``plan.IMPAIRMENT_HOPS``, when the lab is not up)."""
        return self._placement(self._read_state())

    def set_impairment_hops(self, placement=None, defaults=False):
        """Move impairment classes to other hops on the running lab: ``placement`` maps
        class -> hop (1..``plan.ROUTERS``); ``defaults`` first goes back to
        ``plan.IMPAIRMENT_HOPS``. Each router's table changes atomically; the placement is
        kept in the state file (``up`` keeps it, also when it rebuilds). Returns the classes
        that moved. ValueError for a bad class or hop, LabError if the lab is not up."""
        wanted = plan.check_impairment_hops(placement or {})
        with self._locked("the placement change"):
            state = self._require_up()
            base = self._placement(None if defaults else state)
            try:
                return self._move(state, dict(base, **wanted))
            except RuntimeError as exc:
                raise LabError(f"lab {self.name}: cannot move impairments: {exc} (run "
                               f"pathspider lab --name {self.name} up to repair)") from exc

    def set_impairment_hop(self, cls, hop):
        """Move class ``cls``'s impairment to the router at ``hop`` (see
        :meth:`set_impairment_hops`); True if it moved."""
        return bool(self.set_impairment_hops({cls: hop}))

    def client_snapshot(self):
        """The client namespace's state that plugins may change: sysctls and nft ruleset."""
        def read():
            out = {}
            for key in SNAPSHOT_SYSCTLS:
                try:
                    with open("/proc/sys/" + key.replace(".", "/")) as f:
                        out[key] = f.read().strip()
                except FileNotFoundError:
                    out[key] = None
            return out
        ruleset = netns.run(self.client_netns, ["nft", "list", "ruleset"]).stdout
        return {"sysctls": self.call_in_client(read), "nftables": ruleset}

    def restore_client(self, snapshot):
        """Put the client namespace back to ``snapshot`` (from :meth:`client_snapshot`)."""
        for key, value in snapshot["sysctls"].items():
            if value is not None:
                netns.sysctl_set(self.client_netns, key, value)
        script = "flush ruleset\n" + snapshot["nftables"]
        netns.run(self.client_netns, ["nft", "-f", "-"], input=script)
