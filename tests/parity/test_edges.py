"""The mesh's edges: an ingress gateway (Gateway + bound VirtualService, TLS terminated with SIMPLE)
routing to both clusters, and TLS originated to a real HTTPS server outside the mesh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab import checks
from meshlab.runtime import net
from meshlab.lab import Lab
from meshlab.state import prefix_for
from meshlab.dataplane import access_logs_on

HOST = "hello.example.com"


@pytest.fixture(scope="module")
def lab(module_home: Path) -> Iterator[Lab]:
    home = module_home
    lab = access_logs_on(Lab.up("flat-network", samples=True, home_dir=home, quiet=True))
    lab.deploy("istio-ingressgateway", "cluster1")
    yield lab
    lab.down(quiet=True)
    assert not net.existing_namespaces(prefix_for(home))


@pytest.mark.istio("pilot/pkg/networking/core/gateway.go: buildGatewayListeners")
@pytest.mark.istio("pilot/pkg/model/gateway.go: resolvePorts")
@pytest.mark.istio("pilot/pkg/model/gateway.go: gatewayRDSRouteName")
def test_gateway_servers_terminate_tls_and_route_to_both_clusters(lab: Lab) -> None:
    secret = lab.create_tls_secret("hello-credential", [HOST], "cluster1")
    lab.apply([
        {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "hello-gateway"},
         "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
             {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [HOST]},
             {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [HOST],
              "tls": {"mode": "SIMPLE", "credentialName": "hello-credential"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "hello-ingress"},
         "spec": {"hosts": [HOST], "gateways": ["hello-gateway"], "http": [{"route": [{"destination": {"host": "helloworld"}}]}]}},
    ], "cluster1")  # fmt: skip
    listeners = {x["name"]: x["active_state"]["listener"] for x in lab.envoy_config("istio-ingressgateway", "cluster1", "dynamic_listeners")["configs"]}
    # the gateway pod listens on its Service's target ports (80 -> 8080, 443 -> 8443): no privileged port
    assert set(listeners) == {"0.0.0.0_8080", "0.0.0.0_8443"}
    (plain,) = listeners["0.0.0.0_8080"]["filter_chains"]
    assert plain["filters"][0]["typed_config"]["route_config"]["name"] == "http.8080"
    (chain,) = listeners["0.0.0.0_8443"]["filter_chains"]
    assert chain["filters"][0]["typed_config"]["route_config"]["name"] == "https.443.https.hello-gateway.sample"
    assert chain["filter_chain_match"]["server_names"] == [HOST]
    assert chain["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificates"][0]["certificate_chain"]["filename"] == secret["cert"]
    r = lab.call_from_outside(f"https://{HOST}/hello", "cluster1", n=8, ca=secret["ca"])
    assert r.errors == 0 and {c for c, _ in r.tally} == {"cluster1", "cluster2"}, r.answers  # multi-cluster ingress
    entry = lab.access_log("istio-ingressgateway", "cluster1")[-1]
    assert (entry["sni"], entry["tls"]) == (HOST, "TLSv1.3")  # TLS ends at the gateway ...
    assert entry["upstream_peer"] == "spiffe://cluster.local/ns/sample/sa/helloworld"  # ... and mTLS starts there
    assert lab.call_from_outside(f"http://{HOST}/hello", "cluster1", n=1).answers[0].status == 200
    assert lab.call_from_outside("http://other.example.com/hello", "cluster1", n=1).answers[0].status == 404  # no virtual host
    wrong = lab.call_from_outside(f"https://{HOST}/hello", "cluster1", n=1)  # the system CAs do not know the ingress CA
    assert wrong.answers[0].status == 0 and "CERTIFICATE_VERIFY_FAILED" in wrong.answers[0].error
    # a VirtualService bound to a gateway leaves sidecars alone
    assert lab.call("curl", f"http://{HOST}/hello", "cluster1", n=1).answers[0].status == 404


@pytest.mark.istio("pilot/pkg/networking/core/cluster_tls.go: setAutoSniAndAutoSanValidation")
def test_tls_origination_to_an_external_https_server(lab: Lab) -> None:
    """Istio 1.31 (constructUpstreamTLS, setAutoSniAndAutoSanValidation): a SIMPLE DestinationRule without ``sni``
    gets no SNI in its UpstreamTlsContext but ``auto_sni`` -- and, without ``subjectAltNames``,
    ``auto_san_validation`` -- in the cluster's upstream HTTP protocol options: Envoy sends the request's Host as
    SNI and checks the certificate against it. With ``sni`` given, that SNI and neither option."""
    ext = lab.external_https("external.meshlab.test")

    def apply(tls: dict[str, object]) -> dict[str, object]:
        lab.apply([
            {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "external"},
             "spec": {"hosts": [ext["hostname"]], "location": "MESH_EXTERNAL", "resolution": "STATIC",
                      "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": ext["port"]}], "endpoints": [{"address": ext["address"]}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "external"},
             "spec": {"host": ext["hostname"], "trafficPolicy": {"tls": {"mode": "SIMPLE", "credentialName": ext["secret"], **tls}}}},
        ], "cluster1")  # fmt: skip
        clusters = lab.envoy_config("curl", "cluster1", "dynamic_active_clusters")["configs"]
        return next(x["cluster"] for x in clusters if x["cluster"]["name"] == "outbound|80||external.meshlab.test")

    c = apply({})
    assert checks.originated_sni(c) == {"sni": "", "auto_sni": True, "auto_san_validation": True}
    assert "sni" not in c["transport_socket"]["typed_config"]
    assert c["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] == ext["ca"]
    r = lab.call("curl", f"http://{ext['hostname']}/hello", "cluster1", n=2)  # the app speaks plain HTTP ...
    assert [a.status for a in r.answers] == [200, 200], r.answers
    assert r.answers[0].headers["x-served-tls"] == "TLSv1.3"  # ... the server outside saw TLS
    assert r.answers[0].headers["x-served-sni"] == ext["hostname"], "auto_sni: the request's Host"
    entry = lab.access_log("curl", "cluster1")[-1]
    assert (entry["upstream_host"], entry["upstream_tls"], entry["upstream_peer_dns"]) == (f"{ext['address']}:443", "TLSv1.3", ext["hostname"])

    c = apply({"sni": "other.meshlab.test", "subjectAltNames": [ext["hostname"]]})
    assert checks.originated_sni(c) == {"sni": "other.meshlab.test", "auto_sni": False, "auto_san_validation": False}
    r = lab.call("curl", f"http://{ext['hostname']}/hello", "cluster1", n=1)
    assert r.answers[0].status == 200 and r.answers[0].headers["x-served-sni"] == "other.meshlab.test", r.answers

    c = apply({"subjectAltNames": [ext["hostname"]]})  # SANs given: auto_sni only
    assert checks.originated_sni(c) == {"sni": "", "auto_sni": True, "auto_san_validation": False}
    assert lab.validate() == len([w for w in lab.backend.workloads if w.sidecar])
