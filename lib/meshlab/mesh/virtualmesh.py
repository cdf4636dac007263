"""``VirtualMesh`` (``networking.mesh.gloo.solo.io/v1``): federation and shared identity across meshes.

Two things, as Gloo Mesh (formerly Service Mesh Hub) did them:

**Shared trust** (``spec.mtlsConfig.shared``). The management plane generates a root CA; each
cluster's agent creates a key and a CSR for a new intermediate CA (the key never leaves the
cluster); the management plane signs it; the agent writes Istio's ``cacerts`` (ca-cert, ca-key,
root-cert, cert-chain); istiod is restarted to sign with the new intermediate; and the workloads
are restarted (``autoRestartPods``, the "pod bounce") so their certificates come from it. Until a
pod restarts it keeps its old certificate and trust bundle.

``spec.mtlsConfig.limited`` (LimitedTrust) is refused: Gloo Mesh described it -- each mesh keeps its
own root, and only the egress -> ingress gateway hop would use mTLS with a shared certificate -- but
never implemented it in the open-source project (v1.0 labels it "Currently not available").

**Federation** (``spec.federation``). Every service of every mesh becomes callable from the other
meshes. Two naming schemes:

* ``global`` (Service Mesh Hub's, the default): each client mesh gets a ``ServiceEntry`` for
  ``<svc>.<ns>.svc.<cluster>.global`` with a VIP from 240.0.0.0/4 and the serving cluster's east-west
  gateway as its endpoint, plus a ``DestinationRule`` (``ISTIO_MUTUAL``); the serving mesh gets a
  ``Gateway`` for ``*.global`` in AUTO_PASSTHROUGH mode and an ``EnvoyFilter`` that rewrites the
  ``.<cluster>.global`` SNI cluster to the local one. A client chooses *which* cluster it calls.
* ``merged`` (Istio's multi-primary naming; annotation ``meshlab.dev/hostnames: merged``): the
  ServiceEntry uses the service's own name, so a client's ``helloworld.sample`` has endpoints in
  every mesh (:func:`meshlab.federation.virtual_mesh`): locality and failover apply across clusters.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..display import Table
from ..errors import ResourceError
from ..federation import virtual_mesh
from ..pki import describe
from ..resources import _check
from .discovery import GATEWAY_PORT, Discovery, mesh_name

if TYPE_CHECKING:
    from ..lab import Lab

API = "networking.mesh.gloo.solo.io/v1"
VIP_RANGE = ipaddress.IPv4Network("240.0.0.0/4")
HOSTNAMES_ANNOTATION = "meshlab.dev/hostnames"
_REF = {"name": str, "namespace": str}
SHAPE = {
    "meshes": [_REF],
    "mtlsConfig": {
        "shared": {"rootCertificateAuthority": {"generated": {"ttlDays": int, "rsaKeySizeBytes": int, "orgName": str}}},
        "autoRestartPods": bool,
    },
    "federation": {"selectors": [{"meshes": [_REF]}], "hostnameSuffix": str},
    "globalAccessPolicy": str,
}
REFUSED = {
    "spec.mtlsConfig.limited": "LimitedTrust was never implemented in Gloo Mesh's open-source releases: use mtlsConfig.shared",
    "spec.mtlsConfig.shared.rootCertificateAuthority.secret": "bring-your-own root is not supported here: use generated: {}",
    "spec.federation.flatNetwork": "flat-network federation is a Gloo Mesh Enterprise feature",
}


def validate(doc: dict[str, Any]) -> None:
    """A VirtualMesh in the v1 shape; unsupported fields are refused by name."""
    name = (doc.get("metadata") or {}).get("name")
    where = f"VirtualMesh {name!r}"
    if doc.get("apiVersion") != API or doc.get("kind") != "VirtualMesh":
        raise ResourceError(f"{where}: expected apiVersion {API}, kind VirtualMesh", "copy the shape from the lab")
    if not name:
        raise ResourceError("VirtualMesh: metadata.name is required", "add metadata: {name: ..., namespace: gloo-mesh}")
    spec = doc.get("spec") or {}
    for path, why in REFUSED.items():
        node: Any = doc
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise ResourceError(f"{where}: field {path} is not supported", why)
    _check(spec, SHAPE, "spec", where)
    if len(spec.get("meshes", [])) < 2:
        raise ResourceError(f"{where}: spec.meshes must list at least two meshes", "list the Mesh objects from lab.mesh.discover()")
    if spec.get("globalAccessPolicy", "MESH_DEFAULT") not in ("MESH_DEFAULT", "ENABLED", "DISABLED"):
        raise ResourceError(f"{where}: spec.globalAccessPolicy must be MESH_DEFAULT, ENABLED or DISABLED", "see Gloo Mesh's VirtualMesh reference")
    if spec.get("federation", {}).get("hostnameSuffix", "global") != "global":
        raise ResourceError(f"{where}: spec.federation.hostnameSuffix other than 'global' needs Istio's DNS proxying", "leave it out (default: global)")
    mode = (doc.get("metadata") or {}).get("annotations", {}).get(HOSTNAMES_ANNOTATION, "global")
    if mode not in ("global", "merged"):
        raise ResourceError(f"{where}: annotation {HOSTNAMES_ANNOTATION}={mode!r}", "use 'global' (<svc>.<ns>.svc.<cluster>.global) or 'merged' (Istio's names)")


def hostnames(doc: dict[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("annotations", {}).get(HOSTNAMES_ANNOTATION, "global"))


def global_hostname(service: str, namespace: str, cluster: str) -> str:
    """Service Mesh Hub's federated name: ``<svc>.<ns>.svc.<cluster>.global``."""
    return f"{service}.{namespace}.svc.{cluster}.global"


def vip(hostname: str) -> str:
    """A stable virtual IP from 240.0.0.0/4 (class E, never routed) for a federated hostname."""
    n = int.from_bytes(hashlib.sha256(hostname.encode()).digest()[:4], "big") % (VIP_RANGE.num_addresses - 2)
    return str(VIP_RANGE.network_address + 1 + n)


def mesh_clusters(disc: Discovery, doc: dict[str, Any]) -> dict[str, str]:
    """The VirtualMesh's meshes: Gloo Mesh name -> the cluster running its control plane."""
    out = {}
    for ref in doc["spec"]["meshes"]:
        try:
            m = disc.mesh(ref["name"])
        except StopIteration:
            raise ResourceError(
                f"VirtualMesh {doc['metadata']['name']!r}: no discovered Mesh {ref['name']!r}",
                f"discovered meshes: {', '.join(x['metadata']['name'] for x in disc.meshes)}",
            ) from None
        out[ref["name"]] = m["spec"]["istio"]["installation"]["cluster"]
    return out


def federation(topology: Any, disc: Discovery, doc: dict[str, Any], workloads: list[Any], gateways: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The Istio objects one VirtualMesh federates into, per control plane cluster."""
    members = mesh_clusters(disc, doc)
    if hostnames(doc) == "merged":
        names = sorted({topology.clusters[cp].mesh for cp in members.values()})
        return virtual_mesh(topology, workloads, gateways, names).resources
    out: dict[str, list[dict[str, Any]]] = {cp: [] for cp in members.values()}
    vm_name = doc["metadata"]["name"]
    by_cp = {cp: {c.name for c in topology.served_by(cp)} for cp in members.values()}
    for server_cp, served in by_cp.items():
        dests = [d for d in disc.destinations if d["spec"]["kubeService"]["ref"]["clusterName"] in served]
        if dests and any(cl in gateways for cl in served):
            out[server_cp] += serving_side(vm_name, disc.mesh(mesh_name(server_cp)))
        for client_cp in by_cp:
            if client_cp == server_cp:
                continue
            for d in dests:
                ref = d["spec"]["kubeService"]["ref"]
                cluster = ref["clusterName"]
                if cluster not in gateways:
                    continue
                td = topology.meshes[topology.clusters[cluster].mesh].trust_domain
                sas = sorted({w.service_account for w in workloads if w.cluster == cluster and w.app == ref["name"] and w.namespace == ref["namespace"]})
                out[client_cp] += client_side(topology, d, gateways[cluster], [f"spiffe://{td}/ns/{ref['namespace']}/sa/{sa}" for sa in sas])
    return out


def client_side(topology: Any, dest: dict[str, Any], gateway: str, sans: list[str]) -> list[dict[str, Any]]:
    """ServiceEntry + DestinationRule that make one remote Destination callable by its global name."""
    ref = dest["spec"]["kubeService"]["ref"]
    c = topology.clusters[ref["clusterName"]]
    host = global_hostname(ref["name"], ref["namespace"], ref["clusterName"])
    ports = {p["port"]: p["name"] for p in dest["spec"]["kubeService"]["ports"]}  # the Service's port names
    labels = {"meshlab.dev/federated-from": ref["clusterName"], "meshlab.dev/destination": dest["metadata"]["name"]}
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": host, "namespace": "istio-system", "labels": labels},
            "spec": {
                "hosts": [host],
                "addresses": [vip(host)],
                "location": "MESH_INTERNAL",
                "resolution": "STATIC",
                "ports": [{"number": p, "name": name, "protocol": "HTTP"} for p, name in ports.items()],
                "subjectAltNames": sans,
                "endpoints": [
                    {
                        "address": gateway,
                        "ports": {name: GATEWAY_PORT for name in ports.values()},
                        "labels": {"cluster": ref["clusterName"]},
                        "network": c.network,
                        "locality": c.locality,
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": host, "namespace": "istio-system", "labels": labels},
            "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
        },
    ]


def serving_side(vm_name: str, mesh: dict[str, Any]) -> list[dict[str, Any]]:
    """The serving mesh's half: accept ``*.global`` SNI on the gateway and map it to local clusters."""
    cluster = mesh["spec"]["istio"]["installation"]["cluster"]
    gw_labels = {"istio": "eastwestgateway"}
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": f"{vm_name}-gloo-mesh", "namespace": "istio-system"},
            "spec": {
                "selector": gw_labels,
                "servers": [{"port": {"number": GATEWAY_PORT, "name": "tls", "protocol": "TLS"}, "hosts": ["*.global"], "tls": {"mode": "AUTO_PASSTHROUGH"}}],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": {"name": f"{vm_name}.gloo-mesh", "namespace": "istio-system"},
            "spec": {
                "workloadSelector": {"labels": gw_labels},
                "configPatches": [
                    {
                        "applyTo": "NETWORK_FILTER",
                        "match": {"context": "GATEWAY", "listener": {"portNumber": GATEWAY_PORT, "filterChain": {"filter": {"name": "envoy.filters.network.sni_cluster"}}}},
                        "patch": {
                            "operation": "INSERT_AFTER",
                            "value": {
                                "name": "envoy.filters.network.tcp_cluster_rewrite",
                                "typed_config": {
                                    "@type": "type.googleapis.com/istio.envoy.config.filter.network.tcp_cluster_rewrite.v2alpha1.TcpClusterRewrite",
                                    "cluster_pattern": f"\\.{cluster}.global$",
                                    "cluster_replacement": ".cluster.local",
                                },
                            },
                        },
                    }
                ],
            },
        },
    ]


# ---- shared trust ------------------------------------------------------------------------------
@dataclass(repr=False)
class TrustReport:
    """What ``mtlsConfig.shared`` did, step by step, for the lab to show."""

    root: str
    root_cert: str = ""
    steps: list[dict[str, str]] = field(default_factory=list)
    csrs: dict[str, bytes] = field(default_factory=dict)  # cluster -> CSR PEM
    chains: dict[str, bytes] = field(default_factory=dict)  # cluster -> cert-chain.pem (intermediate + root)
    bounced: dict[str, list[str]] = field(default_factory=dict)

    def table(self) -> Table:
        return Table(self.steps, title=f"mtlsConfig.shared: root {self.root}")

    def csr(self, cluster: str) -> Table:
        return Table(describe(self.csrs[cluster]), title=f"CSR from {cluster}'s agent")

    def chain(self, cluster: str) -> Table:
        return Table(describe(self.chains[cluster]), title=f"cacerts/cert-chain.pem written in {cluster}")

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def shared_trust(lab: "Lab", doc: dict[str, Any], disc: Discovery) -> TrustReport:
    """Generate the root, run each cluster's CSR flow, install ``cacerts``, restart istiod, bounce pods."""
    spec = doc["spec"]
    gen = spec["mtlsConfig"]["shared"].get("rootCertificateAuthority", {}).get("generated", {})
    ttl = int(gen.get("ttlDays", 365))
    root = f"{doc['metadata']['name']}-root"
    members = mesh_clusters(disc, doc)
    rep = TrustReport(root)
    be = lab.backend
    pki = be.pki
    rep.root_cert = str(pki.root_cert(root))
    rep.steps.append({"STEP": "1 generate root", "WHERE": "management plane", "RESULT": f"{root}/root-cert.pem"})
    for mesh, cp in members.items():
        csr = pki.agent_csr(cp, root)
        rep.csrs[cp] = csr.read_bytes()
        rep.steps.append({"STEP": "2 agent: key + CSR", "WHERE": cp, "RESULT": "CertificateRequest (key stays in the cluster)"})
        issued = pki.sign_csr(rep.csrs[cp], root, ttl_days=ttl)
        rep.steps.append({"STEP": "3 sign CSR", "WHERE": "management plane", "RESULT": f"IssuedCertificate for {cp}"})
        cacerts = pki.install_issued(cp, root, issued)
        rep.chains[cp] = (cacerts / "cert-chain.pem").read_bytes()
        rep.steps += [{"STEP": step, "WHERE": cp, "RESULT": result} for step, result in be.install_cacerts(cp, root, cacerts)]
    if spec["mtlsConfig"].get("autoRestartPods"):
        for cp in members.values():
            for c in lab.topology.served_by(cp):
                rep.bounced[c.name] = be.bounce(c.name)
                rep.steps.append({"STEP": "6 pod bounce", "WHERE": c.name, "RESULT": f"restarted: {', '.join(rep.bounced[c.name])}"})
    return rep
