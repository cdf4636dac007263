"""The management plane on real Envoy: two meshes under different roots, a VirtualMesh that federates
them and then gives them a shared root (CSR flow, istiod restart, pod bounce), the controller
following services as they appear and disappear, and federated telemetry in a real Prometheus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab.runtime import procs
from meshlab.lab import Lab

pytestmark = pytest.mark.integration
GLOBAL_URL = "http://helloworld.sample.svc.cluster2.global:5000/hello"
VM = """
apiVersion: networking.mesh.gloo.solo.io/v1
kind: VirtualMesh
metadata: {name: virtual-mesh, namespace: gloo-mesh}
spec:
%s  federation: {selectors: [{}]}
  meshes:
  - {name: istiod-istio-system-cluster1, namespace: gloo-mesh}
  - {name: istiod-istio-system-cluster2, namespace: gloo-mesh}
"""
SHARED = "  mtlsConfig:\n    autoRestartPods: true\n    shared:\n      rootCertificateAuthority:\n        generated: {}\n"


@pytest.fixture(scope="module")
def roots_lab(module_home: Path) -> Iterator[Lab]:
    home = module_home
    lab = Lab.up("separate-roots", samples=True, home_dir=home, quiet=True)
    yield lab
    Lab.down_all(home, quiet=True)


def wait(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_separate_roots_fail_then_a_shared_root_heals_them(roots_lab: Lab) -> None:
    lab = roots_lab
    lab.mesh.apply(VM % "")  # federation only: the objects exist, the trust does not
    r = lab.call("curl", GLOBAL_URL, cluster="cluster1", n=3)
    assert r.errors == 3, r.tally
    assert lab.stats("curl", "cluster1", contains="helloworld.sample.svc.cluster2.global.ssl.fail_verify_error")
    applied = lab.mesh.apply(VM % SHARED)
    assert applied.trust is not None and sorted(applied.trust.bounced) == ["cluster1", "cluster2"]
    r = lab.call("curl", GLOBAL_URL, cluster="cluster1", n=5)
    assert r.errors == 0 and r.clusters == {"cluster2"}, r.tally
    assert {m["metadata"]["labels"]["meshlab.dev/root-ca"] for m in lab.mesh.discover().meshes} == {"virtual-mesh-root"}


def test_controller_follows_services_appearing_and_disappearing(roots_lab: Lab) -> None:
    lab = roots_lab
    if not lab.state.data.get("mesh", {}).get("VirtualMesh"):
        lab.mesh.apply(VM % SHARED)
    lab.mesh.controller.start()
    host = "helloworld.demo.svc.cluster2.global"

    def has() -> bool:
        return any(host in r["HOST"] for r in lab.mesh.generated("cluster1"))

    lab.deploy("helloworld", cluster="cluster2", namespace="demo")
    assert wait(has), lab.mesh.controller.events()
    assert wait(lambda: lab.call("curl", f"http://{host}:5000/hello", cluster="cluster1").errors == 0)
    lab.undeploy("helloworld", cluster="cluster2", namespace="demo")
    assert wait(lambda: not has()), lab.mesh.controller.events()
    assert any(f"deleted ServiceEntry istio-system/{host}" in e and "[controller]" in e for e in lab.mesh.controller.events())


def test_federated_telemetry_counts_cross_cluster_requests(roots_lab: Lab) -> None:
    lab = roots_lab
    if not lab.state.data.get("mesh", {}).get("VirtualMesh"):
        lab.mesh.apply(VM % SHARED)
    tel = lab.mesh.telemetry
    tel.enable()
    assert lab.validate() == len(lab.backend.workloads)  # stats filter, :15090 listener, .global chains: envoy --mode validate
    q = 'sum(istio_requests_total{reporter="source",source_cluster="cluster1",destination_cluster="cluster2",response_code="200"})'
    before = tel.total(q)
    assert lab.call("curl", GLOBAL_URL, cluster="cluster1", n=7).errors == 0
    assert tel.wait_for(q, lambda v: v >= before + 7) == before + 7
    # the server's sidecar reports the same requests, with the caller's identity and mTLS
    served = 'istio_requests_total{reporter="destination",source_cluster="cluster1",destination_cluster="cluster2"}'
    tel.wait_for(f"sum({served})", lambda v: v >= 7)
    rows = tel.query(served)
    assert rows and all(r["metric"]["connection_security_policy"] == "mutual_tls" for r in rows)
    assert {r["metric"]["cluster"] for r in rows} == {"cluster2"}  # federated from cluster2's Prometheus


def test_down_stops_prometheus_and_the_controller(lab_home: Path) -> None:
    home = lab_home
    lab = Lab.up("separate-control-planes", samples=True, home_dir=home, quiet=True)
    try:
        lab.mesh.controller.start()
        lab.mesh.telemetry.enable()
        mine = [p for p in lab.state.data["processes"] if p["name"] == "mesh-controller" or p["name"].startswith("prometheus-")]
        assert len(mine) == 4 and all(procs.is_alive(p) for p in mine)
    finally:
        Lab.down_all(home, quiet=True)
    assert not any(procs.is_alive(p) for p in mine)
