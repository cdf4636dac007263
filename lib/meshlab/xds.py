"""Envoy's xDS API as plain data: type URLs, the building blocks of listeners, clusters and endpoints,
and one proxy's whole configuration (:class:`ProxyConfig`).

The model layer under both the control plane (which fills these in, :mod:`meshlab.controlplane`) and the
runtime (which writes them where Envoy reads them, :mod:`meshlab.runtime.envoy`). No files, no processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

T = "type.googleapis.com/"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = T + "envoy.extensions.filters.http.router.v3.Router"
TLS_INSPECTOR = T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
UPSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
FILE_LOG = T + "envoy.extensions.access_loggers.file.v3.FileAccessLog"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# the fault filter does nothing until a route enables it (VirtualService ``fault``)
FAULT_FILTER = {"name": "envoy.filters.http.fault", "typed_config": {"@type": T + "envoy.extensions.filters.http.fault.v3.HTTPFault"}}

# One JSON line per request; the peer fields show who was on the other end of the mTLS connection.
ACCESS_LOG_FORMAT = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(:PATH)%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_peer": "%UPSTREAM_PEER_URI_SAN%",
    "upstream_peer_dns": "%UPSTREAM_PEER_DNS_SAN%",
    "upstream_tls": "%UPSTREAM_TLS_VERSION%",
    "downstream_remote": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "downstream_peer": "%DOWNSTREAM_PEER_URI_SAN%",
    "downstream_peer_issuer": "%DOWNSTREAM_PEER_ISSUER%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "sni": "%REQUESTED_SERVER_NAME%",
    "tls": "%DOWNSTREAM_TLS_VERSION%",
    "duration_ms": "%DURATION%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "upstream_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}


def sock(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def listener(name: str, address: str, port: int, **fields: Any) -> dict[str, Any]:
    """A listener that refuses to share its port: two labs (or a stray process) on one address fail loudly."""
    return {"name": name, "address": sock(address, port), "enable_reuse_port": False, **fields}


def access_log(path: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {"@type": FILE_LOG, "path": path, "log_format": {"json_format": ACCESS_LOG_FORMAT}},
        }
    ]



def tls_context(cert_chain: str, key: str, root: str, alpn: list[str]) -> dict[str, Any]:
    return {
        "alpn_protocols": alpn,
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
        "tls_certificates": [{"certificate_chain": {"filename": cert_chain}, "private_key": {"filename": key}}],
    }


def static_cluster(name: str, host: str, port: int, http2: bool = False) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sock(host, port)}}]}]},
    }
    if http2:  # e.g. a gRPC app behind its sidecar
        c["typed_extension_protocol_options"] = {HTTP_OPTIONS: {"@type": T + HTTP_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}}
    return c


def hcm(
    stat_prefix: str,
    route_config: dict[str, Any],
    log_path: str,
    extra: dict[str, Any] | None = None,
    http_filters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat_prefix,
            # as Istio's RDS routes: a route may name a cluster that is still warming (a new service's EDS)
            "route_config": {"validate_clusters": False, **route_config},
            "http_filters": [*(http_filters or []), {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
            **({"access_log": access_log(log_path)} if log_path else {}),  # "": no access log (Istio's default)
            **(extra or {}),
        },
    }


@dataclass
class Endpoint:
    address: str
    port: int
    region: str
    zone: str
    weight: int = 1
    priority: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    locality_weight: int | None = None  # from a DestinationRule's localityLbSetting.distribute
    tls_mode: bool = False  # auto-mTLS: the endpoint is marked tlsMode=istio (a sidecar that accepts mTLS)
    subzone: str = ""  # a ServiceEntry endpoint's locality may name one (region/zone/subzone)


def _endpoint_metadata(e: Endpoint) -> dict[str, Any]:
    md: dict[str, Any] = {}
    if e.labels:
        md["istio"] = e.labels
    if e.tls_mode:
        md["envoy.transport_socket_match"] = {"tlsMode": "istio"}
    return {"filter_metadata": md} if md else {}


def load_assignment(cluster: str, endpoints: list[Endpoint]) -> dict[str, Any]:
    """A ClusterLoadAssignment: endpoints grouped by (locality, priority), as istiod sends them."""
    groups: dict[tuple[str, str, str, int], list[Endpoint]] = {}
    for e in endpoints:
        groups.setdefault((e.region, e.zone, e.subzone, e.priority), []).append(e)
    return {
        "@type": T + "envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": cluster,
        "endpoints": [
            {
                "locality": {"region": r, "zone": z, **({"sub_zone": sz} if sz else {})},
                "priority": p,
                "load_balancing_weight": eps[0].locality_weight if eps[0].locality_weight is not None else sum(e.weight for e in eps),
                "lb_endpoints": [
                    {
                        "endpoint": {"address": sock(e.address, e.port)},
                        "load_balancing_weight": e.weight,
                        "metadata": _endpoint_metadata(e),
                    }
                    for e in eps
                ],
            }
            for (r, z, sz, p), eps in groups.items()
        ],
    }


@dataclass
class ProxyConfig:
    """Everything one proxy needs beyond its bootstrap."""

    listeners: list[dict[str, Any]]
    clusters: list[dict[str, Any]]
    endpoints: dict[str, list[Endpoint]]  # EDS cluster name -> endpoints
    extensions: dict[str, dict[str, Any]] = field(default_factory=dict)  # ECDS: extension config name -> TypedExtensionConfig


def eds_path(xds: Path, cluster: str) -> Path:
    safe = cluster.replace("|", "_").replace("/", "_")
    return xds / "eds" / f"{safe}.json"


def ecds_path(xds: Path, name: str) -> Path:
    """The file a proxy watches for one extension config (ECDS delivers one resource per subscription)."""
    return xds / "ecds" / (name.replace("/", "_") + ".json")


def resource(type_name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"@type": T + type_name, **body}


