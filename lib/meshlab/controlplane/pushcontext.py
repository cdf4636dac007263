"""Which Istio resources apply to a host, as istiod's push context indexes them.

Follows ``pilot/pkg/model/push_context.go`` (``destinationRule``, ``mergeDestinationRule``,
``VirtualServicesForGateway``) and ``pilot/pkg/model/config.go`` (``ResolveShortnameToFQDN``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ResourceError
from ..registry import DOMAIN_SUFFIX


ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace


def resolve_host(host: str, namespace: str) -> str:
    """``ResolveShortnameToFQDN``: only a name without a dot is short (``helloworld`` in namespace ``sample`` is
    ``helloworld.sample.svc.cluster.local``); anything with a dot (``helloworld.sample``), ``*`` and IP addresses
    are taken as written."""
    if host == "*" or "." in host or ":" in host:
        return host
    return f"{host}.{namespace}.{DOMAIN_SUFFIX}"


def _ns(r: dict[str, Any]) -> str:
    return str(r.get("metadata", {}).get("namespace", "default"))


def _merge(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """``mergeDestinationRule`` of the rules of one host in one namespace, oldest first: subsets appended (a
    duplicate name ignored), the oldest top-level ``trafficPolicy`` kept."""
    if len(rules) == 1:
        return rules[0]
    spec = {**rules[0]["spec"], "subsets": list(rules[0]["spec"].get("subsets", []))}
    for r in rules[1:]:
        names = {s["name"] for s in spec["subsets"]}
        spec["subsets"] += [s for s in r["spec"].get("subsets", []) if s["name"] not in names]
        if "trafficPolicy" not in spec and "trafficPolicy" in r["spec"]:
            spec["trafficPolicy"] = r["spec"]["trafficPolicy"]
    return {**rules[0], "spec": spec}


def _most_specific(by_host: dict[str, list[dict[str, Any]]], fqdn: str) -> list[dict[str, Any]] | None:
    """``MostSpecificHostMatch``: the rules of the exact host, else of the longest wildcard host that matches."""
    if fqdn in by_host:
        return by_host[fqdn]
    wild = [h for h in by_host if h.startswith("*") and fqdn.endswith(h[1:])]
    return by_host[max(wild, key=len)] if wild else None


def _index(rules: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_host: dict[str, list[dict[str, Any]]] = {}
    for r in rules:
        by_host.setdefault(resolve_host(r["spec"].get("host", ""), _ns(r)), []).append(r)
    return by_host


def _exported(r: dict[str, Any], client_namespace: str) -> bool:
    export = set(r["spec"].get("exportTo", []))
    return not export or "*" in export or client_namespace in export or (client_namespace == _ns(r) and "." in export)


def destination_rule(resources: list[dict[str, Any]], fqdn: str, client_namespace: str, service_namespace: str) -> dict[str, Any] | None:
    """The DestinationRule a proxy in ``client_namespace`` uses for ``fqdn`` (push_context.go ``destinationRule``):
    the rules of the client's own namespace, else those the service's namespace exports to it, else those the root
    namespace exports to it -- each the most specific host match (``MostSpecificHostMatch``), merged only within
    that one namespace (``setDestinationRules``)."""
    drs = [r for r in resources if r["kind"] == "DestinationRule"]

    def visible_in_own(r: dict[str, Any]) -> bool:  # the namespace-local index: exported to its own namespace
        export = set(r["spec"].get("exportTo", []))
        return not export or bool(export & {"*", ".", _ns(r)})

    def private_only(r: dict[str, Any]) -> bool:
        export = set(r["spec"].get("exportTo", []))
        return len(export) == 1 and bool(export & {".", _ns(r)})

    if client_namespace != ROOT_NAMESPACE:
        found = _most_specific(_index([r for r in drs if _ns(r) == client_namespace and visible_in_own(r)]), fqdn)
    else:
        found = _most_specific(_index([r for r in drs if _ns(r) == ROOT_NAMESPACE and private_only(r)]), fqdn)
    if found:
        return _merge(found)
    for ns in dict.fromkeys([service_namespace, ROOT_NAMESPACE]):
        found = _most_specific(_index([r for r in drs if _ns(r) == ns and not private_only(r)]), fqdn)
        visible = [r for r in found or [] if _exported(r, client_namespace)]
        if visible:
            return _merge(visible)
    return None


def refuse_unmergeable(doc: dict[str, Any], others: list[dict[str, Any]]) -> None:
    """Istio keeps DestinationRules of one host and namespace with different ``exportTo`` apart
    (ENABLE_ENHANCED_DESTINATIONRULE_MERGE) and picks one per client namespace: meshlab does not model
    that choice, so it refuses the rule instead of guessing. (Rules in different namespaces never merge.)"""
    if doc["kind"] != "DestinationRule":
        return
    host = resolve_host(doc["spec"].get("host", ""), _ns(doc))
    mine = set(doc["spec"].get("exportTo", []))
    for o in others:
        if o["kind"] == "DestinationRule" and _ns(o) == _ns(doc) and resolve_host(o["spec"].get("host", ""), _ns(o)) == host \
                and set(o["spec"].get("exportTo", [])) != mine:
            raise ResourceError(
                f"DestinationRule {doc['metadata']['name']!r}: host {host} already has DestinationRule {o['metadata']['name']!r} "
                f"in namespace {_ns(doc)} with a different exportTo ({sorted(o['spec'].get('exportTo', [])) or 'unset'} vs {sorted(mine) or 'unset'})",
                "Istio keeps such rules apart and picks one per namespace, which the local backend does not model: "
                "give both the same exportTo (they then merge), or use the kind backend",
            )


def virtual_service(resources: list[dict[str, Any]], fqdn: str, client_namespace: str | None = None) -> dict[str, Any] | None:
    """The VirtualService for ``fqdn`` that applies to sidecars (no ``gateways``, or ``mesh`` among them); its
    hosts resolve as ``ResolveShortnameToFQDN`` does (wildcard hosts for sidecars are refused at apply). With
    ``client_namespace``, only one its ``exportTo`` makes visible there (``initVirtualServices``: ``*`` by default
    (meshConfig.defaultVirtualServiceExportTo), ``.`` its own namespace, ``~`` none, namespaces by name)."""
    for r in resources:
        if r["kind"] == "VirtualService" and "mesh" in r["spec"].get("gateways", ["mesh"]) \
                and any(resolve_host(h, _ns(r)) == fqdn for h in r["spec"].get("hosts", [])) \
                and (client_namespace is None or _exported(r, client_namespace)):
            return r
    return None


def subsets(rule: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """Subset name -> its labels, from the DestinationRule in effect."""
    dr = rule
    return {s["name"]: s.get("labels", {}) for s in (dr or {}).get("spec", {}).get("subsets", [])}


def matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


DEFAULT_CLUSTER_LOCAL = ("*.kube-system.svc.cluster.local", "kubernetes.default.svc.cluster.local")  # cluster_local.go defaults


def cluster_local_hosts(service_settings: list[dict[str, Any]]) -> dict[str, bool]:
    """``clusterLocalProvider.onMeshUpdated``: meshConfig.serviceSettings as host -> clusterLocal; a setting with
    clusterLocal false for a default host (kube-system, kubernetes.default) removes that default."""
    hosts: dict[str, bool] = {}
    defaults = list(DEFAULT_CLUSTER_LOCAL)
    for ss in service_settings:
        local = bool((ss.get("settings") or {}).get("clusterLocal", False))
        for h in ss.get("hosts", []):
            if not local:
                defaults = [d for d in defaults if not (h == d or (d.startswith("*") and h.endswith(d[1:])))]
            hosts[h] = local
    for d in defaults:
        hosts.setdefault(d, True)
    return hosts


def is_cluster_local(fqdn: str, hosts: dict[str, bool]) -> bool:
    """``ClusterLocalHosts.IsClusterLocal``: the most specific match (the exact host, else the longest wildcard)."""
    if fqdn in hosts:
        return hosts[fqdn]
    wild = [h for h in hosts if h.startswith("*") and (h == "*" or fqdn.endswith(h[1:]))]
    return hosts[max(wild, key=len)] if wild else False
