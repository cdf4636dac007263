"""The service an outbound cluster is for, as Istio 1.31 writes it into the cluster's metadata
(cluster.go ``buildServiceMetadata``, cluster_builder.go ``addTelemetryMetadata``): the stats filter of the
client's sidecar takes ``destination_service`` / ``_name`` / ``_namespace`` from there, so a reply the client's
sidecar makes itself (no healthy upstream) and a ServiceEntry host carry the service's own values."""

from __future__ import annotations

import pytest

from meshlab.topology import load_topology

from .kit import CLUSTER, HOST, cluster, sidecar, workload

FLAT = load_topology("flat-network")
CLIENT = workload("curl-1", "curl", "cluster1", "10.10.0.9")
SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: egress}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1}]
"""


@pytest.mark.istio("pilot/pkg/networking/core/cluster.go: buildServiceMetadata")
def test_outbound_clusters_carry_the_services_host_name_and_namespace() -> None:
    cfg = sidecar(FLAT, CLIENT, [workload("hw-1", "helloworld", "cluster1", "10.10.0.10")], SE)
    assert cluster(cfg, CLUSTER)["metadata"]["filter_metadata"]["istio"]["services"] == [
        {"host": HOST, "name": "helloworld", "namespace": "sample"}]  # fmt: skip
    # a ServiceEntry's service is named after its host, in the ServiceEntry's namespace (serviceentry conversion.go)
    assert cluster(cfg, "outbound|80||api.example.com")["metadata"]["filter_metadata"]["istio"]["services"] == [
        {"host": "api.example.com", "name": "api.example.com", "namespace": "egress"}]  # fmt: skip


@pytest.fixture(scope="module")
def telemetry_lab(module_home):  # type: ignore[no-untyped-def]
    from meshlab.lab import Lab

    lab = Lab.up("flat-network", samples=True, home_dir=module_home, quiet=True)
    lab.mesh.telemetry.enable()
    yield lab
    lab.down(quiet=True)


@pytest.mark.integration
@pytest.mark.istio("pilot/pkg/networking/core/cluster_builder.go: addTelemetryMetadata")
def test_a_reply_of_the_clients_own_sidecar_carries_the_clusters_service(telemetry_lab) -> None:  # type: ignore[no-untyped-def]
    """No healthy upstream (a subset no pod matches): the client's sidecar answers 503 UH itself, and its
    ``istio_requests_total`` names the service of the cluster, not the Host the client wrote (``helloworld.sample``)."""
    import re

    from meshlab.runtime.envoy import Admin

    lab = telemetry_lab
    lab.apply("""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld, namespace: sample}
spec:
  host: helloworld
  subsets: [{name: nobody, labels: {version: v9}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: helloworld, namespace: sample}
spec:
  hosts: [helloworld]
  http: [{route: [{destination: {host: helloworld, subset: nobody}}]}]
""", cluster="cluster1")
    r = lab.call("curl", "http://helloworld.sample:5000/hello", cluster="cluster1", n=3)
    assert {a.status for a in r.answers} == {503}
    status, body = Admin(lab.backend.find("curl", "cluster1").admin).get("/stats/prometheus")
    series = [dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) for line in body.splitlines()
              if line.startswith("istio_requests_total{") and 'response_flags="UH"' in line]  # fmt: skip
    assert series, "the client's sidecar counts its own 503 UH"
    assert {(s["destination_service"], s["destination_service_name"], s["destination_service_namespace"]) for s in series} == {
        (HOST, "helloworld", "sample")}  # fmt: skip
