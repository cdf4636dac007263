"""Istio traffic policy -> Envoy, as istiod translates it.

- DestinationRule ``trafficPolicy`` -> cluster fields (load balancer, outlier detection, circuit
  breakers) and endpoint priorities/weights (locality failover, distribute, failoverPriority);
  ``subsets`` -> one more cluster per subset, ``outbound|<port>|<subset>|<fqdn>``.
- VirtualService ``http`` -> the routes of the service's virtual host (match, weighted
  destinations, retries, timeout, fault injection, mirroring).
"""

from __future__ import annotations

from typing import Any

from ...errors import ResourceError
from ...resources import envoy_duration
from . import envoy as E

DOMAIN_SUFFIX = "svc.cluster.local"
FAULT = E.T + "envoy.extensions.filters.http.fault.v3.HTTPFault"
UNLIMITED = 2**32 - 1  # Istio's "no limit" for Envoy's circuit breakers (math.MaxUint32)


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
    """The DestinationRule whose ``host`` is ``fqdn`` (short hosts resolve in the rule's namespace)."""
    for r in resources:
        if r["kind"] == "DestinationRule" and resolve_host(r["spec"].get("host", ""), _ns(r)) == fqdn:
            return r
    return None


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


def _locality_match(pattern: str, loc: tuple[str, str]) -> bool:
    return all(p in ("*", v) for p, v in zip(pattern.split("/"), loc))


def locality_priority(client: tuple[str, str], ep: E.Endpoint, failover: dict[str, str]) -> int:
    """Istio's failover order: same zone, same region, the region named in ``failover``, the rest."""
    if (ep.region, ep.zone) == client:
        return 0
    if ep.region == client[0]:
        return 1
    if failover.get(client[0]) == ep.region:
        return 2
    return 3


def label_priority(client_labels: dict[str, str], ep: E.Endpoint, keys: list[str]) -> int:
    """``failoverPriority``: 0 if the endpoint matches the client on every key, 1 if on all but the last, ..."""
    matched = 0
    for k in keys:
        if k not in client_labels or ep.labels.get(k) != client_labels[k]:
            break
        matched += 1
    return len(keys) - matched


def apply_traffic_policy(
    policy: dict[str, Any], eps: list[E.Endpoint], client: tuple[str, str], client_labels: dict[str, str]
) -> dict[str, Any]:
    """DestinationRule trafficPolicy -> Envoy cluster fields; sets endpoint priorities/weights in place.

    As in Istio, locality failover needs outlierDetection: without it every locality shares priority 0.
    """
    out: dict[str, Any] = {}
    lb = policy.get("loadBalancer", {})
    if "simple" in lb:
        out["lb_policy"] = lb["simple"]  # ROUND_ROBIN, LEAST_REQUEST, RANDOM: Envoy uses the same names
    od = policy.get("outlierDetection")
    if od is not None:
        out["outlier_detection"] = {
            "consecutive_5xx": od.get("consecutive5xxErrors", 5),
            "consecutive_gateway_failure": od.get("consecutiveGatewayErrors", 5),
            "enforcing_consecutive_gateway_failure": 100 if "consecutiveGatewayErrors" in od else 0,
            "interval": envoy_duration(od.get("interval", "10s")),
            "base_ejection_time": envoy_duration(od.get("baseEjectionTime", "30s")),
            "max_ejection_percent": od.get("maxEjectionPercent", 10),
        }
        # Istio turns Envoy's panic threshold off (0) unless minHealthPercent asks for one
        out["common_lb_config"] = {"locality_weighted_lb_config": {}, "healthy_panic_threshold": {"value": float(od.get("minHealthPercent", 0))}}
    loc = lb.get("localityLbSetting", {})
    if od is not None and loc.get("enabled", True):
        if loc.get("failoverPriority"):
            raw = [label_priority(client_labels, e, loc["failoverPriority"]) for e in eps]
        else:
            failover = {f["from"]: f["to"] for f in loc.get("failover", [])}
            raw = [locality_priority(client, e, failover) for e in eps]
        dense = {p: i for i, p in enumerate(sorted(set(raw)))}  # Envoy wants priorities without gaps
        for e, p in zip(eps, raw):
            e.priority = dense[p]
    for rule in loc.get("distribute", []):
        if _locality_match(rule["from"], client):
            for e in eps:
                e.locality_weight = next((w for pat, w in rule["to"].items() if _locality_match(pat, (e.region, e.zone))), 0)
            eps[:] = [e for e in eps if e.locality_weight]  # weight 0: Istio leaves the locality out
            break
    # Istio always sets the circuit breakers: unlimited (2^32-1) unless connectionPool lowers a limit
    # -- Envoy's own defaults (1024 requests, 3 concurrent retries) never apply to a sidecar.
    pool, budget = policy.get("connectionPool", {}), policy.get("retryBudget")
    tcp, http = pool.get("tcp", {}), pool.get("http", {})
    th: dict[str, Any] = {
        "max_connections": tcp.get("maxConnections") or UNLIMITED,
        "max_pending_requests": http.get("http1MaxPendingRequests") or UNLIMITED,
        "max_requests": http.get("http2MaxRequests") or UNLIMITED,
        "max_retries": http.get("maxRetries") or UNLIMITED,
    }
    if budget is not None:  # Istio's defaults: 20 % of active requests, at least 3 concurrent retries
        th["retry_budget"] = {
            "budget_percent": {"value": float(budget.get("percent", 20.0))},
            "min_retry_concurrency": budget.get("minRetryConcurrency") or 3,
            **({"budget_interval": envoy_duration(budget["budgetInterval"])} if "budgetInterval" in budget else {}),
        }
    out["circuit_breakers"] = {"thresholds": [th]}
    if "connectTimeout" in tcp:
        out["connect_timeout"] = envoy_duration(tcp["connectTimeout"])
    if "maxRequestsPerConnection" in http:
        out["max_requests_per_connection"] = http["maxRequestsPerConnection"]
    return out


def _string_match(m: dict[str, str], where: str) -> dict[str, Any]:
    if "exact" in m:
        return {"exact": m["exact"]}
    if "prefix" in m:
        return {"prefix": m["prefix"]}
    if "regex" in m:
        return {"safe_regex": {"regex": m["regex"]}}
    raise ResourceError(f"{where}: give one of exact, prefix or regex", "e.g. {exact: /hello}")


def _percent(p: dict[str, Any] | None) -> dict[str, Any]:
    """Istio's percentage (a double, 0-100) as Envoy's FractionalPercent."""
    value = 100.0 if p is None else float(p.get("value", 0))
    return {"numerator": int(round(value * 10000)), "denominator": "MILLION"}


def http_routes(
    vs: dict[str, Any], port: int, cluster_for: "callable[[str, str, int | None], str]"  # type: ignore[valid-type]
) -> list[dict[str, Any]]:
    """VirtualService http routes -> Envoy routes for the virtual host on ``port``.

    ``cluster_for(host, subset, port)`` names the destination cluster and raises if it does not exist.
    """
    name = vs["metadata"]["name"]
    out: list[dict[str, Any]] = []
    for i, h in enumerate(vs["spec"].get("http", [])):
        where = f"VirtualService {name!r} spec.http[{i}]"
        for m in h.get("match") or [{}]:
            match: dict[str, Any] = {"prefix": "/"}
            uri = m.get("uri")
            if uri:
                sm = _string_match(uri, f"{where}.match.uri")
                match = {"path": sm["exact"]} if "exact" in sm else {"prefix": sm["prefix"]} if "prefix" in sm else {"safe_regex": sm["safe_regex"]}
            if m.get("headers"):
                match["headers"] = [
                    {"name": k, "string_match": _string_match(v, f"{where}.match.headers.{k}")} for k, v in m["headers"].items()
                ]
            routes = h.get("route", [])
            if not routes:
                raise ResourceError(f"{where}: needs at least one route destination", "add route: [{destination: {host: ...}}]")
            targets = [
                (cluster_for(r["destination"]["host"], r["destination"].get("subset", ""), r["destination"].get("port", {}).get("number")), r.get("weight", 100 if len(routes) == 1 else 0))
                for r in routes
            ]
            action: dict[str, Any] = {"timeout": envoy_duration(h["timeout"]) if "timeout" in h else "0s"}
            if len(targets) == 1:
                action["cluster"] = targets[0][0]
            else:
                if sum(w for _, w in targets) != 100:
                    raise ResourceError(f"{where}: route weights add up to {sum(w for _, w in targets)}, not 100", "make the weights sum to 100")
                action["weighted_clusters"] = {"clusters": [{"name": c, "weight": w} for c, w in targets if w]}
            retries = h.get("retries")
            if retries is None:
                action["retry_policy"] = E.ISTIO_DEFAULT_RETRY
            elif retries.get("attempts", 0) > 0:
                rp: dict[str, Any] = {
                    "retry_on": retries.get("retryOn", "connect-failure,refused-stream,unavailable,cancelled,503"),
                    "num_retries": retries["attempts"],
                    "retry_host_predicate": E.ISTIO_DEFAULT_RETRY["retry_host_predicate"],
                    "host_selection_retry_max_attempts": 5,
                }
                if "perTryTimeout" in retries:
                    rp["per_try_timeout"] = envoy_duration(retries["perTryTimeout"])
                action["retry_policy"] = rp
            mirror = h.get("mirror")
            if mirror:
                action["request_mirror_policies"] = [
                    {
                        "cluster": cluster_for(mirror["host"], mirror.get("subset", ""), mirror.get("port", {}).get("number")),
                        "runtime_fraction": {"default_value": _percent(h.get("mirrorPercentage"))},
                    }
                ]
            route: dict[str, Any] = {"name": h.get("name", f"{name}-{i}"), "match": match, "route": action}
            fault = h.get("fault")
            if fault:
                cfg: dict[str, Any] = {"@type": FAULT}
                if "delay" in fault:
                    cfg["delay"] = {"fixed_delay": envoy_duration(fault["delay"]["fixedDelay"]), "percentage": _percent(fault["delay"].get("percentage"))}
                if "abort" in fault:
                    cfg["abort"] = {"http_status": fault["abort"]["httpStatus"], "percentage": _percent(fault["abort"].get("percentage"))}
                route["typed_per_filter_config"] = {"envoy.filters.http.fault": cfg}
            out.append(route)
    return out
