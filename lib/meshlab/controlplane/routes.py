"""HTTP routes: a VirtualService's ``http`` rules as the routes of a service's virtual host (match, weighted
destinations, retries, timeout, fault injection, mirroring), and Istio's default routes.

Follows ``pilot/pkg/networking/core/route/route.go`` (``BuildHTTPRoutesForVirtualService``,
``BuildDefaultHTTPInboundRoute``, ``TranslateFault``) and ``route/retry/retry.go`` (``DefaultPolicy``,
``ConvertPolicy``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from ..errors import ResourceError
from ..resources import envoy_duration
from ..xds import T

FAULT = T + "envoy.extensions.filters.http.fault.v3.HTTPFault"

# Istio's default route retry policy (istio/istio pilot/pkg/networking/core/route/retry/retry.go,
# ``DefaultPolicy``): no retriable status codes, so a 503 from the upstream is NOT retried (since 1.24).
PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {"@type": T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
}
# ``retryRemoteLocalities: true``: a retry may leave the priority level it failed in
PREVIOUS_PRIORITIES = {
    "name": "envoy.retry_priorities.previous_priorities",
    "typed_config": {"@type": T + "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig", "update_frequency": 2},
}
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
ISTIO_DEFAULT_RETRY = {
    "retry_on": DEFAULT_RETRY_ON,
    "num_retries": 2,
    "retry_host_predicate": [PREVIOUS_HOSTS],
    "host_selection_retry_max_attempts": 5,
}
# The inbound route's policy (route.go ``BuildDefaultHTTPInboundRoute``, non-gRPC ports): retry a
# request only when the connection to the app was reset before the request was sent.
ISTIO_INBOUND_RETRY = {"retry_on": "reset-before-request", "num_retries": 2}


def retry_policy(retries: dict[str, Any] | None) -> dict[str, Any] | None:
    """``retry.ConvertPolicy``: no ``retries`` = Istio's default; ``attempts`` 0 (or unset) = no policy;
    HTTP status codes in ``retryOn`` become ``retriable_status_codes`` (and add ``retriable-status-codes``)."""
    if retries is None:
        return dict(ISTIO_DEFAULT_RETRY)
    if retries.get("attempts", 0) <= 0:
        return None
    rp: dict[str, Any] = {**ISTIO_DEFAULT_RETRY, "num_retries": retries["attempts"]}
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
        rp["retry_host_predicate"] = [PREVIOUS_HOSTS] if retries["retryIgnorePreviousHosts"] else []
    if retries.get("retryRemoteLocalities"):
        rp["retry_priority"] = PREVIOUS_PRIORITIES
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


def _percent(p: dict[str, Any]) -> dict[str, Any]:
    """``translatePercentToFractionalPercent``: Istio's percentage (a double, 0-100) as millionths, the float
    product truncated (``uint32(p.Value * 10000)``)."""
    return {"numerator": int(float(p.get("value", 0)) * 10000), "denominator": "MILLION"}


def _mirror_fraction(h: dict[str, Any]) -> dict[str, Any] | None:
    """``MirrorPercent``: 100 % (of a HUNDRED) without ``mirrorPercentage``; none at all when it is 0."""
    p = h.get("mirrorPercentage")
    if p is None:
        return {"numerator": 100, "denominator": "HUNDRED"}
    return _percent(p) if float(p.get("value", 0)) > 0 else None


def fault_config(fault: dict[str, Any]) -> dict[str, Any]:
    """``TranslateFault``: without ``percentage`` an abort has none (Envoy reads 0 %) and a delay takes the
    deprecated integer ``percent``, 0 when unset -- a fault without percentage applies to no request
    (istio/istio#36303)."""
    cfg: dict[str, Any] = {"@type": FAULT}
    if "delay" in fault:
        d = fault["delay"]
        pct = _percent(d["percentage"]) if "percentage" in d else {"numerator": int(d.get("percent", 0)), "denominator": "HUNDRED"}
        cfg["delay"] = {"fixed_delay": envoy_duration(d["fixedDelay"]), "percentage": pct}
    if "abort" in fault:
        a = fault["abort"]
        cfg["abort"] = {"http_status": a["httpStatus"], **({"percentage": _percent(a["percentage"])} if "percentage" in a else {})}
    return cfg


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
            if mirror and (fraction := _mirror_fraction(h)) is not None:
                action["request_mirror_policies"] = [
                    {
                        "cluster": cluster_for(mirror["host"], mirror.get("subset", ""), mirror.get("port", {}).get("number")),
                        "runtime_fraction": {"default_value": fraction},
                    }
                ]
            # TranslateRoute: Name = the http route's name, nothing when it has none
            route: dict[str, Any] = {**({"name": h["name"]} if h.get("name") else {}), "match": match, "route": action,
                                     "decorator": {"operation": route_operation(match, action, name, port)}}
            if h.get("fault"):
                route["typed_per_filter_config"] = {"envoy.filters.http.fault": fault_config(h["fault"])}
            out.append(route)
    return out


def route_operation(match: dict[str, Any], action: dict[str, Any], vs_name: str, port: int) -> str:
    """A route's span operation name (route.go ``GetRouteOperation``): ``<host>:<port><path>`` for a single
    destination cluster, else ``<VirtualService name>:<port><path>``; the path is the prefix + ``*``, the exact
    path, or the regex."""
    path = match["prefix"] + "*" if "prefix" in match else match.get("path") or match.get("safe_regex", {}).get("regex") or "/*"
    cluster = action.get("cluster", "")
    if cluster.count("|") == 3:
        _, p, _, host = cluster.split("|")
        return f"{host}:{p}{path}"
    return f"{vs_name}:{port}{path}"

