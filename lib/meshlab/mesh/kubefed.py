"""The Kubernetes-only alternative, for contrast: KubeFed's ``FederatedDeployment`` / ``FederatedService``
(``types.kubefed.io/v1beta1``) -- *placement*: a template plus the clusters that get a copy.

KubeFed's sync controller creates the Deployment and Service in every cluster the placement selects
(``spec.placement.clusters`` by name, or ``spec.placement.clusterSelector.matchLabels`` against the
labels of the member clusters' ``KubeFedCluster`` objects). That is all: each copy is an ordinary
service of its own cluster. There are no cross-cluster endpoints (a client only reaches its own
cluster's pods), no identity across clusters, and no failover -- what the mesh's management plane
adds on top.

:func:`place` realises a placement on the lab (deploying the app into each selected cluster), so the
lab can show the difference with traffic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..display import Table
from ..errors import ResourceError
from ..resources import _check

if TYPE_CHECKING:
    from ..lab import Lab

API = "types.kubefed.io/v1beta1"
_PLACEMENT = {"clusters": [{"name": str}], "clusterSelector": {"matchLabels": ("map", str)}}
SHAPES = {
    "FederatedDeployment": {"template": {"metadata": {"labels": ("map", str)}, "spec": {"replicas": int}}, "placement": _PLACEMENT},
    "FederatedService": {"template": {"spec": {"selector": ("map", str), "ports": [{"name": str, "port": int}]}}, "placement": _PLACEMENT},
}


def cluster_labels(topology: Any, cluster: str) -> dict[str, str]:
    """The labels a member cluster's KubeFedCluster object carries here (for clusterSelector)."""
    c = topology.clusters[cluster]
    return {"region": c.region, "zone": c.zone, "network": c.network, "mesh": c.mesh}


def placement(topology: Any, doc: dict[str, Any]) -> list[str]:
    """The member clusters a Federated* object is placed in (KubeFed: ``clusters`` wins over ``clusterSelector``)."""
    kind = doc.get("kind")
    where = f"{kind} {(doc.get('metadata') or {}).get('name')!r}"
    if doc.get("apiVersion") != API or kind not in SHAPES:
        raise ResourceError(f"expected apiVersion {API} with kind FederatedDeployment or FederatedService", "copy the shape from the lab")
    _check(doc.get("spec") or {}, SHAPES[kind], "spec", where)
    p = doc["spec"].get("placement") or {}
    if "clusters" in p:
        names = [c["name"] for c in p["clusters"]]
        unknown = [n for n in names if n not in topology.clusters]
        if unknown:
            raise ResourceError(f"{where}: placement names unknown clusters {unknown}", f"member clusters: {', '.join(topology.clusters)}")
        return names
    want = (p.get("clusterSelector") or {}).get("matchLabels", {})
    return [c for c in topology.clusters if all(cluster_labels(topology, c).get(k) == v for k, v in want.items())]


def place(lab: "Lab", deployment: dict[str, Any], service: dict[str, Any]) -> Table:
    """What KubeFed's sync controller does: a copy of the app in every cluster its placement selects."""
    clusters = placement(lab.topology, deployment)
    if placement(lab.topology, service) != clusters:
        raise ResourceError("the FederatedService and the FederatedDeployment are placed in different clusters",
                            "give both the same placement, or the Service has no pods in some clusters")  # fmt: skip
    ns = deployment["metadata"].get("namespace", "sample")
    labels = deployment["spec"]["template"].get("metadata", {}).get("labels", {})
    app, version = labels.get("app", "helloworld"), labels.get("version", "v1")
    rows = []
    for c in clusters:
        for w in lab.backend.deploy(app, c, version=version, replicas=deployment["spec"]["template"]["spec"].get("replicas", 1), namespace=ns):
            rows.append({"CLUSTER": c, "POD": getattr(w, "pod", str(w)), "NAMESPACE": ns})
    return Table(rows, title=f"KubeFed placement of {app}: {', '.join(clusters) or 'no cluster'}")


def endpoints(lab: "Lab", client: str, cluster: str, service: str, namespace: str) -> Table:
    """The endpoints ``client``'s sidecar has for ``service.namespace``, with the cluster each sits in
    (from its locality: the same rows on both backends)."""
    where = {lab.topology.clusters[c].locality: c for c in lab.topology.clusters}
    rows = [
        {"ENDPOINT": r["ENDPOINT"], "IN CLUSTER": where.get(r["LOCALITY"], r["LOCALITY"])}
        for r in lab.endpoints(client, cluster=cluster, service=service)
        if r["CLUSTER"].endswith(f"|{service}.{namespace}.svc.cluster.local")
    ]
    return Table(rows, title=f"endpoints of {service}.{namespace} in {client}'s sidecar ({cluster})")


def kill(lab: "Lab", app: str, cluster: str, namespace: str) -> str:
    """Crash the placed copy's app in one cluster (the sidecar stays and answers 503)."""
    return lab.backend.scale_app(app, cluster, namespace, 0)


def remove(lab: "Lab", deployment: dict[str, Any]) -> list[str]:
    """Undo a placement: remove the copy from every cluster it was placed in."""
    ns = deployment["metadata"].get("namespace", "sample")
    app = deployment["spec"]["template"].get("metadata", {}).get("labels", {}).get("app", "helloworld")
    return [p for c in placement(lab.topology, deployment) for p in lab.undeploy(app, c, namespace=ns)]
