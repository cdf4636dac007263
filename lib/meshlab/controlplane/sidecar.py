"""Which services a proxy is told about: the ``Sidecar`` resource's egress hosts (its *sidecar scope*).

Follows Istio 1.31 ``pilot/pkg/model/push_context.go`` ``doGetSidecarScope`` (the proxy namespace's Sidecars, those
with a matching workloadSelector first, then one without; else the root namespace's) and ``pilot/pkg/model/
sidecar.go`` ``convertIstioListenerToWrapper`` (hosts ``namespace/dnsName``: ``.`` is the Sidecar's namespace,
``*`` any namespace, a ``~`` prefix excludes) and ``selectServices`` (a service is imported by a host of its own
namespace, else by one of ``*``; exclusions win). Without a Sidecar every service is imported.

meshlab implements egress ``hosts`` only: ports, binds, capture modes, ingress listeners and
``outboundTrafficPolicy`` are refused by name when the resource is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .pushcontext import matches

ROOT_NAMESPACE = "istio-system"


def sidecar_for(resources: list[dict[str, Any]], labels: dict[str, str], namespace: str) -> dict[str, Any] | None:
    """The Sidecar that applies to a workload: in its namespace one whose workloadSelector matches it (the oldest),
    else the namespace's Sidecar without selector, else the root namespace's Sidecar without selector."""
    mine = [r for r in resources if r["kind"] == "Sidecar" and r["metadata"].get("namespace") == namespace]
    for r in mine:
        sel = (r["spec"].get("workloadSelector") or {}).get("labels")
        if sel and matches(labels, sel):
            return r
    for r in mine:
        if not (r["spec"].get("workloadSelector") or {}).get("labels"):
            return r
    root = [r for r in resources if r["kind"] == "Sidecar" and r["metadata"].get("namespace") == ROOT_NAMESPACE
            and not (r["spec"].get("workloadSelector") or {}).get("labels")]  # fmt: skip
    return root[0] if root else None


def host_subset_of(h: str, pattern: str) -> bool:
    """``host.Name.SubsetOf``: ``*`` matches every host, ``*.sample.svc.cluster.local`` the names under it."""
    if pattern == "*" or h == pattern:
        return True
    return pattern.startswith("*.") and h.endswith(pattern[1:])


@dataclass
class Scope:
    """The egress hosts of a Sidecar, by namespace (``*`` for any): imported and excluded dnsNames."""

    hosts: dict[str, list[str]] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)

    def imports(self, fqdn: str, service_namespace: str) -> bool:
        """``selectServices`` for one service: excluded by its namespace's or ``*``'s ``~`` entries, else imported by a
        host of its namespace, else by one of ``*``."""
        for ns in (service_namespace, "*"):
            if any(host_subset_of(fqdn, x) for x in self.excluded.get(ns, [])):
                return False
        return any(host_subset_of(fqdn, h) for ns in (service_namespace, "*") for h in self.hosts.get(ns, []))


def scope(sidecar: dict[str, Any] | None) -> Scope | None:
    """The import rules of a Sidecar (None: no Sidecar, every service imported). ``.`` means the Sidecar's own
    namespace; ``~ns/host`` (or ``~/host``) excludes."""
    if sidecar is None:
        return None
    own = sidecar["metadata"].get("namespace", "default")
    out = Scope()
    for listener in sidecar["spec"].get("egress", []):
        for h in listener.get("hosts", []):
            ns, _, name = h.partition("/")
            excluded = ns.startswith("~")
            ns = ns.removeprefix("~") or ("*" if excluded else ns)
            ns = own if ns == "." else ns
            (out.excluded if excluded else out.hosts).setdefault(ns, []).append(name)
    return out
