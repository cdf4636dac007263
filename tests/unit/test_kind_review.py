"""Issue 18, the kind path's second review: each run-breaker and wrong lesson, caught without Docker (the
recorded plan, or the real code path against stand-ins for the cluster)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from meshlab import faults, versions
from meshlab.backends.kind import KindBackend
from meshlab.lab import dry_run_lab
from meshlab.backends.kind.executor import Executor
from meshlab.state import State
from meshlab.topology import load_topology


def steps_since(lab: Any, n: int) -> list[Any]:
    return list(lab.backend.recorded)[n:]


# ---- items 3 and 4: the outside client --------------------------------------------------------------

def test_an_outside_call_runs_on_the_kind_network_and_names_the_cluster_that_answered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker Desktop does not route the host to the kind network: curl runs in a container on it. And each
    answer carries the cluster of the pod that served it (the pod->cluster map was empty)."""
    from meshlab.backends.kind import kube

    state = State(tmp_path)
    state.data = {"backend": "kind", "clusters": ["cluster1", "cluster2"], "deployments": [], "control_planes": {"cluster1": "running"}}
    be = KindBackend(load_topology("separate-networks"), state, Executor(False, progress=None), progress=None)
    ran: list[tuple[list[str], str | None]] = []

    def run(argv: list[str], **kw: Any) -> str:
        ran.append((argv, kw.get("input")))
        if argv[0] == "kubectl":
            return "172.18.255.239"
        mark = "@@meshlab-status="
        return "".join(f"HTTP/1.1 200 OK\r\n\r\nHello version: {v}, instance: helloworld-{v}-abc\n{mark}200 0.01\n" for v in ("v1", "v2"))

    monkeypatch.setattr(be.executor, "run", run)
    monkeypatch.setattr(kube, "pods", lambda c, ns, sel="": [{"name": f"helloworld-v{c[-1]}-abc"}])
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    r = be.call_from_outside("https://hello.example.com/hello", "cluster1", n=2, ca=str(ca))
    assert r.clusters == {"cluster1", "cluster2"} and r.errors == 0, r.tally
    [(lb, _), (docker, stdin)] = ran
    assert lb[-1] == "jsonpath={.status.loadBalancer.ingress[0].ip}"
    assert docker[:2] == ["docker", "run"] and docker[docker.index("--network") + 1] == "kind" and "--pull=never" in docker
    assert "--resolve hello.example.com:443:172.18.255.239 " in docker[-1] and stdin == ca.read_text()


def test_the_outside_call_waits_for_the_ingress_address(tmp_path: Path) -> None:
    lab = dry_run_lab("separate-networks", tmp_path)
    with pytest.raises(Exception, match="dry run"):
        lab.call_from_outside("http://hello.example.com/hello", "cluster1")
    [address] = [s for s in lab.backend.recorded.find(tag="ingress") if "jsonpath" in " ".join(s.argv)]
    assert address.poll, "MetalLB may not have assigned it yet"


# ---- item 5: restarts are waited for --------------------------------------------------------------

def test_a_new_root_restarts_every_workload_and_the_gateways_and_waits_for_each_rollout(tmp_path: Path) -> None:
    lab = dry_run_lab("separate-control-planes", tmp_path)
    n = len(lab.backend.recorded.steps)
    faults.inject(lab, "two-roots")
    steps = steps_since(lab, n)
    argvs = [" ".join(s.argv[3:]) for s in steps if s.argv and s.argv[0] == "kubectl" and s.cluster == "cluster2"]
    assert not [a for a in argvs if "condition=Available" in a], "Available holds during a rolling update"
    restarted = [a for a in argvs if "rollout restart" in a]
    assert restarted == ["-n istio-system rollout restart deployment/istiod", "-n sample rollout restart deployment",
                         "-n istio-system rollout restart deployment/istio-eastwestgateway",
                         "-n istio-system rollout restart deployment/istio-ingressgateway"]
    for name in ("helloworld-v2", "curl", "istio-eastwestgateway", "istio-ingressgateway"):
        status = next(i for i, a in enumerate(argvs) if f"rollout status deployment/{name} " in a + " ")
        assert status > next(i for i, a in enumerate(argvs) if "rollout restart" in a and ("deployment/" + name in a or "-n sample" in a))
    last = steps[-1]
    assert last.argv[:2] == ["istioctl", "proxy-status"], "then the new proxies are in sync"


# ---- item 9: the drain of a removed listener ---------------------------------------------------------

def test_removing_expose_services_waits_for_the_gateways_to_drain_on_kind(tmp_path: Path) -> None:
    lab = dry_run_lab("separate-networks", tmp_path)
    n = len(lab.backend.recorded.steps)
    faults.inject(lab, "expose-services")
    steps = steps_since(lab, n)
    delete = next(i for i, s in enumerate(steps) if "delete" in s.argv)
    drains = [(i, s) for i, s in enumerate(steps) if "drain" in s.tags]
    assert {s.cluster for _, s in drains} == {"cluster1", "cluster2"} and min(i for i, _ in drains) > delete
    assert all("listener_manager.total_listeners_draining" in s.argv[-1] for _, s in drains)


# ---- item 10: a crashed app behind a live sidecar -----------------------------------------------------

def test_max_ejection_crashes_the_app_and_keeps_the_sidecar_on_kind(tmp_path: Path) -> None:
    from meshlab.backends.kind.dataplane import DEAD_APP

    lab = dry_run_lab("separate-networks", tmp_path)
    n = len(lab.backend.recorded.steps)
    faults.inject(lab, "max-ejection")
    steps = steps_since(lab, n)
    assert not [s for s in steps if any(a.startswith("--replicas") for a in s.argv)], "scaling to zero takes the endpoint out of EDS"
    [crash] = [s for s in steps if "crash" in s.tags]
    assert crash.argv[3:7] == ["-n", "sample", "patch", "deployment/helloworld-v1"] and list(DEAD_APP) == __import__("json").loads(crash.argv[-1])[0]["value"]
    assert any("rollout status deployment/helloworld-v1" in " ".join(s.argv) for s in steps)
    n = len(lab.backend.recorded.steps)
    faults.restore_v1(lab)
    undo = [s for s in steps_since(lab, n) if "restore" in s.tags]
    assert [s.argv[3:] for s in undo] == [["-n", "sample", "rollout", "undo", "deployment/helloworld-v1"]]
    assert lab.backend.recorded.problems() == []


# ---- item 11: load over the time it really ran ---------------------------------------------------------

def test_the_load_script_measures_the_time_its_loops_really_ran(tmp_path: Path) -> None:
    """Run the very script `lab.load` sends to the pod, with a stand-in curl: the rate is computed over the
    measured time, not the seconds asked for (a whole-second deadline stopped up to a second early)."""
    from meshlab.backends.kind.backend import elapsed_of, load_script

    fake = tmp_path / "curl"
    fake.write_text("#!/bin/sh\nsleep 0.05\necho 'MESHLAB-LOAD 200 0.050'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.monotonic()
    out = subprocess.run(["sh", "-c", load_script("http://helloworld:5000/hello", 2, 1.3)], env=env, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    wall = time.monotonic() - t0
    measured = elapsed_of(out, 1.3)
    assert 1.3 <= measured <= wall + 0.02, (measured, wall)
    assert out.count("MESHLAB-LOAD 200") > 10
    assert elapsed_of("no mark\n", 3.0) == 3.0


# ---- items 5, 6, 7 on lab 05's kind steps ----------------------------------------------------------------

@pytest.fixture
def lab05(tmp_path: Path) -> Any:
    return dry_run_lab("separate-roots", tmp_path)


def test_lab05_polls_for_each_prometheus_address_and_pins_the_addon(lab05: Any) -> None:
    from meshlab.backends.kind import tools

    n = len(lab05.backend.recorded.steps)
    lab05.mesh.telemetry.enable()
    steps = steps_since(lab05, n)
    [fetch] = [s for s in steps if s.action == "meshlab"]
    assert fetch.args == {"name": "prometheus-addon"}
    addon = tools.ARTIFACTS["prometheus-addon"]()
    assert addon.sha256 and f"/istio/istio/{tools.versions.ISTIO_VERSION}/samples/addons/prometheus.yaml" in addon.url, "a tag, not a branch"
    addresses = [s for s in steps if s.capture and s.capture.startswith("PROMETHEUS_")]
    assert [s.capture for s in addresses] == ["PROMETHEUS_CLUSTER1_IP", "PROMETHEUS_CLUSTER2_IP"] and all(s.poll for s in addresses)
    rollouts = [s for s in steps if "rollout status deployment/prometheus " in " ".join(s.argv) + " "]
    assert len(rollouts) == 2, "the addon is waited for in every cluster"
    lab05.backend.recorded.check()  # every placeholder set by an earlier step, every manifest valid


def test_lab05_shared_trust_bounce_waits_for_each_rollout(lab05: Any) -> None:
    n = len(lab05.backend.recorded.steps)
    lab05.mesh.restart("cluster2")
    argvs = [" ".join(s.argv[3:]) for s in steps_since(lab05, n) if s.argv and s.argv[0] == "kubectl"]
    assert not [a for a in argvs if "condition=Available" in a]
    assert "-n istio-system rollout restart deployment/istio-eastwestgateway" in argvs
    assert any(a.startswith("-n istio-system rollout status deployment/istio-eastwestgateway") for a in argvs)
    assert any(a.startswith("-n sample rollout status deployment/helloworld-v2") for a in argvs)


# ---- item 7: the image cache holds every image any plan runs --------------------------------------------

IMAGE_REF = re.compile(r"^[a-z0-9][\w.-]*(:\d+)?/[\w./-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$")


def _images_of(steps: list[Any]) -> set[str]:
    """Every image the steps make Docker or a cluster run: containers in manifests, `docker run|pull` images,
    Istio's images (IstioOperator hub/tag), and the images of the manifests applied from verified files."""
    from meshlab.backends.kind import images, tools

    by_file = {str(tools.metallb_artifact().program): tools.metallb_images(),
               **{str(tools.addon_artifact(n).program): imgs for n, imgs in tools.ADDON_IMAGES.items()}}
    out: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("kind") == "IstioOperator":
                out.update(f"{node['spec']['hub']}/{c}:{node['spec']['tag']}" for c in ("pilot", "proxyv2"))
            if isinstance(node.get("image"), str):
                out.add(node["image"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for s in steps:
        walk(s.manifests)
        if s.argv[:2] in (["docker", "run"], ["docker", "pull"]):
            out.update(a for a in s.argv[2:] if IMAGE_REF.match(a))
        if s.argv[:1] == ["kubectl"] and "apply" in s.argv and s.argv[s.argv.index("-f") + 1] in by_file:
            out.update(by_file[s.argv[s.argv.index("-f") + 1]])
    return {versions.KIND_NODE_IMAGE if i == images.NODE_TAG else i for i in out}


def test_the_image_cache_is_exactly_the_images_of_every_plan(tmp_path: Path) -> None:
    """Bring-up of every pattern, every kind-only step the labs use (the rehearsal's acts), the tracing addon:
    the images they run are exactly what `meshlab kind images pull` caches (nothing pulled in the room)."""
    from meshlab import rehearse
    from meshlab.backends.kind import images, istio, up_plan
    from meshlab.backends.kind.plan import Plan
    from meshlab.topology import patterns_dir

    steps: list[Any] = []
    for p in sorted(patterns_dir().glob("*.yaml")):
        steps += up_plan(load_topology(p), tmp_path / p.stem, samples=True).steps
    lines: list[str] = []
    assert rehearse.rehearse(dry_run=True, progress=lines.append) == 0
    lab = dry_run_lab(rehearse.PATTERN, tmp_path / "acts")
    for act in rehearse.acts():
        try:
            act.run(lab)
        except Exception:  # noqa: BLE001 - a dry run cannot read answers; the commands are recorded
            pass
    steps += lab.backend.recorded.steps
    tracing = Plan("tracing")
    istio.add_tracing_addon(tracing, load_topology("separate-control-planes"))
    steps += tracing.steps
    assert _images_of(steps) == set(images.host_images())


ISTIO_GIT = Path("/work/.mirror/istio+istio/repo")


@pytest.mark.skipif(not ISTIO_GIT.is_dir(), reason="no clone of istio/istio on this machine")
def test_the_pinned_addons_and_their_images_are_istios_at_release_1_31() -> None:
    """The sha256 and the images pinned for Istio's addons are those of the files in Istio's release-1.31 branch."""
    import hashlib

    from meshlab.backends.kind import tools

    for name, imgs in tools.ADDON_IMAGES.items():
        text = subprocess.run(["git", f"--git-dir={ISTIO_GIT}", "show", f"release-1.31:samples/addons/{name}.yaml"],
                              capture_output=True, check=True).stdout
        assert hashlib.sha256(text).hexdigest() == tools.ADDONS_SHA256[(tools.versions.ISTIO_VERSION, name)]
        assert sorted(set(re.findall(r'image: "?([^"\s]+)"?', text.decode()))) == sorted(imgs)


# ---- item 14: the dress rehearsal ------------------------------------------------------------------------

def test_rehearse_dry_run_prints_its_plan(capsys: pytest.CaptureFixture[str]) -> None:
    from meshlab.cli import main

    assert main(["kind", "rehearse", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "meshlab plan: separate-networks" in out, "the bring-up plan first"
    for title in ("every lab's bring-up plan", "a call from outside through the ingress gateway", "the global rate-limit service",
                  "Prometheus", "a Wasm module from the hub", "fault 'network-label' injected and repaired"):
        assert f"## {title}" in out
    assert "$ docker run --rm -i --pull=never --network kind" in out and "kubectl --context kind-cluster1 apply -f" in out
    assert "FAIL:" not in out and "verdict: not rehearsed (dry run)" in out


# ---- item 2 on kind: istiod's cluster for a SIMPLE DestinationRule without sni -----------------------------

def test_lab09_reads_the_originated_sni_from_istiods_cluster_shape() -> None:
    """What `istioctl`/config_dump shows for Istio 1.31's cluster (constructUpstreamTLS leaves `sni` empty, so JSON
    omits it; setAutoSniAndAutoSanValidation sets the options): lab 09's check reads it without a KeyError."""
    from meshlab import checks

    cluster = {
        "name": "outbound|80||external.meshlab.test",
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {"combined_validation_context": {"default_validation_context": {}}}}},
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "upstream_http_protocol_options": {"auto_sni": True, "auto_san_validation": True},
            "explicit_http_config": {"http_protocol_options": {}}}},
    }
    assert checks.originated_sni(cluster) == {"sni": "", "auto_sni": True, "auto_san_validation": True}


# ---- item 11: lab 05's KubeFed kill waits for the pods to go ---------------------------------------------

def test_kubefed_kill_waits_until_the_pods_are_gone_and_the_push(tmp_path: Path) -> None:
    lab = dry_run_lab("separate-roots", tmp_path)
    n = len(lab.backend.recorded.steps)
    lab.mesh.kubefed_kill("helloworld", "cluster2", "demo")
    scale, gone, pushed = steps_since(lab, n)[:3]
    assert scale.argv[3:] == ["-n", "demo", "scale", "deployment", "-l", "app=helloworld", "--replicas=0"]
    assert gone.argv[3:] == ["-n", "demo", "wait", "--for=delete", "pod", "-l", "app=helloworld", "--timeout=120s"]
    assert pushed.argv[:2] == ["istioctl", "proxy-status"]
