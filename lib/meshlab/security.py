"""What a lab reads back about security, the same way on both backends.

A sidecar's inbound side for one port is a filter chain (or several) on the local backend's
``<podIP>_<port>`` listener, and on Istio's ``virtualInbound`` listener (iptables sends inbound
traffic to 15006) among the chains matching that destination port. These helpers return the same
summary from either, so a notebook's check cell reads as the sentence it teaches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .lab import Lab

RBAC_FILTER = "envoy.filters.http.rbac"


def inbound_chains(lab: "Lab", workload: str, cluster: str, port: int = 5000) -> list[dict[str, Any]]:
    """The inbound filter chains of ``workload`` for ``port``: each one's transport protocol, ALPN match,
    whether it terminates TLS (and requires a client certificate), and its HTTP filters' names."""
    out = []
    for entry in lab.envoy_config(workload, cluster, "dynamic_listeners").get("configs", []):
        lis = entry.get("active_state", {}).get("listener", {})
        name = lis.get("name", "")
        for chain in lis.get("filter_chains", []):
            match = chain.get("filter_chain_match", {})
            if name == "virtualInbound":
                if match.get("destination_port") != port:
                    continue
            elif not (name.endswith(f"_{port}") and not name.startswith("0.0.0.0")):
                continue
            tls = chain.get("transport_socket", {}).get("typed_config", {})
            filters = []
            for f in chain.get("filters", []):
                filters += [h.get("name", "") for h in f.get("typed_config", {}).get("http_filters", [])]
            out.append({
                "transport_protocol": match.get("transport_protocol", "any"),
                "alpn": match.get("application_protocols", []),
                "terminates_tls": bool(tls),
                "requires_client_cert": bool(tls.get("require_client_certificate")),
                "http_filters": filters,
            })  # fmt: skip
    return out


def rbac_rules(lab: "Lab", workload: str, cluster: str, port: int = 5000) -> list[dict[str, Any]]:
    """The RBAC filters on ``workload``'s inbound side for ``port``, in order: action, policy names and
    the principals (SPIFFE IDs) each policy matches exactly."""
    out = []
    for entry in lab.envoy_config(workload, cluster, "dynamic_listeners").get("configs", []):
        lis = entry.get("active_state", {}).get("listener", {})
        name = lis.get("name", "")
        for chain in lis.get("filter_chains", []):
            if name == "virtualInbound" and chain.get("filter_chain_match", {}).get("destination_port") != port:
                continue
            if name not in ("virtualInbound",) and not name.endswith(f"_{port}"):
                continue
            for f in chain.get("filters", []):
                for h in f.get("typed_config", {}).get("http_filters", []):
                    if h.get("name") != RBAC_FILTER:
                        continue
                    rules = h.get("typed_config", {}).get("rules", {})
                    policies = rules.get("policies", {})
                    out.append({
                        "action": rules.get("action", "ALLOW"),
                        "policies": sorted(policies),
                        "principals": sorted(_exact_principals(policies)),
                    })  # fmt: skip
            if out:
                return out  # every chain of the port carries the same filters
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
