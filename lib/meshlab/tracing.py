"""Distributed tracing across clusters: Istio's tracing configuration, and the spans read back as traces.

Istio configures tracing in two parts (istio.io, "Distributed Tracing" tasks, 1.31):

- ``meshConfig.extensionProviders`` names a backend: here the OpenTelemetry provider ``jaeger``, OTLP over
  gRPC to ``jaeger-collector.istio-system.svc.cluster.local:4317`` (Istio's ``samples/addons/jaeger.yaml``);
- a ``Telemetry`` resource turns it on, mesh-wide in ``istio-system`` (or for a namespace or workload), with
  ``randomSamplingPercentage``.

istiod then gives every HTTP connection manager of a sidecar a ``tracing`` block (pilot/pkg/networking/core
/tracing.go): Envoy's ``envoy.tracers.opentelemetry`` exporting to the provider's outbound cluster, with
``service_name`` = the proxy's service cluster (``<app>.<namespace>``), the sampling percentages and Istio's
custom tags. The sidecar's outbound HCM writes a CLIENT span, the callee's inbound HCM a SERVER span; both
carry the same trace id because Envoy puts the W3C ``traceparent`` header on the request it forwards. A hop
that only proxies TCP -- the east-west gateway's AUTO_PASSTHROUGH, which never decrypts the request -- sees
no HTTP and writes no span.

An application in the middle of a call chain must copy the trace headers (:data:`TRACE_HEADERS`) from the
request it received onto the requests it makes: Envoy cannot tie an outbound request to an inbound one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .otlp import OTLP_GRPC_PORT, Span

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PROVIDER = "jaeger"  # the extension provider's name in istio.io's Jaeger task
COLLECTOR_SERVICE = "jaeger-collector.istio-system.svc.cluster.local"  # samples/addons/jaeger.yaml's Service
# What an application forwards from the request it got to the requests it makes (istio.io "Distributed
# Tracing overview": trace context propagation). Envoy's OpenTelemetry tracer reads and writes the W3C pair;
# x-request-id is Envoy's own request id; the B3 headers are what the Zipkin tracer uses instead.
TRACE_HEADERS = ("traceparent", "tracestate", "x-request-id",
                 "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3")  # fmt: skip


def extension_provider() -> dict[str, Any]:
    """The ``meshConfig.extensionProviders`` entry of istio.io's Jaeger task (OTLP over gRPC)."""
    return {"name": PROVIDER, "opentelemetry": {"port": OTLP_GRPC_PORT, "service": COLLECTOR_SERVICE}}


def telemetry(sampling: float = 100.0, name: str = "mesh-default", namespace: str = "istio-system", access_logging: bool = False) -> dict[str, Any]:
    """A ``Telemetry`` resource that turns tracing on with the provider, for every proxy of the mesh (in the
    root namespace) or of one namespace. Istio uses one namespace-wide Telemetry per namespace (the oldest), so
    one that also keeps access logs on says so too (``access_logging``: the built-in ``envoy`` provider)."""
    spec: dict[str, Any] = {"tracing": [{"providers": [{"name": PROVIDER}], "randomSamplingPercentage": sampling}]}
    if access_logging:
        spec = {"accessLogging": [{"providers": [{"name": "envoy"}]}], **spec}
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def traces(spans: list[Span]) -> dict[str, list[Span]]:
    """Spans grouped by trace id, each trace in tree order (a parent before its children, siblings by start)."""
    by_trace: dict[str, list[Span]] = {}
    for s in spans:
        by_trace.setdefault(s.trace_id, []).append(s)
    return {t: in_tree_order(ss) for t, ss in sorted(by_trace.items(), key=lambda kv: min(s.start_ns for s in kv[1]))}


def in_tree_order(spans: list[Span]) -> list[Span]:
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_span_id if s.parent_span_id in ids else "", []).append(s)
    out: list[Span] = []

    def walk(parent: str) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x.start_ns):
            out.append(s)
            walk(s.span_id)

    walk("")
    return out


def depth(span: Span, spans: list[Span]) -> int:
    by_id = {s.span_id: s for s in spans}
    d, s = 0, span
    while s.parent_span_id in by_id:
        d, s = d + 1, by_id[s.parent_span_id]
    return d


def rows(trace: list[Span]) -> list[dict[str, Any]]:
    """One row per span, as a tracing UI lists them: who wrote it, what kind, when and how long."""
    t0 = min(s.start_ns for s in trace)
    return [
        {
            "SPAN": "  " * depth(s, trace) + s.name, "SERVICE": s.service, "KIND": s.kind,
            "CLUSTER": s.attributes.get("istio.cluster_id", ""), "START (ms)": round((s.start_ns - t0) / 1e6, 2),
            "DURATION (ms)": round(s.duration_ms, 2), "STATUS": s.attributes.get("http.status_code", ""),
            "SPAN ID": s.span_id, "PARENT": s.parent_span_id or "-",
        }  # fmt: skip
        for s in trace
    ]


def waterfall(trace: list[Span], title: str = "") -> "Figure":
    """The trace as a waterfall: one bar per span, indented by depth, placed at its start, as long as it took."""
    import matplotlib.pyplot as plt

    t0 = min(s.start_ns for s in trace)
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(trace) + 1.2))
    colours = {"CLIENT": "tab:blue", "SERVER": "tab:orange"}
    for i, s in enumerate(trace):
        start, width = (s.start_ns - t0) / 1e6, max(s.duration_ms, 0.01)
        ax.barh(i, width, left=start, color=colours.get(s.kind, "tab:gray"), height=0.5)
        cluster = s.attributes.get("istio.cluster_id", "")
        ax.text(start, i - 0.35, f"{'  ' * depth(s, trace)}{s.service} · {s.kind}{' · ' + cluster if cluster else ''}  ({s.duration_ms:.2f} ms)",
                fontsize=8, va="bottom")  # fmt: skip
    ax.set_yticks([])
    ax.set_ylim(len(trace) - 0.5, -1.0)  # first span on top, room for its label under the title
    ax.set_xlabel("milliseconds since the trace started")
    ax.set_title(title or f"trace {trace[0].trace_id}")
    fig.tight_layout()
    return fig


def spans_from_jaeger(doc: dict[str, Any], cluster: str = "") -> list[Span]:
    """Spans from Jaeger's query API (``/api/traces``: microseconds, ``span.kind`` and Istio's tags as tags),
    in the collector's form, so both backends' traces read and draw the same."""
    out = []
    for trace in doc.get("data") or []:
        processes = trace.get("processes") or {}
        for s in trace.get("spans") or []:
            tags = {t["key"]: t.get("value") for t in s.get("tags") or []}
            parent = next((r["spanID"] for r in s.get("references") or [] if r.get("refType") == "CHILD_OF"), "")
            start = int(s["startTime"]) * 1000
            out.append(Span(
                trace_id=s["traceID"].rjust(32, "0"), span_id=s["spanID"], parent_span_id=parent, name=s.get("operationName", ""),
                kind=str(tags.pop("span.kind", "")).upper(), start_ns=start, end_ns=start + int(s.get("duration", 0)) * 1000,
                service=(processes.get(s.get("processID"), {}) or {}).get("serviceName", ""),
                attributes={"istio.cluster_id": cluster, **tags}, status="ERROR" if tags.get("error") else "",
            ))  # fmt: skip
    return out
