"""Split-horizon EDS follows each cluster's network label; the east-west gateway's 15443 listener follows
the expose-services Gateway. Both pinned on the translator's output; lab 10 shows them on traffic."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshlab.controlplane import Translator
from meshlab.registry import GATEWAY_APP, GATEWAY_PORT, Workload
from meshlab.federation import expose_services_gateway
from meshlab.topology import load_topology

TOPO = load_topology("separate-networks")
GW_IP = {"cluster1": "10.250.0.1", "cluster2": "10.250.0.2"}


def pod(app: str, cluster: str, ip: str) -> Workload:
    return Workload(pod=f"{app}-{cluster}", deployment=app, app=app, version="v1", cluster=cluster, namespace="sample",
                    service_account=app, ip=ip, netns=None, outbound=ip, app_host=ip, ports=[5000] if app == "helloworld" else [])


PODS = [pod("helloworld", "cluster1", "10.10.0.10"), pod("helloworld", "cluster2", "10.20.0.10")]
GW2 = Workload(pod="gw2", deployment=GATEWAY_APP, app=GATEWAY_APP, version="", cluster="cluster2", namespace="istio-system",
               service_account="gw", ip=GW_IP["cluster2"], netns=None, outbound=GW_IP["cluster2"], app_host=GW_IP["cluster2"])


def addresses(t: Translator, client: str) -> set[str]:
    return {f"{e.address}:{e.port}" for e in t.endpoints(client, PODS, 5000)}


@pytest.mark.istio("pilot/pkg/xds/endpoints/ep_filters.go: EndpointsByNetworkFilter")
def test_an_unlabelled_cluster_has_endpoints_on_no_network_so_every_proxy_dials_its_pods() -> None:
    """controller.go Network(): a pod's network is its own label, else its istio-system namespace's, else "".
    EndpointsByNetworkFilter keeps an endpoint whose network is "" or the proxy's own (IsSameOrEmpty) at its
    address; any other becomes its network's gateway on 15443."""
    labelled = Translator(TOPO, GW_IP, {})
    assert addresses(labelled, "cluster1") == {"10.10.0.10:5000", f"{GW_IP['cluster2']}:{GATEWAY_PORT}"}
    unlabelled = Translator(TOPO, GW_IP, {}, network_labels={"cluster1": "network1", "cluster2": ""})
    assert addresses(unlabelled, "cluster1") == {"10.10.0.10:5000", "10.20.0.10:5000"}, "cluster2's pod IP, unreachable from network1"
    assert addresses(unlabelled, "cluster2") == {f"{GW_IP['cluster1']}:{GATEWAY_PORT}", "10.20.0.10:5000"}, (
        "cluster2's own proxies keep their network (install values): cluster1 stays behind its gateway"
    )
    # a gateway's requested network view always includes the unknown network: cluster1's gateway sees cluster2's pod too
    gw1 = Workload(**{**GW2.record(), "pod": "gw1", "cluster": "cluster1", "ip": GW_IP["cluster1"]})
    cfg = unlabelled.gateway(gw1, PODS + [gw1], Path("/x"), [expose_services_gateway()])
    assert {f"{e.address}:{e.port}" for eps in cfg.endpoints.values() for e in eps} == {"10.10.0.10:5000", "10.20.0.10:5000"}


@pytest.mark.istio("pilot/pkg/networking/core/gateway.go: builtAutoPassthroughFilterChains")
def test_the_east_west_gateway_listens_on_15443_only_for_an_auto_passthrough_gateway() -> None:
    """buildGatewayListeners: a gateway proxy's listeners come from the Gateway resources selecting it; the
    expose-services Gateway (AUTO_PASSTHROUGH, *.local, 15443) gives one SNI filter chain per service port."""
    t = Translator(TOPO, GW_IP, {})
    exposed = t.gateway(GW2, PODS + [GW2], Path("/x"), [expose_services_gateway()])
    [listener] = exposed.listeners
    assert listener["address"]["socket_address"]["port_value"] == GATEWAY_PORT
    assert [c["filter_chain_match"]["server_names"] for c in listener["filter_chains"]] == [
        ["outbound_.5000_._.helloworld.sample.svc.cluster.local"]]
    assert t.gateway(GW2, PODS + [GW2], Path("/x"), []).listeners == [], "without the Gateway, nothing listens on 15443"
    other = expose_services_gateway()
    other["spec"]["selector"] = {"istio": "ingressgateway"}
    assert t.gateway(GW2, PODS + [GW2], Path("/x"), [other]).listeners == [], "a Gateway selecting other proxies changes nothing"
    narrow = expose_services_gateway()
    narrow["spec"]["servers"][0]["hosts"] = ["other/*"]
    assert t.gateway(GW2, PODS + [GW2], Path("/x"), [narrow]).listeners == [], "hosts in another namespace do not expose sample"
