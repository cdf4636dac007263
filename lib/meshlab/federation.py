"""Mesh federation in the style of Service Mesh Hub: discover meshes and their services, then
federate them in a VirtualMesh by generating plain Istio resources.

For every client mesh and every service of the *other* meshes, the client's primary gets:
- a ``ServiceEntry`` with the service's own host name and the Kubernetes Service's port names, whose
  endpoints are the serving cluster's east-west gateway on 15443 (with network, locality, and a weight =
  number of pods behind it). The names matter: where the client's cluster has the Service too, Istio
  keeps the Service as the host's owner and adds ServiceEntry endpoints only on a port of the same name
  (istio/istio pilot/pkg/xds/endpoints/endpoint_builder.go);
- a ``DestinationRule`` with ``ISTIO_MUTUAL``, so the client's sidecar originates mTLS end to end.
The serving side needs its east-west gateway in AUTO_PASSTHROUGH mode for ``*.local`` (Istio's
``expose-services.yaml``): the ``Gateway`` generated here, which both backends apply in every primary
at bring-up (lab 10 removes it to show what breaks).

Trust is the point of a VirtualMesh: the generated objects are the same with or without a shared
root, but calls only succeed when both meshes' certificates chain to one root CA.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .registry import GATEWAY_APP, GATEWAY_PORT, Workload
from .display import Table
from .errors import MeshlabError
from .topology import Topology


@dataclass
class VirtualMesh:
    """What federating ``meshes`` produced: resources per cluster to apply them to, and the trust verdict."""

    meshes: list[str]
    shared_root: bool
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # cluster -> resources

    def all(self) -> list[dict[str, Any]]:
        return [r for rs in self.resources.values() for r in rs]

    def summary(self) -> Table:
        return Table(
            [
                {"APPLY TO": c, "KIND": r["kind"], "NAME": f"{r['metadata'].get('namespace', '')}/{r['metadata']['name']}"}
                for c, rs in self.resources.items()
                for r in rs
            ],
            title=f"VirtualMesh {'+'.join(self.meshes)} (shared root: {'yes' if self.shared_root else 'NO'})",
        )


def discover(topology: Topology, workloads: list[Workload]) -> Table:
    """Meshes, their clusters and the services each runs — what SMH's discovery showed."""
    rows = []
    for mesh in topology.meshes.values():
        clusters = [c for c in topology.clusters.values() if c.mesh == mesh.name]
        for c in clusters:
            svcs = sorted({f"{w.app}.{w.namespace}" for w in workloads if w.cluster == c.name and w.ports})
            rows.append(
                {
                    "MESH": mesh.name,
                    "CLUSTER": c.name,
                    "CONTROL PLANE": c.control_plane,
                    "NETWORK": c.network,
                    "TRUST DOMAIN": mesh.trust_domain,
                    "ROOT CA": mesh.root_ca,
                    "SERVICES": ", ".join(svcs) or "-",
                }
            )
    return Table(rows, title="discovered meshes")


def expose_services_gateway() -> dict[str, Any]:
    """Istio's samples/multicluster/expose-services.yaml: SNI passthrough for every *.local host on 15443."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "cross-network-gateway", "namespace": "istio-system"},
        "spec": {
            "selector": {"istio": "eastwestgateway"},
            "servers": [
                {"port": {"number": GATEWAY_PORT, "name": "tls", "protocol": "TLS"}, "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}
            ],
        },
    }


def virtual_mesh(
    topology: Topology,
    workloads: list[Workload],
    gateway_address: dict[str, str],
    meshes: list[str] | None = None,
) -> VirtualMesh:
    """Federate ``meshes`` (default: all): generate, per client mesh, the objects that publish the others' services."""
    names = meshes or list(topology.meshes)
    unknown = [m for m in names if m not in topology.meshes]
    if unknown or len(names) < 2:
        raise MeshlabError(
            f"a VirtualMesh needs at least two known meshes, got {names}",
            f"meshes in this pattern: {', '.join(topology.meshes)}",
        )
    roots = {topology.meshes[m].root_ca for m in names}
    vm = VirtualMesh(names, shared_root=len(roots) == 1)
    for client in names:
        primary = next(c for c in topology.clusters.values() if c.mesh == client and c.is_primary)
        out = vm.resources.setdefault(primary.name, [])
        for server in names:
            if server == client:
                continue
            by_service: dict[tuple[str, str], Counter[str]] = {}
            ports: dict[tuple[str, str], dict[int, str]] = {}
            accounts: dict[tuple[str, str], set[str]] = {}
            for w in workloads:
                c = topology.clusters[w.cluster]
                if c.mesh != server or not w.ports or w.app == GATEWAY_APP:
                    continue
                key = (w.app, w.namespace)
                by_service.setdefault(key, Counter())[w.cluster] += 1
                ports.setdefault(key, {}).update(zip(w.ports, w.port_names))
                accounts.setdefault(key, set()).add(f"spiffe://{topology.meshes[server].trust_domain}/ns/{w.namespace}/sa/{w.service_account}")
            for (app, ns), per_cluster in sorted(by_service.items()):
                host = f"{app}.{ns}.svc.cluster.local"
                name = f"{app}-{server}"
                out.append(
                    {
                        "apiVersion": "networking.istio.io/v1",
                        "kind": "ServiceEntry",
                        "metadata": {"name": name, "namespace": ns, "labels": {"meshlab.dev/federated-from": server}},
                        "spec": {
                            "hosts": [host],
                            "location": "MESH_INTERNAL",
                            "resolution": "STATIC",
                            "ports": [{"number": p, "name": n, "protocol": "HTTP"} for p, n in sorted(ports[(app, ns)].items())],
                            "subjectAltNames": sorted(accounts[(app, ns)]),
                            "endpoints": [
                                {
                                    "address": gateway_address[cl],
                                    "ports": {n: GATEWAY_PORT for _, n in sorted(ports[(app, ns)].items())},
                                    "network": topology.clusters[cl].network,
                                    "locality": topology.clusters[cl].locality,
                                    "labels": {"cluster": cl},
                                    "weight": n,
                                }
                                for cl, n in sorted(per_cluster.items())
                            ],
                        },
                    }
                )
                out.append(
                    {
                        "apiVersion": "networking.istio.io/v1",
                        "kind": "DestinationRule",
                        "metadata": {"name": name, "namespace": ns, "labels": {"meshlab.dev/federated-from": server}},
                        "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
                    }
                )
    return vm
