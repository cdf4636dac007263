"""Lab 01's library parts without Envoy: wrk's summary, repeated runs, the rate-limit service's windows,
a real gRPC round trip to it, and every Istio resource the lab applies, through the kind executor (dry run)."""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from meshlab.errors import MeshlabError
from meshlab.loadgen import MARK, LoadResult, Repeated, parse
from meshlab.ratelimit import Limiter, Rule, rules_from

LAB = Path(__file__).resolve().parents[2] / "labs" / "01-envoy-data-plane.ipynb"


def test_wrk_summary_is_parsed() -> None:
    out = "Running 1s test\n" + MARK + json.dumps({
        "requests": 2000, "duration_us": 1_000_000, "connect_errors": 1, "read_errors": 0, "write_errors": 0,
        "non_2xx": 7, "timeouts": 2, "p50_us": 1500, "p90_us": 2500, "p99_us": 9000, "max_us": 12000, "mean_us": 1600.0})
    r = parse(out, "path", 16)
    assert (r.rps, r.p50_ms, r.p99_ms, r.non_2xx, r.socket_errors) == (2000.0, 1.5, 9.0, 7, 3)
    with pytest.raises(MeshlabError, match="no summary"):
        parse("wrk: connection refused", "path", 16)


def test_repeated_runs_give_median_and_spread() -> None:
    rr = Repeated("p", [LoadResult("p", 16, 1, 1.0, v, 1, 1, 1, 1, 0, 0) for v in (90.0, 100.0, 120.0)])
    assert rr.median("rps") == 100.0 and rr.spread("rps") == pytest.approx(0.3)
    assert "spread 30%" in rr.summary()


def test_limiter_fixed_window_per_descriptor() -> None:
    now = [120.0]
    lim = Limiter([Rule("destination", 2, "MINUTE", "helloworld")], clock=lambda: now[0])
    over = [lim.hit("d", [("destination", "helloworld")])[0][1] for _ in range(3)]
    assert over == [False, False, True]
    assert lim.hit("d", [("destination", "other")]) == [(None, False, 0, 0)], "no rule, no limit"
    now[0] = 180.0  # the next minute: a fresh window
    assert lim.hit("d", [("destination", "helloworld")])[0][1] is False
    with pytest.raises(MeshlabError, match="unit one of"):
        rules_from([{"key": "x", "requests_per_unit": 1, "unit": "fortnight"}])


def test_rate_limit_service_answers_envoy_rls_v3_over_grpc(tmp_path: Path) -> None:
    import grpc
    from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rules = json.dumps([{"key": "generic_key", "value": "helloworld", "requests_per_unit": 2, "unit": "MINUTE"}])
    log = tmp_path / "rls.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "meshlab.ratelimit", "--listen", f"127.0.0.1:{port}", "--rules", rules], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while b"listening on" not in log.read_bytes():
            assert p.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = rls_pb2_grpc.RateLimitServiceStub(ch)
            req = rls_pb2.RateLimitRequest(domain="meshlab", descriptors=[ratelimit_pb2.RateLimitDescriptor(
                entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key="generic_key", value="helloworld")])])
            codes = [stub.ShouldRateLimit(req, timeout=5).overall_code for _ in range(3)]
        R = rls_pb2.RateLimitResponse
        assert codes == [R.OK, R.OK, R.OVER_LIMIT]
    finally:
        p.terminate()
        p.wait(timeout=10)


def _resources_of_lab01() -> list[dict]:
    """Every Istio resource lab 01 applies: YAML literals, and the DestinationRules it builds from dict literals."""
    import yaml

    nb = nbformat.read(LAB, as_version=4)
    docs: list[dict] = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(c.source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lstrip().startswith("apiVersion:"):
                docs += [d for d in yaml.safe_load_all(node.value) if d]
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("POLICIES", "OUTLIER"):
                for policy in ast.literal_eval(node.value).values():
                    if node.targets[0].id == "OUTLIER":
                        policy = {"loadBalancer": {"simple": "ROUND_ROBIN"}, "outlierDetection": {"consecutive5xxErrors": 1, **policy}}
                    docs.append({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                                 "metadata": {"name": "helloworld", "namespace": "sample"},
                                 "spec": {"host": "helloworld", "trafficPolicy": policy}})
    return docs


def test_lab01_resources_apply_on_kind_dry_run(tmp_path: Path) -> None:
    from meshlab.backends.kind import dry_run_lab

    docs = _resources_of_lab01()
    kinds = {d["kind"] for d in docs}
    assert {"VirtualService", "DestinationRule"} <= kinds and len(docs) >= 10
    lab = dry_run_lab("flat-network", tmp_path)
    for d in docs:
        assert lab.apply(d, cluster="cluster1") == [f"{d['kind'].lower()}/{d['metadata']['name']} not applied: dry run (recorded)"]
    assert lab.backend.recorded.problems() == []
