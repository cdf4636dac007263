"""Tracing as istiod configures it: which Telemetry applies, and each HTTP connection manager's tracing block.

Written from Istio 1.31's source (pilot/pkg/model/telemetry.go, pilot/pkg/networking/core/tracing.go)."""

from __future__ import annotations

from typing import Any

import pytest

from meshlab import tracing as course
from meshlab.controlplane import tracing as T

PROVIDER = {"cluster": "outbound|4317||jaeger-collector.istio-system.svc.cluster.local", "authority": "jaeger-collector.istio-system.svc.cluster.local"}
PROXY = T.Proxy("helloworld.sample", {"app": "helloworld", "service.istio.io/canonical-name": "helloworld",
                                      "service.istio.io/canonical-revision": "v1"}, "mesh1", "sample", "cluster2")  # fmt: skip


def telemetry(name: str, namespace: str, tracing: list[dict[str, Any]], selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"tracing": tracing}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@pytest.mark.istio("pilot/pkg/model/telemetry.go: Telemetries.Tracing")
def test_no_telemetry_no_tracing_and_no_provider_disables() -> None:
    assert T.specs([], {"app": "helloworld"}, "sample") is None
    client, server = T.specs([telemetry("t", "istio-system", [{"randomSamplingPercentage": 50}])], {}, "sample")  # type: ignore[misc]
    assert client.disabled and server.disabled and client.provider is None, "a rule without a provider (and no default provider) disables tracing"
    assert T.hcm_tracing(client, PROVIDER, PROXY) is None


@pytest.mark.istio("pilot/pkg/model/telemetry.go: Telemetries.applicableTelemetries")
def test_root_then_namespace_then_workload_override_field_by_field() -> None:
    res = [
        telemetry("mesh-default", "istio-system", [{"providers": [{"name": "jaeger"}], "randomSamplingPercentage": 100}]),
        telemetry("ns", "sample", [{"randomSamplingPercentage": 10}]),
        telemetry("wl", "sample", [{"match": {"mode": "SERVER"}, "disableSpanReporting": True}], selector={"app": "helloworld"}),
        telemetry("other", "sample", [{"disableSpanReporting": True}], selector={"app": "curl"}),
    ]
    client, server = T.specs(res, {"app": "helloworld", "version": "v1"}, "sample")  # type: ignore[misc]
    assert client.provider == server.provider == "jaeger", "the root namespace's provider stays unless overridden"
    assert client.sampling == server.sampling == 10.0, "the namespace's percentage overrides the root's"
    assert not client.disabled and server.disabled, "match.mode SERVER applies to the server side only"
    client2, _ = T.specs(res, {"app": "curl"}, "sample")  # type: ignore[misc]
    assert client2.disabled, "a workload Telemetry applies to the workloads its selector matches"
    elsewhere, _ = T.specs(res, {"app": "helloworld"}, "other")  # type: ignore[misc]
    assert elsewhere.sampling == 100.0, "another namespace's Telemetry does not apply"


@pytest.mark.istio("pilot/pkg/networking/core/tracing.go: configureFromProviderConfig")
def test_opentelemetry_provider_over_grpc_to_the_providers_outbound_cluster() -> None:
    client, _ = T.specs([course.telemetry(100)], {"app": "helloworld"}, "sample")  # type: ignore[misc]
    out = T.hcm_tracing(client, PROVIDER, PROXY)
    assert out is not None and "spawn_upstream_span" not in out, "sidecars: no upstream child span (routers only)"
    assert out["provider"] == {
        "name": "envoy.tracers.opentelemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": "outbound|4317||jaeger-collector.istio-system.svc.cluster.local",
                                            "authority": "jaeger-collector.istio-system.svc.cluster.local"}},
            "service_name": "helloworld.sample",
        },
    }  # fmt: skip
    gw = T.hcm_tracing(client, PROVIDER, T.Proxy("istio-ingressgateway.istio-system", {}, "mesh1", "istio-system", "cluster1", router=True))
    assert gw is not None and gw["spawn_upstream_span"] is True
    assert T.hcm_tracing(client, None, PROXY) is None, "a provider whose service is not in the registry: no tracing"


@pytest.mark.istio("pilot/pkg/networking/core/tracing.go: configureSampling")
def test_sampling_client_and_overall_100_random_from_telemetry_else_one_percent() -> None:
    client, _ = T.specs([course.telemetry(37.5)], {}, "sample")  # type: ignore[misc]
    out = T.hcm_tracing(client, PROVIDER, PROXY)
    assert out is not None
    assert (out["client_sampling"], out["overall_sampling"], out["random_sampling"]) == ({"value": 100.0}, {"value": 100.0}, {"value": 37.5})
    plain, _ = T.specs([telemetry("t", "istio-system", [{"providers": [{"name": "jaeger"}]}])], {}, "sample")  # type: ignore[misc]
    out = T.hcm_tracing(plain, PROVIDER, PROXY)
    assert out is not None and out["random_sampling"] == {"value": 1.0}, "PILOT_TRACE_SAMPLING's default, 1 %"


@pytest.mark.istio("pilot/pkg/networking/core/tracing.go: configureCustomTags")
def test_istio_tags_and_dry_run_tags_sorted() -> None:
    client, _ = T.specs([telemetry("t", "istio-system", [{"providers": [{"name": "jaeger"}],
                                                          "customTags": {"team": {"literal": {"value": "blue"}}}}])], {}, "sample")  # type: ignore[misc]
    out = T.hcm_tracing(client, PROVIDER, PROXY)
    assert out is not None
    tags = {t["tag"]: t for t in out["custom_tags"]}
    assert [t["tag"] for t in out["custom_tags"]] == sorted(tags)
    assert {k: v["literal"]["value"] for k, v in tags.items() if "literal" in v} == {
        "istio.canonical_revision": "v1", "istio.canonical_service": "helloworld", "istio.mesh_id": "mesh1",
        "istio.namespace": "sample", "istio.cluster_id": "cluster2", "team": "blue"}  # fmt: skip
    dry = tags["istio.authorization.dry_run.allow_policy.name"]["metadata"]
    assert dry == {"kind": {"request": {}}, "metadata_key": {"key": "envoy.filters.http.rbac", "path": [{"key": "istio_dry_run_allow_shadow_effective_policy_id"}]}}
    bare = T.istio_tags(T.Proxy("x.y", {}, "", "", ""))
    assert {t["tag"]: t["literal"]["value"] for t in bare if "literal" in t} == {
        "istio.canonical_revision": "latest", "istio.canonical_service": "unknown", "istio.mesh_id": "unknown",
        "istio.namespace": "default", "istio.cluster_id": "unknown"}  # fmt: skip
