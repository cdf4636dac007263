"""Issue 18, the kind path's second review: each run-breaker and wrong lesson, caught without Docker (the
recorded plan, or the real code path against stand-ins for the cluster)."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from meshlab import faults
from meshlab.backends.kind import KindBackend, dry_run_lab
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
