"""Discovery in Gloo Mesh v1's shape (``discovery.mesh.gloo.solo.io/v1``): ``Mesh``, ``Workload``,
``Destination`` objects derived from what each cluster really runs.

Gloo Mesh's mesh-discovery read every registered cluster's Kubernetes API and translated it
(``MeshTranslator``, ``WorkloadTranslator``, ``DestinationTranslator``). Here the registry is the
backend's: the local backend's workload records, or the kind backend's deployed samples. The objects
are recomputed from it on every call, so they follow workloads as they come and go; the mesh
controller (:mod:`meshlab.mesh.controller`) reconciles from a fresh discovery on every registry change.

Names follow Gloo Mesh's conventions: a Mesh is ``istiod-istio-system-<cluster>``, a Workload
``<deployment>-<namespace>-<cluster>``, a Destination ``<service>-<namespace>-<cluster>``; all live
in the management namespace ``gloo-mesh``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..display import Table
from ..topology import Topology
from ..versions import ISTIO_VERSION

API = "discovery.mesh.gloo.solo.io/v1"
NAMESPACE = "gloo-mesh"
GATEWAY_APP = "istio-eastwestgateway"
GATEWAY_PORT = 15443


def mesh_name(control_plane_cluster: str) -> str:
    return f"istiod-istio-system-{control_plane_cluster}"


def _ref(name: str) -> dict[str, str]:
    return {"name": name, "namespace": NAMESPACE}


@dataclass
class Discovery:
    """One discovery pass: the objects, and the tables a learner reads."""

    meshes: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    destinations: list[dict[str, Any]] = field(default_factory=list)

    def all(self) -> list[dict[str, Any]]:
        return [*self.meshes, *self.workloads, *self.destinations]

    def mesh(self, name: str) -> dict[str, Any]:
        return next(m for m in self.meshes if m["metadata"]["name"] == name)

    def destination(self, service: str, namespace: str, cluster: str) -> dict[str, Any] | None:
        for d in self.destinations:
            ref = d["spec"]["kubeService"]["ref"]
            if (ref["name"], ref["namespace"], ref["clusterName"]) == (service, namespace, cluster):
                return d
        return None

    def tables(self) -> list[Table]:
        meshes = Table(
            [
                {
                    "MESH": m["metadata"]["name"],
                    "CLUSTER": m["spec"]["istio"]["installation"]["cluster"],
                    "VERSION": m["spec"]["istio"]["installation"]["version"],
                    "TRUST DOMAIN": m["spec"]["istio"]["trustDomain"],
                    "ROOT CA": m["metadata"]["labels"]["meshlab.dev/root-ca"],
                    "INGRESS GATEWAY": ", ".join(f"{g['externalAddress']}:{g['externalTlsPort']}" for g in m["spec"]["istio"]["ingressGateways"]) or "-",
                }
                for m in self.meshes
            ],
            title="Meshes",
        )
        workloads = Table(
            [
                {
                    "WORKLOAD": w["metadata"]["name"],
                    "CLUSTER": w["spec"]["kubernetes"]["controller"]["clusterName"],
                    "SERVICE ACCOUNT": w["spec"]["kubernetes"]["serviceAccountName"],
                    "LABELS": ",".join(f"{k}={v}" for k, v in w["spec"]["kubernetes"]["podLabels"].items() if v),
                    "MESH": w["spec"]["mesh"]["name"],
                }
                for w in self.workloads
            ],
            title="Workloads",
        )
        destinations = Table(
            [
                {
                    "DESTINATION": d["metadata"]["name"],
                    "SERVICE": f"{d['spec']['kubeService']['ref']['name']}.{d['spec']['kubeService']['ref']['namespace']}",
                    "CLUSTER": d["spec"]["kubeService"]["ref"]["clusterName"],
                    "PORTS": ",".join(str(p["port"]) for p in d["spec"]["kubeService"]["ports"]),
                    "SUBSETS": ",".join(f"{k}={'|'.join(v['values'])}" for k, v in d["spec"]["kubeService"]["subsets"].items()),
                    "MESH": d["spec"]["mesh"]["name"],
                }
                for d in self.destinations
            ],
            title="Destinations",
        )
        return [meshes, workloads, destinations]

    def __str__(self) -> str:
        return "\n\n".join(str(t) for t in self.tables())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return "".join(t._repr_html_() for t in self.tables())


def discover(topology: Topology, workloads: list[Any], gateways: dict[str, str], roots: dict[str, str] | None = None) -> Discovery:
    """Translate the clusters' registries into Mesh, Workload and Destination objects.

    ``workloads``: the backend's records (``cluster``, ``deployment``, ``app``, ``version``,
    ``namespace``, ``service_account``, ``ports``); ``gateways``: cluster -> east-west gateway address
    (a Mesh lists it as its ingress gateway, as Gloo Mesh's Istio detector did for a Service with a
    ``tls`` port); ``roots``: control-plane cluster -> the root CA its cacerts chain to now (after a
    VirtualMesh, or a plug-in CA change, replaced the pattern's).
    """
    roots = roots or {}
    out = Discovery()
    running = {w.cluster for w in workloads if w.app == GATEWAY_APP}
    for c in topology.clusters.values():
        if not c.is_primary:
            continue
        mesh = topology.meshes[c.mesh]
        served = [x.name for x in topology.served_by(c.name)]
        out.meshes.append(
            {
                "apiVersion": API,
                "kind": "Mesh",
                "metadata": {
                    "name": mesh_name(c.name),
                    "namespace": NAMESPACE,
                    "labels": {"meshlab.dev/mesh": mesh.name, "meshlab.dev/root-ca": roots.get(c.name, mesh.root_ca)},
                },
                "spec": {
                    "istio": {
                        "installation": {"namespace": "istio-system", "cluster": c.name, "podLabels": {"app": "istiod"}, "version": ISTIO_VERSION},
                        "trustDomain": mesh.trust_domain,
                        "istiodServiceAccount": "istiod",
                        "ingressGateways": [
                            {"workloadLabels": {"istio": "eastwestgateway"}, "externalAddress": gateways[x], "externalTlsPort": GATEWAY_PORT, "tlsContainerPort": GATEWAY_PORT}
                            for x in served
                            if x in running and x in gateways
                        ],
                    },
                    "agentInfo": {"agentNamespace": NAMESPACE},
                },
            }
        )
    by_service: dict[tuple[str, str, str], list[Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    for w in workloads:
        if w.app == GATEWAY_APP:
            continue
        c = topology.clusters[w.cluster]
        mref = _ref(mesh_name(c.control_plane))
        key = (w.deployment, w.namespace, w.cluster)
        if key not in seen:
            seen.add(key)
            out.workloads.append(
                {
                    "apiVersion": API,
                    "kind": "Workload",
                    "metadata": {"name": f"{w.deployment}-{w.namespace}-{w.cluster}", "namespace": NAMESPACE},
                    "spec": {
                        "kubernetes": {
                            "controller": {"name": w.deployment, "namespace": w.namespace, "clusterName": w.cluster},
                            "podLabels": {"app": w.app, "version": w.version},
                            "serviceAccountName": w.service_account,
                        },
                        "mesh": mref,
                    },
                }
            )
        if w.ports:
            by_service.setdefault((w.app, w.namespace, w.cluster), []).append(w)
    for (app, ns, cluster), pods in sorted(by_service.items()):
        c = topology.clusters[cluster]
        versions = sorted({p.version for p in pods if p.version})
        # the Service's own port names (Gloo Mesh copied them from the kube Service): helloworld's 5000 is "http"
        names = {port: name for p in pods for port, name in zip(p.ports, getattr(p, "port_names", None) or [])}
        ports = sorted({port for p in pods for port in p.ports})
        out.destinations.append(
            {
                "apiVersion": API,
                "kind": "Destination",
                "metadata": {"name": f"{app}-{ns}-{cluster}", "namespace": NAMESPACE},
                "spec": {
                    "kubeService": {
                        "ref": {"name": app, "namespace": ns, "clusterName": cluster},
                        "workloadSelectorLabels": {"app": app},
                        "labels": {"app": app},
                        "ports": [{"port": p, "name": names.get(p) or f"http-{p}", "protocol": "TCP", "appProtocol": "http"} for p in ports],
                        "subsets": {"version": {"values": versions}} if versions else {},
                        "endpointSubsets": {
                            "endpoints": [
                                {"ipAddress": p.ip, "labels": {"app": p.app, "version": p.version}, "subLocality": {"zone": c.zone}} for p in pods
                            ],
                            "ports": [{"port": p, "name": names.get(p) or f"http-{p}", "protocol": "TCP"} for p in ports],
                        },
                        "region": c.region,
                    },
                    "mesh": _ref(mesh_name(c.control_plane)),
                },
            }
        )
    return out
