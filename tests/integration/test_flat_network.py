"""The flat-network pattern on the local backend, with real Envoy sidecars in network namespaces."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshlab.runtime import envoy as E
from meshlab.runtime import net, procs
from meshlab.errors import LabStateError, ProcessExitedError, RunError
from meshlab.lab import Lab
from meshlab.state import State, prefix_for
from meshlab.dataplane import access_logs_on

pytestmark = pytest.mark.integration
URL = "http://helloworld.sample:5000/hello"


def test_calls_from_cluster1_are_answered_by_both_clusters(flat_lab: Lab) -> None:
    r = flat_lab.call("curl", URL, cluster="cluster1", n=20)
    assert r.errors == 0, r.answers
    assert set(r.tally) == {("cluster1", "v1"), ("cluster2", "v2")}
    assert sum(r.tally.values()) == 20
    first = r.answers[0]
    assert first.body.startswith(f"Hello version: {first.version}, instance: helloworld-{first.version}-")


def test_endpoints_are_pod_addresses_of_both_clusters_with_locality(flat_lab: Lab) -> None:
    rows = flat_lab.endpoints("curl", cluster="cluster1", service="helloworld")
    pods = {w.ip: w for w in flat_lab.backend.workloads if w.app == "helloworld"}
    assert sorted(r["ENDPOINT"] for r in rows) == sorted(f"{ip}:5000" for ip in pods)
    assert {r["CLUSTER"] for r in rows} == {"outbound|5000||helloworld.sample.svc.cluster.local"}
    for r in rows:
        w = pods[r["ENDPOINT"].split(":")[0]]
        c = flat_lab.topology.clusters[w.cluster]
        assert r["LOCALITY"] == f"{c.region}/{c.zone}"
        if flat_lab.backend.mode == net.NETNS:
            assert c.pod_cidr.overlaps(__import__("ipaddress").ip_network(w.ip))
        assert r["STATUS"] == "HEALTHY"


def test_mtls_identity_in_the_serving_sidecars_access_log(flat_lab: Lab) -> None:
    flat_lab.call("curl", URL, cluster="cluster1", n=10)
    logs = flat_lab.access_log("helloworld", "cluster2")
    assert logs, "the cluster2 helloworld sidecar logged nothing"
    entry = logs[-1]
    assert entry["downstream_peer"] == "spiffe://cluster.local/ns/sample/sa/curl"
    # the shared control plane (cluster1) issues every workload's certificate
    assert "intermediate CA cluster1" in entry["downstream_peer_issuer"]
    assert entry["sni"] == "outbound_.5000_._.helloworld.sample.svc.cluster.local"
    assert entry["tls"] == "TLSv1.3"


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_inbound_strict_mtls_plain_http_is_refused(flat_lab: Lab) -> None:
    # Istio's default is PERMISSIVE (plaintext served too): STRICT comes from a mesh-wide PeerAuthentication
    flat_lab.apply({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                    "metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}}, "cluster1")  # fmt: skip
    curl = flat_lab.backend.find("curl", "cluster1")
    hw2 = flat_lab.backend.find("helloworld", "cluster2")
    with net.in_netns(curl.netns):
        s = socket.create_connection((hw2.ip, 5000), timeout=2)  # flat network: the pod is reachable...
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: helloworld\r\n\r\n")
    try:
        data = s.recv(1024)
    except ConnectionResetError:
        data = b""
    s.close()
    assert b"Hello version" not in data  # ...but its sidecar only speaks mTLS


def test_new_workload_reaches_running_proxies_without_restart(flat_lab: Lab) -> None:
    curl = flat_lab.backend.find("curl", "cluster1")
    pids = {p["pid"] for p in flat_lab.state.data["processes"] if p["name"] == f"{curl.pod}/envoy"}
    flat_lab.deploy("helloworld", cluster="cluster2", version="v3")
    r = flat_lab.call("curl", URL, cluster="cluster1", n=30)
    assert ("cluster2", "v3") in r.tally, r.tally
    after = {p["pid"] for p in State(flat_lab.state.dir).data["processes"] if p["name"] == f"{curl.pod}/envoy"}
    assert after == pids and all(procs.is_alive({"pid": p, "start_time": procs.start_time(p)}) for p in pids)


def test_every_generated_config_passes_envoy_validate(flat_lab: Lab, tmp_path: Path) -> None:
    assert flat_lab.validate() == 4
    # and the validator does reject a broken config (so the pass above means something)
    with pytest.raises(RunError, match="no_such_field"):
        E.validate({"static_resources": {"clusters": [{"name": "x", "no_such_field": 1}]}}, tmp_path)


def test_unknown_workload_and_cluster_errors_name_the_fix(flat_lab: Lab) -> None:
    with pytest.raises(LabStateError, match="deploy it first"):
        flat_lab.call("productpage", URL, cluster="cluster1")
    with pytest.raises(Exception, match="use one of: cluster1, cluster2"):
        flat_lab.call("curl", URL, cluster="cluster9")


def test_down_is_idempotent_and_leaves_nothing(lab_home: Path) -> None:
    lab = Lab.up("flat-network", samples=True, home_dir=lab_home, quiet=True)
    recorded = list(lab.state.data["processes"])
    assert len(recorded) == 6 and all(procs.is_alive(p) for p in recorded)
    lab.down(quiet=True)
    assert not any(procs.is_alive(p) for p in recorded)
    assert net.existing_namespaces(prefix_for(lab_home)) == []
    assert not (lab_home / "run").exists() and not (lab_home / "state.json").exists()
    assert lab.down(quiet=True) == {"processes": 0, "namespaces": 0}


def test_up_replaces_a_previous_lab(lab_home: Path) -> None:
    first = Lab.up("flat-network", samples=True, home_dir=lab_home, quiet=True, keep=True)
    old = list(first.state.data["processes"])
    Lab.up("flat-network", home_dir=lab_home, quiet=True)
    assert not any(procs.is_alive(p) for p in old)


def _meshlab(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESHLAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "meshlab.cli", *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_cli_up_call_endpoints_down(lab_home: Path) -> None:
    up = _meshlab(lab_home, "up", "flat-network")
    assert up.returncode == 0, up.stderr
    assert "is up on the local backend" in up.stdout
    call = _meshlab(lab_home, "call", "curl", URL, "--cluster", "cluster1", "-n", "20")
    assert call.returncode == 0, call.stdout + call.stderr
    assert "cluster1  v1" in call.stdout and "cluster2  v2" in call.stdout
    eps = _meshlab(lab_home, "endpoints", "curl", "--cluster", "cluster1")
    assert eps.stdout.count("outbound|5000||helloworld.sample.svc.cluster.local") == 2
    status = json.loads(_meshlab(lab_home, "status", "--json").stdout)
    assert status["processes"] == "6/6 running"
    down = _meshlab(lab_home, "down")
    assert "6 processes stopped" in down.stdout
    assert net.existing_namespaces(prefix_for(lab_home)) == []
    again = _meshlab(lab_home, "down")
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_cli_errors_are_clear(lab_home: Path) -> None:
    r = _meshlab(lab_home, "up", "no-such-pattern")
    assert r.returncode == 1
    assert "unknown pattern 'no-such-pattern'" in r.stderr and "flat-network" in r.stderr
    r = _meshlab(lab_home, "call", "curl", URL, "--cluster", "cluster1")
    assert r.returncode == 1 and "no lab is running" in r.stderr


def test_sigkilled_orchestrator_leaves_a_record_that_down_removes(lab_home: Path) -> None:
    code = (
        "from meshlab import Lab\n"
        f"Lab.up('flat-network', samples=True, home_dir={str(lab_home)!r}, quiet=True)\n"
        "print('ready', flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGKILL)  # no atexit, no handler: what a killed kernel leaves
    p.wait()
    recorded = State(lab_home).data["processes"]
    assert recorded and all(procs.is_alive(r) for r in recorded), "the lab should survive its orchestrator"
    assert net.existing_namespaces(prefix_for(lab_home)) or State(lab_home).data["mode"] == net.LOOPBACK
    down = _meshlab(lab_home, "down")
    assert down.returncode == 0, down.stderr
    assert not any(procs.is_alive(r) for r in recorded)
    assert net.existing_namespaces(prefix_for(lab_home)) == []


def test_orchestrator_exit_cleans_up_by_itself(lab_home: Path) -> None:
    code = f"from meshlab import Lab\nLab.up('flat-network', samples=True, home_dir={str(lab_home)!r}, quiet=True)\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert not State(lab_home).exists
    assert net.existing_namespaces(prefix_for(lab_home)) == []


def test_envoy_that_exits_early_is_reported_with_its_log(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"static_resources": {"clusters": [{"name": "x", "bogus": 1}]}}))
    p = procs.spawn("bad/envoy", E.envoy_argv(cfg, tmp_path / "envoy.log"), tmp_path / "stdout.log")
    t0 = time.monotonic()
    with pytest.raises(ProcessExitedError) as e:
        procs.wait_until(lambda: False, p, "Envoy's /ready answered 200", timeout=20)
    assert time.monotonic() - t0 < 10
    assert "exited with code" in str(e.value) and "bogus" in str(e.value)


def test_loopback_mode_works_and_says_isolation_is_lost(lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLAB_NET_MODE", "loopback")
    lab = access_logs_on(Lab.up("flat-network", samples=True, home_dir=lab_home, quiet=True))
    assert lab.backend.mode == net.LOOPBACK
    r = lab.call("curl", URL, cluster="cluster1", n=20)
    assert r.errors == 0 and r.clusters == {"cluster1", "cluster2"}
    entry = lab.access_log("helloworld", "cluster2")[-1]
    curl = lab.backend.find("curl", "cluster1")
    assert entry["downstream_remote"].startswith(curl.ip + ":")  # the caller's pod address, not 127.0.0.1
    lab.down(quiet=True)
    monkeypatch.setenv("MESHLAB_NET_MODE", "bogus")
    with pytest.raises(Exception, match="not a network mode"):
        net.choose_mode()


@pytest.mark.skipif(not net._userns_allowed(), reason="user namespaces are not allowed on this machine")
def test_user_namespace_mode_isolates_and_leaves_nothing(lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unprivileged mode (forced here; chosen automatically when not root): same lab, private namespaces."""
    monkeypatch.setenv("MESHLAB_NET_MODE", "userns")
    lab = Lab.up("flat-network", samples=True, home_dir=lab_home, quiet=True)
    assert lab.backend.mode == net.USERNS
    assert net.existing_namespaces(prefix_for(lab_home)) == []  # nothing in the host's namespace list
    r = lab.call("curl", URL, cluster="cluster1", n=20)
    assert r.errors == 0 and r.clusters == {"cluster1", "cluster2"}
    hw2 = lab.backend.find("helloworld", "cluster2")
    assert lab.connect("curl", "cluster1", hw2.ip, 5000) == "connected"  # flat network: routed
    recorded = list(lab.state.data["processes"])
    lab.down(quiet=True)
    assert not any(procs.is_alive(p) for p in recorded)


def test_a_taken_address_fails_loudly(lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two loopback labs would share 127.x addresses: the second must fail, not silently share ports."""
    monkeypatch.setenv("MESHLAB_NET_MODE", "loopback")
    lab = Lab.up("flat-network", home_dir=lab_home, quiet=True)
    c1 = lab.topology.clusters["cluster1"]
    addr = lab.backend.network.pod_addresses(lab.topology, c1, 0)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((addr.outbound, 15001))
    blocker.listen()
    try:
        with pytest.raises(Exception, match="(?si)address already in use.*meshlab down"):
            lab.deploy("curl", cluster="cluster1")
    finally:
        blocker.close()
        lab.down(quiet=True)
