"""Networking for the local backend: one network namespace per pod, one "node" namespace per cluster.

Layout (netns mode)::

    <p>-wan                 bridge "wan": the underlay every cluster node is plugged into (10.250.0.0/24)
    <p>-<cluster>           the cluster's node: router, pod bridge br0 (first address of the pod CIDR),
                            wan0 on the underlay; routes to every other cluster's pod CIDR via its wan0
    <p>-<cluster>-<pod>     a pod: eth0 with an address from the cluster's pod CIDR, default via br0

Clusters on one network route each other's pods directly (the flat network). For clusters on
different networks the node also has ``ip rule ... iif br0 to <remote pod CIDR> blackhole``: a pod
cannot reach a remote pod, only addresses on the underlay (where east-west gateways listen). The packets
are dropped without an answer, as between real networks where a pod IP leads nowhere: a connect times out
(``prohibit`` would refuse at once, and Envoy's retry would hide the failure).

Modes, chosen automatically (override with $MESHLAB_NET_MODE):
- ``netns``: as root, ``ip netns``. Full isolation.
- ``userns``: unprivileged, the same namespaces inside a private user + mount namespace held by one
  ``unshare --user --map-root-user --net --mount`` process; every command enters it with nsenter.
  Full isolation, nothing visible in the host's ``ip netns list``.
- ``loopback``: no namespaces; every pod gets its own 127.x address in a block of 127.0.0.0/8 the lab
  holds for itself (so many learners on one host never collide). Works anywhere, but isolation is lost
  (any process can reach any pod, and the sidecar can be bypassed).

Unprivileged user namespaces can be switched off by the kernel (``user.max_user_namespaces=0``, Debian's
``kernel.unprivileged_userns_clone=0``) or restricted by AppArmor (Ubuntu 23.10+:
``kernel.apparmor_restrict_unprivileged_userns=1``); :func:`userns_blockers` names which, and
:mod:`meshlab.apparmor` installs the profile that allows them for meshlab's namespace holder only.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeshlabError
from ..exec import run, which
from ..topology import UNDERLAY, Cluster, Topology
from . import procs

NETNS = "netns"
USERNS = "userns"
LOOPBACK = "loopback"
MODES = (NETNS, USERNS, LOOPBACK)

_CLONE_NEWNET = 0x40000000


def choose_mode() -> tuple[str, str]:
    """Pick the network mode for this machine and say why."""
    forced = os.environ.get("MESHLAB_NET_MODE")
    root = os.geteuid() == 0 and os.path.exists("/proc/self/ns/net")
    blocked: list[Blocker] = []

    def userns_allowed() -> bool:
        blocked.extend(userns_blockers())
        return not blocked and _userns_allowed()

    return decide_mode(forced, root, userns_allowed, blocked)


def decide_mode(forced: str | None, root: bool, userns_allowed: Callable[[], bool] | bool,
                blocked: list["Blocker"] | None = None) -> tuple[str, str]:
    """The rule behind ``choose_mode``, for any machine: an override wins, then root, then user namespaces.
    ``blocked``: the kernel settings that kept user namespaces away (filled by ``userns_allowed``), for the reason."""
    if forced:
        if forced not in MODES:
            raise MeshlabError(f"MESHLAB_NET_MODE={forced!r} is not a network mode", f"use one of: {', '.join(MODES)}")
        return forced, f"forced by MESHLAB_NET_MODE={forced}" + (f"; {_LOOPBACK_CAVEAT}" if forced == LOOPBACK else "")
    if root:
        return NETNS, "running as root: one network namespace per pod (full isolation)"
    if userns_allowed() if callable(userns_allowed) else userns_allowed:
        return USERNS, "not root, but user namespaces are allowed: private namespaces per pod (full isolation)"
    blocked = blocked or []
    why = "; ".join(b.meaning for b in blocked) or "user namespaces are not usable here (`unshare --user --map-root-user --net` failed)"
    fix = "; ".join(b.fix for b in blocked) or "run as root, or ask the administrator to allow unprivileged user namespaces"
    return LOOPBACK, f"not root and {why}; {_LOOPBACK_CAVEAT}. To get isolation back: {fix}"


@dataclass(frozen=True)
class Blocker:
    """A kernel setting that keeps an ordinary user from creating user namespaces, and what to do about it."""

    knob: str  # the sysctl, e.g. kernel.apparmor_restrict_unprivileged_userns
    value: int
    meaning: str
    fix: str


APPARMOR_FIX = ("an administrator runs `sudo .venv/bin/meshlab admin apparmor install` once: it installs an AppArmor "
                "profile that grants the `userns` permission to meshlab's namespace holder only (Ubuntu's documented "
                "way); never turn the restriction off for the whole system")


def userns_blockers(proc_sys: str | Path = "/proc/sys") -> list[Blocker]:
    """The kernel settings that block unprivileged user namespaces here (read from ``proc_sys``)."""
    root = Path(proc_sys)

    def knob(path: str) -> int | None:
        try:
            return int((root / path).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    out = []
    if knob("user/max_user_namespaces") == 0:
        out.append(Blocker("user.max_user_namespaces", 0, "the kernel allows no user namespaces (user.max_user_namespaces=0)",
                           "an administrator sets `sysctl -w user.max_user_namespaces=15000` (and in /etc/sysctl.d/ to keep it)"))
    if knob("kernel/unprivileged_userns_clone") == 0:
        out.append(Blocker("kernel.unprivileged_userns_clone", 0, "the kernel allows user namespaces to root only "
                           "(kernel.unprivileged_userns_clone=0, Debian's older patch)",
                           "an administrator sets `sysctl -w kernel.unprivileged_userns_clone=1` (and in /etc/sysctl.d/ to keep it)"))
    if knob("kernel/apparmor_restrict_unprivileged_userns") == 1 and not _apparmor_profile_installed():
        out.append(Blocker("kernel.apparmor_restrict_unprivileged_userns", 1,
                           "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1, "
                           "the default since Ubuntu 24.04): a program without a profile that grants `userns` gets a "
                           "namespace in which it may not configure anything", APPARMOR_FIX))
    return out


def _apparmor_profile_installed() -> bool:
    from ..apparmor import installed_holder

    return installed_holder() is not None


def unshare_program() -> str:
    """The program that creates a userns-mode lab's namespaces: the copy of ``unshare`` the AppArmor profile
    allows where an administrator installed it (meshlab.apparmor), else the system's ``unshare``."""
    from ..apparmor import installed_holder

    return installed_holder() or which("unshare", "install util-linux (Debian package util-linux)")


def _userns_allowed() -> bool:
    try:
        if int(open("/proc/sys/user/max_user_namespaces").read()) <= 0:
            return False
    except (OSError, ValueError):
        return False
    try:
        return run([unshare_program(), "--user", "--map-root-user", "--net", "--mount", "true"], check=False).returncode == 0
    except MeshlabError:
        return False


_LOOPBACK_CAVEAT = (
    "every pod gets a 127.x address in the host network: isolation is lost "
    "(pods can reach each other directly and bypass sidecars)"
)

# ---- loopback blocks: 127.0.0.0/8 cut into /20s, one per lab -------------------------------------
BLOCK_BITS = 12  # a /20: 16 x /24 per lab
BLOCKS = 1 << (24 - BLOCK_BITS)  # 4096; block 0 holds 127.0.0.1 and is never handed out
MAX_LOOPBACK_CLUSTERS = 7  # /24 pairs 0..13 (pods, apps); 15 holds gateways, Prometheus and the outside host
_CLAIM_SCRIPT = r"""
import os, signal, socket, sys
first, ready = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_UNIX)
for i in range({blocks} - 1):
    block = 1 + (first - 1 + i) % ({blocks} - 1)
    try:
        s.bind("\0meshlab-loopback-%d" % block)
    except OSError:
        continue
    tmp = ready + ".tmp"
    open(tmp, "w").write(str(block))
    os.replace(tmp, ready)
    signal.pause()
sys.exit("every 127.x block is taken by another meshlab lab")
""".replace("{blocks}", str(BLOCKS))


def preferred_block(seed: str) -> int:
    """Where a lab starts looking for a free block: the same state directory (and user) usually gets the same."""
    return 1 + int(hashlib.sha256(f"{os.geteuid()}:{seed}".encode()).hexdigest(), 16) % (BLOCKS - 1)


def block_in_use(block: int) -> bool:
    """Whether a lab on this host holds ``block`` (its claim is an abstract Unix socket: host-wide, no file,
    gone with the process that holds it)."""
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(f"\0meshlab-loopback-{block}")
        return False
    except OSError:
        return True
    finally:
        s.close()


def start_holder(mode: str, run_dir: Path, seed: str, record: Callable[[procs.Proc], None]) -> dict[str, int]:
    """Start the process a lab's network lives in and return what its :class:`Network` needs: in userns mode
    the owner of its namespaces (``holder``: kill it and they are gone), in loopback mode the claim on its
    127.x block (``loopback_block``). ``record`` gets the process the moment it exists."""
    if mode == NETNS:
        return {}
    ready = run_dir / f"{mode}-holder.ready"
    ready.unlink(missing_ok=True)
    if mode == USERNS:
        argv, what = Network.holder_argv(str(ready)), "its private /run/netns is mounted"
    else:
        argv, what = [sys.executable, "-c", _CLAIM_SCRIPT, str(preferred_block(seed)), str(ready)], "it holds a free 127.x block"
    p = procs.spawn(f"{mode}-holder", argv, run_dir / "logs" / "holder.log")
    record(p)
    procs.wait_until(ready.exists, p, what, timeout=15)
    return {"holder": p.pid} if mode == USERNS else {"loopback_block": int(ready.read_text())}


@dataclass(frozen=True)
class PodNet:
    """Where a pod lives and which addresses its sidecar and app use."""

    netns: str | None  # None in loopback mode
    ip: str  # the pod IP: inbound listeners bind here
    outbound: str  # where the app (and meshlab's client) sends outbound traffic: <outbound>:15001
    app_host: str  # where the app listens, reachable only by its own sidecar in netns mode


class Network:
    """Creates and removes the namespaces of one lab. Every name is recorded before it is created."""

    def __init__(self, mode: str, prefix: str, record: Callable[[str], None], holder: int | None = None,
                 block: int | None = None) -> None:
        self.mode = mode
        self.prefix = prefix
        self._record = record
        # userns mode: every `ip` command and process enters the holder's user + mount namespaces
        self.enter = ["nsenter", "-t", str(holder), "-U", "-m", "-n", "--preserve-credentials"] if holder else []
        # loopback mode: the lab's own /20 of 127.0.0.0/8 (start_holder claims it)
        self._base = ipaddress.IPv4Address("127.0.0.0") + (block or 1) * (1 << BLOCK_BITS)

    @staticmethod
    def holder_argv(ready_file: str) -> list[str]:
        """The process that owns a userns-mode lab's namespaces: a tmpfs /run of its own, then sleep."""
        script = f"mount -t tmpfs tmpfs /run && mkdir -p /run/netns && touch {ready_file} && exec sleep infinity"
        return [unshare_program(), "--user", "--map-root-user", "--net", "--mount", "--propagation", "private", "sh", "-c", script]

    def ip(self, *args: str, input: str | None = None) -> None:
        run([*self.enter, "ip", *args], input=input)

    # ---- names and addresses -------------------------------------------------------------------
    def node_ns(self, cluster: str) -> str:
        return f"{self.prefix}-{cluster}"

    def pod_ns(self, cluster: str, pod: str) -> str:
        return f"{self.prefix}-{cluster}-{pod}"

    @staticmethod
    def node_ip(topology: Topology, cluster: str) -> str:
        """The cluster node's address on the underlay (netns mode)."""
        return str(UNDERLAY.network_address + 1 + list(topology.clusters).index(cluster))

    def _loopback(self, row: int, host: int) -> str:
        """An address of the lab's loopback block: /24 number ``row`` (0-15), host ``host``."""
        return str(self._base + row * 256 + host)

    def external_ip(self) -> str:
        """A host on the underlay outside every cluster (an external service, an outside client)."""
        return self._loopback(15, 250) if self.mode == LOOPBACK else str(UNDERLAY.network_address + 250)

    def external_ns(self) -> str | None:
        return None if self.mode == LOOPBACK else f"{self.prefix}-wan"

    def add_external_host(self, topology: Topology) -> None:
        """Give the underlay bridge the external address, with routes back to every cluster's pods
        through that cluster's node (idempotent: a second call finds the address there)."""
        ns = self.external_ns()
        if ns is None:
            return
        cmds = [f"addr replace {self.external_ip()}/{UNDERLAY.prefixlen} dev wan"]
        cmds += [f"route replace {c.pod_cidr} via {self.node_ip(topology, c.name)}" for c in topology.clusters.values()]
        self.ip("-n", ns, "-batch", "-", input="\n".join(cmds) + "\n")

    def gateway_ip(self, topology: Topology, cluster: str) -> str:
        """Where the cluster's east-west gateway listens: on the underlay, reachable from every network."""
        if self.mode == LOOPBACK:
            return self._loopback(15, 1 + self._cluster_index(topology, cluster))
        return self.node_ip(topology, cluster)

    def node_service_ip(self, topology: Topology, cluster: str) -> str:
        """Where a service of the cluster's node listens (its Prometheus): the node's underlay address."""
        if self.mode == LOOPBACK:
            return self._loopback(15, 101 + self._cluster_index(topology, cluster))
        return self.node_ip(topology, cluster)

    @staticmethod
    def _cluster_index(topology: Topology, cluster: str) -> int:
        i = list(topology.clusters).index(cluster)
        if i >= MAX_LOOPBACK_CLUSTERS:
            raise MeshlabError(f"the loopback mode gives a lab at most {MAX_LOOPBACK_CLUSTERS} clusters",
                               "use fewer clusters, or the netns/userns mode")
        return i

    def pod_addresses(self, topology: Topology, cluster: Cluster, index: int) -> PodNet:
        if self.mode == LOOPBACK:
            c = self._cluster_index(topology, cluster.name)
            if index > 240:
                raise MeshlabError(f"the loopback mode gives cluster {cluster.name} at most 241 pods", "remove pods you no longer need")
            ip = self._loopback(2 * c, 10 + index)
            return PodNet(None, ip, ip, self._loopback(2 * c + 1, 10 + index))
        ip = cluster.pod_cidr.network_address + 10 + index
        if ip >= cluster.pod_cidr.broadcast_address:
            raise MeshlabError(f"cluster {cluster.name} has no address left for another pod in {cluster.pod_cidr}",
                               "give the cluster a larger podCIDR in the pattern file")
        return PodNet(None, str(ip), "127.0.0.1", "127.0.0.1")

    # ---- lifecycle ---------------------------------------------------------------------------------
    def create_underlay(self, topology: Topology) -> None:
        """The wan bridge and one routed node per cluster."""
        if self.mode == LOOPBACK:
            return
        wan = f"{self.prefix}-wan"
        self._add_ns(wan)
        # bridges get fixed MACs: a bridge otherwise takes its lowest port's MAC, which changes as pods
        # join, and neighbours that cached the old one lose their traffic until ARP expires
        self.ip("-n", wan, "-batch", "-", input="link set lo up\nlink add wan address 02:6d:6c:00:00:01 type bridge\nlink set wan up\n")
        for i, c in enumerate(topology.clusters.values()):
            node = self.node_ns(c.name)
            self._add_ns(node)
            self.ip("link", "add", "name", f"c{i}", "netns", wan, "type", "veth", "peer", "name", "wan0", "netns", node)
            self.ip("-n", wan, "link", "set", f"c{i}", "master", "wan", "up")
            cmds = [
                "link set lo up",
                f"addr add {self.node_ip(topology, c.name)}/{UNDERLAY.prefixlen} dev wan0",
                "link set wan0 up",
                f"link add br0 address 02:6d:6c:01:{i // 256:02x}:{i % 256:02x} type bridge",
                f"addr add {c.pod_cidr.network_address + 1}/{c.pod_cidr.prefixlen} dev br0",
                "link set br0 up",
            ]
            for other in topology.clusters.values():
                if other.name == c.name:
                    continue
                via = self.node_ip(topology, other.name)
                cmds.append(f"route add {other.pod_cidr} via {via}")
                if other.network != c.network:
                    # return traffic needs the route; pods must not use it: only gateways cross networks.
                    # Dropped silently (a connect times out), as when a pod IP leads nowhere between real networks
                    cmds.append(f"rule add pref 100 iif br0 to {other.pod_cidr} blackhole")
            self.ip("-n", node, "-batch", "-", input="\n".join(cmds) + "\n")
            run([*self.exec_prefix(node), "sysctl", "-qw", "net.ipv4.ip_forward=1"])

    def create_pod(self, topology: Topology, cluster: Cluster, pod: str, index: int) -> PodNet:
        addrs = self.pod_addresses(topology, cluster, index)
        if self.mode == LOOPBACK:
            return addrs
        ns, node = self.pod_ns(cluster.name, pod), self.node_ns(cluster.name)
        self._add_ns(ns)
        veth = f"p{index}"
        self.ip("link", "add", "name", veth, "netns", node, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.ip("-n", node, "link", "set", veth, "master", "br0", "up")
        self.ip(
            "-n", ns, "-batch", "-",
            input=(
                "link set lo up\n"
                f"addr add {addrs.ip}/{cluster.pod_cidr.prefixlen} dev eth0\n"
                "link set eth0 up\n"
                f"route add default via {cluster.pod_cidr.network_address + 1}\n"
            ),
        )
        return PodNet(ns, addrs.ip, addrs.outbound, addrs.app_host)

    def _add_ns(self, name: str) -> None:
        self._record(name)  # recorded first: a crash right after still leaves a trace for `down`
        run([*self.enter, "ip", "netns", "add", name], hint=f"a namespace {name} may be left over: run `meshlab down`")

    def delete(self, names: list[str]) -> None:
        """Delete namespaces of this lab (in userns mode, inside its holder)."""
        delete_namespaces(names, self.enter)

    def exec_prefix(self, netns: str | None) -> list[str]:
        """argv prefix that runs a command inside ``netns`` (``ip netns exec`` execs: the pid is the command's)."""
        return [*self.enter, "ip", "netns", "exec", netns] if netns else []


PROBE_PORT = 8443  # what a gateway binds (Istio's ingress gateway pod: targetPort 8443)


def probe(mode: str, work_dir: Path) -> str:
    """Do once, in ``mode``, what ``meshlab up`` does: start the lab's holder, create a cluster node and a pod
    (namespaces, a veth pair, routes, sysctl), bind a gateway port in the pod, then remove it all.
    Returns what was done; raises the error ``up`` would raise."""
    from ..topology import load_topology

    topology = load_topology("flat-network")
    cluster = next(iter(topology.clusters.values()))
    names: list[str] = []
    held: list[procs.Proc] = []
    try:
        extra = start_holder(mode, work_dir, str(work_dir), held.append)
        netw = Network(mode, f"mlprobe{os.getpid()}", names.append, extra.get("holder"), extra.get("loopback_block"))
        netw.create_underlay(topology)
        pod = netw.create_pod(topology, cluster, "probe", 0)
        bind = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()")
        run([*netw.exec_prefix(pod.netns), sys.executable, "-c", bind, pod.ip, str(PROBE_PORT)], timeout=30,
            hint=f"a pod could not listen on {pod.ip}:{PROBE_PORT}: "
            + ("another program uses that address" if mode == LOOPBACK else "the namespace is not usable"))
        where = f"namespaces {', '.join(names)} with veth pairs" if names else f"loopback block {pod.ip}"
        return f"{mode}: created and removed {where}; bound {pod.ip}:{PROBE_PORT}"
    finally:
        if names and mode == NETNS:
            delete_namespaces(list(reversed(names)))
        procs.terminate([p.record() for p in held], grace=2)


def existing_namespaces(prefix: str) -> list[str]:
    """Namespaces on this machine that carry ``prefix`` (the sweep in ``down`` uses it)."""
    if not os.path.isdir("/run/netns"):
        return []
    return sorted(n for n in os.listdir("/run/netns") if n == prefix or n.startswith(prefix + "-"))


def delete_namespaces(names: list[str], enter: list[str] | None = None) -> None:
    """Kill what still runs inside each namespace, then delete it (its veths and bridges go with it).

    ``enter``: the userns holder's nsenter prefix (:attr:`Network.enter`), where the names live in the
    holder's private /run/netns, not the host's."""
    import signal

    enter = enter or []
    for name in names:
        if not enter and not os.path.exists(f"/run/netns/{name}"):
            continue
        pids = run([*enter, "ip", "netns", "pids", name], check=False).stdout.split()
        for pid in pids:  # the holder shares our pid namespace: these pids are ours too
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        run([*enter, "ip", "netns", "del", name], check=False)


_libc = ctypes.CDLL(None, use_errno=True)
_ns_lock = threading.Lock()


@contextlib.contextmanager
def in_netns(netns: str | None) -> Iterator[None]:
    """Run the body with this *thread* inside ``netns``; sockets created there stay there.

    This is how meshlab sends traffic "from a pod" without a subprocess per request.
    """
    if netns is None:
        yield
        return
    with _ns_lock:
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise MeshlabError(f"cannot enter network namespace {netns}: {os.strerror(err)}", "run as root, or run `meshlab up` again")
            try:
                yield
            finally:
                _libc.setns(own, _CLONE_NEWNET)
        finally:
            os.close(own)
            os.close(target)
