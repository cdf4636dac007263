"""KindBackend in dry-run mode (the only mode without Docker), plus the pure helpers it uses to read
real outputs: curl answers from the curl pod, `istioctl proxy-config endpoints -o json`, MetalLB pools."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from meshlab.backends.kind import KindBackend, parse_calls, parse_endpoints, parse_proxy_status
from meshlab.backends.kind.clusters import lb_pool
from meshlab.errors import LabStateError, MeshlabError
from meshlab.state import State
from meshlab.topology import load_topology


@pytest.fixture
def dry(tmp_path: Path) -> KindBackend:
    return KindBackend.create(load_topology("separate-networks"), State(tmp_path), samples=True, dry_run=True, progress=None)


def test_dry_create_records_every_step_and_creates_nothing(dry: KindBackend, tmp_path: Path) -> None:
    assert dry.plan is not None and dry.dry_run
    assert [s.title for s in dry.executor.recorded] == [s.title for s in dry.plan]
    assert not (tmp_path / "state.json").exists(), "a dry run records no lab"
    assert not (tmp_path / "kind").exists(), "a dry run generates no certificates"
    assert dry.executor.variables == {}
    assert KindBackend.destroy(dry.state) == {"processes": 0, "namespaces": 0, "clusters": 0}


def test_dry_status_and_gateways_are_placeholders(dry: KindBackend) -> None:
    st = dry.status()
    assert st["backend"] == "kind" and st["pattern"] == "separate-networks"
    assert st["gateways"] == {"cluster1": "${CLUSTER1_EW_IP}", "cluster2": "${CLUSTER2_EW_IP}"}
    assert {(w["app"], w["version"], w["cluster"]) for w in st["workloads"]} == {
        ("helloworld", "v1", "cluster1"), ("helloworld", "v2", "cluster2"), ("curl", "", "cluster1"), ("curl", "", "cluster2")}
    assert {w.app for w in dry.workloads} == {"helloworld", "curl"}


def test_dry_deploy_apply_and_failures_are_recorded(dry: KindBackend) -> None:
    before = len(dry.executor.recorded)
    assert dry.deploy("helloworld", "cluster1", version="v3", replicas=2) == []
    recorded = dry.executor.recorded.steps[before:]
    assert [s.tags for s in recorded if "deploy" in s.tags][0] == ("deploy", "deploy-helloworld")
    dep = next(d for s in recorded for d in s.manifests if d["kind"] == "Deployment")
    assert dep["metadata"]["name"] == "helloworld-v3" and dep["spec"]["replicas"] == 2
    assert recorded[0].manifests[0]["metadata"]["labels"] == {"istio-injection": "enabled"}

    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "hw"},
          "spec": {"host": "helloworld", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}
    out = dry.apply([dr], "cluster2")
    assert out == ["destinationrule/hw not applied: dry run (recorded)"]
    step, wait = dry.executor.recorded.steps[-2:]
    assert step.argv[:3] == ["kubectl", "--context", "kind-cluster1"], "config goes to cluster2's control plane, cluster1"
    assert step.manifests[0]["metadata"]["namespace"] == "sample"
    assert wait.argv == ["istioctl", "proxy-status", "--context", "kind-cluster1", "-o", "json"], "then wait for the push"

    with pytest.raises(MeshlabError, match="unknown field"):
        dry.apply([{**dr, "spec": {"host": "h", "trafficPolicyy": {}}}], "cluster1")

    dry.kill("helloworld", "cluster1")
    scale, gone, pushed = dry.executor.recorded.steps[-3:]
    assert "--replicas=0" in scale.argv and "--for=delete" in gone.argv and pushed.argv[:2] == ["istioctl", "proxy-status"]
    dry.set_control_plane("cluster1", running=False)
    assert dry.executor.recorded.steps[-1].argv[-2:] == ["deployment/istiod", "--replicas=0"]
    with pytest.raises(MeshlabError, match="remote of cluster1"):
        dry.set_control_plane("cluster2", running=False)
    # as Istio does: the Deployment is applied, the injection webhook of the stopped istiod refuses its pods
    # (FailedCreate), nothing is rolled out or pushed; starting istiod again waits for the refused rollout
    before = len(dry.executor.recorded.steps)
    assert dry.deploy("curl", "cluster2") == []
    steps = dry.executor.recorded.steps[before:]
    assert [t for s in steps for t in s.tags if t in ("deploy", "sample-rollout", "injection-refused")] == ["deploy", "injection-refused"]
    assert not any(s.argv[:2] == ["istioctl", "proxy-status"] for s in steps)
    dry.set_control_plane("cluster1", running=True)
    assert any(s.argv[-3:-1] == ["status", "deployment/curl"] for s in dry.executor.recorded.steps[before:])


def test_deploy_adds_replicas_like_the_local_backend(dry: KindBackend) -> None:
    """Deploying an existing version again adds pods (the local backend starts new ones): it scales the Deployment."""
    dry.deploy("helloworld", "cluster2", version="v2")
    deps = [d for s in dry.executor.recorded for d in s.manifests if d["kind"] == "Deployment" and d["metadata"]["name"] == "helloworld-v2"]
    assert deps[-1]["spec"]["replicas"] == 2, "the sample's one pod plus the new one"
    assert [d["replicas"] for d in dry.deployments if d["version"] == "v2"] == [2]
    dry.deploy("helloworld", "cluster2", version="v2", replicas=2)
    assert [d["replicas"] for d in dry.deployments if d["version"] == "v2"] == [4]


def test_parse_proxy_status_reads_every_istiod_replica() -> None:
    def syncz(*proxies: tuple[str, list[str]]) -> dict:
        return {"resources": [{"@type": "type.googleapis.com/envoy.service.status.v3.ClientConfig", "node": {"id": pid},
                               "genericXdsConfigs": [{"typeUrl": f"type.googleapis.com/x{i}", "configStatus": st}
                                                     for i, st in enumerate(states)]} for pid, states in proxies],
                "typeUrl": "istio.io/debug/syncz"}  # fmt: skip

    out = json.dumps(syncz(("curl-6d4b.sample", ["SYNCED", "SYNCED", "NOT_SENT"])), indent=4) + "\n" + json.dumps(
        syncz(("istio-eastwestgateway-7f9c.istio-system", ["SYNCED", "STALE"])), indent=4)
    assert parse_proxy_status(out) == {"curl-6d4b.sample": ["SYNCED", "SYNCED", "NOT_SENT"],
                                       "istio-eastwestgateway-7f9c.istio-system": ["SYNCED", "STALE"]}
    assert parse_proxy_status("") == {}


def test_dry_call_and_endpoints_record_but_never_invent_answers(dry: KindBackend) -> None:
    with pytest.raises(LabStateError, match="dry run"):
        dry.call("curl", "http://helloworld.sample:5000/hello", "cluster1", n=3)
    step = dry.executor.recorded.steps[-1]
    assert step.argv[:6] == ["kubectl", "--context", "kind-cluster1", "-n", "sample", "exec"]
    assert "curl -sS" in step.argv[-1] and "seq 3" in step.argv[-1] and " -X " not in step.argv[-1]
    with pytest.raises(LabStateError, match="dry run"):
        dry.call("curl", "http://helloworld.sample:5000/hello", "cluster1", method="POST")  # lab 11's policy test
    assert "curl -sS -i -m 5 -X POST " in dry.executor.recorded.steps[-1].argv[-1]
    with pytest.raises(LabStateError, match="dry run"):
        dry.endpoints("curl", "cluster1", "helloworld")
    assert dry.executor.recorded.steps[-1].argv[:5] == ["istioctl", "--context", "kind-cluster1", "proxy-config", "endpoints"]


def test_down_plan_deletes_clusters_and_registry(tmp_path: Path) -> None:
    st = State(tmp_path)
    st.data = {"backend": "kind", "clusters": ["cluster1", "cluster2"], "containers": ["meshlab-registry"]}
    plan = KindBackend.down_plan(st)
    assert [s.argv for s in plan] == [
        ["kind", "delete", "cluster", "--name", "cluster1"],
        ["kind", "delete", "cluster", "--name", "cluster2"],
        ["docker", "rm", "-f", "meshlab-registry"],
    ]
    assert plan.steps[-1].only_if, "the registry is removed only if it exists (idempotent)"


def test_parse_calls_tallies_versions_and_clusters() -> None:
    out = (
        "Hello version: v1, instance: helloworld-v1-6d4b-abcde\n@@meshlab-status=200 0.012\n"
        "Hello version: v2, instance: helloworld-v2-7f9c-fghij\n@@meshlab-status=200 0.031\n"
        "upstream connect error or disconnect/reset before headers\n@@meshlab-status=503 0.002\n"
        "curl: (7) Failed to connect to helloworld.sample port 5000\n@@meshlab-status=000 0.001\n"
    )
    where = {"helloworld-v1-6d4b-abcde": "cluster1", "helloworld-v2-7f9c-fghij": "cluster2"}
    r = parse_calls(out, "http://helloworld.sample:5000/hello", "curl-x (cluster1)", where)
    assert len(r.answers) == 4 and r.errors == 2
    assert r.tally == {("cluster1", "v1"): 1, ("cluster2", "v2"): 1, ("error", "503"): 1, ("error", "curl: (7) Failed to connect to helloworld.sample port 5000"): 1}
    assert r.clusters == {"cluster1", "cluster2"}


def test_parse_calls_keeps_response_headers() -> None:
    out = (
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nX-Hello: from wasm\r\n\r\n"
        "Hello version: v1, instance: helloworld-v1-6d4b-abcde\n@@meshlab-status=200 0.012\n"
        "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: ApiKey\r\n\r\nmissing api key\n@@meshlab-status=401 0.003\n"
    )
    r = parse_calls(out, "http://helloworld.sample:5000/hello", "curl-x (cluster1)", {"helloworld-v1-6d4b-abcde": "cluster1"})
    assert r.answers[0].headers["x-hello"] == "from wasm" and r.answers[0].cluster == "cluster1"
    assert r.answers[1].status == 401 and r.answers[1].body.strip() == "missing api key"
    assert r.answers[1].headers == {"www-authenticate": "ApiKey"}


def test_parse_endpoints_reads_istioctl_json() -> None:
    data = [
        {"name": "outbound|5000||helloworld.sample.svc.cluster.local", "hostStatuses": [
            {"address": {"socketAddress": {"address": "10.10.0.12", "portValue": 5000}},
             "healthStatus": {"edsHealthStatus": "HEALTHY"}, "weight": 1, "locality": {"region": "region1", "zone": "zone1"}},
            {"address": {"socketAddress": {"address": "172.18.255.238", "portValue": 15443}},
             "healthStatus": {"edsHealthStatus": "HEALTHY", "failedOutlierCheck": True}, "weight": 1,
             "locality": {"region": "region2", "zone": "zone2"}, "priority": 1}]},
        {"name": "outbound|80||curl.sample.svc.cluster.local", "hostStatuses": []},
        {"name": "inbound|5000||", "hostStatuses": [{"address": {"socketAddress": {"address": "10.10.0.12", "portValue": 5000}}}]},
    ]  # fmt: skip
    rows = parse_endpoints(json.dumps(data), "helloworld")
    assert [r["ENDPOINT"] for r in rows] == ["10.10.0.12:5000", "172.18.255.238:15443"]
    assert rows[1] == {"ENDPOINT": "172.18.255.238:15443", "STATUS": "HEALTHY", "OUTLIER CHECK": "FAILED",
                       "CLUSTER": "outbound|5000||helloworld.sample.svc.cluster.local", "LOCALITY": "region2/zone2",
                       "PRIORITY": "1", "WEIGHT": "1"}  # fmt: skip
    assert len(parse_endpoints(json.dumps(data))) == 2
    gateway = [{"name": "outbound_.5000_._.helloworld.sample.svc.cluster.local", "hostStatuses": [
        {"address": {"socketAddress": {"address": "10.20.0.7", "portValue": 5000}}, "healthStatus": {"edsHealthStatus": "HEALTHY"}}]}]
    assert [r["ENDPOINT"] for r in parse_endpoints(json.dumps(gateway), "helloworld")] == ["10.20.0.7:5000"], "a gateway's SNI clusters"


@pytest.mark.parametrize("subnets", ["172.18.0.0/16", "fc00:f853:ccd:e793::/64 172.19.0.0/16", "10.253.7.0/24"])
def test_lb_pools_are_disjoint_and_inside_the_kind_network(subnets: str) -> None:
    net = next(ipaddress.ip_network(s) for s in subnets.split() if ":" not in s)
    ranges = []
    for i in range(3):
        lo, hi = (ipaddress.ip_address(x) for x in lb_pool(subnets, i, 3).split("-"))
        assert lo in net and hi in net and hi < net.broadcast_address
        assert int(lo) >= int(net.network_address) + net.num_addresses * 3 // 4, "kept away from container addresses"
        ranges.append(set(range(int(lo), int(hi) + 1)))
    assert not (ranges[0] & ranges[1] or ranges[1] & ranges[2] or ranges[0] & ranges[2])


def test_lb_pool_errors_name_the_problem() -> None:
    with pytest.raises(MeshlabError, match="no IPv4 subnet"):
        lb_pool("fc00::/64", 0, 2)
    with pytest.raises(MeshlabError, match="too small"):
        lb_pool("172.18.0.0/28", 0, 2)


def test_destroy_without_tools_downloads_nothing_and_removes_lab_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed first `up` (kind never installed) is torn down without fetching kind, and the lab's
    certificates go with it."""
    monkeypatch.setenv("MESHLAB_TOOLS", str(tmp_path / "empty-tools"))
    monkeypatch.setattr("meshlab.backends.kind.tools.download", lambda *a, **k: pytest.fail("teardown must not download"))
    st = State(tmp_path / "home")
    run_dir = tmp_path / "home" / "kind"
    (run_dir / "pki").mkdir(parents=True)
    st.data = {"backend": "kind", "clusters": ["cluster1"], "containers": [], "run_dir": str(run_dir)}
    (tmp_path / "home" / "kind-clusters.json").write_text('{"cluster1": null}')  # claimed, never created
    lines: list[str] = []
    assert KindBackend.destroy(st, progress=lines.append)["clusters"] == 0
    assert any("not installed" in line for line in lines)
    assert not run_dir.exists()


def test_live_call_and_endpoints_read_the_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live code paths, with the Kubernetes API and istioctl stubbed (no cluster here)."""
    from meshlab.backends.kind import kube

    topo = load_topology("separate-networks")
    st = State(tmp_path)
    st.data = {"backend": "kind", "dry_run": False, "clusters": list(topo.clusters), "deployments": [], "vars": {"CLUSTER1_EW_IP": "172.18.255.254"}}
    be = KindBackend(topo, st, progress=None)
    pods = {"cluster1": [{"name": "curl-5b8f-aaaaa", "ip": "10.10.0.5", "labels": {"app": "curl"}, "phase": "Running", "ready": True, "deleting": False},
                         {"name": "helloworld-v1-1-bbbbb", "ip": "10.10.0.6", "labels": {"app": "helloworld", "version": "v1"}, "phase": "Running", "ready": True, "deleting": False}],
            "cluster2": [{"name": "helloworld-v2-2-ccccc", "ip": "10.20.0.7", "labels": {"app": "helloworld", "version": "v2"}, "phase": "Running", "ready": True, "deleting": False}]}  # fmt: skip
    monkeypatch.setattr(kube, "pods", lambda cluster, ns, selector="": pods[cluster])
    calls: list[tuple] = []

    def fake_exec(cluster: str, ns: str, pod: str, container: str, command: list[str], timeout: float = 60) -> str:
        calls.append((cluster, ns, pod, container, command))
        return ("Hello version: v1, instance: helloworld-v1-1-bbbbb\n@@meshlab-status=200 0.01\n"
                "Hello version: v2, instance: helloworld-v2-2-ccccc\n@@meshlab-status=200 0.02\n")

    monkeypatch.setattr(kube, "exec_in_pod", fake_exec)
    r = be.call("curl", "http://helloworld.sample:5000/hello", "cluster1", n=2)
    assert r.tally == {("cluster1", "v1"): 1, ("cluster2", "v2"): 1}
    [(cluster, ns, pod, container, command)] = calls
    assert (cluster, ns, pod, container) == ("cluster1", "sample", "curl-5b8f-aaaaa", "curl") and command[:2] == ["sh", "-c"]
    assert "seq 2" in command[2] and "http://helloworld.sample:5000/hello" in command[2]

    seen: list[list[str]] = []

    def fake_run(argv: list[str], **kw: object) -> str:
        seen.append(argv)
        return json.dumps([{"name": "outbound|5000||helloworld.sample.svc.cluster.local", "hostStatuses": [
            {"address": {"socketAddress": {"address": "172.18.255.238", "portValue": 15443}}, "healthStatus": {"edsHealthStatus": "HEALTHY"}}]}])

    monkeypatch.setattr(be.executor, "run", fake_run)
    rows = be.endpoints("curl", "cluster1", "helloworld")
    assert rows[0]["ENDPOINT"] == "172.18.255.238:15443"
    assert seen[0] == ["istioctl", "--context", "kind-cluster1", "proxy-config", "endpoints", "curl-5b8f-aaaaa.sample", "-o", "json"]
    assert be.gateway_addresses() == {"cluster1": "172.18.255.254", "cluster2": "${CLUSTER2_EW_IP}"}
    with pytest.raises(LabStateError, match="no running pod of 'nginx'"):
        be.find("nginx", "cluster1")


def test_wait_synced_waits_for_every_expected_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a change, wait until every sidecar and gateway the running control plane serves is connected and none is
    STALE (twice in a row); a stopped control plane is skipped; a timeout names the proxies that lag."""
    from meshlab.backends.kind import backend as B
    from meshlab.backends.kind.executor import Executor

    st = State(tmp_path)
    st.data = {"control_planes": {"cluster1": "running"}, "deployments": []}
    be = KindBackend(load_topology("separate-networks"), st, executor=Executor(False, progress=None))
    pods = {("cluster1", "sample"): ["curl-a"], ("cluster2", "sample"): ["helloworld-v2-b"],
            ("cluster1", "istio-system"): ["istio-eastwestgateway-c"], ("cluster2", "istio-system"): []}
    monkeypatch.setattr("meshlab.backends.kind.kube.pods", lambda c, ns, sel="": [
        {"name": n, "phase": "Running", "deleting": False, "labels": {}, "ip": ""} for n in pods[(c, ns)]])
    answers = iter([
        [("curl-a.sample", ["SYNCED"])],  # helloworld and the gateway not connected yet
        [("curl-a.sample", ["SYNCED"]), ("helloworld-v2-b.sample", ["STALE"]), ("istio-eastwestgateway-c.istio-system", ["SYNCED"])],
        [("curl-a.sample", ["SYNCED"]), ("helloworld-v2-b.sample", ["SYNCED"]), ("istio-eastwestgateway-c.istio-system", ["SYNCED"])],
        [("curl-a.sample", ["SYNCED"]), ("helloworld-v2-b.sample", ["SYNCED"]), ("istio-eastwestgateway-c.istio-system", ["SYNCED"]),
         ("old-pod.sample", ["STALE"])],  # a proxy that is going away does not hold us up
    ])
    calls = []

    def run(argv: list[str], **kw: object) -> str:
        calls.append(argv)
        return json.dumps({"resources": [{"node": {"id": i}, "genericXdsConfigs": [{"configStatus": s} for s in states]}
                                         for i, states in next(answers)]})

    monkeypatch.setattr(be.executor, "run", run)
    monkeypatch.setattr(B, "PUSH_SETTLE", 0)
    monkeypatch.setattr(B.time, "sleep", lambda s: None)
    be._wait_synced("a test change")
    assert len(calls) == 4 and calls[0] == ["istioctl", "proxy-status", "--context", "kind-cluster1", "-o", "json"]

    answers = iter([[("curl-a.sample", ["SYNCED"])]] * 1000)
    with pytest.raises(MeshlabError, match="not connected: helloworld-v2-b.sample, istio-eastwestgateway-c.istio-system"):
        be._wait_synced("a test change", timeout=0)
    st.data["control_planes"]["cluster1"] = "stopped"
    calls.clear()
    be._wait_synced("nothing")
    assert calls == [], "a stopped control plane pushes nothing: no wait"


def test_sidecars_in_a_dry_run_lists_the_planned_pods(dry: KindBackend) -> None:
    """Lab.sidecars() on kind: one row per pod with its readiness (nothing runs in a dry run: none is ready)."""
    dry.deploy("curl", "cluster1")
    rows = dry.sidecars()
    assert rows and {r["CLUSTER"] for r in rows} <= {"cluster1", "cluster2"} and not any(r["READY"] for r in rows)
