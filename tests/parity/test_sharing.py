"""Which services are shared: the Sidecar's egress hosts, exportTo, cluster-local hosts -- from Istio 1.31's source."""

from __future__ import annotations

from typing import Any

import pytest

from meshlab.controlplane import sidecar as SC
from meshlab.controlplane.generator import exported_to
from meshlab.controlplane.pushcontext import cluster_local_hosts, is_cluster_local


def sidecar(name: str, namespace: str, hosts: list[str], selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"egress": [{"hosts": hosts}]}
    if selector:
        spec["workloadSelector"] = {"labels": selector}
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@pytest.mark.istio("pilot/pkg/model/push_context.go: doGetSidecarScope")
def test_selector_sidecar_then_namespace_sidecar_then_root_namespace() -> None:
    res = [sidecar("root", "istio-system", ["*/*"]), sidecar("ns", "sample", ["./*"]), sidecar("curl", "sample", ["istio-system/*"], {"app": "curl"})]
    assert SC.sidecar_for(res, {"app": "curl"}, "sample")["metadata"]["name"] == "curl"  # type: ignore[index]
    assert SC.sidecar_for(res, {"app": "helloworld"}, "sample")["metadata"]["name"] == "ns"  # type: ignore[index]
    assert SC.sidecar_for(res, {"app": "x"}, "other")["metadata"]["name"] == "root"  # type: ignore[index]
    assert SC.sidecar_for(res[1:], {"app": "x"}, "other") is None, "no Sidecar: every service is imported"


@pytest.mark.istio("pilot/pkg/model/sidecar.go: selectServices")
def test_egress_hosts_import_by_namespace_then_wildcard_and_exclusions_win() -> None:
    s = SC.scope(sidecar("s", "sample", ["./*", "istio-system/jaeger-collector.istio-system.svc.cluster.local", "*/*.other.svc.cluster.local",
                                         "~other/secret.other.svc.cluster.local"]))
    assert s is not None
    assert s.imports("helloworld.sample.svc.cluster.local", "sample"), "./* is the Sidecar's own namespace"
    assert s.imports("jaeger-collector.istio-system.svc.cluster.local", "istio-system")
    assert not s.imports("istiod.istio-system.svc.cluster.local", "istio-system"), "an exact host imports only itself"
    assert s.imports("helloworld.other.svc.cluster.local", "other"), "*/ imports from any namespace"
    assert not s.imports("secret.other.svc.cluster.local", "other"), "a ~ entry excludes, even when */ would import"
    assert not s.imports("helloworld.team.svc.cluster.local", "team")


@pytest.mark.istio("pilot/pkg/model/push_context.go: IsServiceVisible")
def test_export_to_dot_star_tilde_and_namespaces() -> None:
    assert exported_to(None, "sample", "other"), "unset: meshConfig.defaultServiceExportTo, * by default"
    assert exported_to(["."], "sample", "sample") and not exported_to(["."], "sample", "other")
    assert not exported_to(["~"], "sample", "sample")
    assert exported_to(["other"], "sample", "other") and not exported_to(["other"], "sample", "sample")


@pytest.mark.istio("pilot/pkg/model/cluster_local.go: IsClusterLocal")
def test_cluster_local_most_specific_match_and_defaults() -> None:
    hosts = cluster_local_hosts([{"settings": {"clusterLocal": True}, "hosts": ["*.sample.svc.cluster.local"]},
                                 {"settings": {"clusterLocal": False}, "hosts": ["helloworld.sample.svc.cluster.local"]}])
    assert is_cluster_local("curl.sample.svc.cluster.local", hosts)
    assert not is_cluster_local("helloworld.sample.svc.cluster.local", hosts), "the exact host beats the wildcard"
    assert is_cluster_local("kube-dns.kube-system.svc.cluster.local", hosts), "kube-system is cluster-local by default"
    assert not is_cluster_local("helloworld.other.svc.cluster.local", hosts)
    off = cluster_local_hosts([{"settings": {"clusterLocal": False}, "hosts": ["*.kube-system.svc.cluster.local"]}])
    assert not is_cluster_local("kube-dns.kube-system.svc.cluster.local", off), "clusterLocal false removes a default"


@pytest.mark.istio("pilot/pkg/model/push_context.go: initVirtualServices")
def test_a_virtual_service_applies_only_where_it_is_exported() -> None:
    from meshlab.controlplane.pushcontext import virtual_service

    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "hw", "namespace": "sample"},
          "spec": {"hosts": ["helloworld.sample.svc.cluster.local"], "exportTo": ["."], "http": []}}
    fqdn = "helloworld.sample.svc.cluster.local"
    assert virtual_service([vs], fqdn, "sample") is vs, "exported to its own namespace"
    assert virtual_service([vs], fqdn, "legacy") is None, "not exported to legacy: its proxies route by default"
    public = {**vs, "spec": {**vs["spec"], "exportTo": ["*"]}}
    assert virtual_service([public], fqdn, "legacy") is public
    assert virtual_service([{**vs, "spec": {**vs["spec"], "exportTo": ["~"]}}], fqdn, "sample") is None
