"""Pattern YAML -> a validated, immutable topology model shared by every backend.

A pattern names its meshes, networks and clusters. Each cluster sits on one network, belongs to one
mesh, has a locality (region/zone), pod and service CIDRs, and a control plane: either it is a
``primary`` (runs istiod) or it is a ``remoteOf`` another primary in the same mesh.

The loader is strict: every error names the file and the field, and says how to fix it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import TopologyError

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

_TOP_KEYS = {"name", "title", "description", "meshes", "networks", "clusters"}
_MESH_KEYS = {"trustDomain", "rootCA", "trustDomainAliases"}
_NETWORK_KEYS: set[str] = set()
_CLUSTER_KEYS = {"mesh", "network", "region", "zone", "podCIDR", "serviceCIDR", "controlPlane"}

# The network the local backend plugs every cluster node into (the stand-in for kind's Docker network).
UNDERLAY = ipaddress.IPv4Network("10.250.0.0/24")
# Ranges no pod or service may use: packets to them never reach a pod (RFC 6890 special-purpose blocks).
RESERVED: dict[str, ipaddress.IPv4Network] = {
    "'this network' (0.0.0.0/8)": ipaddress.IPv4Network("0.0.0.0/8"),
    "loopback (127.0.0.0/8)": ipaddress.IPv4Network("127.0.0.0/8"),
    "link-local (169.254.0.0/16)": ipaddress.IPv4Network("169.254.0.0/16"),
    "multicast (224.0.0.0/4)": ipaddress.IPv4Network("224.0.0.0/4"),
    "reserved (240.0.0.0/4)": ipaddress.IPv4Network("240.0.0.0/4"),
    f"meshlab's underlay ({UNDERLAY})": UNDERLAY,
}
# Kubernetes gives each node a /24 of the pod range (kube-controller-manager --node-cidr-mask-size,
# 24 for IPv4), and the local backend numbers pods from .10 of it: a smaller pod range cannot hold them.
MIN_POD_PREFIX = 24


def kube_context(cluster: str) -> str:
    """The kubectl context of ``cluster`` as kind names it (``kind-<cluster>``): what an operator types."""
    return f"kind-{cluster}"


def patterns_dir() -> Path:
    """Where the built-in patterns live: ``clusters/patterns`` in the repository (or $MESHLAB_PATTERNS)."""
    env = os.environ.get("MESHLAB_PATTERNS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "clusters" / "patterns"


def builtin_patterns() -> list[str]:
    """Names of the patterns shipped with meshlab, e.g. ``flat-network``."""
    return sorted(p.stem for p in patterns_dir().glob("*.yaml"))


@dataclass(frozen=True)
class Mesh:
    name: str
    trust_domain: str
    root_ca: str
    trust_domain_aliases: tuple[str, ...] = ()  # meshConfig.trustDomainAliases of its control planes


@dataclass(frozen=True)
class Network:
    name: str


@dataclass(frozen=True)
class Cluster:
    name: str
    mesh: str
    network: str
    region: str
    zone: str
    pod_cidr: ipaddress.IPv4Network
    service_cidr: ipaddress.IPv4Network
    remote_of: str | None  # None: this cluster is a primary and runs its own control plane

    @property
    def is_primary(self) -> bool:
        return self.remote_of is None

    @property
    def control_plane(self) -> str:
        """The cluster whose control plane configures this cluster's proxies."""
        return self.remote_of or self.name

    @property
    def locality(self) -> str:
        """Istio's locality string ``region/zone`` (sub-zone unused)."""
        return f"{self.region}/{self.zone}"


@dataclass(frozen=True)
class Topology:
    name: str
    title: str
    description: str
    source: Path
    meshes: dict[str, Mesh]
    networks: dict[str, Network]
    clusters: dict[str, Cluster]

    def cluster(self, name: str) -> Cluster:
        try:
            return self.clusters[name]
        except KeyError:
            raise TopologyError(
                f"no cluster {name!r} in pattern {self.name!r}",
                f"use one of: {', '.join(self.clusters)}",
            ) from None

    @property
    def control_planes(self) -> list[str]:
        """Clusters that run a control plane (primaries), in file order."""
        return [c.name for c in self.clusters.values() if c.is_primary]

    def served_by(self, control_plane: str) -> list[Cluster]:
        """Clusters whose proxies are configured by ``control_plane`` (itself and its remotes)."""
        return [c for c in self.clusters.values() if c.control_plane == control_plane]

    def remote_secrets(self, control_plane: str) -> list[str]:
        """Clusters whose API server ``control_plane``'s istiod reads through a remote secret
        (``istioctl create-remote-secret``): its remotes, and the other primaries of its mesh -- primaries
        of one mesh exchange secrets both ways (Istio's multi-primary guides). Primaries of different
        meshes exchange none (pattern 3: federation instead)."""
        cp = self.cluster(control_plane)
        if not cp.is_primary:
            return []  # a remote runs no istiod: it holds no remote secrets
        return [c.name for c in self.clusters.values()
                if c.name != cp.name and c.mesh == cp.mesh and (c.remote_of == cp.name or c.is_primary)]  # fmt: skip

    def multi_primary(self, control_plane: str) -> bool:
        """Whether ``control_plane`` shares its mesh with another primary (each reads the other's registry)."""
        return any(self.clusters[c].is_primary for c in self.remote_secrets(control_plane))

    def same_network(self, a: str, b: str) -> bool:
        return self.clusters[a].network == self.clusters[b].network

    def trust_domain(self, cluster: str) -> str:
        return self.meshes[self.clusters[cluster].mesh].trust_domain

    def trust_domains(self, cluster: str) -> list[str]:
        """The trust domain of ``cluster``'s mesh, then its aliases: the identities its proxies accept
        and that its authorization policies treat as one (Istio's trust domain bundle)."""
        m = self.meshes[self.clusters[cluster].mesh]
        return list(dict.fromkeys([m.trust_domain, *m.trust_domain_aliases]))


def load_topology(pattern: str | os.PathLike[str]) -> Topology:
    """Load a built-in pattern by name (``flat-network``) or any pattern file by path."""
    path = Path(pattern)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = patterns_dir() / f"{pattern}.yaml"
        if not path.exists():
            raise TopologyError(
                f"unknown pattern {str(pattern)!r}",
                f"use one of: {', '.join(builtin_patterns())}, or a path to a pattern YAML file",
            )
    if not path.exists():
        raise TopologyError(f"pattern file {str(path)!r} does not exist", "check the path")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise TopologyError(f"{path}: not valid YAML: {e}", "fix the YAML syntax at the position shown") from e
    return parse_topology(doc, source=path)


def parse_topology(doc: Any, source: Path = Path("<memory>")) -> Topology:
    """Validate a pattern document (already parsed YAML) and build the model."""
    where = str(source)

    def fail(field: str, problem: str, hint: str) -> TopologyError:
        return TopologyError(f"{where}: field {field!r}: {problem}", hint)

    def mapping(value: Any, field: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail(field, f"expected a mapping, got {type(value).__name__}", "write it as `key: value` lines")
        return value

    def no_unknown(d: dict[str, Any], allowed: set[str], field: str) -> None:
        for key in d:
            if key not in allowed:
                raise fail(
                    f"{field}.{key}" if field else key,
                    "unknown field",
                    f"remove it; allowed here: {', '.join(sorted(allowed)) or '(none)'}",
                )

    def label(name: Any, field: str) -> str:
        if not isinstance(name, str) or not DNS1123_LABEL.fullmatch(name) or len(name) > 63:
            raise fail(
                field,
                f"{name!r} is not a DNS-1123 label",
                "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            )
        return name

    def text(d: dict[str, Any], key: str, field: str, default: str | None = None) -> str:
        value = d.get(key, default)
        if not isinstance(value, str) or not value:
            raise fail(f"{field}.{key}" if field else key, "missing or not a string", f"set `{key}: <value>`")
        return value

    doc = mapping(doc, "(document)")
    no_unknown(doc, _TOP_KEYS, "")
    name = label(doc.get("name"), "name")

    meshes: dict[str, Mesh] = {}
    for mname, m in mapping(doc.get("meshes"), "meshes").items():
        field = f"meshes.{mname}"
        label(mname, field)
        m = mapping(m, field)
        no_unknown(m, _MESH_KEYS, field)
        aliases = m.get("trustDomainAliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a and "/" not in a for a in aliases):
            raise fail(f"{field}.trustDomainAliases", f"{aliases!r} is not a list of trust domains", "write it like [cluster1.local, cluster2.local]")
        meshes[mname] = Mesh(mname, text(m, "trustDomain", field, "cluster.local"), text(m, "rootCA", field, "root"), tuple(aliases))
    if not meshes:
        raise fail("meshes", "at least one mesh is required", "add `meshes: {mesh1: {trustDomain: cluster.local}}`")

    networks: dict[str, Network] = {}
    for nname, n in mapping(doc.get("networks"), "networks").items():
        field = f"networks.{nname}"
        label(nname, field)
        no_unknown(mapping(n, field), _NETWORK_KEYS, field)
        networks[nname] = Network(nname)
    if not networks:
        raise fail("networks", "at least one network is required", "add `networks: {network1: {}}`")

    raw_clusters = mapping(doc.get("clusters"), "clusters")
    if not raw_clusters:
        raise fail("clusters", "at least one cluster is required", "add a `clusters:` mapping")
    clusters: dict[str, Cluster] = {}
    for cname, c in raw_clusters.items():
        field = f"clusters.{cname}"
        label(cname, field)
        c = mapping(c, field)
        no_unknown(c, _CLUSTER_KEYS, field)
        mesh = text(c, "mesh", field)
        if mesh not in meshes:
            raise fail(f"{field}.mesh", f"unknown mesh {mesh!r}", f"declare it under `meshes:` or use one of: {', '.join(meshes)}")
        network = text(c, "network", field)
        if network not in networks:
            raise fail(
                f"{field}.network", f"unknown network {network!r}", f"declare it under `networks:` or use one of: {', '.join(networks)}"
            )
        cidrs = {}
        for key in ("podCIDR", "serviceCIDR"):
            raw = text(c, key, field)
            try:
                cidrs[key] = ipaddress.IPv4Network(raw, strict=True)
            except ValueError as e:
                raise fail(f"{field}.{key}", f"{raw!r} is not an IPv4 CIDR ({e})", "write it like 10.10.0.0/16 (host bits zero)") from e
            for what, reserved in RESERVED.items():
                if cidrs[key].overlaps(reserved):
                    raise fail(f"{field}.{key}", f"{raw} overlaps the {what} range, where no pod or service can live",
                               "use private addresses, e.g. 10.10.0.0/16 for pods and 10.255.10.0/24 for services")
        if cidrs["podCIDR"].prefixlen > MIN_POD_PREFIX:
            raise fail(f"{field}.podCIDR", f"{cidrs['podCIDR']} is too small for the cluster's pods "
                       f"({cidrs['podCIDR'].num_addresses} addresses)",
                       f"use a /{MIN_POD_PREFIX} or larger (e.g. 10.10.0.0/16): Kubernetes gives every node a /24 "
                       "of the pod range, and meshlab numbers pods from .10")
        if cidrs["podCIDR"].overlaps(cidrs["serviceCIDR"]):
            raise fail(f"{field}.serviceCIDR", "overlaps the cluster's own podCIDR", "pick disjoint pod and service ranges")
        cp = c.get("controlPlane")
        if cp == "primary":
            remote_of = None
        elif isinstance(cp, dict) and set(cp) == {"remoteOf"} and isinstance(cp["remoteOf"], str):
            remote_of = cp["remoteOf"]
        else:
            raise fail(f"{field}.controlPlane", f"{cp!r} is not valid", "write `controlPlane: primary` or `controlPlane: {remoteOf: <primary cluster>}`")
        clusters[cname] = Cluster(
            name=cname,
            mesh=mesh,
            network=network,
            region=label(text(c, "region", field), f"{field}.region"),
            zone=label(text(c, "zone", field), f"{field}.zone"),
            pod_cidr=cidrs["podCIDR"],
            service_cidr=cidrs["serviceCIDR"],
            remote_of=remote_of,
        )

    for c in clusters.values():
        if c.remote_of is None:
            continue
        field = f"clusters.{c.name}.controlPlane.remoteOf"
        primary = clusters.get(c.remote_of)
        if primary is None:
            raise fail(field, f"primary cluster {c.remote_of!r} does not exist", f"name a primary cluster: {', '.join(x.name for x in clusters.values() if x.is_primary) or '(none declared)'}")
        if not primary.is_primary:
            raise fail(field, f"{c.remote_of!r} is itself a remote", "a remote must point at a cluster with `controlPlane: primary`")
        if primary.mesh != c.mesh:
            raise fail(field, f"{c.remote_of!r} is in mesh {primary.mesh!r}, not {c.mesh!r}", "a remote and its primary must be in the same mesh")

    for mname in meshes:
        if not any(c.mesh == mname and c.is_primary for c in clusters.values()):
            raise fail(f"meshes.{mname}", "has no primary cluster", "give one of its clusters `controlPlane: primary`")

    names = list(clusters)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ca, cb = clusters[a], clusters[b]
            if ca.network != cb.network:
                continue  # separate networks may reuse address space, as in Istio multi-network
            for ka, na in (("podCIDR", ca.pod_cidr), ("serviceCIDR", ca.service_cidr)):
                for kb, nb in (("podCIDR", cb.pod_cidr), ("serviceCIDR", cb.service_cidr)):
                    if na.overlaps(nb):
                        raise fail(
                            f"clusters.{b}.{kb}",
                            f"{nb} overlaps clusters.{a}.{ka} {na}; both clusters are on network {ca.network!r}",
                            "clusters on one network route each other's pods directly: give each a disjoint range",
                        )

    return Topology(
        name=name,
        title=str(doc.get("title") or name),
        description=str(doc.get("description") or ""),
        source=source,
        meshes=meshes,
        networks=networks,
        clusters=clusters,
    )
