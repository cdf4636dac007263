"""The local trace collector speaks real OTLP/gRPC, and spans read back as traces in tree order."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshlab import tracing
from meshlab.otlp import Span, read_spans


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def collector(tmp_path: Path):  # type: ignore[no-untyped-def]
    port, out = _free_port(), tmp_path / "spans.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "meshlab.otlp", "--listen", f"127.0.0.1:{port}", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert "listening on" in line, line
        yield port, out
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_export_over_grpc_is_written_as_spans(collector: tuple[int, Path]) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1 import trace_pb2

    port, out = collector
    trace_id, parent, child = bytes(range(16)), bytes([1] * 8), bytes([2] * 8)

    def kv(k: str, v: str) -> common_pb2.KeyValue:
        return common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))

    req = pb.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=Resource(attributes=[kv("service.name", "curl.sample")]),
        scope_spans=[trace_pb2.ScopeSpans(spans=[
            trace_pb2.Span(trace_id=trace_id, span_id=parent, name="helloworld.sample.svc.cluster.local:5000/*", kind=3,
                           start_time_unix_nano=1_000_000, end_time_unix_nano=5_000_000, attributes=[kv("istio.cluster_id", "cluster1")]),
            trace_pb2.Span(trace_id=trace_id, span_id=child, parent_span_id=parent, name="helloworld.sample.svc.cluster.local:5000/*",
                           kind=2, start_time_unix_nano=2_000_000, end_time_unix_nano=4_000_000,
                           attributes=[kv("istio.cluster_id", "cluster2"), common_pb2.KeyValue(key="http.status_code", value=common_pb2.AnyValue(int_value=200))]),
        ])],
    )])  # fmt: skip
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        pb_grpc.TraceServiceStub(ch).Export(req, timeout=5)
    deadline = time.monotonic() + 5
    while len(spans := read_spans(out)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [s.kind for s in spans] == ["CLIENT", "SERVER"]
    assert {s.trace_id for s in spans} == {trace_id.hex()} and spans[1].parent_span_id == parent.hex()
    assert spans[0].service == "curl.sample" and spans[1].attributes == {"istio.cluster_id": "cluster2", "http.status_code": 200}
    assert spans[0].duration_ms == 4.0
    [(tid, trace)] = tracing.traces(spans).items()
    rows = tracing.rows(trace)
    assert [r["KIND"] for r in rows] == ["CLIENT", "SERVER"] and rows[1]["START (ms)"] == 1.0 and rows[1]["PARENT"] == parent.hex()
    assert rows[1]["SPAN"].startswith("  "), "a child is indented under its parent"


def test_traces_in_tree_order() -> None:
    def span(sid: str, parent: str, start: int, trace: str = "t1") -> Span:
        return Span(trace, sid, parent, sid, "SERVER", start, start + 10, "svc")

    spans = [span("c", "a", 5), span("b", "a", 3), span("a", "", 1), span("x", "", 0, "t2"), span("d", "b", 4)]
    got = tracing.traces(spans)
    assert list(got) == ["t2", "t1"], "traces by their first span's start"
    assert [s.span_id for s in got["t1"]] == ["a", "b", "d", "c"]


def test_istio_tracing_config_is_the_jaeger_tasks() -> None:
    assert tracing.extension_provider() == {"name": "jaeger", "opentelemetry": {"port": 4317, "service": "jaeger-collector.istio-system.svc.cluster.local"}}
    t = tracing.telemetry(100)
    assert t["apiVersion"] == "telemetry.istio.io/v1" and t["metadata"] == {"name": "mesh-default", "namespace": "istio-system"}
    assert t["spec"] == {"tracing": [{"providers": [{"name": "jaeger"}], "randomSamplingPercentage": 100}]}


def test_jaeger_query_api_reads_as_spans() -> None:
    """On kind the spans come from each cluster's Jaeger (the addon's query API); they read like the collector's."""
    doc = {"data": [{"traceID": "abc", "processes": {"p1": {"serviceName": "curl.sample"}, "p2": {"serviceName": "helloworld.sample"}},
                     "spans": [
                         {"traceID": "abc", "spanID": "01", "operationName": "helloworld.sample.svc.cluster.local:5000/*", "references": [],
                          "startTime": 1000, "duration": 400, "tags": [{"key": "span.kind", "value": "client"}, {"key": "istio.cluster_id", "value": "cluster1"}], "processID": "p1"},
                         {"traceID": "abc", "spanID": "02", "operationName": "helloworld.sample.svc.cluster.local:5000/*",
                          "references": [{"refType": "CHILD_OF", "traceID": "abc", "spanID": "01"}],
                          "startTime": 1100, "duration": 200, "tags": [{"key": "span.kind", "value": "server"}, {"key": "istio.cluster_id", "value": "cluster2"}], "processID": "p2"},
                     ]}]}  # fmt: skip
    spans = tracing.spans_from_jaeger(doc, cluster="cluster1")
    assert [(s.kind, s.service, s.attributes["istio.cluster_id"]) for s in spans] == [("CLIENT", "curl.sample", "cluster1"), ("SERVER", "helloworld.sample", "cluster2")]
    assert spans[1].parent_span_id == "01" and spans[0].trace_id == "abc".rjust(32, "0") and spans[0].duration_ms == 0.4


def test_a_record_still_being_written_is_left_for_the_next_read(tmp_path: Path) -> None:
    """Envoy's access log and the collector's spans are read while written: half a line is not an error."""
    import json

    from meshlab.state import read_json_lines

    log = tmp_path / "access.log"
    assert read_json_lines(log) == []
    whole = [{"status": 200, "n": i} for i in range(3)]
    log.write_text("".join(json.dumps(r) + "\n" for r in whole) + '{"status": 50')  # the writer is mid-record
    assert read_json_lines(log) == whole and read_json_lines(log, last=2) == whole[1:]
    with log.open("a") as f:
        f.write('3, "n": 3}\n')
    assert read_json_lines(log, last=1) == [{"status": 503, "n": 3}]
    spans = tmp_path / "spans.jsonl"
    spans.write_text(json.dumps({"trace_id": "t", "span_id": "s", "parent_span_id": "", "name": "x", "kind": "SERVER",
                                 "start_ns": 1, "end_ns": 2, "service": "curl"}) + '\n{"trace_id": "t", "span')
    assert [s.span_id for s in read_spans(spans)] == ["s"]
