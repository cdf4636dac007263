"""Labs 01 and 01b's library parts without Envoy: wrk's summary, repeated runs, the rate-limit service's windows,
a real gRPC round trip to it, and every Istio resource the two labs apply, through the kind executor (dry run)."""

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
from meshlab.ratelimit import DEFAULT_CONFIG, Limiter, load_config

LABS = Path(__file__).resolve().parents[2] / "labs"
MESH_LABS = [LABS / "01-envoy-resilience.ipynb", LABS / "01b-envoy-traffic-control.ipynb"]  # lab 01's mesh, split in two


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
    now = [7200.0]
    domain, rules = load_config("""
domain: d
descriptors:
- key: PATH
  value: /hello
  rate_limit: {unit: minute, requests_per_unit: 2}
- key: PATH
  rate_limit: {unit: minute, requests_per_unit: 100}
- key: user
  descriptors:
  - key: PATH
    rate_limit: {unit: hour, requests_per_unit: 1}
""")
    lim = Limiter(domain, rules, clock=lambda: now[0])
    assert [lim.hit("d", [("PATH", "/hello")])[1] for _ in range(3)] == [False, False, True]
    assert lim.hit("d", [("PATH", "/other")])[0].requests_per_unit == 100, "a key-only rule catches other values"
    assert lim.hit("other-domain", [("PATH", "/hello")]) == (None, False, 0, 0), "another domain has no rules"
    assert [lim.hit("d", [("user", "ann"), ("PATH", "/x")])[1] for _ in range(2)] == [False, True], "nested descriptors"
    now[0] += 60  # the next minute: a fresh window
    assert lim.hit("d", [("PATH", "/hello")])[1] is False
    with pytest.raises(MeshlabError, match="unit one of"):
        load_config("domain: d\ndescriptors: [{key: x, rate_limit: {unit: fortnight, requests_per_unit: 1}}]")
    with pytest.raises(MeshlabError, match="needs a domain"):
        load_config("descriptors: []")
    assert load_config(DEFAULT_CONFIG)[0] == "helloworld"


def test_rate_limit_service_answers_envoy_rls_v3_over_grpc(tmp_path: Path) -> None:
    import grpc
    from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "config.yaml"
    config.write_text("domain: meshlab\ndescriptors: [{key: generic_key, value: helloworld, rate_limit: {unit: hour, requests_per_unit: 2}}]\n")
    log = tmp_path / "rls.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "meshlab.ratelimit", "--listen", f"127.0.0.1:{port}", "--config", str(config)],
                             stdout=out, stderr=subprocess.STDOUT)
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
            time.sleep(0.01)
            config.write_text("domain: meshlab\ndescriptors: [{key: generic_key, value: helloworld, rate_limit: {unit: hour, requests_per_unit: 100}}]\n")
            codes.append(stub.ShouldRateLimit(req, timeout=5).overall_code)  # the changed file is read again
        R = rls_pb2.RateLimitResponse
        assert codes == [R.OK, R.OK, R.OVER_LIMIT, R.OK]
    finally:
        p.terminate()
        p.wait(timeout=10)


def _resources_of_lab01() -> list[dict]:
    """Every Istio resource labs 01 and 01b apply (with their exercises' solutions): YAML literals, and the
    DestinationRules lab 01 builds from dict literals."""
    import yaml

    docs: list[dict] = []
    for c in (c for path in MESH_LABS for c in nbformat.read(path, as_version=4).cells):
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
    from meshlab.lab import dry_run_lab

    docs = _resources_of_lab01()
    kinds = {d["kind"] for d in docs}
    assert {"VirtualService", "DestinationRule", "EnvoyFilter", "Telemetry"} <= kinds and len(docs) >= 14
    lab = dry_run_lab("flat-network", tmp_path)
    for d in docs:
        assert lab.apply(d, cluster="cluster1") == [f"{d['kind'].lower()}/{d['metadata']['name']} not applied: dry run (recorded)"]
    assert lab.backend.recorded.problems() == []


def test_curl_loops_summarised_like_a_wrk_run() -> None:
    from meshlab.loadgen import LOAD_MARK, parse_curl_loops

    out = "\n".join([f"{LOAD_MARK}200 0.010"] * 8 + [f"{LOAD_MARK}503 0.001", f"{LOAD_MARK}000 5.000", "noise"])
    r = parse_curl_loops(out, "p", 4, 2)
    assert (r.requests, r.rps, r.non_2xx, r.socket_errors, r.p50_ms) == (10, 5.0, 1, 1, 10.0)
    with pytest.raises(MeshlabError, match="no result"):
        parse_curl_loops("sh: curl: not found", "p", 4, 2)


def test_load_on_kind_is_curl_loops_in_the_callers_pod(tmp_path: Path) -> None:
    from meshlab.lab import dry_run_lab
    from meshlab.errors import LabStateError

    lab = dry_run_lab("flat-network", tmp_path)
    with pytest.raises(LabStateError, match="dry run"):
        lab.load("curl", "http://helloworld.sample:5000/hello?sleep=0.02", cluster="cluster1", connections=4, seconds=1)
    [step] = [s for s in lab.backend.recorded.steps if "concurrent curl loops" in s.title]
    assert step.argv[:3] == ["kubectl", "--context", "kind-cluster1"] and "exec" in step.argv and "seq 4" in step.argv[-1]


def _notebook_envoyfilter(name: str) -> dict:
    [doc] = [d for d in _resources_of_lab01() if d["kind"] == "EnvoyFilter" and d["metadata"]["name"] == name]
    return doc


def test_global_rate_limit_on_kind_is_istios_recipe_in_order(tmp_path: Path) -> None:
    """Dry run of lab 01b's section 5 on kind: the rules' ConfigMap, Redis, envoyproxy/ratelimit, their rollouts, then
    the lab's EnvoyFilter, whose gRPC cluster is the Service the plan created."""
    from meshlab import dataplane as dp
    from meshlab.backends.kind import tools
    from meshlab.ratelimit import DEFAULT_CONFIG

    lab = dry_run_lab_("flat-network", tmp_path)
    out = dp.deploy_rate_limit_service(lab, cluster="cluster1")
    assert "dry run" in out and dp.rate_limit_rules(lab) == DEFAULT_CONFIG
    ef = _notebook_envoyfilter("helloworld-ratelimit")
    lab.apply(ef, cluster="cluster1")
    rec = lab.backend.recorded
    [deploy] = rec.find(tag="ratelimit")[:1]
    rollouts = [s for s in rec.find(tag="rollout")]
    [apply_ef] = [s for s in rec.find(tag="apply") if any(d["kind"] == "EnvoyFilter" for d in s.manifests)]
    assert deploy.number < rollouts[0].number < rollouts[1].number < apply_ef.number
    assert [s.argv[-2] for s in rollouts] == ["deployment/redis", "deployment/ratelimit"]
    assert deploy.argv[:3] == ["kubectl", "--context", "kind-cluster1"] and "--validate=strict" in deploy.argv
    by = {(d["kind"], d["metadata"]["name"]): d for d in deploy.manifests}
    assert [k for k, _ in by] == ["Namespace", "ConfigMap", "Service", "Deployment", "Service", "Deployment"]
    assert by["ConfigMap", "ratelimit-config"]["data"]["config.yaml"] == DEFAULT_CONFIG
    rl = by["Deployment", "ratelimit"]["spec"]["template"]["spec"]
    assert rl["containers"][0]["image"] == tools.RATELIMIT_IMAGE == "docker.io/envoyproxy/ratelimit:30a4ce1a"
    assert {"name": "REDIS_URL", "value": "redis:6379"} in rl["containers"][0]["env"]
    assert rl["volumes"][0]["configMap"]["name"] == "ratelimit-config"
    assert rl["containers"][0]["volumeMounts"][0]["mountPath"] == "/data/ratelimit/config"
    assert by["Deployment", "redis"]["spec"]["template"]["spec"]["containers"][0]["image"] == tools.REDIS_IMAGE
    grpc = [p for p in by["Service", "ratelimit"]["spec"]["ports"] if p["name"].startswith("grpc")]
    assert [p["port"] for p in grpc] == [8081], "Istio treats a port named grpc-* as gRPC"
    assert {tools.RATELIMIT_IMAGE, tools.REDIS_IMAGE} <= set(tools.preload_images()), "in the kind image cache"
    # the EnvoyFilter's rate-limit filter points at the Service the plan created, with the ConfigMap's domain
    filt = ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]
    assert filt["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "outbound|8081||ratelimit.sample.svc.cluster.local"
    assert filt["domain"] == load_config(DEFAULT_CONFIG)[0]
    assert rec.problems() == []


def test_global_rate_limit_deployed_again_on_kind_restarts_redis(tmp_path: Path) -> None:
    """A re-run cell deploys the service again: Redis restarts (its counters live in memory), the first time not."""
    from meshlab import dataplane as dp

    lab = dry_run_lab_("flat-network", tmp_path)
    restarts = lambda: [s for s in lab.backend.recorded.find(tag="ratelimit") if "restart" in s.argv]  # noqa: E731
    dp.deploy_rate_limit_service(lab, cluster="cluster1")
    assert restarts() == []
    dp.deploy_rate_limit_service(lab, cluster="cluster1")
    [restart] = restarts()
    assert restart.argv[-4:] == ["sample", "rollout", "restart", "deployment/redis"]
    last_wait = [s for s in lab.backend.recorded.find(tag="rollout")][-2]
    assert restart.number < last_wait.number and last_wait.argv[-2] == "deployment/redis"


def test_global_rate_limit_on_kind_needs_one_control_plane(tmp_path: Path) -> None:
    from meshlab import dataplane as dp

    lab = dry_run_lab_("separate-control-planes", tmp_path)
    with pytest.raises(MeshlabError, match="another control plane"):
        dp.deploy_rate_limit_service(lab, cluster="cluster1")


def test_crashed_replicas_on_kind_are_a_broken_deployment_under_the_same_service(tmp_path: Path) -> None:
    """Dry run of lab 01's section 6 on kind: 3 pods with helloworld's app label whose app never listens, then healed."""
    from meshlab import dataplane as dp

    lab = dry_run_lab_("flat-network", tmp_path)
    assert dp.crash_replicas(lab, cluster="cluster1", replicas=3) == []
    dp.heal_replicas(lab, [], cluster="cluster1")
    rec = lab.backend.recorded
    apply_, rollout, heal = rec.find(tag="outlier")
    assert apply_.number < rollout.number < heal.number
    [d] = apply_.manifests
    assert d["metadata"]["name"] == "helloworld-broken" and d["spec"]["replicas"] == 3
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app": "helloworld", "version": "broken"}, "selected by helloworld's Service, no subset of v1/v2"
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert "5000" not in " ".join(c["command"]), "the app never listens: the sidecar answers 503"
    assert heal.argv[-3:] == ["deployment", "helloworld-broken", "--wait=true"]
    assert not [s for s in rec.steps if "scale" in s.argv], "no scale to zero: the pods stay in EDS"
    assert rec.problems() == []


def dry_run_lab_(pattern: str, tmp_path: Path):
    from meshlab.lab import dry_run_lab

    return dry_run_lab(pattern, tmp_path)


def test_kind_stats_drop_istios_stat_prefix_delimiter() -> None:
    """On Istio, cluster and HTTP manager stats end their prefix with `;` (alt_stat_name); the labs read Envoy's names."""
    from meshlab.backends.kind.backend import parse_stats

    out = json.dumps({"stats": [
        {"name": "cluster.outbound|5000||helloworld.sample.svc.cluster.local;.upstream_rq_retry", "value": 7},
        {"name": "cluster.inbound|5000||;.ratelimit.ok", "value": 20},
        {"name": "http.outbound_0.0.0.0_5000;.downstream_rq_total", "value": 3},
        {"name": "cluster.outbound|5000||helloworld.sample.svc.cluster.local;.upstream_rq_timeout", "value": 0},
        {"name": "server.state", "value": "LIVE"}]})
    assert parse_stats(out) == {"cluster.inbound|5000||.ratelimit.ok": 20,
                                "cluster.outbound|5000||helloworld.sample.svc.cluster.local.upstream_rq_retry": 7,
                                "http.outbound_0.0.0.0_5000.downstream_rq_total": 3}
    assert list(parse_stats(out, contains="ratelimit.")) == ["cluster.inbound|5000||.ratelimit.ok"]


def test_prometheus_cluster_label_follows_each_backends_tag_extraction(tmp_path: Path) -> None:
    from meshlab import dataplane as dp

    lab = dry_run_lab_("flat-network", tmp_path)
    assert dp.prometheus_cluster_label(lab) == 'cluster_name="outbound|5000||helloworld.sample.svc.cluster.local"'


def test_helloworld_on_kind_runs_meshlabs_sample_app_before_the_sections_that_need_it(tmp_path: Path) -> None:
    """Dry run of the setup on kind: helloworld v1 deployed, then the same Deployment running apps.py from a
    ConfigMap with the image's Python, rolled out before the first request with ``?sleep=``."""
    from meshlab import dataplane as dp
    from meshlab.backends.kind import samples, tools
    from meshlab.runtime import apps
    from meshlab.errors import LabStateError

    lab = dry_run_lab_("flat-network", tmp_path)
    dp.deploy_helloworld(lab, cluster="cluster1", version="v1")
    dp.deploy_helloworld(lab, cluster="cluster1", version="v2")
    with pytest.raises(LabStateError, match="no helloworld v3"):
        from meshlab.backends.kind import dataplane as kd

        kd.run_sample_app(lab.backend, "cluster1", "v3")
    with pytest.raises(LabStateError, match="dry run"):
        lab.call("curl", "http://helloworld.sample:5000/hello?sleep=2", cluster="cluster1")
    rec = lab.backend.recorded
    flask = [s for s in rec.find(tag="deploy-helloworld")]
    ours = [s for s in rec.find(tag="sample-app") if "apply" in s.argv]
    rollouts = [s for s in rec.find(tag="sample-app") if "rollout" in s.argv]
    [call] = [s for s in rec.steps if "?sleep=2" in s.command_text()]
    assert [s.argv[-2] for s in rollouts] == ["deployment/helloworld-v1", "deployment/helloworld-v2"]
    assert flask[0].number < ours[0].number < rollouts[0].number < flask[1].number < ours[1].number < rollouts[1].number < call.number
    assert "--validate=strict" in ours[0].argv and ours[0].argv[:3] == ["kubectl", "--context", "kind-cluster1"]
    for step, version in zip(ours, ("v1", "v2")):
        cm, d = step.manifests
        assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "meshlab-sample-app")
        assert cm["data"]["apps.py"] == Path(apps.__file__).read_text(), "the very file the local backend runs"
        sample = samples.helloworld_deployment(version)
        assert d["metadata"] == sample["metadata"] and d["spec"]["selector"] == sample["spec"]["selector"]
        assert d["spec"]["template"]["metadata"]["labels"] == {"app": "helloworld", "version": version}
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["image"] == tools.HELLOWORLD_IMAGE and c["ports"] == [{"containerPort": 5000}]
        assert c["command"] == ["python", "/meshlab/apps.py", "helloworld", "--listen", ":5000", "--version", version,
                                "--instance", "$(POD_NAME)"]
        assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
        assert c["volumeMounts"][0]["mountPath"] == "/meshlab"
        assert d["spec"]["template"]["spec"]["volumes"] == [{"name": "app", "configMap": {"name": "meshlab-sample-app"}}]
    lab.deploy("helloworld", cluster="cluster1", version="v1")  # a scale-up re-applies the Deployment: still our app
    [again] = [s for s in rec.find(tag="deploy-helloworld")][2:]
    assert [d["kind"] for d in again.manifests] == ["ConfigMap", "Deployment"]
    assert again.manifests[1]["spec"]["replicas"] == ours[0].manifests[1]["spec"]["replicas"] + 1
    assert again.manifests[1]["spec"]["template"]["spec"]["containers"][0]["command"][1] == "/meshlab/apps.py"
    assert rec.problems() == []
    # each notebook deploys every helloworld through this helper, the first one in its setup, before its first ?sleep=
    for path in MESH_LABS:
        code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        first_sleep = next(i for i, s in enumerate(code) if "?sleep=" in s)
        setup = next(i for i, s in enumerate(code) if "dp.deploy_helloworld(" in s)
        assert setup < first_sleep and not any('lab.deploy("helloworld"' in s for s in code), path.name
