"""Which Istio resources apply to a host, as istiod's push context indexes them.

Follows ``pilot/pkg/model/push_context.go`` (``destinationRule``, ``mergeDestinationRule``,
``VirtualServicesForGateway``) and ``pilot/pkg/model/config.go`` (``ResolveShortnameToFQDN``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ResourceError
from ..registry import DOMAIN_SUFFIX


def resolve_host(host: str, namespace: str) -> str:
    """A short host in a rule (``helloworld``, ``helloworld.sample``) as its FQDN, as Istio resolves it."""
    if "." not in host:
        return f"{host}.{namespace}.{DOMAIN_SUFFIX}"
    if host.count(".") == 1:
        return f"{host}.{DOMAIN_SUFFIX}"
    return host


def _ns(r: dict[str, Any]) -> str:
    return str(r.get("metadata", {}).get("namespace", "default"))


def destination_rule(resources: list[dict[str, Any]], fqdn: str) -> dict[str, Any] | None:
    """The DestinationRule in effect for ``fqdn``: every rule whose ``host`` is ``fqdn`` (short hosts
    resolve in the rule's namespace), merged as istiod's ``mergeDestinationRule`` does, oldest first:
    subsets are appended (a duplicate subset name is ignored), and the top-level ``trafficPolicy`` is
    the oldest rule's that has one. Rules with different ``exportTo`` are refused at apply
    (:func:`refuse_unmergeable`), so all of them merge here."""
    rules = [r for r in resources if r["kind"] == "DestinationRule" and resolve_host(r["spec"].get("host", ""), _ns(r)) == fqdn]
    if len(rules) < 2:
        return rules[0] if rules else None
    spec = {**rules[0]["spec"], "subsets": list(rules[0]["spec"].get("subsets", []))}
    for r in rules[1:]:
        names = {s["name"] for s in spec["subsets"]}
        spec["subsets"] += [s for s in r["spec"].get("subsets", []) if s["name"] not in names]
        if "trafficPolicy" not in spec and "trafficPolicy" in r["spec"]:
            spec["trafficPolicy"] = r["spec"]["trafficPolicy"]
    return {**rules[0], "spec": spec}


def refuse_unmergeable(doc: dict[str, Any], others: list[dict[str, Any]]) -> None:
    """Istio keeps DestinationRules of one host with different ``exportTo`` apart
    (ENABLE_ENHANCED_DESTINATIONRULE_MERGE) and picks one per client namespace: meshlab does not model
    that choice, so it refuses the rule instead of guessing."""
    if doc["kind"] != "DestinationRule":
        return
    host = resolve_host(doc["spec"].get("host", ""), _ns(doc))
    mine = set(doc["spec"].get("exportTo", []))
    for o in others:
        if o["kind"] == "DestinationRule" and resolve_host(o["spec"].get("host", ""), _ns(o)) == host and set(o["spec"].get("exportTo", [])) != mine:
            raise ResourceError(
                f"DestinationRule {doc['metadata']['name']!r}: host {host} already has DestinationRule {o['metadata']['name']!r} "
                f"with a different exportTo ({sorted(o['spec'].get('exportTo', [])) or 'unset'} vs {sorted(mine) or 'unset'})",
                "Istio keeps such rules apart and picks one per namespace, which the local backend does not model: "
                "give both the same exportTo (they then merge), or use the kind backend",
            )


def virtual_service(resources: list[dict[str, Any]], fqdn: str) -> dict[str, Any] | None:
    """The VirtualService for ``fqdn`` that applies to sidecars (no ``gateways``, or ``mesh`` among them)."""
    for r in resources:
        if r["kind"] == "VirtualService" and "mesh" in r["spec"].get("gateways", ["mesh"]) \
                and any(resolve_host(h, _ns(r)) == fqdn for h in r["spec"].get("hosts", [])):
            return r
    return None


def subsets(resources: list[dict[str, Any]], fqdn: str) -> dict[str, dict[str, str]]:
    """Subset name -> its labels, from the service's DestinationRule."""
    dr = destination_rule(resources, fqdn)
    return {s["name"]: s.get("labels", {}) for s in (dr or {}).get("spec", {}).get("subsets", [])}


def matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
