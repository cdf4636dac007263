"""meshlab's istiod: topology + workload registry + Istio resources -> the Envoy config of every proxy.

The config generator (``pilot/pkg/networking/core``: ``ConfigGenerator``, listener.go, cluster.go,
httproute.go, gateway.go): a pure function of its inputs -- no processes, no files, no network.

It follows what istiod does for the same inputs:
- a control plane sees the workloads of every cluster it serves (``Topology.served_by``);
- a service exists for a proxy if any visible cluster runs it; its cluster is
  ``outbound|<port>||<name>.<ns>.svc.cluster.local`` and upstream TLS uses SNI
  ``outbound_.<port>_._.<fqdn>`` with the SPIFFE IDs of the service's accounts as allowed SANs;
- endpoints on the proxy's own network are pod addresses with their locality ("flat" EDS);
  endpoints on another network are that cluster's east-west gateway on 15443, weighted by how many
  endpoints sit behind it (split-horizon EDS);
- inbound, the sidecar listens on ``<podIP>:<port>`` with the filter chains of the port's
  PeerAuthentication mode (mTLS with a client certificate from the mesh's trust domains, plaintext, or
  both), its AuthorizationPolicies and RequestAuthentications as RBAC and jwt_authn filters
  (:mod:`.security`), and forwards to the app on the pod's loopback; clients use auto-mTLS;
- TrafficExtensions and WasmPlugins become filters in the HTTP connection managers of the workloads
  they select, ordered by phase and priority: Lua inline, Wasm as an extension config discovered over
  ECDS, which the proxy's agent rewrites before Envoy loads it (:mod:`.extensions`,
  :mod:`meshlab.runtime.agent`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import xds as E
from ..errors import ResourceError
from ..pki import WorkloadCert
from ..registry import DOMAIN_SUFFIX, GATEWAY_LABELS, GATEWAY_PORT, OUTBOUND_PORT, Workload, outbound_cluster_name, sni
from ..topology import Topology
from . import envoyfilter
from . import security as S
from . import telemetry as T
from . import sidecar as SC
from . import tracing as TR
from .clusters import apply_traffic_policy, eds_cluster, http_protocol_options, is_http2, port_protocol
from .endpoints import EndpointBuilder
from .extensions import PHASES, extension_configs, http_filters, referenced
from .gateway import auto_sni_options, gateway_listeners, origination
from .pushcontext import cluster_local_hosts, destination_rule, is_cluster_local, matches, resolve_host, subsets, virtual_service
from .routes import ISTIO_DEFAULT_RETRY, ISTIO_INBOUND_RETRY, http_routes

TCP_PROXY = E.T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def inbound_route(protocol: str) -> dict[str, Any]:
    """route.go ``BuildDefaultHTTPInboundRoute``: no timeout, and Istio's inbound retry policy unless the port
    is gRPC ("reset-before-request" does not work well for gRPC streaming)."""
    route: dict[str, Any] = {"timeout": "0s", "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}}
    if protocol not in ("GRPC", "GRPC-WEB"):
        route["retry_policy"] = ISTIO_INBOUND_RETRY
    return route


def host_aliases(name: str, namespace: str, client_namespace: str) -> list[str]:
    """The Host values a client may use for a service, as Kubernetes DNS search paths allow
    (the bare name only resolves from the service's own namespace)."""
    aliases = [f"{name}.{namespace}.{DOMAIN_SUFFIX}", f"{name}.{namespace}.svc", f"{name}.{namespace}"]
    return aliases + [name] if namespace == client_namespace else aliases


def passthrough_hosts(resources: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """Hosts of the AUTO_PASSTHROUGH servers on 15443 of the Gateways selecting a gateway with ``labels``."""
    return [
        h
        for r in resources
        if r["kind"] == "Gateway" and matches(labels, r["spec"].get("selector", {}))
        for server in r["spec"].get("servers", [])
        if server["port"]["number"] == GATEWAY_PORT and server.get("tls", {}).get("mode") == "AUTO_PASSTHROUGH"
        for h in server.get("hosts", [])
    ]


def exported_to(export_to: list[str] | None, owner_namespace: str, namespace: str) -> bool:
    """``PushContext.IsServiceVisible``: ``*`` (the default, meshConfig.defaultServiceExportTo) is every namespace,
    ``.`` the owner's own, ``~`` none, anything else a namespace by name."""
    to = set(export_to or ["*"])
    return "*" in to or ("." in to and owner_namespace == namespace) or namespace in to


def host_matches(pattern: str, fqdn: str) -> bool:
    """A Gateway host (``*``, ``*.local``, an exact name; an optional ``namespace/`` prefix) against a service."""
    namespace, _, host = pattern.rpartition("/")
    if namespace not in ("", "*", fqdn.split(".")[1]):
        return False
    return host == "*" or host == fqdn or (host.startswith("*.") and fqdn.endswith(host[1:]))


@dataclass
class Outbound:
    """A destination as one proxy sees it: ports, the Host names that reach it, who serves it."""

    fqdn: str
    ports: tuple[int, ...]
    aliases: list[str]
    namespace: str = ""
    owner: str = "Kubernetes Service"  # or "ServiceEntry <ns>/<name>": who defines the host's ports
    port_names: dict[int, str] = field(default_factory=dict)
    protocols: dict[int, str] = field(default_factory=dict)  # port -> its protocol (clusters.port_protocol)
    sans: set[str] = field(default_factory=set)
    pods: list[Workload] = field(default_factory=list)  # Kubernetes endpoints (split-horizon applies)
    entries: dict[int, list[E.Endpoint]] = field(default_factory=dict)  # ServiceEntry endpoints, as written
    external: bool = False  # a MESH_EXTERNAL ServiceEntry: plain HTTP/1.1 upstream, no mesh identity


def service_metadata(svc: Outbound) -> dict[str, str]:
    """cluster.go ``buildServiceMetadata``: the service an outbound cluster is for -- its host, its name (a
    Kubernetes Service's own name; a ServiceEntry's service is named after the host) and its namespace."""
    name = svc.fqdn if svc.owner.startswith("ServiceEntry") else svc.fqdn.split(".")[0]
    return {"host": svc.fqdn, "name": name, "namespace": svc.namespace}


class Translator(EndpointBuilder):
    """Builds each proxy's ProxyConfig from the registry and resources as seen by its control plane."""

    def __init__(
        self, topology: Topology, gateway_ip: dict[str, str], certs: dict[str, WorkloadCert], network_labels: dict[str, str] | None = None,
        telemetry: dict[str, Any] | None = None,
        secrets: dict[str, dict[str, str]] | None = None,
        remote_secrets: dict[str, list[str]] | None = None,
        tracing: dict[str, Any] | None = None,
        mesh_config: dict[str, Any] | None = None,
    ) -> None:
        self.topology = topology
        # the serving control plane's meshConfig (serviceSettings: cluster-local hosts)
        self.cluster_local = cluster_local_hosts((mesh_config or {}).get("serviceSettings", []))
        # control plane -> the clusters it reads through a remote secret (default: the pattern's, Topology.remote_secrets)
        self.remote_secrets = remote_secrets if remote_secrets is not None else {cp: topology.remote_secrets(cp) for cp in topology.control_planes}
        # tracing: the mesh's extension providers and where each provider's service is (see :meth:`tracing_provider`)
        self.tracing = tracing or {}
        self.telemetry = telemetry  # the istio-stats module (path, sha256) when telemetry is on: meshlab.controlplane.telemetry
        self.secrets = secrets or {}  # TLS secrets of the proxy's cluster, by name (credentialName)
        self.gateway_ip = gateway_ip  # cluster -> east-west gateway address (multi-network patterns)
        self.certs = certs  # pod -> its certificate files
        # cluster -> the topology.istio.io/network label of its istio-system namespace ("" = unlabelled)
        self.network_labels = network_labels if network_labels is not None else {n: c.network for n, c in topology.clusters.items()}

    @staticmethod
    def extension_filters(
        w: Workload, resources: list[dict[str, Any]], xds: Path, direction: str, port: int | None = None, phase: str | None = None
    ) -> list[dict[str, Any]]:
        """TrafficExtensions (and WasmPlugins) selecting ``w`` as HTTP filters of one connection manager, in
        Istio's order (only those of ``phase`` when given)."""
        phases = PHASES if phase is None else (phase.removesuffix("_PHASE"),)
        return http_filters(w.labels, w.namespace, resources, direction, lambda name: E.ecds_path(xds, name), port, phases)

    def outbound_services(self, w: Workload, registry: list[Workload], resources: list[dict[str, Any]]) -> list[Outbound]:
        """Every destination the proxy knows, one service per host as istiod keeps it (push_context.go):
        a Kubernetes Service of the control plane's clusters owns its host, else the oldest ServiceEntry
        does. A ServiceEntry's endpoints join the host's service (same namespace) only on a port whose
        name equals the service port's name (endpoint_builder.go); any other port of it is ignored."""
        visible = self.visible(w.cluster, registry)
        trust_domain = self.topology.trust_domain(w.cluster)
        out: dict[str, Outbound] = {}
        for svc in self.services(visible):
            pods = [b for b in visible if b.app == svc.name and b.namespace == svc.namespace]
            o = Outbound(svc.fqdn, svc.ports, host_aliases(svc.name, svc.namespace, w.namespace), svc.namespace,
                         port_names=dict(zip(svc.ports, svc.port_names)), pods=pods,
                         protocols={p: port_protocol(n) for p, n in zip(svc.ports, svc.port_names)})  # fmt: skip
            o.sans.update(self.certs[b.pod].spiffe_id for b in pods if b.pod in self.certs)
            out[svc.fqdn] = o
        for r in resources:  # in the order they were created: the oldest ServiceEntry owns a host
            if r["kind"] != "ServiceEntry":
                continue
            spec, ns = r["spec"], r["metadata"].get("namespace", "default")
            if not exported_to(spec.get("exportTo"), ns, w.namespace):
                continue  # the ServiceEntry's service is not visible in the proxy's namespace (IsServiceVisible)
            for host in spec.get("hosts", []):
                o = out.get(host)
                if o is None:
                    parts = host.split(".")
                    # a cluster.local host answers to its short names too (Istio's DNS proxy does this for ServiceEntries)
                    aliases = host_aliases(parts[0], parts[1], w.namespace) if host.endswith("." + DOMAIN_SUFFIX) and len(parts) == 5 else [host]
                    o = out[host] = Outbound(
                        host, tuple(sorted(p["number"] for p in spec.get("ports", []))), aliases, ns,
                        owner=f"ServiceEntry {ns}/{r['metadata']['name']}",
                        port_names={p["number"]: p.get("name", "") for p in spec.get("ports", [])},
                        protocols={p["number"]: port_protocol(p.get("name", ""), p.get("protocol", "")) for p in spec.get("ports", [])},
                        external=spec.get("location") == "MESH_EXTERNAL",
                    )  # fmt: skip
                elif o.namespace != ns:
                    continue  # services of one host in two namespaces stay apart (meshlab does not pick between them)
                o.sans.update(spec.get("subjectAltNames", []))
                for pdef in spec.get("ports", []):
                    name = pdef.get("name", "")
                    port = next((n for n, pn in o.port_names.items() if pn == name), None)
                    if port is None:
                        continue  # no service port of that name: Istio's EDS drops these endpoints
                    for ep in spec.get("endpoints", []):
                        region, zone, subzone = (ep.get("locality", "").split("/", 2) + ["", ""])[:3]
                        target = ep.get("ports", {}).get(name, pdef.get("targetPort", pdef["number"]))
                        labels = {**ep.get("labels", {}), **({"topology.istio.io/network": ep["network"]} if "network" in ep else {})}
                        if "serviceAccount" in ep:
                            o.sans.add(f"spiffe://{trust_domain}/ns/{ns}/sa/{ep['serviceAccount']}")
                        o.entries.setdefault(port, []).append(
                            E.Endpoint(ep["address"], target, region, zone, weight=ep.get("weight", 1), labels=labels, subzone=subzone)
                        )
        return list(out.values())

    def sidecar(self, w: Workload, registry: list[Workload], xds: Path, resources: list[dict[str, Any]] | None = None) -> E.ProxyConfig:
        resources = resources or []
        cert = self.certs[w.pod]
        trust_domains = self.topology.trust_domains(w.cluster)
        me = self.topology.clusters[w.cluster]
        client_labels = {**w.labels, **self.topology_labels(w.cluster)}
        listeners: list[dict[str, Any]] = []
        clusters: list[dict[str, Any]] = []
        endpoints: dict[str, list[E.Endpoint]] = {}
        vhosts: list[dict[str, Any]] = []
        services = self.outbound_services(w, registry, resources)
        # the Sidecar resource's egress hosts: what this proxy is told about at all (gateways: every service)
        imported = None if w.app in GATEWAY_LABELS else SC.scope(SC.sidecar_for(resources, w.labels, w.namespace))
        if imported is not None:
            services = [o for o in services if imported.imports(o.fqdn, o.namespace)]
        known_clusters: set[str] = set()

        for svc in services:
            dr = destination_rule(resources, svc.fqdn, w.namespace, svc.namespace)
            policy = (dr or {}).get("spec", {}).get("trafficPolicy", {})
            for port in svc.ports:
                for subset, selector in [("", {}), *subsets(dr).items()]:
                    name = outbound_cluster_name(port, svc.fqdn, subset)
                    pods = [p for p in svc.pods if port in p.ports and matches(p.labels, selector)]
                    if is_cluster_local(svc.fqdn, self.cluster_local):  # endpoint_builder.go: only the proxy's own cluster
                        pods = [p for p in pods if p.cluster == w.cluster]
                    dr_tls = policy.get("tls", {}).get("mode")
                    entries = [e for e in svc.entries.get(port, []) if matches(e.labels, selector)]
                    for e in entries:  # a ServiceEntry endpoint speaks mTLS if labelled so (or the DestinationRule says so)
                        e.tls_mode = dr_tls == "ISTIO_MUTUAL" if dr_tls else e.labels.get("security.istio.io/tlsMode") == "istio"
                    eps = self.endpoints(w.cluster, pods, port, resources, dr_tls) + entries
                    extra: dict[str, Any] = {}
                    options = http_protocol_options(svc.protocols.get(port, "HTTP"), policy.get("connectionPool", {}).get("http", {}))
                    h2 = "http2_protocol_options" in (options or {}).get("explicit_http_config", {})
                    if dr_tls in (None, "ISTIO_MUTUAL"):
                        mtls = {
                            "sni": sni(port, svc.fqdn, subset),
                            "common_tls_context": {
                                # ALPN: h2 only on an HTTP/2 cluster (cluster_tls.go, ALPNInMeshH2WithMxc / ALPNInMeshWithMxc)
                                **E.tls_context(str(cert.cert_chain), str(cert.key), str(cert.root_cert), S.client_mtls_alpns(h2)),
                                "validation_context": {
                                    "trusted_ca": {"filename": str(cert.root_cert)},
                                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": s}} for s in sorted(svc.sans)],
                                },
                            },
                        }
                        extra.update(S.client_transport(mtls, auto=dr_tls is None))
                    elif dr_tls == "SIMPLE":  # TLS origination: the sidecar speaks TLS to a server outside the mesh
                        extra["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": E.UPSTREAM_TLS, **origination(policy["tls"], svc.fqdn, self.secrets)}}
                        if auto := auto_sni_options(policy["tls"]):  # Istio's clusterWrapper.build(): HTTP/1.1 unless set
                            extra["typed_extension_protocol_options"] = {E.HTTP_OPTIONS: {
                                "@type": E.T + E.HTTP_OPTIONS,
                                "explicit_http_config": {"http_protocol_options" if svc.external else "http2_protocol_options": {}},
                                "upstream_http_protocol_options": auto}}
                    if w.netns is None:  # loopback mode: connect from the pod's own address so the callee sees who called
                        extra["upstream_bind_config"] = {"source_address": {"address": w.ip, "port_value": 0}}
                    extra.update(apply_traffic_policy(policy, eps, (me.region, me.zone), client_labels))
                    extra["metadata"] = {"filter_metadata": {"istio": {"services": [service_metadata(svc)]}}}
                    clusters.append(
                        eds_cluster(
                            name, E.eds_path(xds, name), tls=None, lb_policy=extra.pop("lb_policy", "LEAST_REQUEST"), protocol_options=options,
                            extra=extra,
                        )  # fmt: skip
                    )
                    endpoints[name] = eps
                    known_clusters.add(name)

        def cluster_for(host: str, subset: str, port: int | None, namespace: str, default_port: int) -> str:
            fqdn = resolve_host(host, namespace)
            name = outbound_cluster_name(port or default_port, fqdn, subset)
            if name not in known_clusters:
                what = f"subset {subset!r} of {fqdn}" if subset else fqdn
                raise ResourceError(
                    f"a VirtualService routes to {what} on port {port or default_port}, which this control plane does not know",
                    "deploy the service first, and define subsets in a DestinationRule before routing to them",
                )
            return name

        for svc in services:
            vs = virtual_service(resources, svc.fqdn, w.namespace)
            for i, port in enumerate(svc.ports):
                if vs:
                    ns = vs["metadata"].get("namespace", "default")
                    routes = http_routes(vs, port, lambda h, s, p, ns=ns, port=port: cluster_for(h, s, p, ns, port))
                else:
                    routes = [
                        {
                            "name": "default",
                            "match": {"prefix": "/"},
                            "route": {
                                "cluster": outbound_cluster_name(port, svc.fqdn), "timeout": "0s", "max_grpc_timeout": "0s",
                                "retry_policy": dict(ISTIO_DEFAULT_RETRY),
                            },  # fmt: skip
                            # the span's operation name (telemetry.go TraceOperation: "<host>:<port>/*")
                            "decorator": {"operation": f"{svc.fqdn}:{port}/*"},
                        }
                    ]
                domains = [f"{h}:{port}" for h in svc.aliases]
                if i == 0:  # a host without a port can only mean one port
                    domains += svc.aliases
                vhosts.append({"name": f"{svc.fqdn}:{port}", "domains": domains, "routes": routes})

        known = ", ".join(v["name"] for v in vhosts) or "none"
        vhosts.append(
            {
                "name": "block_all",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/"},
                        "direct_response": {
                            "status": 404,
                            "body": {"inline_string": f"meshlab: no service in the mesh matches this Host; known: {known}\n"},
                        },
                    }
                ],
            }
        )
        client_tracing, server_tracing = self.hcm_tracing(w, resources)
        listeners.append(
            E.listener(
                "virtualOutbound", w.outbound, OUTBOUND_PORT, traffic_direction="OUTBOUND",
                filter_chains=[
                    {
                        "filters": [
                            E.hcm(
                                f"outbound_{OUTBOUND_PORT}", {"name": "outbound", "virtual_hosts": vhosts}, self.log_path(w, resources, "CLIENT"),
                                {"tracing": client_tracing} if client_tracing else None,
                                http_filters=[*self.extension_filters(w, resources, xds, "outbound"), E.FAULT_FILTER, *self.stats_filters(w, "source", services)],
                            )  # fmt: skip
                        ]
                    }
                ],
            )  # fmt: skip
        )

        for port in w.ports:
            inbound = f"inbound|{port}||"
            protocol = port_protocol(dict(zip(w.ports, w.port_names)).get(port, ""))
            clusters.append(E.static_cluster(inbound, w.app_host, port, http2=is_http2(protocol) or w.protocol == "grpc"))
            hcm = E.hcm(
                f"inbound_{port}",
                {
                    "name": f"inbound|{port}||",
                    # Istio's name for the inbound virtual host ("inbound|http|<port>"): EnvoyFilters match on it
                    "virtual_hosts": [{"name": f"inbound|http|{port}", "domains": ["*"], "routes": [{"name": "default", "match": {"prefix": "/"}, "route": inbound_route(protocol) | {"cluster": inbound},
                                                                                                  "decorator": {"operation": f"{w.fqdn}:{port}/*"}}]}],
                },
                self.log_path(w, resources, "SERVER"),
                # Istio passes the caller's identity to the app in XFCC
                {"forward_client_cert_details": "APPEND_FORWARD", "set_current_client_cert_details": {"uri": True},
                 **({"tracing": server_tracing} if server_tracing else {})},
                http_filters=[*S.inbound_http_filters(
                    resources, w.labels, w.namespace, trust_domains,
                    lambda phase, port=port: self.extension_filters(w, resources, xds, "inbound", port, phase),
                ), *self.stats_filters(w, "destination")],
            )  # fmt: skip
            tls = S.downstream_mtls(str(cert.cert_chain), str(cert.key), str(cert.root_cert), trust_domains)
            mode = S.mtls_mode(resources, w.labels, w.namespace, port)
            listeners.append(
                {
                    **E.listener(f"{w.ip}_{port}", w.ip, port, traffic_direction="INBOUND"),
                    "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": E.TLS_INSPECTOR}}],
                    "filter_chains": S.inbound_filter_chains(mode, tls, [hcm]),
                }
            )
        if self.telemetry:
            listeners.append(T.stats_listener(w.ip))
            clusters.append(T.stats_cluster(w.admin))
        collector = self.tracing_collector()
        if collector and imported is not None and not imported.imports(collector[0].rsplit("|", 1)[1], "istio-system"):
            collector = None  # a Sidecar that does not import the collector's service: the proxy cannot export spans
        if (client_tracing or server_tracing) and collector:  # the provider service's outbound cluster (plain gRPC: no sidecar)
            name, address, port = collector
            if name not in {c["name"] for c in clusters}:
                clusters.append(E.static_cluster(name, address, port, http2=True))

        used = referenced(listeners)  # istiod serves the extension configs the proxy's listeners ask for
        extensions = {n: c for n, c in extension_configs(w.labels, w.namespace, resources).items() if n in used}
        # EnvoyFilters patch what istiod generated, last (pilot/pkg/networking/core/envoyfilter)
        inbound = {f"{w.ip}_{port}" for port in w.ports}
        return envoyfilter.apply(E.ProxyConfig(listeners, clusters, endpoints, extensions), w.labels, w.namespace, resources, "virtualOutbound", inbound)

    def tracing_provider(self, name: str | None) -> dict[str, str] | None:
        """``fetchProvider`` (meshConfig.extensionProviders, names compared case-insensitively) and ``clusterLookupFn``
        (the provider service's outbound cluster, if the registry has the service): None when either is missing."""
        if not name:
            return None
        for p in self.tracing.get("providers", []):
            otel = p.get("opentelemetry")
            if p["name"].lower() == name.lower() and otel and f"{otel['service']}:{otel['port']}" in self.tracing.get("services", {}):
                return {"cluster": outbound_cluster_name(int(otel["port"]), otel["service"]), "authority": otel["service"]}
        return None

    def tracing_collector(self) -> tuple[str, str, int] | None:
        """The provider service's outbound cluster: (name, address, port), when the registry has it."""
        for key, address in self.tracing.get("services", {}).items():
            host, _, port = key.rpartition(":")
            return outbound_cluster_name(int(port), host), address, int(port)
        return None

    def hcm_tracing(self, w: Workload, resources: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The ``tracing`` of the proxy's outbound (client spec) and inbound (server spec) connection managers
        (``configureTracingFromTelemetry``); the proxy's service cluster is ``<app>.<namespace>``, its canonical
        name and revision the app and version labels, as the injector sets them."""
        specs = TR.specs(resources, w.labels, w.namespace)
        if specs is None:
            return None, None
        c = self.topology.clusters[w.cluster]
        proxy = TR.Proxy(f"{w.app}.{w.namespace}", {"service.istio.io/canonical-name": w.app, "service.istio.io/canonical-revision": w.version or "latest"},
                         c.mesh, w.namespace, w.cluster, router=w.app in GATEWAY_LABELS)  # fmt: skip
        client, server = specs
        return TR.hcm_tracing(client, self.tracing_provider(client.provider), proxy), TR.hcm_tracing(server, self.tracing_provider(server.provider), proxy)

    @staticmethod
    def log_path(w: Workload, resources: list[dict[str, Any]], mode: str) -> str:
        """The proxy's access log file when Telemetry turns logging on for ``mode`` (the ``envoy`` provider writes
        to the container's stdout; here, the pod's log file), else "" (no access log)."""
        return w.access_log if T.access_log_enabled(resources, w.labels, w.namespace, mode) else ""

    def stats_filters(self, w: Workload, reporter: str, services: list[Outbound] | None = None) -> list[dict[str, Any]]:
        """Istio's stats filter, last before the router, when telemetry is on. On the client side it learns each
        outbound cluster's service (host, name, namespace) as Istio's filter reads it from the cluster's metadata."""
        if not self.telemetry:
            return []
        service = w.fqdn if reporter == "destination" else ""
        table = {s.fqdn: service_metadata(s) for s in services or []}
        return [T.stats_filter(self.telemetry, T.plugin_config(reporter, w, w.cluster, service, table))]

    def ingress(self, gw: Workload, registry: list[Workload], xds: Path, resources: list[dict[str, Any]]) -> E.ProxyConfig:
        """An ingress gateway: a sidecar's outbound clusters, and listeners from the Gateways selecting it."""
        base = self.sidecar(gw, registry, xds, resources)
        listeners = gateway_listeners(
            gw.labels, gw.ip, resources, {c["name"] for c in base.clusters}, self.secrets, self.topology.trust_domains(gw.cluster),
            self.log_path(gw, resources, "CLIENT"), self.hcm_tracing(gw, resources)[0],
        )
        return E.ProxyConfig(listeners, base.clusters, base.endpoints)

    def gateway(self, gw: Workload, registry: list[Workload], xds: Path, resources: list[dict[str, Any]] | None = None) -> E.ProxyConfig:
        """The east-west gateway: AUTO_PASSTHROUGH on 15443 — pick the local endpoints by SNI (one chain per
        service, port and subset), never terminate TLS: the client's sidecar and the serving sidecar do
        mTLS end to end through it. A connection whose SNI names no exported service matches no chain.

        As in Istio, the listener exists only while a ``Gateway`` (``expose-services.yaml``) selects this
        gateway with an AUTO_PASSTHROUGH server on 15443, for the services its hosts match; the gateway
        sees the endpoints of its own network (``ISTIO_META_REQUESTED_NETWORK_VIEW``) and unlabelled ones."""
        resources = resources or []
        hosts = passthrough_hosts(resources, gw.labels)
        view = ("", self.topology.clusters[gw.cluster].network)
        visible = [w for w in self.visible(gw.cluster, registry) if self.endpoint_network(w.cluster) in view]
        # a VirtualMesh's serving side (meshlab.mesh.virtualmesh): a Gateway for *.global plus the
        # tcp_cluster_rewrite EnvoyFilter -- SNI outbound_.<port>_.<subset>_.<svc>.<ns>.svc.<cluster>.global
        # then reaches the local service as well
        rewrite = any(r["kind"] == "EnvoyFilter" and "tcp_cluster_rewrite" in json.dumps(r["spec"]) for r in resources)

        def global_name(name: str, namespace: str) -> str | None:
            g = f"{name}.{namespace}.svc.{gw.cluster}.global"
            return g if rewrite and any(host_matches(h, g) for h in hosts) else None

        visible = [w for w in visible if any(host_matches(h, w.fqdn) for h in hosts) or global_name(w.app, w.namespace)]
        chains: list[dict[str, Any]] = []
        clusters: list[dict[str, Any]] = []
        endpoints: dict[str, list[E.Endpoint]] = {}
        # AuthorizationPolicies selecting the gateway: network RBAC before tcp_proxy (TLS is not terminated here)
        rbac = S.rbac_filters(resources, gw.labels, gw.namespace, self.topology.trust_domains(gw.cluster), for_tcp=True)
        for svc in self.services(visible):
            for port in svc.ports:
                for subset, selector in [("", {}), *subsets(destination_rule(resources, svc.fqdn, gw.namespace, svc.namespace)).items()]:
                    name = sni(port, svc.fqdn, subset)
                    pods = [w for w in visible if w.app == svc.name and w.namespace == svc.namespace and port in w.ports and matches(w.labels, selector)]
                    clusters.append(eds_cluster(name, E.eds_path(xds, name), tls=None))
                    endpoints[name] = [
                        E.Endpoint(w.ip, port, self.topology.clusters[w.cluster].region, self.topology.clusters[w.cluster].zone) for w in pods
                    ]
                    chains.append(
                        {
                            "filter_chain_match": {"server_names": [
                                *([name] if any(host_matches(h, svc.fqdn) for h in hosts) else []),
                                *([sni(port, g, subset)] if (g := global_name(svc.name, svc.namespace)) else []),
                            ]},
                            "filters": [
                                *rbac,
                                {
                                    "name": "envoy.filters.network.tcp_proxy",
                                    "typed_config": {
                                        "@type": TCP_PROXY,
                                        "stat_prefix": name,
                                        "cluster": name,
                                        **({"access_log": E.access_log(log)} if (log := self.log_path(gw, resources, "CLIENT")) else {}),
                                        "access_log_options": {"flush_access_log_on_connected": True},
                                    },
                                }
                            ],
                        }
                    )
        listeners = []
        if chains:  # Envoy refuses a listener without filter chains; no services, nothing to listen for
            listeners.append(
                {
                    **E.listener(f"0.0.0.0_{GATEWAY_PORT}", gw.ip, GATEWAY_PORT),
                    "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": E.TLS_INSPECTOR}}],
                    "filter_chains": chains,
                }
            )
        return E.ProxyConfig(listeners, clusters, endpoints)
