"""Separate networks and separate control planes on the local backend: gateways, split-horizon EDS,
federation and trust, Istio resources, failover, control-plane failure domains."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshlab.runtime import net
from meshlab.errors import ResourceError
from meshlab.lab import Lab
from meshlab.topology import patterns_dir
from meshlab.dataplane import access_logs_on

pytestmark = pytest.mark.integration
URL = "http://helloworld.sample:5000/hello"
netns_only = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs network namespaces (root)")


@pytest.fixture
def sn_lab(lab_home: Path) -> Iterator[Lab]:
    lab = access_logs_on(Lab.up("separate-networks", samples=True, home_dir=lab_home, quiet=True))
    yield lab
    lab.down(quiet=True)


def gateway(lab: Lab, cluster: str) -> str:
    return lab.backend.find("istio-eastwestgateway", cluster).ip


def test_split_horizon_endpoints_per_network(sn_lab: Lab) -> None:
    lab = sn_lab
    hw1 = lab.backend.find("helloworld", "cluster1")
    rows = lab.endpoints("curl", cluster="cluster1", service="helloworld")
    assert sorted(r["ENDPOINT"] for r in rows) == sorted([f"{hw1.ip}:5000", f"{gateway(lab, 'cluster2')}:15443"])
    # the mirror image from cluster2
    hw2 = lab.backend.find("helloworld", "cluster2")
    rows2 = lab.endpoints("curl", cluster="cluster2", service="helloworld")
    assert sorted(r["ENDPOINT"] for r in rows2) == sorted([f"{hw2.ip}:5000", f"{gateway(lab, 'cluster1')}:15443"])
    # the gateway endpoint is weighted by the number of pods behind it, as istiod does
    lab.deploy("helloworld", cluster="cluster2", version="v2")
    weights = {r["ENDPOINT"]: r["WEIGHT"] for r in lab.endpoints("curl", cluster="cluster1", service="helloworld")}
    assert weights[f"{gateway(lab, 'cluster2')}:15443"] == "2"


def test_calls_cross_the_gateway_with_end_to_end_mtls(sn_lab: Lab) -> None:
    lab = sn_lab
    r = lab.call("curl", URL, cluster="cluster1", n=20)
    assert r.errors == 0 and r.clusters == {"cluster1", "cluster2"}, r.tally
    served = [e for e in lab.access_log("helloworld", "cluster2") if e["downstream_peer"]]
    assert served and served[-1]["downstream_peer"] == "spiffe://cluster.local/ns/sample/sa/curl"
    gw = lab.access_log("istio-eastwestgateway", "cluster2")
    assert gw, "the cluster2 gateway logged no connection"
    assert gw[-1]["sni"] == "outbound_.5000_._.helloworld.sample.svc.cluster.local"
    assert gw[-1]["upstream_host"] == f"{lab.backend.find('helloworld', 'cluster2').ip}:5000"
    assert all(e["downstream_peer"] is None for e in gw), "the gateway must never terminate TLS"


@netns_only
def test_a_pod_reaches_remote_pods_only_through_the_gateway(sn_lab: Lab) -> None:
    lab = sn_lab
    hw2 = lab.backend.find("helloworld", "cluster2")
    assert lab.connect("curl", "cluster1", hw2.ip, 5000).startswith("refused")
    assert lab.connect("curl", "cluster1", gateway(lab, "cluster2"), 15443) == "connected"
    assert lab.connect("curl", "cluster1", lab.backend.find("helloworld", "cluster1").ip, 5000) == "connected"


def test_unknown_sni_is_refused_at_the_gateway(sn_lab: Lab) -> None:
    lab = sn_lab
    curl = lab.backend.find("curl", "cluster1")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with net.in_netns(curl.netns):
        raw = socket.create_connection((gateway(lab, "cluster2"), 15443), timeout=3)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with ctx.wrap_socket(raw, server_hostname="outbound_.5000_._.nope.sample.svc.cluster.local") as s:
            s.recv(1)
            raise ConnectionError("the handshake must not complete")


def test_unsupported_fields_are_refused_by_name(sn_lab: Lab) -> None:
    dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "hw"},
        "spec": {"host": "helloworld", "trafficPolicy": {"portLevelSettings": []}},
    }
    with pytest.raises(ResourceError, match=r"spec\.trafficPolicy\.portLevelSettings"):
        sn_lab.apply(dr, cluster="cluster1")
    with pytest.raises(ResourceError, match="kind 'WorkloadEntry' is not supported"):
        sn_lab.apply("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: x}\nspec: {}\n", cluster="cluster1")
    with pytest.raises(ResourceError, match="spec.ingress is not supported"):  # a Sidecar: egress hosts only
        sn_lab.apply("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: x}\nspec: {ingress: []}\n", cluster="cluster1")
    with pytest.raises(ResourceError, match="must be int"):
        dr["spec"]["trafficPolicy"] = {"outlierDetection": {"consecutive5xxErrors": "three"}}
        sn_lab.apply(dr, cluster="cluster1")


def test_failover_to_the_other_network_and_back(sn_lab: Lab) -> None:
    lab = sn_lab
    lab.apply(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld, namespace: sample}
spec:
  host: helloworld.sample.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting: {enabled: true, failover: [{from: region1, to: region2}]}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 100}
""",
        cluster="cluster1",
    )
    prio = {r["ENDPOINT"].split(":")[1]: r["PRIORITY"] for r in lab.endpoints("curl", cluster="cluster1", service="helloworld")}
    assert prio == {"5000": "0", "15443": "1"}
    assert lab.call("curl", URL, cluster="cluster1", n=10).clusters == {"cluster1"}
    lab.kill("helloworld", "cluster1")
    t_kill = time.monotonic()
    after = lab.call("curl", URL, cluster="cluster1", n=20)
    assert after.clusters == {"cluster2"}, after.tally
    assert after.errors <= 3, after.tally  # Istio's default retries hide most of the ejection
    first_remote = next(i for i, a in enumerate(after.answers) if a.cluster == "cluster2")
    assert sum(a.seconds for a in after.answers[: first_remote + 1]) < 2.0
    assert any(r["OUTLIER CHECK"] == "FAILED" for r in lab.endpoints("curl", cluster="cluster1", service="helloworld"))
    lab.restore("helloworld", "cluster1")
    deadline = t_kill + 15
    while time.monotonic() < deadline:
        if "cluster1" in lab.call("curl", URL, cluster="cluster1", n=1).clusters:
            break
        time.sleep(0.2)
    else:
        pytest.fail("no fail-back to cluster1 within 15 s of the kill")


def test_config_reaches_only_the_owning_control_planes_proxies(lab_home: Path) -> None:
    lab = Lab.up("separate-control-planes", samples=True, home_dir=lab_home, quiet=True)
    se = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "ext", "namespace": "sample"},
        "spec": {
            "hosts": ["ext.example.internal"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "location": "MESH_EXTERNAL",
            "resolution": "STATIC",
            "endpoints": [{"address": "10.99.0.1"}],
        },
    }
    lab.apply(se, cluster="cluster2")
    names = lambda c: {x["CLUSTER"] for x in lab.endpoints("curl", cluster=c)}  # noqa: E731
    assert "outbound|80||ext.example.internal" in names("cluster2")
    assert "outbound|80||ext.example.internal" not in names("cluster1")
    lab.down(quiet=True)


def test_separate_control_planes_then_federation(lab_home: Path) -> None:
    lab = Lab.up("separate-control-planes", samples=True, home_dir=lab_home, quiet=True)
    assert lab.call("curl", URL, cluster="cluster1", n=10).clusters == {"cluster1"}
    assert lab.call("curl", URL, cluster="cluster2", n=10).clusters == {"cluster2"}
    vm = lab.federate()
    assert vm.shared_root
    r1 = lab.call("curl", URL, cluster="cluster1", n=20)
    assert r1.errors == 0 and r1.clusters == {"cluster1", "cluster2"}, r1.tally
    assert lab.call("curl", URL, cluster="cluster2", n=20).clusters == {"cluster1", "cluster2"}
    # separate failure domains: stopping cluster1's control plane does not affect cluster2
    lab.stop_control_plane("cluster1")
    lab.deploy("helloworld", cluster="cluster2", version="v3")
    lab.deploy("helloworld", cluster="cluster1", version="v3")  # starts, but its sidecar gets no configuration
    ready = {(w["cluster"], w["version"]): w["ready"] for w in lab.status()["workloads"] if w["app"] == "helloworld"}
    assert ready[("cluster1", "v3")] is False and ready[("cluster2", "v3")] is True
    assert lab.call("curl", URL, cluster="cluster1", n=10).errors == 0  # last config keeps serving
    lab.start_control_plane("cluster1")
    assert all(w["ready"] for w in lab.status()["workloads"])
    assert lab.validate() == 8
    lab.down(quiet=True)


def test_without_a_shared_root_the_handshake_fails(lab_home: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load((patterns_dir() / "separate-control-planes.yaml").read_text())
    doc["meshes"]["mesh2"]["rootCA"] = "other-root"
    path = tmp_path / "two-roots.yaml"
    path.write_text(yaml.safe_dump(doc))
    lab = Lab.up(path, home_dir=lab_home, quiet=True)
    lab.deploy("helloworld", cluster="cluster2", version="v2")  # the only instance: across the mesh boundary
    lab.deploy("curl", cluster="cluster1")
    assert not lab.federate().shared_root
    r = lab.call("curl", URL, cluster="cluster1", n=5)
    assert r.tally == {("error", "503"): 5}, r.tally
    # the client's sidecar refused the server's certificate: it does not chain to mesh1's root
    assert sum(lab.stats("curl", "cluster1", "ssl.fail_verify_error").values()) >= 5
    lab.down(quiet=True)


def test_shared_control_plane_stop_new_sidecars_get_no_config_everywhere(sn_lab: Lab) -> None:
    lab = sn_lab
    lab.stop_control_plane("cluster1")
    assert lab.call("curl", URL, cluster="cluster2", n=10).errors == 0  # proxies keep their last config
    for cluster in ("cluster1", "cluster2"):
        lab.deploy("curl", cluster=cluster)  # the pod starts, as on Kubernetes; its sidecar waits for config
        new = [w for w in lab.status()["workloads"] if w["cluster"] == cluster and w["app"] == "curl"][-1]
        assert new["ready"] is False
        r = lab.call(new["pod"], URL, cluster=cluster, n=2)
        assert r.errors == 2 and all(a.status == 0 for a in r.answers), r.tally  # no listener: nothing to route with
    with pytest.raises(Exception, match="remote of cluster1"):
        lab.stop_control_plane("cluster2")
    lab.start_control_plane("cluster1")
    assert all(w["ready"] for w in lab.status()["workloads"])
    new = [w for w in lab.status()["workloads"] if w["cluster"] == "cluster2" and w["app"] == "curl"][-1]
    assert lab.call(new["pod"], URL, cluster="cluster2", n=5).errors == 0
    lab.deploy("helloworld", cluster="cluster2", version="v9")
    # asked from cluster2, where v9 is a local endpoint (through a gateway the balancing is per connection)
    assert ("cluster2", "v9") in lab.call("curl", URL, cluster="cluster2", n=30).tally


def test_a_new_pod_does_not_break_routed_traffic_of_existing_pods(sn_lab: Lab) -> None:
    """Bridges have fixed MACs: adding pods must not invalidate what existing pods learned by ARP."""
    lab = sn_lab
    assert lab.call("curl", URL, cluster="cluster2", n=10).errors == 0  # curl@cluster2 has resolved its gateway
    for _ in range(3):
        lab.deploy("helloworld", cluster="cluster2", version="v2")
    r = lab.call("curl", URL, cluster="cluster2", n=20)
    assert r.errors == 0 and "cluster1" in r.clusters, r.tally
    # endpoints of the gateway itself are listed too (its clusters are named by SNI)
    rows = lab.endpoints("istio-eastwestgateway", cluster="cluster2", service="helloworld")
    assert len(rows) == 4 and all(r["CLUSTER"] == "outbound_.5000_._.helloworld.sample.svc.cluster.local" for r in rows)
    eds = lab.envoy_config("curl", "cluster1", "dynamic_endpoint_configs")
    assert eds["configs"], "the EDS dump should list the endpoint configs"
