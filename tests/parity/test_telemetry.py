"""Istio's telemetry surface on the local backend: the sidecar's Prometheus endpoint and Istio's
standard request metrics (names and labels), produced by the istio-stats Wasm filter."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab.runtime import envoy as E
from meshlab.controlplane.telemetry import STATS_PORT, stats_cluster, stats_listener
from meshlab.lab import Lab
from meshlab.dataplane import access_logs_on

URL = "http://helloworld.sample:5000/hello"
# the labels Istio's Grafana dashboards select istio_requests_total by (release-1.31 manifests/addons/dashboards)
DASHBOARD_LABELS = {
    "reporter", "source_workload", "source_workload_namespace", "source_app", "source_version", "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_app", "destination_version", "destination_cluster",
    "destination_service", "destination_service_name", "destination_service_namespace",
    "request_protocol", "response_code", "response_flags", "connection_security_policy",
}  # fmt: skip


@pytest.mark.istio("tools/packaging/common/envoy_bootstrap.json: prometheus_stats")
def test_prometheus_stats_listener_on_15090() -> None:
    lis = stats_listener("10.10.0.10")
    assert lis["name"] == "0.0.0.0_15090" and lis["address"]["socket_address"]["port_value"] == STATS_PORT == 15090
    hcm = lis["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["stat_prefix"] == "stats"
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route == {"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}
    assert stats_cluster("/run/a.sock")["name"] == "prometheus_stats"


@pytest.fixture(scope="module")
def sn_lab(module_home: Path) -> Iterator[Lab]:
    home = module_home
    lab = access_logs_on(Lab.up("separate-networks", samples=True, home_dir=home, quiet=True))
    yield lab
    Lab.down_all(home, quiet=True)


def _series(lab: Lab, workload: str, cluster: str, metric: str = "istio_requests_total") -> list[dict[str, str]]:
    """``metric`` series from the sidecar's own /stats/prometheus (what Prometheus scrapes)."""
    status, body = E.Admin(lab.backend.find(workload, cluster).admin).get("/stats/prometheus")
    assert status == 200
    out = []
    for line in body.splitlines():
        if line.startswith(metric + "{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            labels["value"] = line.rsplit(" ", 1)[1]
            out.append(labels)
    return out


@pytest.mark.integration
@pytest.mark.istio("manifests/addons/dashboards/istio-workload-dashboard.json: istio_requests_total")
def test_istio_requests_total_with_the_standard_labels(sn_lab: Lab) -> None:
    lab = sn_lab
    lab.mesh.telemetry.enable()
    r = lab.call("curl", URL, cluster="cluster1", n=20)
    assert r.errors == 0 and r.clusters == {"cluster1", "cluster2"}
    client = _series(lab, "curl", "cluster1")
    assert client and all(set(s) - {"value"} == DASHBOARD_LABELS for s in client)
    by_dest = {s["destination_cluster"]: int(float(s["value"])) for s in client if s["reporter"] == "source"}
    assert by_dest == {c: n for (c, _v), n in r.tally.items()}  # one count per answer, by the cluster that answered
    def durations() -> dict[str, int]:
        return {s["destination_cluster"]: int(float(s["value"])) for s in _series(lab, "curl", "cluster1", "istio_request_duration_milliseconds_count")
                if s["reporter"] == "source"}  # fmt: skip

    deadline = time.monotonic() + 8  # histograms reach the admin output at Envoy's stats flush (every 5 s)
    while durations() != by_dest and time.monotonic() < deadline:
        time.sleep(0.5)
    assert durations() == by_dest  # the histogram observes every request once
    server = [s for s in _series(lab, "helloworld", "cluster2") if s["reporter"] == "destination"]
    assert server and server[0]["source_workload"] == "curl" and server[0]["source_cluster"] == "cluster1"
    assert server[0]["destination_workload"] == "helloworld-v2" and server[0]["connection_security_policy"] == "mutual_tls"
    # response_flags carries Envoy's flags as the access log writes them
    lab.kill("helloworld", "cluster2")
    try:
        lab.call("curl", URL, cluster="cluster2", n=10)  # enough that the local (dead) pod is picked
        # (as sets: the filter lists several flags in Envoy's bit order, the access log in the order they were set)
        logged = {frozenset(e["flags"].split(",")) for e in lab.access_log("helloworld", "cluster2") if e["status"] == 503}
        failed = {frozenset(s["response_flags"].split(",")) for s in _series(lab, "helloworld", "cluster2")
                  if s["response_code"] == "503" and s["reporter"] == "destination"}  # fmt: skip
        assert logged and failed == logged
    finally:
        lab.restore("helloworld", "cluster2")
