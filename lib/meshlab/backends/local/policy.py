"""Istio traffic policy -> Envoy, as istiod translates it.

- DestinationRule ``trafficPolicy`` -> cluster fields (load balancer, outlier detection, circuit
  breakers) and endpoint priorities/weights (locality failover, distribute, failoverPriority);
  ``subsets`` -> one more cluster per subset, ``outbound|<port>|<subset>|<fqdn>``.
- VirtualService ``http`` -> the routes of the service's virtual host (match, weighted
  destinations, retries, timeout, fault injection, mirroring).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from ...errors import ResourceError
from ...resources import envoy_duration
from . import envoy as E

DOMAIN_SUFFIX = "svc.cluster.local"
FAULT = E.T + "envoy.extensions.filters.http.fault.v3.HTTPFault"


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


def _locality_match(pattern: str, loc: tuple[str, str]) -> bool:
    return all(p in ("*", v) for p, v in zip(pattern.split("/"), loc))


def _compact(raw: list[int]) -> list[int]:
    """Priorities 0..N without gaps, in the order of ``raw`` (Envoy refuses a skipped level)."""
    dense = {p: i for i, p in enumerate(sorted(set(raw)))}
    return [dense[p] for p in raw]


def locality_priority(client: tuple[str, str], ep: E.Endpoint, failover: list[dict[str, str]]) -> int:
    """``util.LbPriority`` plus ``failover``: 0 same zone (and subzone), 2 same region, 3 another
    region; 4 when a failover rule for the client's region names a different one."""
    if ep.region == client[0]:
        return 0 if ep.zone == client[1] else 2
    for f in failover:
        if f["from"] == client[0]:
            return 3 if ep.region == f["to"] else 4
    return 3


def label_priority(client_labels: dict[str, str], ep: E.Endpoint, keys: list[str]) -> int:
    """``failoverPriority`` (applyFailoverPriorityPerLocality): 0 when the endpoint matches the client on
    every label, N - j when it first differs on label j; ``label=value`` compares with that value; a
    mismatch on a leading ``topology.istio.io/network`` only pushes the endpoint below all others."""
    names = [k.split("=", 1)[0] for k in keys]
    overrides = dict(k.split("=", 1) for k in keys if "=" in k)
    includes_network = bool(names) and names[0] == "topology.istio.io/network"
    priority, adjust = 0, 0
    for j, name in enumerate(names):
        if overrides.get(name, client_labels.get(name, "")) != ep.labels.get(name, ""):
            if j == 0 and includes_network:
                adjust = len(names)
                continue
            priority = len(names) - j
            break
    return priority + adjust


def _distribute(rule: dict[str, Any], eps: list[E.Endpoint]) -> list[E.Endpoint]:
    """``applyLocalityWeights``: each ``to`` pattern shares its weight among the localities it matches,
    in proportion to their endpoint weights (rounded up); localities no pattern matches are dropped."""
    groups: dict[tuple[str, str], list[E.Endpoint]] = {}
    for e in eps:
        groups.setdefault((e.region, e.zone), []).append(e)
    unmatched = set(groups)
    for pattern, weight in rule["to"].items():
        matched = [g for g in groups if g in unmatched and _locality_match(pattern, g)]
        unmatched -= set(matched)
        total = sum(sum(e.weight for e in groups[g]) for g in matched)
        for g in matched:
            share = -(-sum(e.weight for e in groups[g]) * weight // total) if total else 0
            if share > 0:  # a weight of 0 leaves the locality's own weight in place, as Istio does
                for e in groups[g]:
                    e.locality_weight = share
    return [e for e in eps if (e.region, e.zone) not in unmatched]


# meshConfig.localityLbSetting's default (pkg/config/mesh/mesh.go): enabled, no explicit rules
MESH_LOCALITY_LB = {"enabled": True}


def outlier_detection(od: dict[str, Any]) -> dict[str, Any]:
    """``applyOutlierDetection``: only the fields the rule sets (Envoy's defaults otherwise), success-rate
    ejection off, a set error count enforced at 100 %."""
    out: dict[str, Any] = {"enforcing_success_rate": 0}
    if "consecutive5xxErrors" in od:
        out["consecutive_5xx"] = od["consecutive5xxErrors"]
        out["enforcing_consecutive_5xx"] = 100 if od["consecutive5xxErrors"] > 0 else 0
    if "consecutiveGatewayErrors" in od:
        out["consecutive_gateway_failure"] = od["consecutiveGatewayErrors"]
        out["enforcing_consecutive_gateway_failure"] = 100 if od["consecutiveGatewayErrors"] > 0 else 0
    if "interval" in od:
        out["interval"] = envoy_duration(od["interval"])
    if "baseEjectionTime" in od:
        out["base_ejection_time"] = envoy_duration(od["baseEjectionTime"])
    if od.get("maxEjectionPercent", 0) > 0:
        out["max_ejection_percent"] = od["maxEjectionPercent"]
    return out


def apply_traffic_policy(
    policy: dict[str, Any], eps: list[E.Endpoint], client: tuple[str, str], client_labels: dict[str, str]
) -> dict[str, Any]:
    """DestinationRule trafficPolicy -> Envoy cluster fields, as istiod's cluster builder writes them
    (cluster_traffic_policy.go, loadbalancer.go); sets endpoint priorities and weights in place.

    - every cluster: Istio's unlimited circuit-breaker thresholds, and ``healthy_panic_threshold`` 0
      (Istio sends unhealthy endpoints by default), or ``outlierDetection.minHealthPercent``;
    - locality failover needs outlierDetection: without it every locality shares priority 0;
    - ``locality_weighted_lb_config`` only with ``distribute``, or with failover/failoverPriority and
      outlierDetection (ENABLE_LOCALITY_WEIGHTED_LB_CONFIG is off by default).
    """
    out: dict[str, Any] = {}
    common: dict[str, Any] = {"healthy_panic_threshold": {"value": 0}}
    lb = policy.get("loadBalancer", {})
    if "simple" in lb:
        out["lb_policy"] = lb["simple"]  # ROUND_ROBIN, LEAST_REQUEST, RANDOM: Envoy uses the same names
    od = policy.get("outlierDetection")
    if od is not None:
        out["outlier_detection"] = outlier_detection(od)
        common["healthy_panic_threshold"] = {"value": float(od.get("minHealthPercent", 0))}
    loc = lb.get("localityLbSetting", MESH_LOCALITY_LB)
    if loc.get("enabled", True):
        failover_on = od is not None
        distribute = next((r for r in loc.get("distribute", []) if _locality_match(r["from"], client)), None)
        if loc.get("distribute"):
            if distribute:
                eps[:] = _distribute(distribute, eps)
        elif failover_on:
            raw = [0] * len(eps)
            if loc.get("failoverPriority"):
                raw = _compact([label_priority(client_labels, e, loc["failoverPriority"]) for e in eps])
            if loc.get("failover") or not loc.get("failoverPriority"):
                raw = _compact([p * 5 + locality_priority(client, e, loc.get("failover", [])) for p, e in zip(raw, eps)])
            for e, p in zip(eps, raw):
                e.priority = p
        if loc.get("distribute") or (failover_on and (loc.get("failover") or loc.get("failoverPriority"))):
            common["locality_weighted_lb_config"] = {}
    out["common_lb_config"] = common
    # Istio always sets the circuit breakers: unlimited (2^32-1) unless connectionPool lowers a limit
    # -- Envoy's own defaults (1024 requests, 3 concurrent retries) never apply to a sidecar.
    thresholds: dict[str, Any] = dict(E.ISTIO_DEFAULT_THRESHOLDS)
    pool, budget = policy.get("connectionPool", {}), policy.get("retryBudget")
    tcp, http = pool.get("tcp", {}), pool.get("http", {})
    for field, value in (
        ("max_connections", tcp.get("maxConnections", 0)),
        ("max_pending_requests", http.get("http1MaxPendingRequests", 0)),
        ("max_requests", http.get("http2MaxRequests", 0)),
        ("max_retries", http.get("maxRetries", 0)),
    ):
        if value > 0:  # Istio cannot tell 0 from unset: 0 keeps the default
            thresholds[field] = value
    if budget is not None:  # Istio's defaults: 20 % of active requests, at least 3 concurrent retries
        thresholds["retry_budget"] = {
            "budget_percent": {"value": float(budget.get("percent", 20.0))},
            "min_retry_concurrency": budget.get("minRetryConcurrency") or 3,
            **({"budget_interval": envoy_duration(budget["budgetInterval"])} if "budgetInterval" in budget else {}),
        }
    out["circuit_breakers"] = {"thresholds": [thresholds]}
    if "connectTimeout" in tcp:
        out["connect_timeout"] = envoy_duration(tcp["connectTimeout"])
    if http.get("maxRequestsPerConnection", 0) > 0:
        out["max_requests_per_connection"] = http["maxRequestsPerConnection"]
    return out


def retry_policy(retries: dict[str, Any] | None) -> dict[str, Any] | None:
    """``retry.ConvertPolicy``: no ``retries`` = Istio's default; ``attempts`` 0 (or unset) = no policy;
    HTTP status codes in ``retryOn`` become ``retriable_status_codes`` (and add ``retriable-status-codes``)."""
    if retries is None:
        return dict(E.ISTIO_DEFAULT_RETRY)
    if retries.get("attempts", 0) <= 0:
        return None
    rp: dict[str, Any] = {**E.ISTIO_DEFAULT_RETRY, "num_retries": retries["attempts"]}
    if retries.get("retryOn"):
        words, codes = [], []
        for part in (p.strip() for p in retries["retryOn"].split(",")):
            if part.isdigit() and int(part) in _HTTP_CODES:
                codes.append(int(part))
            elif part:
                words.append(part)
        rp["retry_on"] = ",".join(words)
        if codes:
            rp["retriable_status_codes"] = codes
            if "retriable-status-codes" not in rp["retry_on"]:
                rp["retry_on"] += ",retriable-status-codes"
    if "perTryTimeout" in retries:
        rp["per_try_timeout"] = envoy_duration(retries["perTryTimeout"])
    if "retryIgnorePreviousHosts" in retries:
        rp["retry_host_predicate"] = [E.PREVIOUS_HOSTS] if retries["retryIgnorePreviousHosts"] else []
    if retries.get("retryRemoteLocalities"):
        rp["retry_priority"] = E.PREVIOUS_PRIORITIES
    if "backoff" in retries:
        rp["retry_back_off"] = {"base_interval": envoy_duration(retries["backoff"])}
    return rp


_HTTP_CODES = {int(s) for s in HTTPStatus}


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
            timeout = envoy_duration(h["timeout"]) if "timeout" in h else "0s"
            action: dict[str, Any] = {"timeout": timeout, "max_grpc_timeout": timeout}  # route.go setTimeout
            if len(targets) == 1:
                action["cluster"] = targets[0][0]
            else:
                if sum(w for _, w in targets) != 100:
                    raise ResourceError(f"{where}: route weights add up to {sum(w for _, w in targets)}, not 100", "make the weights sum to 100")
                action["weighted_clusters"] = {"clusters": [{"name": c, "weight": w} for c, w in targets if w]}
            rp = retry_policy(h.get("retries"))
            if rp is not None:
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
