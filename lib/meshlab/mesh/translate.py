"""Management-plane inputs -> the Istio objects each control plane gets (what the controller pushes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import policy, virtualmesh
from .discovery import Discovery, discover

if TYPE_CHECKING:
    from ..lab import Lab

KINDS = ("VirtualMesh", "TrafficPolicy", "AccessPolicy")


def gateways(lab: "Lab") -> dict[str, str]:
    """Cluster -> its east-west gateway address (only clusters that run one)."""
    return lab.backend.gateway_addresses()


def discover_lab(lab: "Lab") -> Discovery:
    return discover(lab.topology, lab.backend.workloads, gateways(lab), lab.state.data.get("ca_roots", {}))


def objects(lab: "Lab", kind: str) -> list[dict[str, Any]]:
    """The management-plane objects of ``kind`` stored in the lab state, by name."""
    return [doc for _, doc in sorted(lab.state.data.get("mesh", {}).get(kind, {}).items())]


def generate(lab: "Lab") -> dict[str, list[dict[str, Any]]]:
    """Every generated object, per control plane, from the current registry and management objects."""
    disc = discover_lab(lab)
    gw = gateways(lab)
    out: dict[str, list[dict[str, Any]]] = {}
    global_clients: dict[str, list[str]] = {}

    def add(part: dict[str, list[dict[str, Any]]]) -> None:
        for cp, docs in part.items():
            out.setdefault(cp, []).extend(docs)

    for vm in objects(lab, "VirtualMesh"):
        add(virtualmesh.federation(lab.topology, disc, vm, lab.backend.workloads, gw))
        members = list(virtualmesh.mesh_clusters(disc, vm).values())
        if virtualmesh.hostnames(vm) == "global":
            for a in members:
                global_clients.setdefault(a, []).extend(b for b in members if b != a)
        if vm["spec"].get("globalAccessPolicy") == "ENABLED":
            add(policy.global_access(lab.topology, members))
    for tp in objects(lab, "TrafficPolicy"):
        add(policy.traffic_policy(tp, disc, lab.topology, global_clients))
    for ap in objects(lab, "AccessPolicy"):
        add(policy.access_policy(ap, disc, lab.topology))
    return {cp: merge(docs) for cp, docs in sorted(out.items()) if docs}


def merge(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One DestinationRule and one VirtualService per host (Istio does not merge them for sidecars):
    federation's TLS mode, a TrafficPolicy's outlier detection and subsets end up in one object."""
    out: list[dict[str, Any]] = []
    by_host: dict[tuple[str, str], dict[str, Any]] = {}
    for d in docs:
        host = d["spec"].get("host") if d["kind"] == "DestinationRule" else (d["spec"].get("hosts") or [""])[0] if d["kind"] == "VirtualService" else None
        if host is None:
            out.append(d)
            continue
        key = (d["kind"], host)
        if key not in by_host:
            by_host[key] = {**d, "spec": {**d["spec"]}}
            out.append(by_host[key])
            continue
        labels = {**by_host[key]["metadata"].get("labels", {}), **d["metadata"].get("labels", {})}
        by_host[key]["metadata"] = {**by_host[key]["metadata"], "labels": labels}  # who contributed to it
        have = by_host[key]["spec"]
        if d["kind"] == "VirtualService":
            have["http"] = have.get("http", []) + d["spec"].get("http", [])
        else:
            tp = {**have.get("trafficPolicy", {}), **d["spec"].get("trafficPolicy", {})}
            if tp:
                have["trafficPolicy"] = tp
            subsets = {s["name"]: s for s in have.get("subsets", []) + d["spec"].get("subsets", [])}
            if subsets:
                have["subsets"] = list(subsets.values())
    return out
