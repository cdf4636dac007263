"""A small OTLP trace collector: the receiving end of Envoy's OpenTelemetry tracer, for the local backend.

It speaks real OTLP over gRPC (``opentelemetry.proto.collector.trace.v1.TraceService/Export``, the
protocol Envoy's ``envoy.tracers.opentelemetry`` exports with, from PyPI ``opentelemetry-proto`` and
``grpcio``) and keeps every span it receives as one JSON line in a file, flushed at once, so a notebook
reads the spans of a request a moment after it was made (:func:`read_spans`).

What it is not: an OpenTelemetry Collector or Jaeger. It has no processors, no sampling, no storage
beyond the file, no query API and no UI; the notebook draws the waterfall (:mod:`meshlab.tracing`).

Run: ``python -m meshlab.otlp --listen 10.250.0.200:4317 --out spans.jsonl`` (the local backend starts
it in the lab's "outside" network namespace and records the process, so ``meshlab down`` stops it).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .state import read_json_lines

OTLP_GRPC_PORT = 4317  # the OTLP/gRPC port (OpenTelemetry specification; jaeger-collector's grpc-otel port in Istio's addon)
SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass
class Span:
    """One span as received: ids in hex, times in nanoseconds since the epoch."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    service: str  # the resource's service.name: who produced the span (Envoy: its node's cluster)
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = ""

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _value(v: Any) -> Any:
    """An OTLP AnyValue as a Python value."""
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which) if which else None


def spans_of(request: Any) -> list[Span]:
    """The spans of an ``ExportTraceServiceRequest``."""
    out = []
    for rs in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(Span(
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex(), name=s.name,
                    kind=SPAN_KINDS.get(s.kind, str(s.kind)), start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                    service=str(resource.get("service.name", "")), attributes={kv.key: _value(kv.value) for kv in s.attributes},
                    status={0: "", 1: "OK", 2: "ERROR"}.get(s.status.code, str(s.status.code)),
                ))  # fmt: skip
    return out


def read_spans(path: Path) -> list[Span]:
    """Every span the collector wrote to ``path`` so far (none before the file exists)."""
    return [Span(**record) for record in read_json_lines(path)]


def protos_intact() -> bool:
    """Whether opentelemetry-proto's modules are its own: xds-protos ships an older copy of the same files
    (``opentelemetry/proto/...``, before ``ScopeSpans``), and whichever package pip installs last wins."""
    from opentelemetry.proto.trace.v1 import trace_pb2

    return hasattr(trace_pb2, "ScopeSpans")


def repair_protos() -> str:
    """Reinstall opentelemetry-proto's own files (same version, no dependencies) over xds-protos' copies."""
    import importlib.metadata
    import sys

    from .exec import run

    if protos_intact():
        return "opentelemetry-proto: intact"
    pin = f"opentelemetry-proto=={importlib.metadata.version('opentelemetry-proto')}"
    run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--force-reinstall", "--no-deps", pin], timeout=600)
    return f"opentelemetry-proto: reinstalled {pin} over xds-protos' older copy"


def serve(host: str, port: int, out: Path) -> None:
    """Run the TraceService until SIGTERM/SIGINT; print ``listening on`` once it accepts connections."""
    if not protos_intact():
        raise SystemExit("opentelemetry-proto's files were overwritten by xds-protos' older copy (no ScopeSpans): "
                         "run `make setup`, or `python -m meshlab.otlp --repair-protos`")
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc

    lock = threading.Lock()
    out.parent.mkdir(parents=True, exist_ok=True)
    sink = open(out, "a", buffering=1)

    class TraceService(pb_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (the gRPC method's name)
            spans = spans_of(request)
            with lock:
                for s in spans:
                    sink.write(json.dumps(s.record()) + "\n")
                sink.flush()
            return pb.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"cannot listen on {host}:{port}: the address is not on this host or the port is taken")
    server.start()
    print(f"OTLP/gRPC trace collector listening on {host}:{port}, spans to {out}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=0.5).wait()
    sink.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", help="host:port, e.g. 10.250.0.200:4317")
    ap.add_argument("--out", type=Path, help="the JSON-lines file the spans go to")
    ap.add_argument("--repair-protos", action="store_true", help="reinstall opentelemetry-proto's files over xds-protos' copy (make setup)")
    args = ap.parse_args()
    if args.repair_protos:
        print(repair_protos())
        return
    if not args.listen or not args.out:
        ap.error("--listen and --out are required")
    host, _, port = args.listen.rpartition(":")
    serve(host, int(port), args.out)


if __name__ == "__main__":
    main()
