"""Istio on the kind clusters, per pattern, as Istio's multicluster guides do it.

The topology decides which guide applies, cluster by cluster:

- a **primary with remotes** follows *primary-remote* (same network, B.6) or *primary-remote on
  different networks* (B.7): ``externalIstiod: true``, east-west gateway, ``expose-istiod``, then each
  remote with the ``remote`` profile (``injectionPath: /inject/cluster/<c>/net/<n>``,
  ``remotePilotAddress``), its remote secret, its own east-west gateway if it is on another network,
  and finally ``expose-services`` in the primary;
- a **primary without remotes** on a multi-network topology follows *multi-primary multi-network*
  (B.8) minus the remote secrets when it is its own mesh (pattern 3: separate control planes; the
  meshes are federated with ServiceEntries instead, see :mod:`meshlab.federation`);
- primaries of the **same** mesh exchange remote secrets (multi-primary, B.8).

Before any install: ``cacerts`` from meshlab's PKI (one root per mesh root) and the
``topology.istio.io/network`` label on ``istio-system`` (B.1, B.2, G.4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ... import tracing, versions
from ...xds import ACCESS_LOG_FORMAT
from ...topology import Cluster, Topology
from . import tools
from .clusters import context, kubectl, node_ip_var
from .plan import Plan, var_name

EW_GATEWAY = "istio-eastwestgateway"
EW_PORTS = [  # samples/multicluster/gen-eastwest-gateway.sh (1.30.3, release-1.31, master)
    {"name": "status-port", "port": 15021, "targetPort": 15021},  # health
    {"name": "tls", "port": 15443, "targetPort": 15443},  # cross-network mTLS, AUTO_PASSTHROUGH
    {"name": "tls-istiod", "port": 15012, "targetPort": 15012},  # istiod xDS/CA for remotes
    {"name": "tls-webhook", "port": 15017, "targetPort": 15017},  # istiod webhooks for remotes
]
INSTALL_TIMEOUT = 300  # istioctl --readiness-timeout default; also our waits
# Envoy stats kept in addition to Istio's defaults: the outbound clusters (sidecars: outbound|..., gateways: outbound_....),
# the inbound HTTP managers' RBAC and JWT counters and the inbound listener's TLS failures (lab 09); labs 01
# and 01b also read the outbound HTTP managers' requests, the inbound clusters' global rate-limit decisions
# (cluster.inbound|5000||.ratelimit.ok) and the local rate limit's token bucket (its stat_prefix)
STATS_PREFIXES = ("cluster.outbound", "http.inbound", "listener.0.0.0.0_15006.ssl",
                  "http.outbound", "cluster.inbound", "http_local_rate_limiter")


def ew_ip_var(cluster: str) -> str:
    return var_name(cluster, "EW_IP")


def multi_network(t: Topology) -> bool:
    return len(t.networks) > 1


def remotes_of(t: Topology, primary: str) -> list[Cluster]:
    return [c for c in t.clusters.values() if c.remote_of == primary]


def needs_eastwest(t: Topology, c: Cluster) -> bool:
    """A primary serving remotes exposes istiod through it; on several networks every cluster needs one."""
    return (c.is_primary and bool(remotes_of(t, c.name))) or multi_network(t)


def federated(t: Topology) -> bool:
    """Several meshes: separate control planes, discovery through federation ServiceEntries (pattern 3)."""
    return len(t.meshes) > 1


# ---- manifests ----------------------------------------------------------------------------------

def _iop_common() -> dict[str, Any]:
    # Images pinned explicitly to Docker Hub (registry.istio.io is being switched off, A.1) at the
    # istioctl version, so they match what was pre-loaded into the nodes.
    return {"hub": tools.ISTIO_HUB, "tag": versions.ISTIO_VERSION}


def primary_iop(t: Topology, c: Cluster) -> dict[str, Any]:
    """The guides' ``cluster1.yaml``: meshID, clusterName, network (+ externalIstiod when it serves remotes)."""
    glob: dict[str, Any] = {"meshID": c.mesh, "multiCluster": {"clusterName": c.name}, "network": c.network}
    if remotes_of(t, c.name):
        glob["externalIstiod"] = True
    mesh_config: dict[str, Any] = {
        # No accessLogFile: as in Istio's default profile, proxies log nothing until a Telemetry resource turns
        # logging on (the labs do, as a learner would). The built-in ``envoy`` provider then writes to
        # /dev/stdout in this encoding and format: JSON with the local backend's fields (lab.access_log).
        "accessLogEncoding": "JSON",
        "accessLogFormat": json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")),
    }
    td = t.meshes[c.mesh].trust_domain
    if td != "cluster.local":  # Istio's default; SPIFFE IDs become spiffe://<td>/ns/<ns>/sa/<sa>
        mesh_config["trustDomain"] = td
    if t.meshes[c.mesh].trust_domain_aliases:  # other trust domains this istiod accepts and treats as its own
        mesh_config["trustDomainAliases"] = list(t.meshes[c.mesh].trust_domain_aliases)
    # Istio keeps only a few Envoy stats by default; also keep the upstream clusters' counters (retries,
    # outlier ejections, TLS failures) that `lab.stats` shows, as Istio's circuit-breaking task does
    default_config: dict[str, Any] = {"proxyStatsMatcher": {"inclusionPrefixes": list(STATS_PREFIXES)}}
    if federated(t):
        # DNS proxying, so names that only exist as ServiceEntries resolve in the pod (D.4). Since 1.25,
        # auto-allocation of their addresses is on by default (PILOT_ENABLE_IP_AUTOALLOCATE) and
        # ISTIO_META_DNS_AUTO_ALLOCATE is deprecated: only the capture flag is needed.
        default_config["proxyMetadata"] = {"ISTIO_META_DNS_CAPTURE": "true"}
    mesh_config["defaultConfig"] = default_config
    # istio.io's Jaeger task: the OTLP provider is named at install; a Telemetry resource turns tracing on (lab 03b)
    mesh_config["extensionProviders"] = [tracing.extension_provider()]
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "spec": {**_iop_common(), "meshConfig": mesh_config, "values": {"global": glob}},
    }


def remote_iop(c: Cluster, pilot_address: str) -> dict[str, Any]:
    """The guides' ``cluster2.yaml``: remote profile, injection path and the primary's istiod address."""
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "spec": {
            "profile": "remote",
            **_iop_common(),
            "values": {
                "istiodRemote": {"injectionPath": f"/inject/cluster/{c.name}/net/{c.network}"},
                "global": {"remotePilotAddress": pilot_address},
            },
        },
    }


def eastwest_iop(network: str) -> dict[str, Any]:
    """What ``gen-eastwest-gateway.sh --network <network>`` prints (non-ambient, no revision)."""
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "eastwest"},
        "spec": {
            "revision": "",
            "profile": "empty",
            **_iop_common(),
            "components": {
                "ingressGateways": [
                    {
                        "name": EW_GATEWAY,
                        "label": {"istio": "eastwestgateway", "app": EW_GATEWAY, "topology.istio.io/network": network},
                        "enabled": True,
                        "k8s": {
                            # traffic through this gateway is routed inside its own network only
                            "env": [{"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": network}],
                            "service": {"ports": [dict(p) for p in EW_PORTS]},
                        },
                    }
                ]
            },
            "values": {"gateways": {"istio-ingressgateway": {"injectionTemplate": "gateway"}}, "global": {"network": network}},
        },
    }


def expose_istiod() -> list[dict[str, Any]]:
    """``samples/multicluster/expose-istiod.yaml``: istiod (15012 xDS/CA, 15017 webhook) through the e/w gateway."""
    routes = []
    for port, target in ((15012, 15012), (15017, 443)):
        routes.append({"match": [{"port": port, "sniHosts": ["*"]}],
                       "route": [{"destination": {"host": "istiod.istio-system.svc.cluster.local", "port": {"number": target}}}]})
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
         "metadata": {"name": "istiod-gateway", "namespace": "istio-system"},
         "spec": {"selector": {"istio": "eastwestgateway"}, "servers": [
             {"port": {"name": "tls-istiod", "number": 15012, "protocol": "tls"}, "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]},
             {"port": {"name": "tls-istiodwebhook", "number": 15017, "protocol": "tls"}, "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]},
         ]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "istiod-vs", "namespace": "istio-system"},
         "spec": {"hosts": ["*"], "gateways": ["istiod-gateway"], "tls": routes}},
    ]  # fmt: skip


def expose_services() -> dict[str, Any]:
    """``samples/multicluster/expose-services.yaml`` (meshlab.federation generates it for both backends)."""
    from ...federation import expose_services_gateway

    return expose_services_gateway()


def gateway_connection_log() -> dict[str, Any]:
    """An EnvoyFilter: the east-west gateways log each passthrough connection when it opens.

    Envoy's tcp_proxy writes its access log line only when a connection closes, and a sidecar keeps its
    connection to a remote gateway open for a long time, so the gateway's log would stay empty while
    traffic flows through it. ``flush_access_log_on_connected`` adds a line as soon as the upstream
    connection is up (with the SNI and the chosen pod), as the local backend's gateways do.
    """
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "eastwest-log-connections", "namespace": "istio-system"},
        "spec": {
            "workloadSelector": {"labels": {"istio": "eastwestgateway"}},
            "configPatches": [{
                "applyTo": "NETWORK_FILTER",
                "match": {"context": "GATEWAY", "listener": {
                    "portNumber": 15443, "filterChain": {"filter": {"name": "envoy.filters.network.tcp_proxy"}}}},
                "patch": {"operation": "MERGE", "value": {
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                     "access_log_options": {"flush_access_log_on_connected": True}}}},
            }],
        },
    }  # fmt: skip


def istio_system_namespace(t: Topology, c: Cluster) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "istio-system", "labels": {"topology.istio.io/network": c.network}}
    if c.remote_of:
        # lets the primary's istiod patch this cluster's webhooks and run its namespace controller here (B.6 step 4)
        meta["annotations"] = {"topology.istio.io/controlPlaneClusters": c.remote_of}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def cacerts_dir(pki_dir: Path, t: Topology, c: Cluster) -> Path:
    """Where :class:`meshlab.pki.PKI` keeps this cluster's Istio ``cacerts`` files."""
    return pki_dir / t.meshes[c.mesh].root_ca / c.name / "cacerts"


# ---- steps --------------------------------------------------------------------------------------

def add_trust(plan: Plan, t: Topology, pki_dir: Path) -> None:
    plan.phase = "shared root of trust and network labels (before installing Istio)"
    roots = sorted({m.root_ca for m in t.meshes.values()})
    plan.meshlab(
        f"generate the root CA{'s' if len(roots) > 1 else ''} ({', '.join(roots)}) and one intermediate CA per cluster",
        "pki", f"meshlab.pki.PKI({str(pki_dir)!r}).cacerts(cluster, root) for "
        + ", ".join(f"{c.name} (root CA {t.meshes[c.mesh].root_ca!r})" for c in t.clusters.values())
        + ": ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem (like Istio's tools/certs Makefile)",
        args={"pki_dir": str(pki_dir), "clusters": {c.name: t.meshes[c.mesh].root_ca for c in t.clusters.values()}},
        tags=("pki",),
    )  # fmt: skip
    for c in t.clusters.values():
        why = f"label topology.istio.io/network={c.network}"
        if c.remote_of:
            why += f", annotate topology.istio.io/controlPlaneClusters={c.remote_of}"
        plan.run(f"create namespace istio-system: {why} (before install, so Istio knows the network)",
                 kubectl(c.name, "apply", "--validate=strict", "-f", "-"), manifests=[istio_system_namespace(t, c)],
                 cluster=c.name, tags=("network-label", "istio-system"))
        d = cacerts_dir(pki_dir, t, c)
        plan.run(
            f"create secret cacerts in istio-system (root CA {t.meshes[c.mesh].root_ca!r}: shared root of trust; before installing Istio)",
            kubectl(c.name, "create", "secret", "generic", "cacerts", "-n", "istio-system",
                    *(f"--from-file={d / f}" for f in ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"))),
            cluster=c.name, tags=("cacerts",),
            hint=f"if it already exists, Istio was installed before: `kubectl --context {context(c.name)} delete ns istio-system` and re-run",
        )  # fmt: skip


def _install(plan: Plan, c: Cluster, title: str, iop: dict[str, Any], tags: tuple[str, ...]) -> None:
    plan.run(title, ["istioctl", "install", "-y", "--context", context(c.name), "--readiness-timeout", f"{INSTALL_TIMEOUT}s", "-f", "-"],
             manifests=[iop], cluster=c.name, timeout=INSTALL_TIMEOUT + 120, tags=tags,
             hint=f"`kubectl --context {context(c.name)} -n istio-system get pods` and `describe` the ones not Ready "
             "(memory? images loaded?)")


def _eastwest(plan: Plan, t: Topology, c: Cluster) -> None:
    _install(plan, c, f"install the east-west gateway for network {c.network} (gen-eastwest-gateway.sh --network {c.network}: "
             "ports 15021/15443/15012/15017, ISTIO_META_REQUESTED_NETWORK_VIEW)", eastwest_iop(c.network), ("eastwest-install",))
    plan.run("wait until the east-west gateway is rolled out",
             kubectl(c.name, "-n", "istio-system", "rollout", "status", f"deployment/{EW_GATEWAY}", f"--timeout={INSTALL_TIMEOUT}s"),
             cluster=c.name, timeout=INSTALL_TIMEOUT + 30, tags=("wait", "eastwest-rollout"),
             hint=f"`kubectl --context {context(c.name)} -n istio-system describe pod -l app={EW_GATEWAY}`")
    plan.run(
        "wait until MetalLB assigns the east-west gateway an address (EXTERNAL-IP no longer <pending>); remember it",
        kubectl(c.name, "-n", "istio-system", "get", "svc", EW_GATEWAY, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"),
        capture=ew_ip_var(c.name), poll=True, timeout=INSTALL_TIMEOUT, cluster=c.name, tags=("wait", "gateway-address"),
        hint=f"`kubectl --context {context(c.name)} -n metallb-system get pods,ipaddresspools,l2advertisements`: "
        "is MetalLB running and does its pool overlap another cluster's?",
    )  # fmt: skip


def _expose_services(plan: Plan, c: Cluster, why: str) -> None:
    plan.run(f"expose-services: AUTO_PASSTHROUGH for *.local on 15443 of the east-west gateway ({why})",
             kubectl(c.name, "apply", "--validate=strict", "-f", "-"), manifests=[expose_services()],
             cluster=c.name, tags=("expose-services",))
    plan.run("log each connection through the east-west gateways when it opens, not only when it closes "
             "(EnvoyFilter: tcp_proxy flush_access_log_on_connected), so `lab.access_log` shows passthrough traffic",
             kubectl(c.name, "apply", "--validate=strict", "-f", "-"), manifests=[gateway_connection_log()],
             cluster=c.name, tags=("gateway-access-log",),
             note="not in Istio's guide: a lab convenience; without it a gateway logs a connection only when it closes")


def _remote_secret(plan: Plan, source: Cluster, into: Cluster, why: str, delete: bool = False) -> None:
    """``istioctl create-remote-secret ... | kubectl apply -f -`` into the cluster whose istiod should read
    ``source``; with ``delete``, the same secret piped to ``kubectl delete`` (the command's help: how a secret is
    revoked), after which that istiod drops ``source``'s registry and its endpoints."""
    title = (f"revoke the remote secret: istiod in {into.name} stops reading {source.name}'s API server ({why})" if delete else
             f"remote secret: give istiod in {into.name} access to {source.name}'s API server at its container IP ({why})")
    plan.run(
        title,
        ["istioctl", "create-remote-secret", "--context", context(source.name), "--name", source.name,
         "--server", "https://${%s}:6443" % node_ip_var(source.name)],
        pipe_to=kubectl(into.name, "delete" if delete else "apply", "-f", "-"), cluster=source.name,
        tags=("remote-secret-delete",) if delete else ("remote-secret",),
        note=f"--server is {source.name}'s control-plane container IP: the kubeconfig's 127.0.0.1 port only works "
        "from the host, istiod in another cluster cannot reach it",
        hint=f"`istioctl --context {context(into.name)} remote-clusters` should list {source.name} as synced; "
        "`timeout` means istiod cannot reach that API server",
    )  # fmt: skip


def add_istio(plan: Plan, t: Topology) -> None:
    for p in [c for c in t.clusters.values() if c.is_primary]:
        remotes = remotes_of(t, p.name)
        kind = "primary serving " + ", ".join(r.name for r in remotes) if remotes else "primary (its own control plane)"
        plan.phase = f"Istio {versions.ISTIO_VERSION} in {p.name}: {kind}"
        _install(plan, p, f"install Istio as a primary: meshID {p.mesh}, clusterName {p.name}, network {p.network}"
                 + (", externalIstiod (it will serve remote clusters)" if remotes else ""), primary_iop(t, p), ("istio-install", "install-primary"))
        plan.run("wait until istiod is rolled out",
                 kubectl(p.name, "-n", "istio-system", "rollout", "status", "deployment/istiod", f"--timeout={INSTALL_TIMEOUT}s"),
                 cluster=p.name, timeout=INSTALL_TIMEOUT + 30, tags=("wait", "istiod-rollout"),
                 hint=f"`kubectl --context {context(p.name)} -n istio-system describe pod -l app=istiod` (istiod requests 2 GiB)")
        if needs_eastwest(t, p):
            _eastwest(plan, t, p)
        if remotes:
            plan.run("expose-istiod: istiod's xDS/CA (15012) and webhook (15017) through the east-west gateway, for the remotes",
                     kubectl(p.name, "apply", "--validate=strict", "-f", "-"), manifests=expose_istiod(),
                     cluster=p.name, tags=("expose-istiod",))
        elif multi_network(t):
            _expose_services(plan, p, "its services, for the other networks")
        for r in remotes:
            plan.phase = f"Istio in {r.name}: remote of {p.name}"
            _install(plan, r, f"install Istio as a remote of {p.name}: profile remote, injectionPath /inject/cluster/{r.name}/net/{r.network}, "
                     f"remotePilotAddress = {p.name}'s east-west gateway (the guide's DISCOVERY_ADDRESS)",
                     remote_iop(r, "${%s}" % ew_ip_var(p.name)), ("istio-install", "install-remote"))
            _remote_secret(plan, r, p, f"after {r.name}'s install, as the guide orders it")
            if needs_eastwest(t, r):
                _eastwest(plan, t, r)
        if remotes and multi_network(t):
            plan.phase = f"Istio in {p.name}: expose services for every network"
            _expose_services(plan, p, f"in the primary only: it serves {', '.join(r.name for r in remotes)} too")
    primaries = [c for c in t.clusters.values() if c.is_primary]
    pairs = [(a, b) for a in primaries for b in primaries if a.name != b.name and a.mesh == b.mesh]
    if pairs:
        plan.phase = "multi-primary: exchange remote secrets between primaries of one mesh"
        for a, b in pairs:
            _remote_secret(plan, a, b, f"{a.name} and {b.name} are primaries of mesh {a.mesh}")


def add_mesh_config(plan: Plan, t: Topology, c: Cluster, mesh_config: dict[str, Any]) -> None:
    """Change a primary's meshConfig the way it was set: ``istioctl install`` again with the primary's IstioOperator,
    its meshConfig keys replaced by ``mesh_config``'s (istiod reloads the mesh config without a restart)."""
    iop = primary_iop(t, c)
    iop["spec"]["meshConfig"] = {**iop["spec"]["meshConfig"], **mesh_config}
    plan.phase = f"meshConfig of {c.name}"
    _install(plan, c, f"istioctl install again with meshConfig {', '.join(sorted(mesh_config))} changed", iop, ("istio-install", "mesh-config"))


def add_tracing_addon(plan: Plan, t: Topology) -> None:
    """Istio's Jaeger addon in every primary (istio.io, "Jaeger" integration: ``kubectl apply -f`` the release's
    ``samples/addons/jaeger.yaml``, here at the release tag and checksum-verified, its image in the cache):
    Jaeger all-in-one in istio-system, OTLP/gRPC on ``jaeger-collector:4317``, the query UI and API on
    ``tracing:80`` under ``/jaeger``. Each cluster's proxies report to their own Jaeger."""
    addon = tools.ARTIFACTS["jaeger-addon"]()
    plan.phase = "tracing: Istio's Jaeger addon"
    plan.meshlab(f"get {addon.name} {addon.version} into the tools folder, checksum-verified (skipped if already there)", "tool",
                 f"download {addon.url} -> {addon.program}; verify its sha256 against {addon.checksum_source}",
                 args={"name": "jaeger-addon"}, tags=("tools",))
    for c in [c for c in t.clusters.values() if c.is_primary]:
        plan.run(f"install the Jaeger addon in {c.name} (samples/addons/jaeger.yaml of Istio {addon.version})",
                 kubectl(c.name, "apply", "-f", str(addon.program)), cluster=c.name, tags=("tracing-addon",),
                 hint=f"`kubectl --context {context(c.name)} -n istio-system get pods -l app=jaeger`: is the image loaded?")
        plan.run("wait until Jaeger is rolled out", kubectl(c.name, "-n", "istio-system", "rollout", "status", "deployment/jaeger",
                 f"--timeout={INSTALL_TIMEOUT}s"), cluster=c.name, timeout=INSTALL_TIMEOUT + 30, tags=("wait", "tracing-rollout"))  # fmt: skip


def jaeger_traces_path(service: str, limit: int = 50) -> str:
    """Jaeger's query API (``/jaeger/api/traces``) through the API server's service proxy to Service ``tracing``."""
    return f"/api/v1/namespaces/istio-system/services/tracing:http-query/proxy/jaeger/api/traces?service={service}&limit={limit}&lookback=1h"


def add_verify(plan: Plan, t: Topology) -> None:
    served = [c for c in t.clusters.values() if c.is_primary and (remotes_of(t, c.name) or
              any(o.is_primary and o.mesh == c.mesh and o.name != c.name for o in t.clusters.values()))]
    if not served:
        return
    plan.phase = "verify"
    for p in served:
        plan.run("list the clusters istiod watches: each should be `synced` (`timeout` = cannot reach that API server)",
                 ["istioctl", "remote-clusters", "--context", context(p.name)], cluster=p.name, tags=("verify",))
