"""Tracing, as istiod configures it: which ``Telemetry`` applies to a proxy, and the ``tracing`` block of each
HTTP connection manager.

Follows Istio 1.31:

- ``pilot/pkg/model/telemetry.go`` ``Telemetries.Tracing``: the root namespace's ``Telemetry``, then the proxy's
  namespace's (then one selecting the workload) -- later ones override, field by field; ``match.mode`` limits a
  rule to the client (outbound) or server (inbound) side; no provider means tracing is disabled;
- ``pilot/pkg/networking/core/tracing.go``: ``configureTracingFromTelemetry`` (the client spec for outbound
  listeners and gateways, the server spec for inbound), ``configureFromProviderConfig`` + ``otelConfig`` (the
  OpenTelemetry tracer exporting over gRPC to the provider service's outbound cluster, ``service_name`` = the
  proxy's service cluster), ``buildHCMTracing`` (``spawn_upstream_span`` for routers only), ``configureSampling``
  (client 100 %, overall 100 %, random = the percentage) and ``configureCustomTags`` (Istio's tags, sorted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .pushcontext import matches

OTEL_TRACER = "envoy.tracers.opentelemetry"
OTEL_CONFIG = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
DEFAULT_SAMPLING = 1.0  # features.TraceSampling (PILOT_TRACE_SAMPLING) when neither Telemetry nor ProxyConfig sets one
ROOT_NAMESPACE = "istio-system"
RBAC_FILTER = "envoy.filters.http.rbac"
# optionalPolicyTags: the authorization dry-run results, read from the RBAC filter's dynamic metadata
DRY_RUN_TAGS = (
    ("istio.authorization.dry_run.allow_policy.name", "istio_dry_run_allow_shadow_effective_policy_id"),
    ("istio.authorization.dry_run.allow_policy.result", "istio_dry_run_allow_shadow_engine_result"),
    ("istio.authorization.dry_run.deny_policy.name", "istio_dry_run_deny_shadow_effective_policy_id"),
    ("istio.authorization.dry_run.deny_policy.result", "istio_dry_run_deny_shadow_engine_result"),
)


@dataclass
class Spec:
    """``model.TracingSpec`` of one side (client or server)."""

    provider: str | None = None
    disabled: bool = False
    sampling: float | None = None  # randomSamplingPercentage
    custom_tags: dict[str, Any] | None = None
    enable_istio_tags: bool = True
    use_request_id_for_trace_sampling: bool = True
    disable_context_propagation: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def applicable(resources: list[dict[str, Any]], labels: dict[str, str], namespace: str) -> list[dict[str, Any]]:
    """The Telemetry resources that apply to a proxy, least specific first (``applicableTelemetries``): the root
    namespace's namespace-wide one (the first, in creation order), the proxy namespace's, then every one of the
    proxy's namespace whose selector matches it."""
    tel = [r for r in resources if r["kind"] == "Telemetry"]

    def wide(ns: str) -> list[dict[str, Any]]:
        return [r for r in tel if r["metadata"].get("namespace") == ns and not r["spec"].get("selector")][:1]

    out = wide(ROOT_NAMESPACE)
    if namespace != ROOT_NAMESPACE:
        out += wide(namespace)
        out += [r for r in tel if r["metadata"].get("namespace") == namespace and r["spec"].get("selector")
                and matches(labels, r["spec"]["selector"].get("matchLabels", {}))]  # fmt: skip
    return out


def specs(resources: list[dict[str, Any]], labels: dict[str, str], namespace: str) -> tuple[Spec, Spec] | None:
    """``Telemetries.Tracing``: (client, server), or None when no Telemetry configures tracing."""
    rules = [t for r in applicable(resources, labels, namespace) for t in r["spec"].get("tracing", [])]
    if not rules:
        return None
    client, server = Spec(), Spec()
    for m in rules:
        mode = (m.get("match") or {}).get("mode", "CLIENT_AND_SERVER")
        sides = [client] if mode == "CLIENT" else [server] if mode == "SERVER" else [client, server]
        names = [p["name"] for p in m.get("providers", [])]
        for s in sides:
            if names:
                s.provider = names[0]  # one provider per mode: the first
            if "disableSpanReporting" in m:
                s.disabled = bool(m["disableSpanReporting"])
            if "customTags" in m:
                s.custom_tags = m["customTags"]
            if "randomSamplingPercentage" in m:
                s.sampling = float(m["randomSamplingPercentage"])
            if "useRequestIdForTraceSampling" in m:
                s.use_request_id_for_trace_sampling = bool(m["useRequestIdForTraceSampling"])
            if "enableIstioTags" in m:
                s.enable_istio_tags = bool(m["enableIstioTags"])
            if "disableContextPropagation" in m:
                s.disable_context_propagation = bool(m["disableContextPropagation"])
    for s in (client, server):
        if s.provider is None:
            s.disabled = True
    return client, server


@dataclass(frozen=True)
class Proxy:
    """What tracing.go reads of the proxy: its service cluster, labels, mesh, namespace and cluster."""

    service_cluster: str  # the bootstrap's node.cluster: <app>.<namespace> (pkg/bootstrap/config.go serviceClusterOrDefault)
    labels: dict[str, str]
    mesh_id: str
    namespace: str
    cluster_id: str
    router: bool = False  # a gateway (model.Router): its spans get an upstream child span


def istio_tags(p: Proxy) -> list[dict[str, Any]]:
    """``buildServiceTags`` + ``optionalPolicyTags``."""
    literal = {
        "istio.canonical_revision": p.labels.get("service.istio.io/canonical-revision") or "latest",
        "istio.canonical_service": p.labels.get("service.istio.io/canonical-name") or "unknown",
        "istio.mesh_id": p.mesh_id or "unknown",
        "istio.namespace": p.namespace or "default",
        "istio.cluster_id": p.cluster_id or "unknown",
    }
    tags: list[dict[str, Any]] = [{"tag": k, "literal": {"value": v}} for k, v in literal.items()]
    tags += [{"tag": name, "metadata": {"kind": {"request": {}}, "metadata_key": {"key": RBAC_FILTER, "path": [{"key": key}]}}}
             for name, key in DRY_RUN_TAGS]  # fmt: skip
    return tags


def custom_tags(spec: Spec, p: Proxy) -> list[dict[str, Any]]:
    """``configureCustomTags`` for a Telemetry spec: Istio's tags when enabled, then the spec's, sorted by name."""
    tags = istio_tags(p) if spec.enable_istio_tags else []
    for name, t in (spec.custom_tags or {}).items():
        if "literal" in t:
            tags.append({"tag": name, "literal": {"value": t["literal"]["value"]}})
        elif "header" in t:
            tags.append({"tag": name, "request_header": {"name": t["header"]["name"], "default_value": t["header"].get("defaultValue", "")}})
        elif "environment" in t:
            tags.append({"tag": name, "environment": {"name": t["environment"]["name"], "default_value": t["environment"].get("defaultValue", "")}})
    return sorted(tags, key=lambda t: t["tag"])


def hcm_tracing(spec: Spec | None, provider: dict[str, Any] | None, p: Proxy) -> dict[str, Any] | None:
    """The ``tracing`` of one HTTP connection manager, or None (no tracing configured, or disabled).

    ``provider`` is the extension provider's OpenTelemetry settings resolved to its outbound cluster:
    ``{"cluster": "outbound|4317||<host>", "authority": "<host>"}`` (``clusterLookupFn``); None when the
    provider's service is not in the registry -- istiod then logs a warning and configures no tracing."""
    if spec is None or spec.disabled or provider is None:
        return None
    out: dict[str, Any] = {}
    if p.router:
        out["spawn_upstream_span"] = True
    out["provider"] = {
        "name": OTEL_TRACER,
        "typed_config": {
            "@type": OTEL_CONFIG,
            "grpc_service": {"envoy_grpc": {"cluster_name": provider["cluster"], "authority": provider["authority"]}},
            "service_name": p.service_cluster,
        },
    }
    sampling = spec.sampling if spec.sampling is not None else DEFAULT_SAMPLING
    out["client_sampling"] = {"value": 100.0}
    out["overall_sampling"] = {"value": 100.0}
    out["random_sampling"] = {"value": sampling}
    out["custom_tags"] = custom_tags(spec, p)
    if spec.disable_context_propagation:
        out["no_context_propagation"] = True
    return out
