"""Istio's standard metrics on the local backend: what each sidecar needs to produce and expose them.

- The ``istio-stats`` Wasm filter (``wasm-filters/istio-stats``, C on the raw proxy-wasm ABI) runs
  last before the router in the outbound HTTP connection manager (``reporter=source``) and in every
  inbound one (``reporter=destination``); it exchanges peer metadata in a request/response header
  and defines ``istio_requests_total`` / ``istio_request_duration_milliseconds`` with the labels
  encoded in the stat name.
- The bootstrap's ``stats_config.stats_tags`` turns those encoded labels into Envoy tags (one regex
  per label, the mechanism Istio's bootstrap used for its Wasm stats), so Envoy's
  ``/stats/prometheus`` prints ``istio_requests_total{reporter="source",...}``.
- Like Istio's bootstrap, each sidecar has a ``0.0.0.0_15090`` listener that serves
  ``/stats/prometheus`` from the admin API (here: the admin Unix socket), for Prometheus to scrape.
"""

from __future__ import annotations

import json
from typing import Any

from .. import xds as E
from .extensions import STRING_VALUE, V8, WASM_FILTER

STATS_PORT = 15090  # Istio's ENVOY_PROMETHEUS_PORT (pilot/cmd/pilot-agent/options/options.go)
ROOT_ID = "istio_stats"
PEER_HEADER = "x-meshlab-peer-metadata"
LABELS = (
    "reporter",
    "source_workload", "source_workload_namespace", "source_app", "source_version", "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_app", "destination_version",
    "destination_cluster", "destination_service", "destination_service_name", "destination_service_namespace",
    "request_protocol", "response_code", "response_flags", "connection_security_policy",
)  # fmt: skip


def stats_config() -> dict[str, Any]:
    """Tag extraction for the filter's names (``...;.source_cluster=cluster1;...``): the first group is
    cut from the name, the second is the label's value. Harmless for proxies without the filter."""
    return {"stats_tags": [{"tag_name": label, "regex": rf"(\.{label}=([^;]*);)"} for label in LABELS]}


def plugin_config(reporter: str, workload: Any, cluster: str, service: str = "", services: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """Who this proxy is, for the filter: the workload is the Deployment, as Istio's labels name it. ``services``
    (client side): each outbound host's service as its cluster's metadata says, ``host=name/namespace,...``."""
    cfg = {
        "reporter": reporter, "workload": workload.deployment, "namespace": workload.namespace,
        "app": workload.app, "version": workload.version, "cluster": cluster,
    }  # fmt: skip
    if service:
        cfg["service"] = service
    if services:
        cfg["services"] = ",".join(f"{h}={m['name']}/{m['namespace']}" for h, m in sorted(services.items()))
    return cfg


def stats_filter(module: dict[str, Any], config: dict[str, str]) -> dict[str, Any]:
    """The filter for one connection manager; every proxy shares one VM per module (same vm_id)."""
    return {
        "name": "istio.stats",
        "typed_config": {
            "@type": WASM_FILTER,
            "config": {
                "name": "istio.stats",
                "root_id": ROOT_ID,
                "vm_config": {"vm_id": f"istio-stats@{module['sha256'][:12]}", "runtime": V8, "code": {"local": {"filename": module["path"]}}},
                "configuration": {"@type": STRING_VALUE, "value": json.dumps(config, separators=(",", ":"))},
                # a broken stats filter must not take traffic down with it
                "failure_policy": "FAIL_OPEN",
            },
        },
    }


def stats_listener(address: str) -> dict[str, Any]:
    """Istio's ``0.0.0.0_15090``: ``/stats/prometheus`` proxied to the admin API, nothing else."""
    # the listener may arrive while its cluster still warms (both come in one push): do not reject the route for it
    route = {"validate_clusters": False,
             "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [{"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}]}]}
    hcm = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": E.HCM,
            "stat_prefix": "stats",
            "route_config": route,
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": E.ROUTER}}],
        },
    }
    return {**E.listener(f"0.0.0.0_{STATS_PORT}", address, STATS_PORT), "filter_chains": [{"filters": [hcm]}]}


def stats_cluster(admin_socket: str) -> dict[str, Any]:
    """Istio's ``prometheus_stats`` cluster: the admin API (a Unix socket here, 127.0.0.1:15000 in Istio)."""
    return {
        "name": "prometheus_stats",
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "load_assignment": {"cluster_name": "prometheus_stats", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": admin_socket}}}}]}]},
    }


# ---- access logging (pilot/pkg/model/telemetry.go, pilot/pkg/networking/core/accesslog.go) -------------------
ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace


def _telemetries(resources: list[dict[str, Any]], labels: dict[str, str], namespace: str) -> list[list[dict[str, Any]]]:
    """``applicableTelemetries``: the accessLogging lists that apply to a proxy, in order -- the root namespace's
    namespace-wide Telemetry, the proxy's namespace's, then those of its namespace whose selector matches it.
    Only the first (oldest) namespace-wide Telemetry of a namespace counts (``namespaceWideTelemetryConfig``)."""
    tels = [r for r in resources if r.get("kind") == "Telemetry"]

    def ns_of(r: dict[str, Any]) -> str:
        return str((r.get("metadata") or {}).get("namespace", "default"))

    def selector(r: dict[str, Any]) -> dict[str, str]:
        return dict(((r.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})

    def namespace_wide(ns: str) -> dict[str, Any] | None:
        return next((r for r in tels if ns_of(r) == ns and not selector(r)), None)

    out = []
    scopes = [namespace_wide(ROOT_NAMESPACE)] + ([namespace_wide(namespace)] if namespace != ROOT_NAMESPACE else [])
    scopes += [r for r in tels if ns_of(r) == namespace and selector(r) and all(labels.get(k) == v for k, v in selector(r).items())]
    for r in scopes:
        logging = (r or {}).get("spec", {}).get("accessLogging") or []
        if logging:
            out.append(logging)
    return out


def _mode_matches(entry: dict[str, Any], mode: str) -> bool:
    """``matchWorkloadMode``: no match, or CLIENT_AND_SERVER, or the listener's own mode."""
    want = (entry.get("match") or {}).get("mode", "CLIENT_AND_SERVER")
    return want in ("CLIENT_AND_SERVER", mode)


def _merge_logs(logs: list[list[dict[str, Any]]], mode: str) -> dict[str, bool]:
    """``mergeLogs``: provider -> disabled. A later (narrower) entry overrides an earlier one; an entry without
    providers inherits its parent's; meshConfig.defaultProviders.accessLogging is empty by default."""
    names: list[str] = []
    for scope in logs:
        found = {p["name"].lower() for e in scope if _mode_matches(e, mode) for p in e.get("providers", [])}
        if found:
            names = sorted(found)
    providers: dict[str, bool] = {}
    parent: list[str] = []
    for scope in logs:
        for e in scope:
            entry_names = [p["name"].lower() for p in e.get("providers", [])] or parent
            parent = entry_names
            for name in entry_names:
                if name in names and _mode_matches(e, mode):
                    providers[name] = bool(e.get("disabled", False))
    return providers


def access_log_enabled(resources: list[dict[str, Any]], labels: dict[str, str], namespace: str, mode: str) -> bool:
    """Whether a proxy's connection managers of ``mode`` (CLIENT: outbound and gateways; SERVER: inbound) write
    an access log: the Telemetry API's ``envoy`` provider, not disabled (``AccessLogging`` and
    ``buildAccessLogFromTelemetry``). Without any Telemetry, meshConfig.accessLogFile decides, and it is empty by
    default (Istio's default profile writes no access log)."""
    return _merge_logs(_telemetries(resources, labels, namespace), mode).get("envoy") is False
