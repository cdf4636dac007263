"""The unified API: ``TrafficPolicy`` and ``AccessPolicy`` (``networking.mesh.gloo.solo.io/v1``),
translated into Istio objects in every cluster whose services they select -- one policy, many meshes.

Gloo Mesh's translators (v1): a TrafficPolicy becomes a ``VirtualService`` (routes: traffic shift,
fault injection, timeout, retries) and a ``DestinationRule`` (outlier detection, TLS mode) for each
selected Destination; an AccessPolicy becomes an ``AuthorizationPolicy`` (ALLOW) on the selected
Destinations' workloads, with principals from the selected identities.

Every control plane that can reach a selected Destination gets the translation under the name it
uses for it: the owning cluster its local ``<svc>.<ns>.svc.cluster.local``; a mesh federated by a
VirtualMesh with global hostnames ``<svc>.<ns>.svc.<cluster>.global``.

Supported fields are those below; anything else is refused with its name.
"""

from __future__ import annotations

from typing import Any

from ..errors import ResourceError
from ..resources import _check, duration_s
from .discovery import Discovery

API = "networking.mesh.gloo.solo.io/v1"
_REF = {"name": str, "namespace": str, "clusterName": str}
_DESTINATION_SELECTOR = [{"kubeServiceMatcher": {"labels": ("map", str), "namespaces": [str], "clusters": [str]}, "kubeServiceRefs": {"services": [_REF]}}]
TRAFFIC_POLICY = {
    "destinationSelector": _DESTINATION_SELECTOR,
    "httpRequestMatchers": [{"uri": {"exact": str, "prefix": str, "regex": str}, "headers": [{"name": str, "value": str, "regex": bool}]}],
    "policy": {
        "trafficShift": {"destinations": [{"kubeService": {**_REF, "subset": ("map", str), "port": int}, "weight": int}]},
        "faultInjection": {"fixedDelay": str, "abort": {"httpStatus": int}, "percentage": float},
        "requestTimeout": str,
        "retries": {"attempts": int, "perTryTimeout": str},
        "outlierDetection": {"consecutiveErrors": int, "interval": str, "baseEjectionTime": str, "maxEjectionPercent": int},
        "mtls": {"istio": {"tlsMode": str}},
    },
}
ACCESS_POLICY = {
    "sourceSelector": [{"kubeIdentityMatcher": {"namespaces": [str], "clusters": [str]}, "kubeServiceAccountRefs": {"serviceAccounts": [_REF]}}],
    "destinationSelector": _DESTINATION_SELECTOR,
    "allowedPaths": [str],
    "allowedMethods": [str],
    "allowedPorts": [int],
}
OUTLIER_DEFAULTS = {"consecutiveErrors": 5, "interval": "10s", "baseEjectionTime": "30s", "maxEjectionPercent": 100}
WHY_NOT = {
    "sourceSelector": "routes per source workload need VirtualService sourceLabels, which the local backend does not implement",
    "corsPolicy": "CORS is not implemented by the local backend's translator",
    "mirror": "use trafficShift here, or a VirtualService mirror directly",
    "headerManipulation": "header manipulation is not implemented by the local backend's translator",
    "csrfPolicy": "Gloo Mesh Enterprise only",
    "rateLimit": "Gloo Mesh Enterprise only",
    "keepalive": "not implemented",
}


def validate(doc: dict[str, Any]) -> None:
    kind = doc.get("kind")
    name = (doc.get("metadata") or {}).get("name")
    if doc.get("apiVersion") != API or kind not in ("TrafficPolicy", "AccessPolicy"):
        raise ResourceError(f"expected apiVersion {API} with kind TrafficPolicy or AccessPolicy, got {doc.get('apiVersion')} {kind}", "copy the shape from the lab")
    where = f"{kind} {name!r}"
    if not name:
        raise ResourceError(f"{kind}: metadata.name is required", "add metadata: {name: ..., namespace: gloo-mesh}")
    spec = doc.get("spec") or {}
    for block in (spec, spec.get("policy") or {}):
        for k in block:
            if k in WHY_NOT and not (kind == "AccessPolicy" and k == "sourceSelector"):
                raise ResourceError(f"{where}: field {'spec.policy.' if block is not spec else 'spec.'}{k} is not supported", WHY_NOT[k])
    _check(spec, TRAFFIC_POLICY if kind == "TrafficPolicy" else ACCESS_POLICY, "spec", where)
    tls = spec.get("policy", {}).get("mtls", {}).get("istio", {}).get("tlsMode")
    if tls and tls not in ("ISTIO_MUTUAL", "DISABLE"):
        raise ResourceError(f"{where}: spec.policy.mtls.istio.tlsMode={tls!r} is not supported", "use ISTIO_MUTUAL or DISABLE")
    for path, value in (("requestTimeout", spec.get("policy", {}).get("requestTimeout")), ("retries.perTryTimeout", spec.get("policy", {}).get("retries", {}).get("perTryTimeout"))):
        if value:
            duration_s(value)


def selected(disc: Discovery, selectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Destinations a destinationSelector picks (empty selector list: all of them)."""
    if not selectors:
        return list(disc.destinations)
    out = []
    for d in disc.destinations:
        ref = d["spec"]["kubeService"]["ref"]
        for s in selectors:
            m = s.get("kubeServiceMatcher")
            refs = s.get("kubeServiceRefs", {}).get("services", [])
            ok_m = m is not None and all(
                [
                    all(d["spec"]["kubeService"]["labels"].get(k) == v for k, v in m.get("labels", {}).items()),
                    not m.get("namespaces") or ref["namespace"] in m["namespaces"],
                    not m.get("clusters") or ref["clusterName"] in m["clusters"],
                ]
            )
            ok_r = any(r.get("name") == ref["name"] and r.get("namespace") == ref["namespace"] and r.get("clusterName", ref["clusterName"]) == ref["clusterName"] for r in refs)
            if ok_m or ok_r:
                out.append(d)
                break
    return out


def _hosts(dest: dict[str, Any], topology: Any, global_clients: dict[str, list[str]]) -> dict[str, str]:
    """Control plane -> the host name it knows this Destination by."""
    ref = dest["spec"]["kubeService"]["ref"]
    owner = topology.clusters[ref["clusterName"]].control_plane
    out = {owner: f"{ref['name']}.{ref['namespace']}.svc.cluster.local"}
    from .virtualmesh import global_hostname

    for cp in global_clients.get(owner, []):
        out.setdefault(cp, global_hostname(ref["name"], ref["namespace"], ref["clusterName"]))
    return out


def traffic_policy(doc: dict[str, Any], disc: Discovery, topology: Any, global_clients: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """VirtualService + DestinationRule per selected Destination, in every control plane that reaches it."""
    spec = doc["spec"]
    pol = spec.get("policy", {})
    name = doc["metadata"]["name"]
    out: dict[str, list[dict[str, Any]]] = {}
    done: set[tuple[str, str]] = set()
    for d in selected(disc, spec.get("destinationSelector", [])):
        for cp, host in _hosts(d, topology, global_clients).items():
            if (cp, host) in done:
                continue
            done.add((cp, host))
            ns = "istio-system" if host.endswith(".global") else d["spec"]["kubeService"]["ref"]["namespace"]
            meta = {"name": f"{name}-{host.split('.')[0]}" + ("-global" if host.endswith(".global") else ""), "namespace": ns,
                    "labels": {"meshlab.dev/traffic-policy": name}}  # fmt: skip
            route: dict[str, Any] = {"name": name}
            matchers = [
                {k: v for k, v in {"uri": m.get("uri"), "headers": {h["name"]: {"regex" if h.get("regex") else "exact": h["value"]} for h in m.get("headers", [])} or None}.items() if v}
                for m in spec.get("httpRequestMatchers", [])
            ]
            if matchers:
                route["match"] = matchers
            shift = pol.get("trafficShift", {}).get("destinations", [])
            subsets: dict[str, dict[str, str]] = {}
            if shift:
                route["route"] = []
                for t in shift:
                    ks = t["kubeService"]
                    subset = "-".join(f"{k}-{v}" for k, v in sorted(ks.get("subset", {}).items()))
                    if subset:
                        subsets[subset] = dict(ks["subset"])
                    dst: dict[str, Any] = {"host": host if ks["name"] == d["spec"]["kubeService"]["ref"]["name"] else f"{ks['name']}.{ks['namespace']}.svc.cluster.local"}
                    if subset:
                        dst["subset"] = subset
                    if "port" in ks:
                        dst["port"] = {"number": ks["port"]}
                    route["route"].append({"destination": dst, **({"weight": t["weight"]} if "weight" in t else {})})
            else:
                route["route"] = [{"destination": {"host": host}}]
            if "requestTimeout" in pol:
                route["timeout"] = pol["requestTimeout"]
            if "retries" in pol:
                route["retries"] = {k: v for k, v in pol["retries"].items()}
            if "faultInjection" in pol:
                fi = pol["faultInjection"]
                pct = {"value": float(fi.get("percentage", 100))}
                route["fault"] = {"delay": {"fixedDelay": fi["fixedDelay"], "percentage": pct}} if "fixedDelay" in fi else {"abort": {"httpStatus": fi["abort"]["httpStatus"], "percentage": pct}}
            vs_needed = any(k in pol for k in ("trafficShift", "requestTimeout", "retries", "faultInjection")) or matchers
            if vs_needed:
                out.setdefault(cp, []).append(
                    {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": meta, "spec": {"hosts": [host], "http": [route]}}
                )
            tp: dict[str, Any] = {}
            if "outlierDetection" in pol:
                # Gloo Mesh's defaults (traffic_policy.proto): 5 errors, 10s, 30s, and up to 100% of hosts ejected
                od = {**OUTLIER_DEFAULTS, **pol["outlierDetection"]}
                tp["outlierDetection"] = {"consecutive5xxErrors": od["consecutiveErrors"], "interval": od["interval"],
                                          "baseEjectionTime": od["baseEjectionTime"], "maxEjectionPercent": od["maxEjectionPercent"]}  # fmt: skip
            if "mtls" in pol:
                tp["tls"] = {"mode": pol["mtls"]["istio"]["tlsMode"]}
            if tp or subsets:
                dr_spec: dict[str, Any] = {"host": host}
                if tp:
                    dr_spec["trafficPolicy"] = tp
                if subsets:
                    dr_spec["subsets"] = [{"name": n, "labels": lab} for n, lab in sorted(subsets.items())]
                out.setdefault(cp, []).append({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": meta, "spec": dr_spec})
    return out


def access_policy(doc: dict[str, Any], disc: Discovery, topology: Any) -> dict[str, list[dict[str, Any]]]:
    """An ALLOW AuthorizationPolicy on each selected Destination's workloads, in the cluster that runs them."""
    spec = doc["spec"]
    name = doc["metadata"]["name"]
    principals: list[str] = []
    for s in spec.get("sourceSelector", []):
        for sa in s.get("kubeServiceAccountRefs", {}).get("serviceAccounts", []):
            clusters = [sa["clusterName"]] if sa.get("clusterName") else list(topology.clusters)
            for c in clusters:
                principals.append(f"{topology.trust_domain(c)}/ns/{sa['namespace']}/sa/{sa['name']}")
        m = s.get("kubeIdentityMatcher")
        if m:
            tds = {topology.trust_domain(c) for c in (m.get("clusters") or topology.clusters)}
            for td in sorted(tds):
                for ns in m.get("namespaces") or ["*"]:
                    principals.append(f"{td}/ns/{ns}/sa/*")
    rule: dict[str, Any] = {}
    if principals:
        rule["from"] = [{"source": {"principals": sorted(set(principals))}}]
    op = {k: v for k, v in {"paths": spec.get("allowedPaths"), "methods": spec.get("allowedMethods"),
                            "ports": [str(p) for p in spec.get("allowedPorts", [])] or None}.items() if v}  # fmt: skip
    if op:
        rule["to"] = [{"operation": op}]
    out: dict[str, list[dict[str, Any]]] = {}
    for d in selected(disc, spec.get("destinationSelector", [])):
        ref = d["spec"]["kubeService"]["ref"]
        cp = topology.clusters[ref["clusterName"]].control_plane
        ap = {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": f"{name}-{ref['name']}", "namespace": ref["namespace"], "labels": {"meshlab.dev/access-policy": name}},
            "spec": {"selector": {"matchLabels": dict(d["spec"]["kubeService"]["workloadSelectorLabels"])}, "action": "ALLOW", "rules": [rule]},
        }
        if ap not in out.setdefault(cp, []):
            out[cp].append(ap)
    return out


def global_access(topology: Any, control_planes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """VirtualMesh ``globalAccessPolicy: ENABLED``: deny everything AccessPolicies do not allow (an empty
    AuthorizationPolicy in Istio's root namespace denies all requests)."""
    return {
        cp: [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "global-access-control", "namespace": "istio-system"}, "spec": {}}]
        for cp in control_planes
    }
