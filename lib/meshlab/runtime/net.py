"""Networking for the local backend: one network namespace per pod, one "node" namespace per cluster.

Layout (netns mode)::

    <p>-wan                 bridge "wan": the underlay every cluster node is plugged into (10.250.0.0/24)
    <p>-<cluster>           the cluster's node: router, pod bridge br0 (first address of the pod CIDR),
                            wan0 on the underlay; routes to every other cluster's pod CIDR via its wan0
    <p>-<cluster>-<pod>     a pod: eth0 with an address from the cluster's pod CIDR, default via br0

Clusters on one network route each other's pods directly (the flat network). For clusters on
different networks the node also has ``ip rule ... iif br0 to <remote pod CIDR> prohibit``: a pod
cannot reach a remote pod, only addresses on the underlay (where east-west gateways listen).

Modes, chosen automatically (override with $MESHLAB_NET_MODE):
- ``netns``: as root, ``ip netns``. Full isolation.
- ``userns``: unprivileged, the same namespaces inside a private user + mount namespace held by one
  ``unshare --user --map-root-user --net --mount`` process; every command enters it with nsenter.
  Full isolation, nothing visible in the host's ``ip netns list``.
- ``loopback``: no namespaces; every pod gets its own 127.x address. Works anywhere, but isolation
  is lost (any process can reach any pod, and the sidecar can be bypassed).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import MeshlabError
from ..exec import run
from ..topology import UNDERLAY, Cluster, Topology

NETNS = "netns"
USERNS = "userns"
LOOPBACK = "loopback"
MODES = (NETNS, USERNS, LOOPBACK)

_CLONE_NEWNET = 0x40000000


def choose_mode() -> tuple[str, str]:
    """Pick the network mode for this machine and say why."""
    forced = os.environ.get("MESHLAB_NET_MODE")
    if forced:
        if forced not in MODES:
            raise MeshlabError(f"MESHLAB_NET_MODE={forced!r} is not a network mode", f"use one of: {', '.join(MODES)}")
        return forced, f"forced by MESHLAB_NET_MODE={forced}" + (f"; {_LOOPBACK_CAVEAT}" if forced == LOOPBACK else "")
    if os.geteuid() == 0 and os.path.exists("/proc/self/ns/net"):
        return NETNS, "running as root: one network namespace per pod (full isolation)"
    if _userns_allowed():
        return USERNS, "not root, but user namespaces are allowed: private namespaces per pod (full isolation)"
    return LOOPBACK, (
        f"not root and user namespaces are blocked; {_LOOPBACK_CAVEAT}. "
        "Run as root, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces)"
    )


def _userns_allowed() -> bool:
    try:
        if int(open("/proc/sys/user/max_user_namespaces").read()) <= 0:
            return False
    except (OSError, ValueError):
        return False
    return run(["unshare", "--user", "--map-root-user", "--net", "--mount", "true"], check=False).returncode == 0


_LOOPBACK_CAVEAT = (
    "every pod gets a 127.x address in the host network: isolation is lost "
    "(pods can reach each other directly and bypass sidecars)"
)


@dataclass(frozen=True)
class PodNet:
    """Where a pod lives and which addresses its sidecar and app use."""

    netns: str | None  # None in loopback mode
    ip: str  # the pod IP: inbound listeners bind here
    outbound: str  # where the app (and meshlab's client) sends outbound traffic: <outbound>:15001
    app_host: str  # where the app listens, reachable only by its own sidecar in netns mode


class Network:
    """Creates and removes the namespaces of one lab. Every name is recorded before it is created."""

    def __init__(self, mode: str, prefix: str, record: Callable[[str], None], holder: int | None = None) -> None:
        self.mode = mode
        self.prefix = prefix
        self._record = record
        # userns mode: every `ip` command and process enters the holder's user + mount namespaces
        self.enter = ["nsenter", "-t", str(holder), "-U", "-m", "-n", "--preserve-credentials"] if holder else []

    @staticmethod
    def holder_argv(ready_file: str) -> list[str]:
        """The process that owns a userns-mode lab's namespaces: a tmpfs /run of its own, then sleep."""
        script = f"mount -t tmpfs tmpfs /run && mkdir -p /run/netns && touch {ready_file} && exec sleep infinity"
        return ["unshare", "--user", "--map-root-user", "--net", "--mount", "--propagation", "private", "sh", "-c", script]

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

    def external_ip(self) -> str:
        """A host on the underlay outside every cluster (an external service, an outside client)."""
        return "127.250.0.250" if self.mode == LOOPBACK else str(UNDERLAY.network_address + 250)

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
            return f"127.250.0.{1 + list(topology.clusters).index(cluster)}"
        return self.node_ip(topology, cluster)

    def pod_addresses(self, topology: Topology, cluster: Cluster, index: int) -> PodNet:
        if self.mode == LOOPBACK:
            c = 1 + list(topology.clusters).index(cluster.name)
            ip = f"127.{c}.{index // 200}.{10 + index % 200}"
            return PodNet(None, ip, ip, f"127.{c}.{128 + index // 200}.{10 + index % 200}")
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
                    # return traffic needs the route; pods must not use it: only gateways cross networks
                    cmds.append(f"rule add pref 100 iif br0 to {other.pod_cidr} prohibit")
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

    def exec_prefix(self, netns: str | None) -> list[str]:
        """argv prefix that runs a command inside ``netns`` (``ip netns exec`` execs: the pid is the command's)."""
        return [*self.enter, "ip", "netns", "exec", netns] if netns else []


def existing_namespaces(prefix: str) -> list[str]:
    """Namespaces on this machine that carry ``prefix`` (the sweep in ``down`` uses it)."""
    if not os.path.isdir("/run/netns"):
        return []
    return sorted(n for n in os.listdir("/run/netns") if n == prefix or n.startswith(prefix + "-"))


def delete_namespaces(names: list[str]) -> None:
    """Kill what still runs inside each namespace, then delete it (its veths and bridges go with it)."""
    import signal

    for name in names:
        if not os.path.exists(f"/run/netns/{name}"):
            continue
        pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", name], check=False)


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
