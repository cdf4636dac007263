"""EnvoyFilter patches on a sidecar's generated config (istiod's pilot/pkg/networking/core/envoyfilter),
on the translator's real output (lab 01 runs both recipes on real Envoy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshlab import xds as E
from meshlab.controlplane import Translator
from meshlab.registry import Workload
from meshlab.errors import ResourceError
from meshlab.pki import WorkloadCert
from meshlab.resources import parse
from meshlab.topology import load_topology


def pod(name: str, app: str, version: str, ports: list[int]) -> Workload:
    return Workload(pod=name, deployment=f"{app}-{version}", app=app, version=version, cluster="cluster1", namespace="sample",
                    service_account=app, ip="10.10.0.10" if ports else "10.10.0.11", netns=None, outbound="127.0.0.1",
                    app_host="127.0.0.6", ports=ports, admin="/run/a.sock", access_log="/logs/a.log")  # fmt: skip


HELLO, CURL = pod("hello", "helloworld", "v1", [5000]), pod("curl", "curl", "", [])


def cert(w: Workload) -> WorkloadCert:
    return WorkloadCert(spiffe_id=f"spiffe://cluster.local/ns/sample/sa/{w.app}", cert_chain=Path("/c.pem"), key=Path("/k.pem"),
                        root_cert=Path("/r.pem"), issuer="CN=x")  # fmt: skip


def sidecar(w: Workload, yaml_text: str = "") -> E.ProxyConfig:
    resources = parse(yaml_text) if yaml_text else []
    for r in resources:
        r["metadata"].setdefault("namespace", "sample")
    t = Translator(load_topology("flat-network"), {}, {x.pod: cert(x) for x in (HELLO, CURL)})
    return t.sidecar(w, [HELLO, CURL], Path("/x"), resources)


def http_filters(cfg: E.ProxyConfig, inbound: bool) -> list[str]:
    lis = next(x for x in cfg.listeners if (x["name"] != "virtualOutbound") == inbound)
    hcm = next(f["typed_config"] for fc in lis["filter_chains"] for f in fc["filters"] if f["name"] == "envoy.filters.network.http_connection_manager")
    return [f["name"] for f in hcm["http_filters"]]


def inbound_vhost(cfg: E.ProxyConfig) -> dict[str, Any]:
    lis = next(x for x in cfg.listeners if x["name"] != "virtualOutbound")
    hcm = next(f["typed_config"] for fc in lis["filter_chains"] for f in fc["filters"] if f["name"] == "envoy.filters.network.http_connection_manager")
    return dict(hcm["route_config"]["virtual_hosts"][0])


def envoy_filter(patches: str, selector: str = "{app: helloworld}", namespace: str = "sample") -> str:
    return f"""
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: ef, namespace: {namespace}}}
spec:
  workloadSelector: {{labels: {selector}}}
  configPatches:
{patches}"""


def http_filter_patch(op: str, sub: str | None = None, context: str = "SIDECAR_INBOUND", name: str = "x.added") -> str:
    subfilter = f", subFilter: {{name: {sub}}}" if sub else ""
    return f"""  - applyTo: HTTP_FILTER
    match: {{context: {context}, listener: {{filterChain: {{filter: {{name: envoy.filters.network.http_connection_manager{subfilter}}}}}}}}}
    patch: {{operation: {op}, value: {{name: {name}}}}}
"""


@pytest.mark.istio("pilot/pkg/networking/core/envoyfilter/listener_patch.go: patchHTTPFilters")
def test_http_filter_operations_follow_istio() -> None:
    base = http_filters(sidecar(HELLO), inbound=True)
    assert base[-1] == "envoy.filters.http.router"
    at = lambda op, sub=None: http_filters(sidecar(HELLO, envoy_filter(http_filter_patch(op, sub))), inbound=True)  # noqa: E731
    assert at("INSERT_BEFORE") == ["x.added", *base], "INSERT_BEFORE without subFilter inserts at the front"
    assert at("INSERT_FIRST") == ["x.added", *base]
    assert at("INSERT_BEFORE", "envoy.filters.http.router") == [*base[:-1], "x.added", base[-1]]
    assert at("INSERT_AFTER") == [*base, "x.added"] == at("ADD"), "INSERT_AFTER without subFilter is ADD"
    assert at("INSERT_BEFORE", "no.such.filter") == base, "a subFilter that matches nothing applies nothing"


@pytest.mark.istio("pilot/pkg/networking/core/envoyfilter/listener_patch.go: patchContextMatch")
def test_envoy_filter_context_and_workload_selection() -> None:
    out_base = http_filters(sidecar(CURL), inbound=False)
    outbound = envoy_filter(http_filter_patch("INSERT_FIRST", context="SIDECAR_OUTBOUND"), selector="{app: curl}")
    assert http_filters(sidecar(CURL, outbound), inbound=False) == ["x.added", *out_base]
    assert http_filters(sidecar(HELLO, outbound), inbound=True) == http_filters(sidecar(HELLO), inbound=True), "the selector picks curl only"
    other_ns = envoy_filter(http_filter_patch("INSERT_FIRST"), namespace="other")
    assert "x.added" not in http_filters(sidecar(HELLO, other_ns), inbound=True), "another namespace's EnvoyFilter does not apply"
    root = envoy_filter(http_filter_patch("INSERT_FIRST"), namespace="istio-system")
    assert http_filters(sidecar(HELLO, root), inbound=True)[0] == "x.added", "the root namespace's applies everywhere"


@pytest.mark.istio("pilot/pkg/networking/core/envoyfilter/rc_patch.go: patchVirtualHost")
def test_virtual_host_merge_on_the_inbound_vhost(tmp_path: Path) -> None:
    patch = """  - applyTo: VIRTUAL_HOST
    match: {context: SIDECAR_INBOUND, routeConfiguration: {vhost: {name: "inbound|http|5000"}}}
    patch:
      operation: MERGE
      value: {rate_limits: [{actions: [{request_headers: {header_name: ":path", descriptor_key: PATH}}]}]}
"""
    vh = inbound_vhost(sidecar(HELLO, envoy_filter(patch + patch)))
    assert [a["actions"][0]["request_headers"]["descriptor_key"] for a in vh["rate_limits"]] == ["PATH", "PATH"], "lists append"
    other = patch.replace("inbound|http|5000", "inbound|http|9999")
    assert "rate_limits" not in inbound_vhost(sidecar(HELLO, envoy_filter(other)))


@pytest.mark.istio("pilot/pkg/networking/core/httproute.go: buildSidecarInboundHTTPRouteConfig")
def test_inbound_virtual_host_is_named_inbound_http_port() -> None:
    assert inbound_vhost(sidecar(HELLO))["name"] == "inbound|http|5000"


@pytest.mark.istio("pilot/pkg/networking/core/envoyfilter/listener_patch.go: ApplyListenerPatches")
def test_unsupported_envoy_filter_patches_are_refused_by_name() -> None:
    with pytest.raises(ResourceError, match="CLUSTER"):
        parse(envoy_filter("  - applyTo: CLUSTER\n    patch: {operation: ADD, value: {name: c}}\n"))
    with pytest.raises(ResourceError, match="operation 'MERGE' on HTTP_FILTER"):
        parse(envoy_filter(http_filter_patch("MERGE")))
    with pytest.raises(ResourceError, match="priority"):
        parse(envoy_filter(http_filter_patch("ADD")).replace("  configPatches:", "  priority: 1\n  configPatches:"))
