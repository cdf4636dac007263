"""The protocol of the sidecar-to-sidecar hop and access logging, written from Istio 1.31's source.

- cluster_traffic_policy.go ``shouldH2Upgrade`` / cluster_builder.go ``setUpstreamProtocol``: an ``http``
  port stays HTTP/1.1 unless ``h2UpgradePolicy: UPGRADE``; gRPC and HTTP/2 ports are always HTTP/2;
  cluster_tls.go ``applyUpstreamTLSSettings`` advertises ``h2`` in ALPN only on HTTP/2 clusters.
- cluster_traffic_policy.go ``applyConnectionPool``: ``maxRequestsPerConnection`` on every cluster.
- route.go ``BuildDefaultHTTPInboundRoute``: the inbound retry policy only on ports that are not gRPC.
- accesslog.go ``setHTTPAccessLog`` with telemetry.go ``AccessLogging`` / ``mergeLogs``: no access log
  unless the Telemetry API (or meshConfig.accessLogFile) turns it on.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshlab.errors import ResourceError

from .kit import CLUSTER, HOST, cluster, east_west_gateway, hcms, sidecar, workload
from meshlab.topology import load_topology

FLAT = load_topology("flat-network")
SEP = load_topology("separate-networks")
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def client_and_servers() -> tuple:
    return workload("curl-1", "curl", "cluster1", "10.10.0.9"), [workload("hw-1", "helloworld", "cluster1", "10.10.0.10")]


def dr(policy: str, host: str = "helloworld", name: str = "hw") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: {host}
  trafficPolicy: {policy}
"""


def protocol_options(c: dict[str, Any]) -> dict[str, Any] | None:
    """The cluster's HttpProtocolOptions (without its @type), None when the cluster has none."""
    opts = (c.get("typed_extension_protocol_options") or {}).get(HTTP_OPTIONS)
    return None if opts is None else {k: v for k, v in opts.items() if k != "@type"}


def is_http2(c: dict[str, Any]) -> bool:
    return "http2_protocol_options" in ((protocol_options(c) or {}).get("explicit_http_config") or {})


def mtls_alpn(c: dict[str, Any]) -> list[str]:
    """ALPN of the cluster's Istio-mTLS transport socket (the auto-mTLS match or the only socket)."""
    sockets = [m["transport_socket"] for m in c.get("transport_socket_matches", []) if m.get("match")]
    sockets += [c["transport_socket"]] if "transport_socket" in c else []
    (ts,) = sockets
    return list(ts["typed_config"]["common_tls_context"]["alpn_protocols"])


# ---- item 6: HTTP/1.1 between sidecars unless h2UpgradePolicy says UPGRADE ----------------------------------
@pytest.mark.istio("pilot/pkg/networking/core/cluster_traffic_policy.go: shouldH2Upgrade")
def test_an_http_port_stays_http11_unless_a_destination_rule_upgrades_it() -> None:
    client, reg = client_and_servers()
    c = cluster(sidecar(FLAT, client, reg))
    # meshConfig.h2UpgradePolicy defaults to DO_NOT_UPGRADE: no HttpProtocolOptions at all (Envoy's HTTP/1.1)
    assert protocol_options(c) is None and not is_http2(c)
    assert mtls_alpn(c) == ["istio-peer-exchange", "istio"]  # util.ALPNInMeshWithMxc
    up = cluster(sidecar(FLAT, client, reg, dr("{connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}")))
    assert protocol_options(up) == {"explicit_http_config": {"http2_protocol_options": {}}}  # setH2Options
    assert mtls_alpn(up) == ["istio-peer-exchange", "istio", "h2"]  # util.ALPNInMeshH2WithMxc
    down = cluster(sidecar(FLAT, client, reg, dr("{connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE}}}")))
    assert protocol_options(down) is None and mtls_alpn(down) == ["istio-peer-exchange", "istio"]
    default = cluster(sidecar(FLAT, client, reg, dr("{connectionPool: {http: {h2UpgradePolicy: DEFAULT}}}")))
    assert protocol_options(default) is None  # DEFAULT: the mesh's policy, DO_NOT_UPGRADE


@pytest.mark.istio("pilot/pkg/networking/core/cluster_builder.go: setUpstreamProtocol")
def test_grpc_and_http2_ports_are_always_http2() -> None:
    client = workload("curl-1", "curl", "cluster1", "10.10.0.9")
    rls = workload("rl-1", "ratelimit", "cluster1", "10.10.0.11", ports=[8081])
    rls.port_names, rls.protocol = ["grpc"], "grpc"
    name = "outbound|8081||ratelimit.sample.svc.cluster.local"
    c = cluster(sidecar(FLAT, client, [rls]), name)
    assert is_http2(c) and mtls_alpn(c) == ["istio-peer-exchange", "istio", "h2"]
    # setUpstreamProtocol runs after the traffic policy: DO_NOT_UPGRADE does not make a gRPC port HTTP/1.1
    res = dr("{connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE}}}", host="ratelimit", name="rl")
    assert is_http2(cluster(sidecar(FLAT, client, [rls], res), name))


# ---- item 8: maxRequestsPerConnection on every cluster --------------------------------------------------------
SE_EXTERNAL = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1}]
"""


@pytest.mark.istio("pilot/pkg/networking/core/cluster_traffic_policy.go: applyConnectionPool")
def test_max_requests_per_connection_is_written_on_every_cluster() -> None:
    """On an HTTP/1.1 cluster the options carry an empty explicit HTTP/1 config (clusterWrapper.build)."""
    client, reg = client_and_servers()
    want = {"common_http_protocol_options": {"max_requests_per_connection": 1}, "explicit_http_config": {"http_protocol_options": {}}}
    c = cluster(sidecar(FLAT, client, reg, dr("{connectionPool: {http: {maxRequestsPerConnection: 1}}}")))
    assert protocol_options(c) == want
    ext = SE_EXTERNAL + "---\n" + dr("{connectionPool: {http: {maxRequestsPerConnection: 1}}}", host="api.example.com", name="ext")
    assert protocol_options(cluster(sidecar(FLAT, client, reg, ext), "outbound|80||api.example.com")) == want
    up = cluster(sidecar(FLAT, client, reg, dr("{connectionPool: {http: {maxRequestsPerConnection: 2, h2UpgradePolicy: UPGRADE}}}")))
    assert protocol_options(up) == {"common_http_protocol_options": {"max_requests_per_connection": 2},
                                    "explicit_http_config": {"http2_protocol_options": {}}}  # fmt: skip


# ---- item 7: the inbound retry policy only on ports that are not gRPC ------------------------------------------
@pytest.mark.istio("pilot/pkg/networking/core/route/route.go: BuildDefaultHTTPInboundRoute")
def test_inbound_retry_policy_only_on_ports_that_are_not_grpc() -> None:
    client, (hw,) = client_and_servers()
    rls = workload("rl-1", "ratelimit", "cluster1", "10.10.0.11", ports=[8081])
    rls.port_names, rls.protocol = ["grpc"], "grpc"
    (route,) = inbound_routes(sidecar(FLAT, hw, [client]), "10.10.0.10_5000")
    assert route["route"]["retry_policy"] == {"retry_on": "reset-before-request", "num_retries": 2}
    (route,) = inbound_routes(sidecar(FLAT, rls, [client]), "10.10.0.11_8081")
    assert "retry_policy" not in route["route"]
    assert route["route"]["timeout"] == "0s"  # the rest of the default inbound route stays


def inbound_routes(cfg: Any, listener: str) -> list[dict[str, Any]]:
    (h, *_) = hcms(cfg, listener)
    (vh,) = h["route_config"]["virtual_hosts"]
    return list(vh["routes"])


# ---- item 10: access logs only when the Telemetry API turns them on ---------------------------------------
def telemetry(name: str, namespace: str, logging: str, selector: str = "") -> str:
    return f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{selector}  accessLogging: {logging}
"""


MESH_LOGS = telemetry("mesh-default", "istio-system", "[{providers: [{name: envoy}]}]")


def logs(cfg: Any, listener: str) -> list[list[dict[str, Any]]]:
    """The access loggers of each HTTP connection manager of ``listener``."""
    return [h.get("access_log", []) for h in hcms(cfg, listener)]


@pytest.mark.istio("pilot/pkg/networking/core/accesslog.go: setHTTPAccessLog")
def test_no_access_log_unless_the_telemetry_api_turns_it_on() -> None:
    client, (hw,) = client_and_servers()
    # meshConfig.accessLogFile is "" by default and no Telemetry exists: no access log anywhere
    assert logs(sidecar(FLAT, client, [hw]), "virtualOutbound") == [[]]
    assert all(x == [] for x in logs(sidecar(FLAT, hw, [client]), "10.10.0.10_5000"))
    # a mesh-wide Telemetry in the root namespace with the built-in ``envoy`` provider (a file log)
    for cfg, listener, w in ((sidecar(FLAT, client, [hw], MESH_LOGS), "virtualOutbound", client),
                             (sidecar(FLAT, hw, [client], MESH_LOGS), "10.10.0.10_5000", hw)):  # fmt: skip
        for loggers in logs(cfg, listener):
            (al,) = loggers
            assert al["name"] == "envoy.access_loggers.file" and al["typed_config"]["path"] == w.access_log


@pytest.mark.istio("pilot/pkg/model/telemetry.go: mergeLogs")
def test_telemetry_scopes_and_modes_choose_who_logs() -> None:
    client, (hw,) = client_and_servers()
    # a namespace's Telemetry that disables logging overrides the mesh's (providers inherited from the parent)
    off = MESH_LOGS + "---\n" + telemetry("quiet", "sample", "[{disabled: true}]")
    assert logs(sidecar(FLAT, client, [hw], off), "virtualOutbound") == [[]]
    # a workload's Telemetry with match mode SERVER: only inbound connection managers log
    server = telemetry("server-only", "sample", "[{providers: [{name: envoy}], match: {mode: SERVER}}]",
                       "  selector: {matchLabels: {app: helloworld}}\n")  # fmt: skip
    assert all(len(x) == 1 for x in logs(sidecar(FLAT, hw, [client], server), "10.10.0.10_5000"))
    assert logs(sidecar(FLAT, hw, [client], server), "virtualOutbound") == [[]]  # the same proxy's client side: CLIENT mode
    assert logs(sidecar(FLAT, client, [hw], server), "virtualOutbound") == [[]]  # not selected
    # CLIENT mode disabled for one workload under a mesh-wide provider: its inbound side still logs
    client_off = MESH_LOGS + "---\n" + telemetry("no-client", "sample", "[{disabled: true, match: {mode: CLIENT}}]",
                                                 "  selector: {matchLabels: {app: helloworld}}\n")  # fmt: skip
    cfg = sidecar(FLAT, hw, [client], client_off)
    assert logs(cfg, "virtualOutbound") == [[]] and all(len(x) == 1 for x in logs(cfg, "10.10.0.10_5000"))


@pytest.mark.istio("pilot/pkg/networking/core/accesslog.go: setTCPAccessLog")
def test_the_east_west_gateway_logs_only_when_telemetry_turns_it_on() -> None:
    gw, reg = east_west_gateway(SEP)
    assert all("access_log" not in f["typed_config"] for f in gw_filters(gw(reg, "")))
    assert all(len(f["typed_config"]["access_log"]) == 1 for f in gw_filters(gw(reg, MESH_LOGS)))


def gw_filters(cfg: Any) -> list[dict[str, Any]]:
    (lis,) = [x for x in cfg.listeners if x["name"] == "0.0.0.0_15443"]
    return [f for ch in lis["filter_chains"] for f in ch["filters"] if f["name"] == "envoy.filters.network.tcp_proxy"]

