"""What a lab reads back about security, the same way on both backends: the inbound filter chains of a
port (:func:`meshlab.checks.inbound_port_chains` finds them on either backend) and the RBAC rules in them,
so a notebook's check cell reads as the sentence it teaches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .checks import inbound_port_chains

if TYPE_CHECKING:
    from .lab import Lab

RBAC_FILTER = "envoy.filters.http.rbac"


def _http_filters(chain: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for f in chain.get("filters", []) for h in f.get("typed_config", {}).get("http_filters", [])]


def inbound_chains(lab: "Lab", workload: str, cluster: str, port: int = 5000) -> list[dict[str, Any]]:
    """The inbound filter chains of ``workload`` for ``port``: each one's transport protocol, ALPN match,
    whether it terminates TLS (and requires a client certificate), and its HTTP filters' names."""
    out = []
    for chain in inbound_port_chains(lab, workload, cluster, port)[1]:
        match = chain.get("filter_chain_match", {})
        tls = chain.get("transport_socket", {}).get("typed_config", {})
        out.append({
            "transport_protocol": match.get("transport_protocol", "any"),
            "alpn": match.get("application_protocols", []),
            "terminates_tls": bool(tls),
            "requires_client_cert": bool(tls.get("require_client_certificate")),
            "http_filters": [h.get("name", "") for h in _http_filters(chain)],
        })  # fmt: skip
    return out


def rbac_rules(lab: "Lab", workload: str, cluster: str, port: int = 5000) -> list[dict[str, Any]]:
    """The RBAC filters on ``workload``'s inbound side for ``port``, in order: action, policy names and
    the principals (SPIFFE IDs) each filter matches exactly (every chain of a port has the same ones)."""
    chains = inbound_port_chains(lab, workload, cluster, port)[1]
    out = []
    for h in _http_filters(chains[0]) if chains else []:
        if h.get("name") == RBAC_FILTER:
            rules = h.get("typed_config", {}).get("rules", {})
            policies = rules.get("policies", {})
            out.append({"action": rules.get("action", "ALLOW"), "policies": sorted(policies), "principals": sorted(_exact_principals(policies))})
    return out


def _exact_principals(node: Any) -> set[str]:
    """Every ``authenticated.principal_name.exact`` below ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        exact = node.get("authenticated", {}).get("principal_name", {}).get("exact") if "authenticated" in node else None
        if exact:
            found.add(exact)
        for v in node.values():
            found |= _exact_principals(v)
    elif isinstance(node, list):
        for v in node:
            found |= _exact_principals(v)
    return found
