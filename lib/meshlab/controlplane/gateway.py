"""The mesh's edges, as istiod configures them: an ingress gateway's listeners from ``Gateway`` servers
and the VirtualServices bound to them (pilot/pkg/networking/core/gateway.go), TLS terminated there
(``tls.mode: SIMPLE``), and TLS originated by a sidecar towards an external service (a DestinationRule
``tls.mode: SIMPLE`` for a ``MESH_EXTERNAL`` ServiceEntry, pilot/pkg/networking/core/cluster_tls.go).

The ingress gateway is a router: its outbound clusters (auto-mTLS into the mesh, split-horizon
endpoints in every cluster its control plane sees) are a sidecar's; only its listeners differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import xds as E
from ..errors import ResourceError
from . import security as S
from .pushcontext import resolve_host
from .routes import http_routes


def _ns(r: dict[str, Any]) -> str:
    return str(r["metadata"].get("namespace", "default"))


def _host_matches(pattern: str, host: str) -> bool:
    pattern = pattern.split("/", 1)[-1]  # "<namespace>/<host>": the namespace part is not modelled
    return pattern == "*" or pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:]))


def bound_virtual_services(resources: list[dict[str, Any]], gateway: dict[str, Any]) -> list[dict[str, Any]]:
    """VirtualServices whose ``gateways`` name this Gateway (``<ns>/<name>``, or ``<name>`` in its namespace)."""
    gname, gns = gateway["metadata"]["name"], _ns(gateway)
    return [
        r for r in resources
        if r["kind"] == "VirtualService"
        and any(g == f"{gns}/{gname}" or (g == gname and _ns(r) == gns) for g in r["spec"].get("gateways", []))
    ]  # fmt: skip


def server_tls(server: dict[str, Any], secrets: dict[str, dict[str, str]], where: str) -> dict[str, Any]:
    """DownstreamTlsContext of a SIMPLE server: the certificate of ``credentialName`` (a TLS secret made
    with ``lab.create_tls_secret``) or the files ``serverCertificate``/``privateKey``."""
    tls = server.get("tls", {})
    if tls.get("mode") != "SIMPLE":
        raise ResourceError(f"{where}: an HTTPS server needs tls.mode SIMPLE", "set tls: {mode: SIMPLE, credentialName: <secret>}")
    if "credentialName" in tls:
        secret = secrets.get(tls["credentialName"])
        if secret is None:
            raise ResourceError(
                f"{where}: tls.credentialName {tls['credentialName']!r} names no TLS secret in this cluster",
                "create it first: lab.create_tls_secret(name, hosts=[...], cluster=...)",
            )
        cert, key = secret["cert"], secret["key"]
    elif "serverCertificate" in tls and "privateKey" in tls:
        cert, key = tls["serverCertificate"], tls["privateKey"]
    else:
        raise ResourceError(f"{where}: tls needs credentialName, or serverCertificate and privateKey", "name the certificate to serve")
    ctx = E.tls_context(cert, key, "", ["h2", "http/1.1"])
    if tls.get("minProtocolVersion") == "TLSV1_3":
        ctx["tls_params"]["tls_minimum_protocol_version"] = "TLSv1_3"
    return {"common_tls_context": ctx}


# The istio-ingressgateway Service of Istio's default profile (manifests/charts/gateways/istio-ingress/values.yaml):
# Service port -> the pod's targetPort. The gateway runs as an ordinary user and binds the target ports;
# a Gateway server's port.number names the Service port and istiod translates it (pilot/pkg/model/gateway.go:
# resolvePorts). Unknown ports are bound as they are, as istiod does for selector-based Gateways.
INGRESS_SERVICE_PORTS = {15021: 15021, 80: 8080, 443: 8443}


def ingress_target_port(service_port: int) -> int:
    """Where the ingress gateway pod listens for ``service_port`` of its Service."""
    return INGRESS_SERVICE_PORTS.get(service_port, service_port)


def gateway_listeners(
    gw_labels: dict[str, str], gw_ip: str, resources: list[dict[str, Any]], known_clusters: set[str],
    secrets: dict[str, dict[str, str]], bundle: list[str], access_log: str, tracing: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """One listener per server port of every Gateway selecting this proxy, ``0.0.0.0_<target port>`` in Istio's
    names (443 -> ``0.0.0.0_8443``, see :data:`INGRESS_SERVICE_PORTS`); a filter chain per server; routes from the bound VirtualServices' ``http`` rules; the
    gateway's RequestAuthentications and AuthorizationPolicies as jwt_authn and RBAC filters."""
    chains_by_port: dict[int, list[dict[str, Any]]] = {}
    for g in resources:
        if g["kind"] != "Gateway" or not all(gw_labels.get(k) == v for k, v in g["spec"].get("selector", {}).items()):
            continue
        vss = bound_virtual_services(resources, g)
        for i, server in enumerate(g["spec"].get("servers", [])):
            where = f"Gateway {g['metadata']['name']!r} spec.servers[{i}]"
            port = server["port"]["number"]
            target = ingress_target_port(port)
            if server["port"]["protocol"] not in ("HTTP", "HTTPS"):
                raise ResourceError(f"{where}: protocol {server['port']['protocol']} at an ingress gateway is not supported by the local backend",
                                    "use HTTP, or HTTPS with tls.mode SIMPLE (TLS passthrough is for the east-west gateway)")  # fmt: skip
            vhosts = []
            for vs in vss:
                for host in vs["spec"].get("hosts", []):
                    if not any(_host_matches(p, host) for p in server.get("hosts", [])):
                        continue
                    vns = _ns(vs)
                    cluster_for: Callable[[str, str, int | None], str] = lambda h, s, p, vns=vns: _cluster(h, s, p, vns, known_clusters)
                    vhosts.append({"name": f"{host}:{port}", "domains": [host, f"{host}:*"], "routes": http_routes(vs, port, cluster_for)})
            # istiod's gatewayRDSRouteName: http.<target port>; https.<port>.<port name>.<gateway>.<namespace>
            route_name = (f"http.{target}" if server["port"]["protocol"] == "HTTP" else
                          f"https.{port}.{server['port'].get('name', '')}.{g['metadata']['name']}.{_ns(g)}")
            hcm = E.hcm(
                f"outbound_0.0.0.0_{target}", {"name": route_name, "virtual_hosts": vhosts}, access_log,
                {"use_remote_address": True, **({"tracing": tracing} if tracing else {})},  # a router: the client spec (tracing.go)
                http_filters=[*S.inbound_http_filters(resources, gw_labels, S.ROOT_NAMESPACE, bundle, lambda phase: [], gateway=True), E.FAULT_FILTER],
            )  # fmt: skip
            chain: dict[str, Any] = {"filters": [hcm]}
            if server["port"]["protocol"] == "HTTPS":
                names = [h.split("/", 1)[-1] for h in server.get("hosts", []) if h.split("/", 1)[-1] != "*"]
                if names:
                    chain["filter_chain_match"] = {"server_names": names}
                chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": E.DOWNSTREAM_TLS, **server_tls(server, secrets, where)}}
            elif "tls" in server:
                raise ResourceError(f"{where}: tls on an HTTP server", "use protocol HTTPS to terminate TLS")
            chains_by_port.setdefault(target, []).append(chain)
    out = []
    for port, chains in sorted(chains_by_port.items()):
        lis = E.listener(f"0.0.0.0_{port}", gw_ip, port, filter_chains=chains)
        if any("transport_socket" in c for c in chains):
            lis["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": E.TLS_INSPECTOR}}]
        out.append(lis)
    return out


def _cluster(host: str, subset: str, port: int | None, namespace: str, known: set[str]) -> str:
    """The outbound cluster a gateway route names; without a port, the service's only one."""
    fqdn = resolve_host(host, namespace)
    candidates = sorted(c for c in known if c.startswith("outbound|") and c.endswith(f"|{subset}|{fqdn}") and (port is None or c.split("|")[1] == str(port)))
    if len(candidates) != 1:
        what = f"subset {subset!r} of {fqdn}" if subset else fqdn
        raise ResourceError(
            f"a VirtualService bound to a gateway routes to {what}" + (f" port {port}" if port else "") +
            (", which this control plane does not know" if not candidates else ", which has several ports"),
            "deploy the service first (define subsets in a DestinationRule), and give destination.port when it has several ports",
        )
    return candidates[0]


def origination(tls: dict[str, Any], host: str, secrets: dict[str, dict[str, str]]) -> dict[str, Any]:
    """UpstreamTlsContext for DestinationRule ``tls.mode: SIMPLE``: SNI (``sni``, else none: see
    :func:`auto_sni_options`), the server's
    chain checked against the CA of ``credentialName`` (a secret in the proxy's cluster) or the file
    ``caCertificates``, and its name against ``subjectAltNames`` if given."""
    if "credentialName" in tls:
        secret = secrets.get(tls["credentialName"])
        if secret is None:
            raise ResourceError(f"DestinationRule for {host}: tls.credentialName {tls['credentialName']!r} names no secret in this cluster",
                                "lab.external_https() creates one for its CA; or use caCertificates with a file")  # fmt: skip
        ca = secret["ca"]
    elif "caCertificates" in tls:
        ca = tls["caCertificates"]
    else:
        raise ResourceError(
            f"DestinationRule for {host}: tls.mode SIMPLE needs credentialName or caCertificates on the local backend",
            "name the CA that signed the external server's certificate (lab.external_https() returns a secret for it)",
        )
    validation: dict[str, Any] = {"trusted_ca": {"filename": ca}}
    if tls.get("subjectAltNames"):
        validation["match_typed_subject_alt_names"] = [{"san_type": "DNS", "matcher": {"exact": s}} for s in tls["subjectAltNames"]]
    return {
        **({"sni": tls["sni"]} if tls.get("sni") else {}),  # none given: Envoy's auto_sni (see auto_sni_options)
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
            "validation_context": validation,
        },
    }


def auto_sni_options(tls: dict[str, Any]) -> dict[str, bool]:
    """``upstream_http_protocol_options`` for a DestinationRule's client TLS, as Istio's
    ``setAutoSniAndAutoSanValidation`` (pilot/pkg/networking/core/cluster_tls.go) sets them for a cluster
    that is not a dynamic forward proxy: without ``sni``, Envoy takes the SNI from each request's Host
    (``auto_sni``); without ``sni`` nor ``subjectAltNames`` (and unless ``insecureSkipVerify``), it also
    checks the server's certificate against that name (``auto_san_validation``)."""
    auto_sni = not tls.get("sni")
    out = {"auto_sni": True} if auto_sni else {}
    if auto_sni and not tls.get("subjectAltNames") and not tls.get("insecureSkipVerify"):
        out["auto_san_validation"] = True
    return out
