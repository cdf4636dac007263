"""Cluster-level traffic policy: a DestinationRule's ``trafficPolicy`` as Envoy cluster fields and endpoint
priorities, as istiod's cluster builder writes them.

Follows ``pilot/pkg/networking/core/cluster_builder.go``, ``cluster_traffic_policy.go``
(``applyConnectionPool``, ``applyOutlierDetection``, ``getDefaultCircuitBreakerThresholds``) and
``pilot/pkg/networking/core/loadbalancer/loadbalancer.go`` (``ApplyLocalityLoadBalancer``, ``applyLocalityFailover``,
``applyFailoverPriorityPerLocality``, ``applyLocalityWeights``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import xds as E
from ..resources import envoy_duration
from ..xds import HTTP_OPTIONS, T, UPSTREAM_TLS

# Istio's default circuit-breaker thresholds (cluster_traffic_policy.go ``getDefaultCircuitBreakerThresholds``),
# on every cluster: effectively unlimited, so Envoy's own defaults (e.g. 3 parallel retries) never apply;
# no ``track_remaining`` (DISABLE_TRACK_REMAINING_CB_METRICS defaults to true).
UNLIMITED = 2**32 - 1  # math.MaxUint32
ISTIO_DEFAULT_THRESHOLDS = {"max_connections": UNLIMITED, "max_pending_requests": UNLIMITED, "max_requests": UNLIMITED, "max_retries": UNLIMITED}


def eds_cluster(
    name: str,
    eds_file: Path,
    *,
    tls: dict[str, Any] | None,
    lb_policy: str = "LEAST_REQUEST",
    protocol_options: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An outbound EDS cluster; ``protocol_options`` (:func:`http_protocol_options`) as its HttpProtocolOptions,
    none for Envoy's default (HTTP/1.1)."""
    c: dict[str, Any] = {
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {
            "service_name": name,
            "eds_config": {"path_config_source": {"path": str(eds_file)}, "resource_api_version": "V3"},
        },
        "connect_timeout": "10s",  # meshConfig.connectTimeout's default
        "lb_policy": lb_policy,
        "circuit_breakers": {"thresholds": [dict(ISTIO_DEFAULT_THRESHOLDS)]},
        # Istio sends unhealthy endpoints by default (PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS) and so turns
        # Envoy's panic mode off; ``locality_weighted_lb_config`` only comes with a locality setting
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    }
    if protocol_options:
        c["typed_extension_protocol_options"] = {HTTP_OPTIONS: {"@type": T + HTTP_OPTIONS, **protocol_options}}
    if tls:
        c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": UPSTREAM_TLS, **tls}}
    c.update(extra or {})
    return c


# pkg/config/protocol: a Kubernetes Service port's protocol comes from its name (the part before the first
# "-"), a ServiceEntry port's from its ``protocol``; an unknown or missing one is sniffed ("UNSUPPORTED")
PROTOCOLS = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTPS", "TCP", "TLS", "MONGO", "REDIS", "MYSQL", "UDP"}


def port_protocol(name: str, declared: str = "") -> str:
    p = declared.upper() if declared else name.split("-", 1)[0].upper()
    return p if p in PROTOCOLS else "UNSUPPORTED"


def is_http2(protocol: str) -> bool:
    """``Instance.IsHTTP2``: gRPC and HTTP/2 ports."""
    return protocol in ("HTTP2", "GRPC", "GRPC-WEB")


def http_protocol_options(protocol: str, http: dict[str, Any]) -> dict[str, Any] | None:
    """An outbound cluster's HttpProtocolOptions, in istiod's order: ``shouldH2Upgrade`` (the DestinationRule's
    ``h2UpgradePolicy``; meshConfig.h2UpgradePolicy keeps its default, DO_NOT_UPGRADE, so an ``http`` port stays
    HTTP/1.1), ``applyConnectionPool`` (``maxRequestsPerConnection`` on every cluster), then
    ``setUpstreamProtocol`` (HTTP/2 for gRPC and HTTP/2 ports, the downstream protocol for sniffed ones).
    None: no options, Envoy's HTTP/1.1."""
    opts: dict[str, Any] = {}
    h2 = http.get("h2UpgradePolicy") == "UPGRADE" or is_http2(protocol)
    if http.get("maxRequestsPerConnection", 0) > 0:
        opts["common_http_protocol_options"] = {"max_requests_per_connection": http["maxRequestsPerConnection"]}
    if protocol == "UNSUPPORTED":
        opts["use_downstream_protocol_config"] = {"http_protocol_options": {}, "http2_protocol_options": {}}
    elif h2:
        opts["explicit_http_config"] = {"http2_protocol_options": {}}
    elif opts:  # clusterWrapper.build: options without a protocol get an explicit HTTP/1 config
        opts["explicit_http_config"] = {"http_protocol_options": {}}
    return opts or None


def _locality_match(pattern: str, loc: tuple[str, ...]) -> bool:
    """util.go ``LocalityMatch``: the region must match (or be ``*``); a zone or subzone that is ``*`` or left out
    matches any."""
    region, zone, subzone = (pattern.split("/", 2) + ["", ""])[:3]
    loc = (tuple(loc) + ("", ""))[:3]
    return region in ("*", loc[0]) and zone in ("*", "", loc[1]) and subzone in ("*", "", loc[2])


def _compact(raw: list[int]) -> list[int]:
    """Priorities 0..N without gaps, in the order of ``raw`` (Envoy refuses a skipped level)."""
    dense = {p: i for i, p in enumerate(sorted(set(raw)))}
    return [dense[p] for p in raw]


def locality_priority(client: tuple[str, ...], ep: E.Endpoint, failover: list[dict[str, str]]) -> int:
    """``util.LbPriority`` plus ``failover``: 0 same zone and subzone, 1 same zone, 2 same region, 3 another
    region; 4 when a failover rule for the client's region names a different one. (meshlab's proxies have no
    subzone: an endpoint with one is never in the proxy's own subzone.)"""
    client_subzone = client[2] if len(client) > 2 else ""
    if ep.region == client[0]:
        if ep.zone == client[1]:
            return 0 if ep.subzone == client_subzone else 1
        return 2
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
    groups: dict[tuple[str, str, str], list[E.Endpoint]] = {}
    for e in eps:
        groups.setdefault((e.region, e.zone, e.subzone), []).append(e)
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
    return [e for e in eps if (e.region, e.zone, e.subzone) not in unmatched]


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
    thresholds: dict[str, Any] = dict(ISTIO_DEFAULT_THRESHOLDS)
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
    return out
