"""Helpers for the parity tests: a translator over a hand-built registry, and readers for its output.

The translator runs without Envoy here; the tests that need real traffic bring up a lab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshlab import xds as E
from meshlab.controlplane import Translator
from meshlab.registry import Workload
from meshlab.pki import WorkloadCert
from meshlab.resources import parse
from meshlab.topology import Topology

HOST = "helloworld.sample.svc.cluster.local"
CLUSTER = f"outbound|5000||{HOST}"
XDS = Path("/x")


def workload(pod: str, app: str, cluster: str, ip: str, version: str = "v1", ports: list[int] | None = None) -> Workload:
    ports = [5000] if ports is None and app == "helloworld" else (ports or [])
    return Workload(
        pod=pod, deployment=app, app=app, version=version if ports else "", cluster=cluster, namespace="sample",
        service_account=app, ip=ip, netns=f"ns-{pod}", outbound="127.0.0.1", app_host="127.0.0.6", ports=ports,
        port_names=["http"] * len(ports), admin=f"/run/{pod}.sock", access_log=f"/logs/{pod}.log",
    )  # fmt: skip


def cert(w: Workload, trust_domain: str = "cluster.local") -> WorkloadCert:
    d = Path("/pki") / w.cluster
    return WorkloadCert(
        spiffe_id=f"spiffe://{trust_domain}/ns/{w.namespace}/sa/{w.service_account}",
        cert_chain=d / "cert-chain.pem", key=d / "key.pem", root_cert=Path("/pki/root-cert.pem"), issuer=w.cluster,
    )  # fmt: skip


def sidecar(topology: Topology, client: Workload, registry: list[Workload], resources: str = "") -> E.ProxyConfig:
    """The client's Envoy config as its control plane would write it."""
    gateways = {c: f"10.250.0.{i + 1}" for i, c in enumerate(topology.clusters)}
    certs = {w.pod: cert(w) for w in [client, *registry]}
    docs = [{**d, "metadata": {"namespace": "sample", **d["metadata"]}} for d in parse(resources)] if resources else []
    return Translator(topology, gateways, certs).sidecar(client, [client, *registry], XDS, docs)


def cluster(cfg: E.ProxyConfig, name: str = CLUSTER) -> dict[str, Any]:
    (c,) = [c for c in cfg.clusters if c["name"] == name]
    return c


def routes(cfg: E.ProxyConfig, vhost: str = f"{HOST}:5000") -> list[dict[str, Any]]:
    (lis,) = [x for x in cfg.listeners if x["name"] == "virtualOutbound"]
    (vh,) = [v for v in lis["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"] if v["name"] == vhost]
    return list(vh["routes"])


def eps(cfg: E.ProxyConfig, name: str = CLUSTER) -> list[tuple[str, int, str, int, int]]:
    """(address, port, region/zone, priority, weight) of each endpoint, sorted."""
    return sorted((e.address, e.port, f"{e.region}/{e.zone}", e.priority, e.weight) for e in cfg.endpoints[name])


def locality_weights(cfg: E.ProxyConfig, name: str = CLUSTER) -> dict[str, int]:
    """Locality -> its load_balancing_weight, as the ClusterLoadAssignment carries it."""
    la = E.load_assignment(name, cfg.endpoints[name])
    return {f"{g['locality']['region']}/{g['locality']['zone']}": g["load_balancing_weight"] for g in la["endpoints"]}


def pattern(tmp: Path, clusters: dict[str, tuple[str, str, str, str | None]], meshes: dict[str, str] | None = None) -> Path:
    """A pattern file: cluster -> (mesh, network, region/zone, primary it is a remote of or None)."""
    meshes = meshes or {m: "cluster.local" for m, *_ in clusters.values()}
    lines = ["name: parity", "title: parity", "description: parity", "meshes:"]
    lines += [f"  {m}: {{trustDomain: {td}, rootCA: shared}}" for m, td in meshes.items()]
    lines += ["networks:"] + [f"  {n}: {{}}" for n in sorted({v[1] for v in clusters.values()})] + ["clusters:"]
    for i, (name, (mesh, network, loc, remote_of)) in enumerate(clusters.items()):
        region, zone = loc.split("/")
        cp = f"{{remoteOf: {remote_of}}}" if remote_of else "primary"
        lines += [
            f"  {name}:",
            f"    {{mesh: {mesh}, network: {network}, region: {region}, zone: {zone}, podCIDR: 10.{10 * (i + 1)}.0.0/16, "
            f"serviceCIDR: 10.255.{10 * (i + 1)}.0/24, controlPlane: {cp}}}",
        ]
    path = tmp / "parity.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def hcms(cfg: E.ProxyConfig, listener: str) -> list[dict[str, Any]]:
    """The HTTP connection managers (typed configs) of every filter chain of ``listener``."""
    (lis,) = [x for x in cfg.listeners if x["name"] == listener]
    return [
        f["typed_config"]
        for ch in lis["filter_chains"]
        for f in ch["filters"]
        if f["name"] == "envoy.filters.network.http_connection_manager"
    ]


EXPOSE_SERVICES = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers: [{port: {number: 15443, name: tls, protocol: TLS}, tls: {mode: AUTO_PASSTHROUGH}, hosts: ["*.local"]}]
"""


def east_west_gateway(topology: Topology) -> tuple[Any, list[Workload]]:
    """cluster2's east-west gateway (expose-services applied) as a function of the other resources."""
    gw = workload("eastwest-2", "istio-eastwestgateway", "cluster2", "10.250.0.2")
    gw.namespace = "istio-system"
    reg = [workload("hw-2", "helloworld", "cluster2", "10.20.0.10", "v2")]

    def build(registry: list[Workload], resources: str) -> E.ProxyConfig:
        gateways = {c: f"10.250.0.{i + 1}" for i, c in enumerate(topology.clusters)}
        certs = {w.pod: cert(w) for w in [gw, *registry]}
        docs = [{**d, "metadata": {"namespace": "sample", **d["metadata"]}} for d in parse(EXPOSE_SERVICES + "---\n" + resources)]
        return Translator(topology, gateways, certs).gateway(gw, registry, XDS, docs)

    return build, reg


def localities(cfg: E.ProxyConfig, name: str) -> list[tuple[str, int, int]]:
    """(region/zone/sub_zone, priority, locality weight) of each locality group with endpoints, sorted."""
    la = E.load_assignment(name, cfg.endpoints[name])
    out = []
    for g in la["endpoints"]:
        if g["lb_endpoints"]:
            loc = g["locality"]
            out.append((f"{loc.get('region', '')}/{loc.get('zone', '')}/{loc.get('sub_zone', '')}", g.get("priority", 0), g["load_balancing_weight"]))
    return sorted(out)
