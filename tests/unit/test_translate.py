"""The local control plane's translator, as pure functions: topology + registry -> a sidecar's Envoy config.

No Envoy runs here; the assertions are on the generated config, which must follow Istio's names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from meshlab import xds as E
from meshlab.controlplane import Translator
from meshlab.controlplane.generator import host_aliases
from meshlab.registry import Workload
from meshlab.pki import WorkloadCert
from meshlab.topology import Topology, load_topology

CLUSTER = "outbound|5000||helloworld.sample.svc.cluster.local"
SNI = "outbound_.5000_._.helloworld.sample.svc.cluster.local"
HELLO_SA = "spiffe://cluster.local/ns/sample/sa/helloworld"
CURL_SA = "spiffe://cluster.local/ns/sample/sa/curl"
GATEWAYS = {"cluster1": "10.250.0.1", "cluster2": "10.250.0.2"}
XDS = Path("/x")


def workload(pod: str, app: str, version: str, cluster: str, ip: str, ports: list[int], namespace: str = "sample") -> Workload:
    return Workload(
        pod=pod,
        deployment=f"{app}-{version}" if version else app,
        app=app,
        version=version,
        cluster=cluster,
        namespace=namespace,
        service_account=app,
        ip=ip,
        netns=f"ns-{pod}",
        outbound="127.0.0.1",
        app_host="127.0.0.6",
        ports=ports,
        admin=f"/run/{pod}.sock",
        access_log=f"/logs/{pod}.log",
    )


def hello(pod: str, version: str, cluster: str, ip: str, namespace: str = "sample") -> Workload:
    return workload(pod, "helloworld", version, cluster, ip, [5000], namespace)


def curl(cluster: str = "cluster1") -> Workload:
    return workload(f"{cluster}-curl-0", "curl", "", cluster, "10.10.0.9" if cluster == "cluster1" else "10.20.0.9", [])


def cert_for(w: Workload) -> WorkloadCert:
    d = Path("/pki") / w.cluster / "workloads"
    return WorkloadCert(
        spiffe_id=f"spiffe://cluster.local/ns/{w.namespace}/sa/{w.service_account}",
        cert_chain=d / f"{w.namespace}.{w.service_account}.cert-chain.pem",
        key=d / f"{w.namespace}.{w.service_account}.key.pem",
        root_cert=Path("/pki/root-cert.pem"),
        issuer=f"O=Istio,CN=Intermediate CA {w.cluster}",
    )


def translator(topology: Topology, registry: list[Workload]) -> Translator:
    return Translator(topology, gateway_ip=dict(GATEWAYS), certs={w.pod: cert_for(w) for w in registry})


def base_registry() -> tuple[Workload, Workload, Workload]:
    return (
        curl("cluster1"),
        hello("cluster1-helloworld-v1-0", "v1", "cluster1", "10.10.0.10"),
        hello("cluster2-helloworld-v2-0", "v2", "cluster2", "10.20.0.10"),
    )


def cluster_named(cfg: E.ProxyConfig, name: str) -> dict[str, Any]:
    matches = [c for c in cfg.clusters if c["name"] == name]
    assert len(matches) == 1, [c["name"] for c in cfg.clusters]
    return matches[0]


def outbound_vhosts(cfg: E.ProxyConfig) -> list[dict[str, Any]]:
    (lis,) = [listener for listener in cfg.listeners if listener["name"] == "virtualOutbound"]
    return lis["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]


def addrs(cfg: E.ProxyConfig, name: str = CLUSTER) -> list[tuple[str, int, str, str, int]]:
    return sorted((e.address, e.port, e.region, e.zone, e.weight) for e in cfg.endpoints[name])


# ---- naming and TLS ------------------------------------------------------------------------------
def test_outbound_cluster_named_like_istio() -> None:
    c, v1, v2 = base_registry()
    reg = [c, v1, v2]
    cfg = translator(load_topology("flat-network"), reg).sidecar(c, reg, XDS)
    assert [x["name"] for x in cfg.clusters] == [CLUSTER]  # curl serves nothing: no inbound cluster
    cl = cluster_named(cfg, CLUSTER)
    assert cl["type"] == "EDS"
    assert cl["eds_cluster_config"]["service_name"] == CLUSTER
    assert cl["eds_cluster_config"]["eds_config"]["path_config_source"]["path"] == str(E.eds_path(XDS, CLUSTER))
    assert str(E.eds_path(XDS, CLUSTER)) == "/x/eds/outbound_5000__helloworld.sample.svc.cluster.local.json"
    assert list(cfg.endpoints) == [CLUSTER]


def test_upstream_tls_sni_and_sans() -> None:
    c, v1, v2 = base_registry()
    reg = [c, v1, v2]
    cfg = translator(load_topology("flat-network"), reg).sidecar(c, reg, XDS)
    # auto-mTLS: TLS to endpoints marked tlsMode=istio, plaintext to the others
    mtls, plain = cluster_named(cfg, CLUSTER)["transport_socket_matches"]
    assert (mtls["name"], mtls["match"], plain["name"], plain["match"]) == ("tlsMode-istio", {"tlsMode": "istio"}, "tlsMode-disabled", {})
    ts = mtls["transport_socket"]
    assert ts["name"] == "envoy.transport_sockets.tls"
    tls = ts["typed_config"]
    assert tls["@type"] == E.UPSTREAM_TLS
    assert tls["sni"] == SNI
    ctx = tls["common_tls_context"]
    assert ctx["alpn_protocols"] == ["istio-peer-exchange", "istio"]  # HTTP/1.1 on an http port; "istio" selects the mTLS chain of a PERMISSIVE server
    # the client presents curl's own certificate ...
    assert ctx["tls_certificates"] == [
        {
            "certificate_chain": {"filename": "/pki/cluster1/workloads/sample.curl.cert-chain.pem"},
            "private_key": {"filename": "/pki/cluster1/workloads/sample.curl.key.pem"},
        }
    ]
    # ... and accepts only helloworld's identity, exactly
    assert ctx["validation_context"] == {
        "trusted_ca": {"filename": "/pki/root-cert.pem"},
        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": HELLO_SA}}],
    }


# ---- endpoints: flat vs split-horizon ------------------------------------------------------------
def test_flat_network_endpoints_are_pods() -> None:
    c, v1, v2 = base_registry()
    reg = [c, v1, v2]
    cfg = translator(load_topology("flat-network"), reg).sidecar(c, reg, XDS)
    assert addrs(cfg) == [
        ("10.10.0.10", 5000, "region1", "zone1", 1),
        ("10.20.0.10", 5000, "region2", "zone2", 1),
    ]
    labels = {e.address: e.labels for e in cfg.endpoints[CLUSTER]}
    assert labels["10.10.0.10"]["version"] == "v1" and labels["10.10.0.10"]["topology.istio.io/cluster"] == "cluster1"
    assert labels["10.20.0.10"]["version"] == "v2" and labels["10.20.0.10"]["topology.istio.io/cluster"] == "cluster2"


def test_flat_network_same_view_from_remote_cluster() -> None:
    c, v1, v2 = base_registry()
    c2 = curl("cluster2")
    reg = [c, c2, v1, v2]
    cfg = translator(load_topology("flat-network"), reg).sidecar(c2, reg, XDS)
    assert [a[0] for a in addrs(cfg)] == ["10.10.0.10", "10.20.0.10"]


def test_separate_networks_uses_gateway_weighted_by_endpoints() -> None:
    c, v1, v2 = base_registry()
    v2b = hello("cluster2-helloworld-v2-1", "v2", "cluster2", "10.20.0.11")
    reg = [c, v1, v2, v2b]
    cfg = translator(load_topology("separate-networks"), reg).sidecar(c, reg, XDS)
    assert addrs(cfg) == [
        ("10.10.0.10", 5000, "region1", "zone1", 1),
        ("10.250.0.2", 15443, "region2", "zone2", 2),
    ]
    gw = next(e for e in cfg.endpoints[CLUSTER] if e.address == "10.250.0.2")
    assert gw.labels["topology.istio.io/cluster"] == "cluster2" and gw.labels["topology.istio.io/network"] == "network2"
    assert "version" not in gw.labels  # a gateway stands for every pod behind it
    # no cluster2 pod address leaks across networks
    assert not any(e.address.startswith("10.20.") for e in cfg.endpoints[CLUSTER])


def test_separate_networks_single_remote_endpoint_weight_one() -> None:
    c, v1, v2 = base_registry()
    reg = [c, v1, v2]
    cfg = translator(load_topology("separate-networks"), reg).sidecar(c, reg, XDS)
    assert ("10.250.0.2", 15443, "region2", "zone2", 1) in addrs(cfg)


def test_separate_networks_from_cluster2_sees_cluster1_gateway() -> None:
    c, v1, v2 = base_registry()
    c2 = curl("cluster2")
    reg = [c, c2, v1, v2]
    cfg = translator(load_topology("separate-networks"), reg).sidecar(c2, reg, XDS)
    assert addrs(cfg) == [
        ("10.20.0.10", 5000, "region2", "zone2", 1),
        ("10.250.0.1", 15443, "region1", "zone1", 1),
    ]


# ---- listeners -----------------------------------------------------------------------------------
def test_curl_has_no_inbound_listener() -> None:
    c, v1, v2 = base_registry()
    reg = [c, v1, v2]
    cfg = translator(load_topology("flat-network"), reg).sidecar(c, reg, XDS)
    assert [lis["name"] for lis in cfg.listeners] == ["virtualOutbound"]
    assert cfg.listeners[0]["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 15001}}


def test_helloworld_inbound_listener_permissive_by_default() -> None:
    c, v1, v2 = base_registry()
    reg = [c, v1, v2]
    cfg = translator(load_topology("flat-network"), reg).sidecar(v1, reg, XDS)
    names = [lis["name"] for lis in cfg.listeners]
    assert names == ["virtualOutbound", "10.10.0.10_5000"]
    inbound = cfg.listeners[1]
    assert inbound["address"] == {"socket_address": {"address": "10.10.0.10", "port_value": 5000}}
    chain, plain = inbound["filter_chains"]  # no PeerAuthentication: PERMISSIVE, mTLS and plaintext
    assert chain["filter_chain_match"]["transport_protocol"] == "tls"
    assert plain["filter_chain_match"] == {"transport_protocol": "raw_buffer"} and "transport_socket" not in plain
    tls = chain["transport_socket"]["typed_config"]
    assert tls["@type"] == E.DOWNSTREAM_TLS
    assert tls["require_client_certificate"] is True
    ctx = tls["common_tls_context"]
    assert ctx["tls_certificates"][0]["certificate_chain"]["filename"] == "/pki/cluster1/workloads/sample.helloworld.cert-chain.pem"
    assert ctx["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}
    ]
    hcm = chain["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["cluster"] == "inbound|5000||"
    assert hcm["forward_client_cert_details"] == "APPEND_FORWARD"
    # the inbound cluster forwards to the app on the pod's loopback
    inbound_cluster = cluster_named(cfg, "inbound|5000||")
    assert inbound_cluster["type"] == "STATIC"
    ep = inbound_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert ep == {"socket_address": {"address": "127.0.0.6", "port_value": 5000}}


def test_virtual_host_domains() -> None:
    c, v1, v2 = base_registry()
    reg = [c, v1, v2]
    cfg = translator(load_topology("flat-network"), reg).sidecar(c, reg, XDS)
    vhosts = outbound_vhosts(cfg)
    assert [v["name"] for v in vhosts] == ["helloworld.sample.svc.cluster.local:5000", "block_all"]
    domains = vhosts[0]["domains"]
    assert "helloworld.sample:5000" in domains
    assert "helloworld.sample.svc.cluster.local:5000" in domains
    assert "helloworld.sample" in domains  # first port: bare host names too
    assert vhosts[0]["routes"][0]["route"]["cluster"] == CLUSTER
    assert vhosts[-1]["domains"] == ["*"]
    assert vhosts[-1]["routes"][0]["direct_response"]["status"] == 404
    assert "helloworld.sample.svc.cluster.local:5000" in vhosts[-1]["routes"][0]["direct_response"]["body"]["inline_string"]


def test_host_aliases() -> None:
    assert host_aliases("helloworld", "sample", "sample") == [
        "helloworld.sample.svc.cluster.local",
        "helloworld.sample.svc",
        "helloworld.sample",
        "helloworld",
    ]
    # the bare name only resolves from the service's own namespace
    assert "helloworld" not in host_aliases("helloworld", "sample", "other")


def test_domains_unique_with_same_app_in_two_namespaces() -> None:
    c, v1, _ = base_registry()
    other = hello("cluster1-helloworld-v1-other-0", "v1", "cluster1", "10.10.0.20", namespace="other")
    reg = [c, v1, other]
    cfg = translator(load_topology("flat-network"), reg).sidecar(c, reg, XDS)
    all_domains = [d for v in outbound_vhosts(cfg) for d in v["domains"]]
    assert len(all_domains) == len(set(all_domains)), sorted(d for d in all_domains if all_domains.count(d) > 1)


# ---- separate control planes: no cross-mesh discovery ----------------------------------------------
def test_separate_control_planes_no_cross_mesh_endpoints() -> None:
    c, v1, v2 = base_registry()
    reg = [c, v1, v2]
    cfg = translator(load_topology("separate-control-planes"), reg).sidecar(c, reg, XDS)
    assert addrs(cfg) == [("10.10.0.10", 5000, "region1", "zone1", 1)]  # v1 only: no gateway, no v2
    assert not any(e.port == 15443 for eps in cfg.endpoints.values() for e in eps)
    tls = cluster_named(cfg, CLUSTER)["transport_socket_matches"][0]["transport_socket"]["typed_config"]
    sans = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "URI", "matcher": {"exact": HELLO_SA}}]


def test_separate_control_planes_service_only_in_other_mesh_is_invisible() -> None:
    c, _, v2 = base_registry()
    reg = [c, v2]
    cfg = translator(load_topology("separate-control-planes"), reg).sidecar(c, reg, XDS)
    assert cfg.clusters == []
    assert cfg.endpoints == {}
    assert [v["name"] for v in outbound_vhosts(cfg)] == ["block_all"]


def test_visible_per_control_plane() -> None:
    c, v1, v2 = base_registry()
    reg = [c, v1, v2]
    scp = translator(load_topology("separate-control-planes"), reg)
    assert [w.pod for w in scp.visible("cluster1", reg)] == [c.pod, v1.pod]
    assert [w.pod for w in scp.visible("cluster2", reg)] == [v2.pod]
    flat = translator(load_topology("flat-network"), reg)
    assert [w.pod for w in flat.visible("cluster2", reg)] == [c.pod, v1.pod, v2.pod]


def test_services_from_workloads() -> None:
    c, v1, v2 = base_registry()
    (svc,) = Translator.services([c, v1, v2])
    assert (svc.name, svc.namespace, svc.ports, svc.fqdn) == ("helloworld", "sample", (5000,), "helloworld.sample.svc.cluster.local")


def test_curl_identity() -> None:
    assert cert_for(curl()).spiffe_id == CURL_SA
