"""Traffic management as istiod 1.31 writes it: routes, retries, timeouts, cluster policy, locality
load balancing, split-horizon EDS, TLS naming, service merging and DestinationRule merging.

Each test pins one behaviour on the generated Envoy config; the tests at the end also send traffic
through real Envoys where the behaviour is only visible that way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshlab import xds as E
from meshlab.controlplane import routes as R
from meshlab.controlplane.pushcontext import refuse_unmergeable
from meshlab.errors import ResourceError
from meshlab.federation import virtual_mesh
from meshlab.resources import parse
from meshlab.lab import Lab
from meshlab.topology import load_topology

from .kit import CLUSTER, HOST, cluster, eps, locality_weights, pattern, routes, sidecar, workload
from meshlab.dataplane import access_logs_on

SEP = load_topology("separate-networks")
FLAT = load_topology("flat-network")
URL = "http://helloworld.sample:5000/hello"


def registry_two_clusters() -> tuple:
    return (
        workload("curl-1", "curl", "cluster1", "10.10.0.9"),
        [workload("hw-1", "helloworld", "cluster1", "10.10.0.10"), workload("hw-2", "helloworld", "cluster2", "10.20.0.10", "v2")],
    )


def vs(http: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: hw}}
spec:
  hosts: [helloworld]
  http:
{http}
"""


def dr(name: str, body: str, host: str = "helloworld") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: {host}
{body}
"""


# ---- routes, retries, timeouts ------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/networking/core/route/retry/retry.go: DefaultPolicy")
def test_default_retry_policy_does_not_retry_503() -> None:
    client, reg = registry_two_clusters()
    (route,) = routes(sidecar(FLAT, client, reg))
    assert route["route"]["retry_policy"] == {
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": [R.PREVIOUS_HOSTS],
        "host_selection_retry_max_attempts": 5,
    }
    assert "retriable_status_codes" not in route["route"]["retry_policy"]  # since 1.24: 503 is not retried
    # a VirtualService route without ``retries`` gets the same default
    (vroute,) = routes(sidecar(FLAT, client, reg, vs("  - route: [{destination: {host: helloworld}}]")))
    assert vroute["route"]["retry_policy"] == route["route"]["retry_policy"]


@pytest.mark.istio("pilot/pkg/networking/core/route/retry/retry.go: ConvertPolicy")
def test_virtualservice_retries_as_convert_policy() -> None:
    client, reg = registry_two_clusters()

    def policy(retries: str) -> dict | None:
        (r,) = routes(sidecar(FLAT, client, reg, vs(f"  - route: [{{destination: {{host: helloworld}}}}]\n    retries: {retries}")))
        return r["route"].get("retry_policy")

    assert policy("{attempts: 0}") is None  # attempts 0 removes the policy
    assert policy("{retryOn: 5xx}") is None  # so does a policy without attempts
    p = policy("{attempts: 3, retryOn: 'gateway-error,503', perTryTimeout: 2s, retryRemoteLocalities: true}")
    assert p == {
        "retry_on": "gateway-error,retriable-status-codes",
        "retriable_status_codes": [503],
        "num_retries": 3,
        "per_try_timeout": "2.000s",
        "retry_host_predicate": [R.PREVIOUS_HOSTS],
        "host_selection_retry_max_attempts": 5,
        "retry_priority": R.PREVIOUS_PRIORITIES,
    }
    assert policy("{attempts: 1, retryOn: 'retriable-status-codes,503'}")["retry_on"] == "retriable-status-codes"
    # only status codes: Istio appends ",retriable-status-codes" to an empty list of words (lab 06 shows the comma)
    assert policy("{attempts: 3, retryOn: '503'}")["retry_on"] == ",retriable-status-codes"
    assert policy("{attempts: 1, retryIgnorePreviousHosts: false}")["retry_host_predicate"] == []
    assert policy("{attempts: 4}")["retry_on"] == R.DEFAULT_RETRY_ON


@pytest.mark.istio("pilot/pkg/networking/core/route/route.go: BuildDefaultHTTPInboundRoute")
def test_inbound_route_retries_reset_before_request_and_has_no_timeout() -> None:
    client, reg = registry_two_clusters()
    cfg = sidecar(FLAT, reg[0], [client, reg[1]])
    (inbound,) = [x for x in cfg.listeners if x["name"] == "10.10.0.10_5000"]
    hcm = inbound["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert route["route"]["retry_policy"] == {"retry_on": "reset-before-request", "num_retries": 2}
    assert route["route"]["timeout"] == "0s"
    assert route["route"]["max_stream_duration"] == {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}


@pytest.mark.istio("pilot/pkg/networking/core/route/route.go: setTimeout")
def test_timeouts_default_off_and_virtualservice_timeout() -> None:
    client, reg = registry_two_clusters()
    (r,) = routes(sidecar(FLAT, client, reg))
    assert (r["route"]["timeout"], r["route"]["max_grpc_timeout"]) == ("0s", "0s")  # no timeout by default
    (r,) = routes(sidecar(FLAT, client, reg, vs("  - route: [{destination: {host: helloworld}}]\n    timeout: 1500ms")))
    assert (r["route"]["timeout"], r["route"]["max_grpc_timeout"]) == ("1.500s", "1.500s")


# ---- cluster policy ------------------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/networking/core/cluster_traffic_policy.go: applyOutlierDetection")
def test_outlier_detection_translation_and_panic_threshold() -> None:
    client, reg = registry_two_clusters()
    c = cluster(sidecar(FLAT, client, reg))
    assert "outlier_detection" not in c
    assert c["common_lb_config"]["healthy_panic_threshold"] == {"value": 0}  # unhealthy endpoints are sent by default
    c = cluster(sidecar(FLAT, client, reg, dr("hw", "  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 5s}")))
    assert c["outlier_detection"] == {
        "enforcing_success_rate": 0, "consecutive_5xx": 3, "enforcing_consecutive_5xx": 100,
        "interval": "1.000s", "base_ejection_time": "5.000s",
    }  # fmt: skip
    c = cluster(sidecar(FLAT, client, reg, dr("hw", "  trafficPolicy:\n    outlierDetection: {consecutiveGatewayErrors: 0, maxEjectionPercent: 50, minHealthPercent: 30}")))
    assert c["outlier_detection"] == {
        "enforcing_success_rate": 0, "consecutive_gateway_failure": 0, "enforcing_consecutive_gateway_failure": 0, "max_ejection_percent": 50,
    }  # fmt: skip
    assert c["common_lb_config"]["healthy_panic_threshold"] == {"value": 30}


@pytest.mark.istio("pilot/pkg/networking/core/cluster_traffic_policy.go: applyConnectionPool")
def test_connection_pool_defaults_and_translation() -> None:
    client, reg = registry_two_clusters()
    unlimited = {"max_connections": 4294967295, "max_pending_requests": 4294967295, "max_requests": 4294967295,
                 "max_retries": 4294967295}  # fmt: skip
    c = cluster(sidecar(FLAT, client, reg))
    assert c["circuit_breakers"] == {"thresholds": [unlimited]}
    assert c["connect_timeout"] == "10s"
    body = """  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 2, http2MaxRequests: 3, maxRetries: 0, maxRequestsPerConnection: 1}"""
    c = cluster(sidecar(FLAT, client, reg, dr("hw", body)))
    assert c["circuit_breakers"] == {"thresholds": [{**unlimited, "max_connections": 1, "max_pending_requests": 2, "max_requests": 3}]}
    assert c["connect_timeout"] == "0.250s"
    opts = c["typed_extension_protocol_options"][E.HTTP_OPTIONS]
    assert opts["common_http_protocol_options"] == {"max_requests_per_connection": 1}


# ---- locality load balancing ---------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/networking/core/loadbalancer/loadbalancer.go: ApplyLocalityLoadBalancer")
def test_locality_weighted_lb_config_only_with_a_locality_setting() -> None:
    client, reg = registry_two_clusters()
    od = "    outlierDetection: {consecutive5xxErrors: 1}\n"

    def lwlb(body: str) -> bool:
        return "locality_weighted_lb_config" in cluster(sidecar(SEP, client, reg, dr("hw", body) if body else ""))["common_lb_config"]

    assert not lwlb("")  # ENABLE_LOCALITY_WEIGHTED_LB_CONFIG is off by default
    assert not lwlb("  trafficPolicy:\n" + od)  # default failover: priorities, but no locality weights
    assert not lwlb("  trafficPolicy:\n    loadBalancer: {localityLbSetting: {failover: [{from: region1, to: region2}]}}")  # no outlier detection
    assert lwlb("  trafficPolicy:\n" + od + "    loadBalancer: {localityLbSetting: {failover: [{from: region1, to: region2}]}}")
    assert lwlb("  trafficPolicy:\n" + od + "    loadBalancer: {localityLbSetting: {failoverPriority: [topology.istio.io/network]}}")
    assert lwlb("  trafficPolicy:\n    loadBalancer: {localityLbSetting: {distribute: [{from: '*', to: {'region1/*': 100}}]}}")
    assert not lwlb("  trafficPolicy:\n" + od + "    loadBalancer: {localityLbSetting: {enabled: false, failover: [{from: region1, to: region2}]}}")


@pytest.mark.istio("pilot/pkg/networking/core/loadbalancer/loadbalancer.go: applyLocalityFailover")
def test_locality_failover_priorities(tmp_path: Path) -> None:
    topo = load_topology(pattern(tmp_path, {
        "c1": ("m", "n1", "r1/z1", None), "c2": ("m", "n1", "r1/z2", "c1"),
        "c3": ("m", "n1", "r2/z1", "c1"), "c4": ("m", "n1", "r3/z1", "c1"),
    }))  # fmt: skip
    client = workload("curl", "curl", "c1", "10.10.0.9")
    reg = [workload(f"hw-{c}", "helloworld", c, f"10.{10 * i}.0.10") for i, c in enumerate(["c1", "c2", "c3", "c4"], 1)]
    prio = lambda body: {loc: p for _, _, loc, p, _ in eps(sidecar(topo, client, reg, dr("hw", body) if body else ""))}  # noqa: E731
    assert set(prio("").values()) == {0}  # without outlier detection every locality is priority 0
    od = "  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n"
    assert prio(od) == {"r1/z1": 0, "r1/z2": 1, "r2/z1": 2, "r3/z1": 2}  # zone, region, the rest
    failover = od + "    loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r3}]}}"
    assert prio(failover) == {"r1/z1": 0, "r1/z2": 1, "r3/z1": 2, "r2/z1": 3}


@pytest.mark.istio("pilot/pkg/networking/core/loadbalancer/loadbalancer.go: applyFailoverPriorityPerLocality")
def test_failover_priority_labels() -> None:
    client, reg = registry_two_clusters()
    od = "  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n"
    # the gateway endpoint carries only cluster and network labels (ep_filters.go), so a region label never matches it
    cfg = sidecar(SEP, client, reg, dr("hw", od + "    loadBalancer: {localityLbSetting: {failoverPriority: [topology.kubernetes.io/region]}}"))
    assert [(a, p) for a, _, _, p, _ in eps(cfg)] == [("10.10.0.10", 0), ("10.250.0.2", 1)]
    # a value after '=' replaces the client's own label value
    cfg = sidecar(SEP, client, reg, dr("hw", od + "    loadBalancer: {localityLbSetting: {failoverPriority: ['topology.istio.io/cluster=cluster2']}}"))
    assert [(a, p) for a, _, _, p, _ in eps(cfg)] == [("10.10.0.10", 1), ("10.250.0.2", 0)]
    # with failover too, the region failover orders endpoints within each label priority
    cfg = sidecar(SEP, client, reg, dr("hw", od + "    loadBalancer: {localityLbSetting: {failoverPriority: [version], failover: [{from: region1, to: region2}]}}"))
    assert [(a, p) for a, _, _, p, _ in eps(cfg)] == [("10.10.0.10", 1), ("10.250.0.2", 0)]  # curl has no version label: "" matches the gateway's


@pytest.mark.istio("pilot/pkg/networking/core/loadbalancer/loadbalancer.go: applyLocalityWeights")
def test_distribute_shares_weights_and_drops_unlisted_localities(tmp_path: Path) -> None:
    topo = load_topology(pattern(tmp_path, {
        "c1": ("m", "n1", "r1/z1", None), "c2": ("m", "n1", "r1/z2", "c1"), "c3": ("m", "n1", "r2/z1", "c1"),
    }))  # fmt: skip
    client = workload("curl", "curl", "c1", "10.10.0.9")
    reg = [workload("hw-a", "helloworld", "c1", "10.10.0.10"), workload("hw-b", "helloworld", "c2", "10.20.0.10"),
           workload("hw-c", "helloworld", "c2", "10.20.0.11"), workload("hw-d", "helloworld", "c3", "10.30.0.10")]  # fmt: skip
    body = "  trafficPolicy:\n    loadBalancer: {localityLbSetting: {distribute: [{from: 'r1/z1/*', to: {'r1/*': 80, 'r3/*': 20}}]}}"
    cfg = sidecar(topo, client, reg, dr("hw", body))
    # r1/* matches two localities: 80 split by endpoint weight (1:2), rounded up; r2 is not listed: dropped
    assert locality_weights(cfg) == {"r1/z1": 27, "r1/z2": 54}
    # distribute applies without outlier detection; no priorities
    assert {p for *_, p, _ in eps(cfg)} == {0}


# ---- split-horizon EDS --------------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/xds/endpoints/ep_filters.go: EndpointsByNetworkFilter")
def test_split_horizon_gateway_per_cluster_weights_scaled_and_summed(tmp_path: Path) -> None:
    # network n2 has two clusters, so two gateways: Istio scales every weight by lcm(1, 2) = 2
    topo = load_topology(pattern(tmp_path, {
        "c1": ("m", "n1", "r1/z1", None), "c2": ("m", "n2", "r2/z1", "c1"), "c3": ("m", "n2", "r3/z1", "c1"),
    }))  # fmt: skip
    client = workload("curl", "curl", "c1", "10.10.0.9")
    reg = [workload("hw-a", "helloworld", "c1", "10.10.0.10"), workload("hw-b", "helloworld", "c2", "10.20.0.10"),
           workload("hw-c", "helloworld", "c2", "10.20.0.11"), workload("hw-d", "helloworld", "c3", "10.30.0.10")]  # fmt: skip
    cfg = sidecar(topo, client, reg)
    assert eps(cfg) == [
        ("10.10.0.10", 5000, "r1/z1", 0, 2),  # local pod, weight scaled
        ("10.250.0.2", 15443, "r2/z1", 0, 4),  # c2's gateway stands for its 2 pods: 2 x 2
        ("10.250.0.3", 15443, "r3/z1", 0, 2),  # c3's gateway for its 1 pod
    ]
    gw = next(e for e in cfg.endpoints[CLUSTER] if e.port == 15443)
    assert gw.labels == {"topology.istio.io/cluster": "c2", "topology.istio.io/network": "n2"}
    # one network only: pod addresses, weight 1
    flat_client, flat_reg = registry_two_clusters()
    assert [w for *_, w in eps(sidecar(FLAT, flat_client, flat_reg))] == [1, 1]


# ---- TLS naming ---------------------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/networking/core/cluster_tls.go: buildIstioMutualTLS")
def test_auto_mtls_sni_and_sans() -> None:
    client, reg = registry_two_clusters()
    cfg = sidecar(SEP, client, reg, dr("hw", "  subsets: [{name: v2, labels: {version: v2}}]"))
    for name, sni in ((CLUSTER, f"outbound_.5000_._.{HOST}"), (f"outbound|5000|v2|{HOST}", f"outbound_.5000_.v2_.{HOST}")):
        (match,) = [m for m in cluster(cfg, name)["transport_socket_matches"] if m["name"] == "tlsMode-istio"]
        tls = match["transport_socket"]["typed_config"]
        assert tls["sni"] == sni
        assert tls["common_tls_context"]["alpn_protocols"] == ["istio-peer-exchange", "istio"]  # an http port: HTTP/1.1, no h2 (ALPNInMeshWithMxc)
        sans = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
        assert sans == [{"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/sample/sa/helloworld"}}]
    # tls mode DISABLE: plain text
    c = cluster(sidecar(SEP, client, reg, dr("hw", "  trafficPolicy: {tls: {mode: DISABLE}}")))
    assert "transport_socket" not in c and "transport_socket_matches" not in c


# ---- Service and ServiceEntry for one host ------------------------------------------------------
def service_entry(name: str, port_name: str, address: str = "10.250.0.9", host: str = HOST, number: int = 5000) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {number}, name: {port_name}, protocol: HTTP}}]
  endpoints: [{{address: {address}, ports: {{{port_name}: 15443}}, network: other, locality: region9/zone9}}]
"""


@pytest.mark.istio("pilot/pkg/model/push_context.go: initServiceRegistry")
def test_kubernetes_service_wins_the_host() -> None:
    client, reg = registry_two_clusters()
    cfg = sidecar(FLAT, client, reg, service_entry("se", "tcp-7000", number=7000))
    # the Service's port 5000 stays; the ServiceEntry's port 7000 does not exist for this host
    assert [c["name"] for c in cfg.clusters if HOST in c["name"]] == [CLUSTER]
    assert [a for a, *_ in eps(cfg)] == ["10.10.0.10", "10.20.0.10"]


@pytest.mark.istio("pilot/pkg/xds/endpoints/endpoint_builder.go: BuildClusterLoadAssignment")
def test_serviceentry_endpoints_join_only_on_the_service_port_name() -> None:
    client, reg = registry_two_clusters()
    wrong = sidecar(FLAT, client, reg, service_entry("se", "http-5000"))
    assert [a for a, *_ in eps(wrong)] == ["10.10.0.10", "10.20.0.10"]  # 'http-5000' != 'http': dropped
    right = sidecar(FLAT, client, reg, service_entry("se", "http"))
    assert eps(right)[-1] == ("10.250.0.9", 15443, "region9/zone9", 0, 1)


@pytest.mark.istio("pilot/pkg/model/push_context.go: initServiceRegistry")
def test_serviceentry_owns_a_host_without_service_the_oldest_first() -> None:
    client = workload("curl", "curl", "cluster1", "10.10.0.9")
    cfg = sidecar(FLAT, client, [], service_entry("first", "http") + "---" + service_entry("second", "web", "10.250.0.8"))
    # the oldest entry defines the port and its name; the second joins only on that name (it does not)
    assert [a for a, *_ in eps(cfg)] == ["10.250.0.9"]
    cfg = sidecar(FLAT, client, [], service_entry("first", "http") + "---" + service_entry("second", "http", "10.250.0.8"))
    assert [a for a, *_ in eps(cfg)] == ["10.250.0.8", "10.250.0.9"]


# ---- several DestinationRules for one host -------------------------------------------------------
@pytest.mark.istio("pilot/pkg/model/destination_rule.go: mergeDestinationRule")
def test_destination_rules_merge_oldest_policy_wins() -> None:
    client, reg = registry_two_clusters()
    first = dr("a", "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n  subsets: [{name: v1, labels: {version: v1}}]")
    second = dr("b", "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n  subsets: [{name: v1, labels: {version: v2}}, {name: v2, labels: {version: v2}}]")
    cfg = sidecar(FLAT, client, reg, first + "---" + second)
    assert cluster(cfg)["lb_policy"] == "ROUND_ROBIN"  # the oldest rule's top-level policy
    assert cluster(cfg, f"outbound|5000|v2|{HOST}")["lb_policy"] == "ROUND_ROBIN"  # subset v2 appended from the second
    assert [a for a, *_ in eps(cfg, f"outbound|5000|v1|{HOST}")] == ["10.10.0.10"]  # duplicate v1 of the second: ignored
    # a rule without a top-level policy takes the next one's
    cfg = sidecar(FLAT, client, reg, dr("a", "  subsets: [{name: v1, labels: {version: v1}}]") + "---" + second)
    assert cluster(cfg)["lb_policy"] == "RANDOM"


# ---- on real Envoy ------------------------------------------------------------------------------
@pytest.fixture
def sn_lab(lab_home: Path) -> Iterator[Lab]:
    lab = access_logs_on(Lab.up("separate-networks", samples=True, home_dir=lab_home, quiet=True))
    yield lab
    lab.down(quiet=True)


@pytest.mark.integration
@pytest.mark.istio("pilot/pkg/networking/core/route/retry/retry.go: DefaultPolicy")
def test_a_crashed_app_behind_its_sidecar_gives_503s_until_retryon_503(sn_lab: Lab) -> None:
    # only the crashed endpoint: every call reaches it; its sidecar answers 503, which Istio does not retry
    sn_lab.kill("helloworld", cluster="cluster2")
    sn_lab.apply(dr("hw", "  subsets: [{name: v2, labels: {version: v2}}]"), cluster="cluster1")
    sn_lab.apply(vs("  - route: [{destination: {host: helloworld, subset: v2}}]"), cluster="cluster1")
    before = sn_lab.call("curl", URL, cluster="cluster1", n=4)
    assert before.tally == {("error", "503"): 4}, before.tally
    assert [e["attempts"] for e in sn_lab.access_log("curl", cluster="cluster1", last=4)] == [1] * 4
    # with both endpoints and retryOn 503, the retry goes to the other host: no error reaches the client
    sn_lab.apply(vs("  - route: [{destination: {host: helloworld}}]\n    retries: {attempts: 2, retryOn: 'connect-failure,503'}"), cluster="cluster1")
    after = sn_lab.call("curl", URL, cluster="cluster1", n=10)
    assert after.tally == {("cluster1", "v1"): 10}, after.tally
    assert sn_lab.validate() == len(sn_lab.status()["workloads"])


@pytest.mark.integration
@pytest.mark.istio("pilot/pkg/model/destination_rule.go: mergeDestinationRule")
def test_three_meshes_federate_and_reach_each_other(lab_home: Path, tmp_path: Path) -> None:
    path = pattern(tmp_path, {"c1": ("m1", "n1", "r1/z1", None), "c2": ("m2", "n2", "r2/z1", None), "c3": ("m3", "n3", "r3/z1", None)})
    lab = Lab.up(str(path), home_dir=lab_home, quiet=True)
    try:
        for i, c in enumerate(["c1", "c2", "c3"], 1):
            lab.deploy("helloworld", cluster=c, version=f"v{i}")
        lab.deploy("curl", cluster="c1")
        vm = lab.federate()
        drs = [r for r in vm.resources["c1"] if r["kind"] == "DestinationRule"]
        assert len(drs) == 2  # one per remote mesh, same host: merged, not refused
        ses = [r for r in vm.resources["c1"] if r["kind"] == "ServiceEntry"]
        assert {p["name"] for se in ses for p in se["spec"]["ports"]} == {"http"}
        r = lab.call("curl", URL, cluster="c1", n=60)
        assert {k for k in r.tally} == {("c1", "v1"), ("c2", "v2"), ("c3", "v3")}, r.tally
        assert lab.validate() == 7
    finally:
        lab.down(quiet=True)


@pytest.mark.istio("pilot/pkg/xds/endpoints/endpoint_builder.go: BuildClusterLoadAssignment")
def test_federation_serviceentry_ports_are_named_like_the_service() -> None:
    topo = load_topology("separate-control-planes")
    reg = [workload("hw-1", "helloworld", "cluster1", "10.10.0.10"), workload("hw-2", "helloworld", "cluster2", "10.20.0.10", "v2")]
    vm = virtual_mesh(topo, reg, {"cluster1": "10.250.0.1", "cluster2": "10.250.0.2"})
    for se in (r for r in vm.all() if r["kind"] == "ServiceEntry"):
        assert [p["name"] for p in se["spec"]["ports"]] == ["http"]
        assert all(set(ep["ports"]) == {"http"} for ep in se["spec"]["endpoints"])
    # and the translator lets them join the local Service's endpoints
    client = workload("curl", "curl", "cluster1", "10.10.0.9")
    docs = "\n---\n".join(yaml.safe_dump(r) for r in vm.resources["cluster1"])
    assert [a for a, *_ in eps(sidecar(topo, client, reg, docs))] == ["10.10.0.10", "10.250.0.2"]


@pytest.mark.istio("pilot/pkg/model/push_context.go: setDestinationRules")
def test_destination_rules_with_different_export_to_are_refused_by_name() -> None:
    a = {"kind": "DestinationRule", "metadata": {"name": "a", "namespace": "sample"}, "spec": {"host": "helloworld", "exportTo": ["."]}}
    b = {"kind": "DestinationRule", "metadata": {"name": "b", "namespace": "sample"}, "spec": {"host": "helloworld"}}
    with pytest.raises(ResourceError, match="different exportTo"):
        refuse_unmergeable(b, [a])


@pytest.mark.istio("pilot/pkg/networking/core/loadbalancer/loadbalancer.go: GetEffectiveLbSetting")
def test_service_traffic_distribution_is_refused_by_name() -> None:
    # Istio turns trafficDistribution into a forced failoverPriority; the local backend has no Service objects
    with pytest.raises(ResourceError, match="spec.trafficDistribution"):
        parse({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "helloworld"}, "spec": {"trafficDistribution": "PreferClose"}})


@pytest.mark.integration
@pytest.mark.istio("pilot/cmd/pilot-agent/status/ready/probe.go: checkConfigStatus")
def test_a_sidecar_started_while_its_control_plane_is_down_gets_no_config_and_is_not_ready(sn_lab: Lab) -> None:
    sn_lab.stop_control_plane("cluster1")
    before = {p["POD"] for p in sn_lab.sidecars()}
    sn_lab.deploy("curl", cluster="cluster2")  # a remote: its control plane is cluster1's
    (new,) = [p for p in sn_lab.sidecars() if p["POD"] not in before]
    assert (new["READY"], new["ENVOY STATE"]) == (False, "PRE_INITIALIZING")
    # the agent's probe: "config not received from XDS server" -- no listener update has arrived
    assert sn_lab.stats(new["POD"], "cluster2", "listener_manager.lds.update_success") == {}
    assert sn_lab.call("curl", URL, cluster="cluster2", n=5).errors == 0  # running pods keep serving
    sn_lab.start_control_plane("cluster1")
    (new,) = [p for p in sn_lab.sidecars() if p["POD"] == new["POD"]]
    assert (new["READY"], new["ENVOY STATE"]) == (True, "LIVE")
    assert sn_lab.stats(new["POD"], "cluster2", "listener_manager.lds.update_success")
    assert sn_lab.call(new["POD"], URL, cluster="cluster2", n=5).errors == 0
