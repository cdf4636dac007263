"""Multi-primary on different networks on the local backend (real Envoy): each istiod reads both registries
through remote secrets, a revoked secret takes the other cluster's endpoints away, one istiod stopped leaves the
other cluster alone, and a cross-cluster request is one trace (OTLP to meshlab's collector)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab import tracing
from meshlab.lab import Lab
from meshlab.runtime import procs

pytestmark = pytest.mark.integration
URL = "http://helloworld.sample:5000/hello"


@pytest.fixture(scope="module")
def mp_lab(module_home: Path) -> Iterator[Lab]:
    lab = Lab.up("multi-primary", samples=True, home_dir=module_home, quiet=True)
    yield lab
    lab.down(quiet=True)


def endpoints(lab: Lab, cluster: str) -> dict[str, int]:
    return {e["ENDPOINT"]: int(e["WEIGHT"]) for e in lab.endpoints("curl", cluster=cluster, service="helloworld")}


def gw(lab: Lab, cluster: str) -> str:
    return f"{lab.backend.find('istio-eastwestgateway', cluster).ip}:15443"


def test_each_istiod_reads_both_registries_and_a_revoked_secret_takes_endpoints_away(mp_lab: Lab) -> None:
    lab = mp_lab
    assert gw(lab, "cluster2") in endpoints(lab, "cluster1") and gw(lab, "cluster1") in endpoints(lab, "cluster2")
    assert [r["NAME"] for r in lab.backend.remote_clusters("cluster1")] == ["cluster1", "cluster2"]
    lab.delete_remote_secret("cluster2", in_cluster="cluster1")
    try:
        assert gw(lab, "cluster2") not in endpoints(lab, "cluster1"), "revoked: cluster2's endpoints vanish from cluster1's proxies"
        assert gw(lab, "cluster1") in endpoints(lab, "cluster2"), "cluster2 still holds its secret for cluster1"
        assert lab.call("curl", URL, cluster="cluster1", n=10).clusters == {"cluster1"}
        assert [r["NAME"] for r in lab.backend.remote_clusters("cluster1")] == ["cluster1"]
    finally:
        lab.create_remote_secret("cluster2", in_cluster="cluster1")
    assert gw(lab, "cluster2") in endpoints(lab, "cluster1")


def test_one_istiod_stopped_the_other_cluster_carries_on(mp_lab: Lab) -> None:
    lab = mp_lab
    lab.stop_control_plane("cluster1")
    try:
        during = lab.call("curl", URL, cluster="cluster1", n=20)
        assert during.errors == 0 and during.clusters == {"cluster1", "cluster2"}, "cluster1's running proxies keep serving"
        lab.deploy("helloworld", cluster="cluster2", version="v3")
        assert f"{lab.backend.find('helloworld-v3', 'cluster2').ip}:5000" in endpoints(lab, "cluster2"), "cluster2's istiod configures its new pod and pushes it"
        assert endpoints(lab, "cluster1")[gw(lab, "cluster2")] == 1, "cluster1's istiod is down: no push to its proxies"
        assert lab.backend.remote_clusters("cluster1") == [], "a stopped istiod answers nothing"
    finally:
        lab.start_control_plane("cluster1")
    assert endpoints(lab, "cluster1")[gw(lab, "cluster2")] == 2, "back: it pushes what changed meanwhile"
    lab.undeploy("helloworld-v3", cluster="cluster2")


def test_a_cross_cluster_request_is_one_trace_and_the_collector_goes_with_down(mp_lab: Lab) -> None:
    lab = mp_lab
    lab.enable_tracing()
    for c in ("cluster1", "cluster2"):
        lab.apply(tracing.telemetry(100), cluster=c)
    t0 = time.time()
    r = lab.call("curl", URL, cluster="cluster1", n=8)
    traces = lab.traces(expect=len(r.answers), since=t0, timeout=15)
    cross = [ss for ss in traces.values() if {(s.kind, s.attributes.get("istio.cluster_id")) for s in ss} == {("CLIENT", "cluster1"), ("SERVER", "cluster2")}]
    assert cross, f"no trace with the client in cluster1 and the server in cluster2: {[tracing.rows(ss) for ss in traces.values()]}"
    client, server = cross[0]
    assert server.parent_span_id == client.span_id and client.service == "curl.sample" and server.service == "helloworld.sample"
    assert not any("eastwestgateway" in s.service for ss in traces.values() for s in ss)
    collector = [p for p in lab.state.data["processes"] if p["name"] == "tracing/otlp-collector"]
    assert collector and procs.is_alive(collector[0]), "the collector is a recorded process of the lab"
    for c in ("cluster1", "cluster2"):
        lab.delete("Telemetry", "mesh-default", cluster=c)
