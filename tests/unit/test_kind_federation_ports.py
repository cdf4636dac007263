"""The kind plan of separate control planes: the federation ServiceEntries it applies name their ports
like the Kubernetes Service it applies, so Istio lets their endpoints join the Service's host
(istio/istio pilot/pkg/xds/endpoints/endpoint_builder.go drops endpoints whose port name differs)."""

from __future__ import annotations

from pathlib import Path

from meshlab.backends.kind import up_plan
from meshlab.topology import load_topology


def test_federation_serviceentry_ports_match_the_applied_service_ports(tmp_path: Path) -> None:
    plan = up_plan(load_topology("separate-control-planes"), tmp_path, samples=True)
    services = {
        (step.cluster, doc["metadata"]["namespace"], doc["metadata"]["name"]): {p["port"]: p["name"] for p in doc["spec"]["ports"]}
        for step, doc in plan.manifests()
        if doc["kind"] == "Service" and doc["metadata"]["name"] == "helloworld"
    }
    assert set(services) == {("cluster1", "sample", "helloworld"), ("cluster2", "sample", "helloworld")}
    entries = [(step, doc) for step, doc in plan.manifests() if doc["kind"] == "ServiceEntry"]
    assert {step.cluster for step, _ in entries} == {"cluster1", "cluster2"}
    for step, se in entries:
        name, ns = se["spec"]["hosts"][0].split(".")[:2]
        svc_ports = services[(step.cluster, ns, name)]  # the Service of the same host in the cluster it is applied to
        assert {p["number"]: p["name"] for p in se["spec"]["ports"]} == svc_ports
        for ep in se["spec"]["endpoints"]:
            assert set(ep["ports"]) == set(svc_ports.values())
