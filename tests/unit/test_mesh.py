"""The management plane as pure functions: discovery objects, VirtualMesh federation, policies, the
CSR flow, KubeFed placement, Prometheus configs; and its kind branch through the executor (dry run)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from meshlab.registry import Workload
from meshlab.errors import MeshlabError, ResourceError
from meshlab.mesh import controller, kubefed, policy, telemetry, virtualmesh
from meshlab.mesh.discovery import discover
from meshlab.mesh.translate import merge
from meshlab.pki import PKI
from meshlab.topology import load_topology

TOPO = load_topology("separate-roots")
GATEWAYS = {"cluster1": "10.250.0.1", "cluster2": "10.250.0.2"}


def w(pod: str, app: str, version: str, cluster: str, ip: str, ports: list[int], namespace: str = "sample") -> Workload:
    return Workload(pod=pod, deployment=f"{app}-{version}" if ports else app, app=app, version=version if ports else "", cluster=cluster,
                    namespace=namespace, service_account=app, ip=ip, netns=None, outbound="", app_host="", ports=ports,
                    port_names=["http"] * len(ports))  # fmt: skip  # Istio's helloworld Service names its port "http"


REGISTRY = [
    w("gw1", "istio-eastwestgateway", "", "cluster1", "10.250.0.1", []),
    w("gw2", "istio-eastwestgateway", "", "cluster2", "10.250.0.2", []),
    w("hw1", "helloworld", "v1", "cluster1", "10.10.0.10", [5000]),
    w("c1", "curl", "", "cluster1", "10.10.0.11", []),
    w("hw2", "helloworld", "v2", "cluster2", "10.20.0.10", [5000]),
    w("c2", "curl", "", "cluster2", "10.20.0.11", []),
]
VM: dict[str, Any] = {
    "apiVersion": "networking.mesh.gloo.solo.io/v1",
    "kind": "VirtualMesh",
    "metadata": {"name": "vm", "namespace": "gloo-mesh"},
    "spec": {"meshes": [{"name": "istiod-istio-system-cluster1", "namespace": "gloo-mesh"}, {"name": "istiod-istio-system-cluster2", "namespace": "gloo-mesh"}],
             "federation": {"selectors": [{}]}},
}  # fmt: skip


def test_discovery_objects_have_gloo_mesh_v1_shapes() -> None:
    d = discover(TOPO, REGISTRY, GATEWAYS)
    assert [m["metadata"]["name"] for m in d.meshes] == ["istiod-istio-system-cluster1", "istiod-istio-system-cluster2"]
    m1 = d.mesh("istiod-istio-system-cluster1")
    assert m1["apiVersion"] == "discovery.mesh.gloo.solo.io/v1" and m1["kind"] == "Mesh"
    assert m1["spec"]["istio"]["ingressGateways"] == [
        {"workloadLabels": {"istio": "eastwestgateway"}, "externalAddress": "10.250.0.1", "externalTlsPort": 15443, "tlsContainerPort": 15443}]
    assert m1["metadata"]["labels"]["meshlab.dev/root-ca"] == "root-mesh1"
    assert {x["metadata"]["name"] for x in d.workloads} == {"helloworld-v1-sample-cluster1", "curl-sample-cluster1", "helloworld-v2-sample-cluster2", "curl-sample-cluster2"}
    dest = d.destination("helloworld", "sample", "cluster2")
    assert dest is not None and dest["spec"]["kubeService"]["subsets"] == {"version": {"values": ["v2"]}}
    assert dest["spec"]["mesh"] == {"name": "istiod-istio-system-cluster2", "namespace": "gloo-mesh"}
    assert [p["name"] for p in dest["spec"]["kubeService"]["ports"]] == ["http"], "the kube Service's port name"
    # a workload that goes away takes its Destination with it
    gone = discover(TOPO, [x for x in REGISTRY if x.pod != "hw2"], GATEWAYS)
    assert gone.destination("helloworld", "sample", "cluster2") is None
    assert "Destinations" in str(d) and "helloworld-sample-cluster2" in str(d)


@pytest.mark.parametrize("path,value,word", [
    ("mtlsConfig", {"limited": {}}, "spec.mtlsConfig.limited"),
    ("mtlsConfig", {"shared": {"rootCertificateAuthority": {"secret": {"name": "x"}}}}, "rootCertificateAuthority.secret"),
    ("federation", {"flatNetwork": True}, "spec.federation.flatNetwork"),
    ("federation", {"tcpKeepalive": {}}, "spec.federation.tcpKeepalive"),
])  # fmt: skip
def test_virtual_mesh_refuses_unsupported_fields_by_name(path: str, value: Any, word: str) -> None:
    doc = json.loads(json.dumps(VM))
    doc["spec"][path] = value
    with pytest.raises(ResourceError, match=word.replace(".", r"\.")):
        virtualmesh.validate(doc)


def test_virtual_mesh_needs_two_meshes() -> None:
    doc = json.loads(json.dumps(VM))
    doc["spec"]["meshes"] = doc["spec"]["meshes"][:1]
    with pytest.raises(ResourceError, match="at least two meshes"):
        virtualmesh.validate(doc)


def test_global_names_get_a_stable_vip_from_class_e() -> None:
    host = virtualmesh.global_hostname("helloworld", "sample", "cluster2")
    assert host == "helloworld.sample.svc.cluster2.global"
    ip = ipaddress.ip_address(virtualmesh.vip(host))
    assert ip in ipaddress.ip_network("240.0.0.0/4") and virtualmesh.vip(host) == str(ip)
    assert virtualmesh.vip(host) != virtualmesh.vip("helloworld.sample.svc.cluster1.global")


def test_federation_with_global_names() -> None:
    d = discover(TOPO, REGISTRY, GATEWAYS)
    out = virtualmesh.federation(TOPO, d, VM, REGISTRY, GATEWAYS)
    kinds = {cp: sorted(r["kind"] for r in rs) for cp, rs in out.items()}
    assert kinds == {cp: ["DestinationRule", "EnvoyFilter", "Gateway", "ServiceEntry"] for cp in ("cluster1", "cluster2")}
    [se] = [r for r in out["cluster1"] if r["kind"] == "ServiceEntry"]
    assert se["spec"]["hosts"] == ["helloworld.sample.svc.cluster2.global"]
    assert se["spec"]["endpoints"][0]["address"] == "10.250.0.2" and se["spec"]["endpoints"][0]["ports"] == {"http": 15443}
    # the Service's port name (lab 04 teaches that it must match), not one made up from the number
    assert se["spec"]["ports"] == [{"number": 5000, "name": "http", "protocol": "HTTP"}]
    assert se["spec"]["subjectAltNames"] == ["spiffe://cluster.local/ns/sample/sa/helloworld"]
    [gw] = [r for r in out["cluster2"] if r["kind"] == "Gateway"]
    assert gw["spec"]["servers"][0]["hosts"] == ["*.global"] and gw["spec"]["servers"][0]["tls"] == {"mode": "AUTO_PASSTHROUGH"}
    [ef] = [r for r in out["cluster2"] if r["kind"] == "EnvoyFilter"]
    assert ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["cluster_pattern"] == r"\.cluster2.global$"


def test_federation_with_merged_names_uses_the_service_name() -> None:
    doc = json.loads(json.dumps(VM))
    doc["metadata"]["annotations"] = {"meshlab.dev/hostnames": "merged"}
    virtualmesh.validate(doc)
    out = virtualmesh.federation(TOPO, discover(TOPO, REGISTRY, GATEWAYS), doc, REGISTRY, GATEWAYS)
    [se] = [r for r in out["cluster1"] if r["kind"] == "ServiceEntry"]
    assert se["spec"]["hosts"] == ["helloworld.sample.svc.cluster.local"]


TP = """
apiVersion: networking.mesh.gloo.solo.io/v1
kind: TrafficPolicy
metadata: {name: hello-policy, namespace: gloo-mesh}
spec:
  destinationSelector:
  - kubeServiceRefs:
      services: [{name: helloworld, namespace: sample, clusterName: cluster2}]
  policy:
    requestTimeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms}
    outlierDetection: {consecutiveErrors: 2, interval: 1s, baseEjectionTime: 30s}
"""


def test_traffic_policy_one_policy_many_meshes() -> None:
    doc = yaml.safe_load(TP)
    policy.validate(doc)
    out = policy.traffic_policy(doc, discover(TOPO, REGISTRY, GATEWAYS), TOPO, {"cluster2": ["cluster1"]})
    vs2 = next(r for r in out["cluster2"] if r["kind"] == "VirtualService")
    assert vs2["spec"]["hosts"] == ["helloworld.sample.svc.cluster.local"]
    assert vs2["spec"]["http"][0]["timeout"] == "2s" and vs2["spec"]["http"][0]["retries"] == {"attempts": 3, "perTryTimeout": "500ms"}
    vs1 = next(r for r in out["cluster1"] if r["kind"] == "VirtualService")
    assert vs1["spec"]["hosts"] == ["helloworld.sample.svc.cluster2.global"]  # the name cluster1 knows it by
    dr1 = next(r for r in out["cluster1"] if r["kind"] == "DestinationRule")
    assert dr1["spec"]["trafficPolicy"]["outlierDetection"] == {"consecutive5xxErrors": 2, "interval": "1s", "baseEjectionTime": "30s",
                                                                "maxEjectionPercent": 100}  # Gloo Mesh's default
    from meshlab.resources import validate

    for rs in out.values():
        for r in rs:
            validate(r)  # what the local backend accepts


@pytest.mark.parametrize("field,word", [("sourceSelector", "spec.sourceSelector"), ("corsPolicy", "spec.policy.corsPolicy")])
def test_traffic_policy_refuses_unsupported_fields_by_name(field: str, word: str) -> None:
    doc = yaml.safe_load(TP)
    if field == "sourceSelector":
        doc["spec"]["sourceSelector"] = [{"kubeWorkloadMatcher": {}}]
    else:
        doc["spec"]["policy"]["corsPolicy"] = {}
    with pytest.raises(ResourceError, match=word.replace(".", r"\.")):
        policy.validate(doc)


def test_access_policy_becomes_an_authorization_policy() -> None:
    doc = yaml.safe_load("""
apiVersion: networking.mesh.gloo.solo.io/v1
kind: AccessPolicy
metadata: {name: curl-to-hello, namespace: gloo-mesh}
spec:
  sourceSelector:
  - kubeServiceAccountRefs: {serviceAccounts: [{name: curl, namespace: sample, clusterName: cluster1}]}
  destinationSelector:
  - kubeServiceMatcher: {labels: {app: helloworld}, namespaces: [sample]}
  allowedPaths: [/hello]
  allowedMethods: [GET]
""")
    policy.validate(doc)
    out = policy.access_policy(doc, discover(TOPO, REGISTRY, GATEWAYS), TOPO)
    assert sorted(out) == ["cluster1", "cluster2"]
    ap = out["cluster2"][0]
    assert ap["apiVersion"] == "security.istio.io/v1" and ap["spec"]["action"] == "ALLOW"
    assert ap["spec"]["selector"] == {"matchLabels": {"app": "helloworld"}}
    assert ap["spec"]["rules"] == [{"from": [{"source": {"principals": ["cluster.local/ns/sample/sa/curl"]}}],
                                    "to": [{"operation": {"paths": ["/hello"], "methods": ["GET"]}}]}]  # fmt: skip


def test_merge_keeps_one_destination_rule_per_host() -> None:
    a = {"kind": "DestinationRule", "metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"host": "h", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}
    b = {"kind": "DestinationRule", "metadata": {"name": "b", "labels": {"y": "2"}}, "spec": {"host": "h", "trafficPolicy": {"outlierDetection": {"interval": "1s"}}}}
    [m] = merge([a, b])
    assert m["metadata"]["name"] == "a" and m["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"}, "outlierDetection": {"interval": "1s"}}
    assert m["metadata"]["labels"] == {"x": "1", "y": "2"}  # both contributors are named


def test_controller_diff_names_each_change() -> None:
    se = {"kind": "ServiceEntry", "metadata": {"name": "x", "namespace": "istio-system"}, "spec": {"hosts": ["x"]}}
    assert controller.diff({}, {"cluster1": [se]}) == ["cluster1: created ServiceEntry istio-system/x"]
    assert controller.diff({"cluster1": [se]}, {}) == ["cluster1: deleted ServiceEntry istio-system/x"]
    se2 = {**se, "spec": {"hosts": ["y"]}}
    assert controller.diff({"cluster1": [se]}, {"cluster1": [se2]}) == ["cluster1: updated ServiceEntry istio-system/x"]


def test_csr_flow_issues_an_intermediate_under_the_shared_root(tmp_path: Path) -> None:
    pki = PKI(tmp_path)
    csr = pki.agent_csr("cluster1", "vm-root")
    assert not (tmp_path / "vm-root" / "cluster1" / "cacerts").exists()  # nothing issued yet
    issued = pki.sign_csr(csr.read_bytes(), "vm-root", ttl_days=10)
    cacerts = pki.install_issued("cluster1", "vm-root", issued)
    inter, root = x509.load_pem_x509_certificates((cacerts / "cert-chain.pem").read_bytes())
    inter.verify_directly_issued_by(root)
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf = x509.load_pem_x509_certificate(pki.workload("cluster1", "sample", "curl", root="vm-root").cert_chain.read_bytes())
    leaf.verify_directly_issued_by(inter)  # workloads now chain to the shared root
    # another cluster's issued certificate does not fit this agent's key
    other = pki.sign_csr(pki.agent_csr("cluster2", "vm-root").read_bytes(), "vm-root")
    with pytest.raises(MeshlabError, match="does not match"):
        pki.install_issued("cluster1", "vm-root", other)


def test_sign_refuses_a_csr_that_is_not_for_a_ca(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, hashes.SHA256())
    with pytest.raises(MeshlabError, match="CA certificate"):
        PKI(tmp_path).sign_csr(csr.public_bytes(serialization.Encoding.PEM), "vm-root")


def test_kubefed_placement_by_name_and_selector() -> None:
    dep = {"apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedDeployment", "metadata": {"name": "helloworld"},
           "spec": {"template": {"spec": {"replicas": 1}}, "placement": {"clusterSelector": {"matchLabels": {"region": "region2"}}}}}  # fmt: skip
    assert kubefed.placement(TOPO, dep) == ["cluster2"]
    dep["spec"]["placement"] = {"clusters": [{"name": "cluster1"}, {"name": "cluster2"}]}
    assert kubefed.placement(TOPO, dep) == ["cluster1", "cluster2"]
    dep["spec"]["placement"] = {"clusters": [{"name": "cluster9"}]}
    with pytest.raises(ResourceError, match="cluster9"):
        kubefed.placement(TOPO, dep)


def test_prometheus_configs_follow_istios_multicluster_guide(tmp_path: Path) -> None:
    g = telemetry.global_config({"cluster1": "10.250.0.1:9090", "cluster2": "10.250.0.2:9090"})
    job = g["scrape_configs"][1]
    assert job["metrics_path"] == "/federate" and job["honor_labels"] is True
    assert job["params"] == {"match[]": ['{job="kubernetes-pods"}']}
    assert job["static_configs"] == [{"targets": ["10.250.0.2:9090"], "labels": {"cluster": "cluster2"}}]
    c = telemetry.cluster_config("cluster1", tmp_path / "t.json")
    assert c["scrape_configs"][0]["job_name"] == "kubernetes-pods" and c["scrape_configs"][0]["metrics_path"] == "/stats/prometheus"
    t = telemetry.targets(REGISTRY, "cluster1", 15090)
    assert [x["targets"] for x in t] == [["10.10.0.10:15090"], ["10.10.0.11:15090"]]  # sidecars only, no gateway
    assert t[0]["labels"] == {"namespace": "sample", "pod": "hw1", "app": "helloworld", "version": "v1"}


# ---- the kind branch: every step through the executor, recorded in a dry run -------------------------
@pytest.fixture
def kind_lab(tmp_path: Path) -> Any:
    from meshlab.backends.kind import KindBackend
    from meshlab.lab import Lab
    from meshlab.state import State

    st = State(tmp_path)
    KindBackend.create(load_topology("separate-roots"), st, samples=True, dry_run=True, progress=None)
    st.save()
    return Lab.attach(tmp_path)


def _recorded(lab: Any) -> list[Any]:
    return list(lab.backend.executor.recorded.steps)


def test_kind_virtual_mesh_shared_trust_is_recorded_in_order(kind_lab: Any) -> None:
    before = len(_recorded(kind_lab))
    doc = json.loads(json.dumps(VM))
    doc["spec"]["mtlsConfig"] = {"autoRestartPods": True, "shared": {"rootCertificateAuthority": {"generated": {}}}}
    applied = kind_lab.mesh.apply(doc)
    steps = _recorded(kind_lab)[before:]
    cmds = [" ".join(s.argv) for s in steps]
    c1 = [c for c in cmds if "kind-cluster1" in c]
    assert [i for i, c in enumerate(c1) if "secret generic cacerts" in c] < [i for i, c in enumerate(c1) if "restart deployment/istiod" in c]
    assert any("rollout restart deployment" in c and "-n sample" in c for c in c1)  # the pod bounce
    chain = [s for s in steps if "cacerts" in s.tags][0]
    files = [a.split("=", 1)[1] for a in chain.argv if a.startswith("--from-file=")]
    inter, root = x509.load_pem_x509_certificates(Path([f for f in files if f.endswith("cert-chain.pem")][0]).read_bytes())
    inter.verify_directly_issued_by(root)
    assert "vm-root" in root.subject.rfc4514_string()
    # then the federation objects, validated strictly against Istio's schemas and applied per cluster
    applies = [s for s in steps if "apply" in s.tags]
    kinds = sorted({m["kind"] for s in applies for m in s.manifests})
    assert kinds == ["DestinationRule", "EnvoyFilter", "Gateway", "ServiceEntry"]
    assert applied.trust is not None and sorted(applied.trust.chains) == ["cluster1", "cluster2"]


def test_kind_telemetry_installs_the_addon_and_a_global_prometheus(kind_lab: Any) -> None:
    before = len(_recorded(kind_lab))
    table = kind_lab.mesh.telemetry.enable()
    steps = _recorded(kind_lab)[before:]
    cmds = [" ".join(s.argv) for s in steps]
    assert sum(c.endswith("/addons/prometheus.yaml") and " apply -f " in c for c in cmds) == 2  # the pinned, verified file
    [glob] = [s for s in steps if any(m["kind"] == "ConfigMap" for m in s.manifests)]
    cfg = yaml.safe_load(next(m for m in glob.manifests if m["kind"] == "ConfigMap")["data"]["prometheus.yml"])
    assert [j["static_configs"][0]["targets"][0] for j in cfg["scrape_configs"]] == ["${PROMETHEUS_CLUSTER1_IP}:9090", "${PROMETHEUS_CLUSTER2_IP}:9090"]
    assert [r["PROMETHEUS"] for r in table] == ["prometheus-cluster1", "prometheus-cluster2", "prometheus-global"]
    assert kind_lab.mesh.telemetry.query("istio_requests_total") == []  # a dry run answers nothing, but records the query
    assert "wget" in " ".join(_recorded(kind_lab)[-1].argv)


def test_kind_dry_run_has_no_controller_to_start(kind_lab: Any) -> None:
    with pytest.raises(ResourceError, match="no clusters for the controller"):
        kind_lab.mesh.controller.start()


def test_kind_policies_placement_and_undeploy_go_through_the_executor(kind_lab: Any) -> None:
    kind_lab.mesh.apply(VM)
    before = len(_recorded(kind_lab))
    kind_lab.mesh.apply(yaml.safe_load(TP))  # VirtualService + DestinationRule, validated against Istio's schemas
    ap = {"apiVersion": "networking.mesh.gloo.solo.io/v1", "kind": "AccessPolicy", "metadata": {"name": "ap"},
          "spec": {"destinationSelector": [{"kubeServiceMatcher": {"labels": {"app": "helloworld"}}}], "allowedPaths": ["/hello"]}}
    kind_lab.mesh.apply(ap)
    applied = [m for s in _recorded(kind_lab)[before:] if "apply" in s.tags for m in s.manifests]
    assert {"VirtualService", "DestinationRule", "AuthorizationPolicy"} <= {m["kind"] for m in applied}
    # the controller's job on kind: a new service appears in cluster2, cluster1 gets its ServiceEntry
    kind_lab.deploy("helloworld", cluster="cluster2", namespace="demo")
    kind_lab.mesh.wait_generated("cluster1", "helloworld.demo.svc.cluster2.global", present=True, timeout=5)
    kind_lab.undeploy("helloworld", cluster="cluster2", namespace="demo")
    kind_lab.mesh.wait_generated("cluster1", "helloworld.demo.svc.cluster2.global", present=False, timeout=5)
    cmds = [" ".join(s.argv) for s in _recorded(kind_lab)[before:]]
    assert any("delete serviceentry helloworld.demo.svc.cluster2.global" in c for c in cmds), cmds
    assert any("-n demo delete deployment helloworld-v1" in c for c in cmds), cmds
    # KubeFed placement deploys a copy per selected cluster through the same executor
    dep = {"apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedDeployment", "metadata": {"name": "helloworld", "namespace": "kubefed"},
           "spec": {"template": {"metadata": {"labels": {"app": "helloworld", "version": "v1"}}, "spec": {"replicas": 1}},
                    "placement": {"clusters": [{"name": "cluster2"}]}}}  # fmt: skip
    svc = {**dep, "kind": "FederatedService", "spec": {"template": {"spec": {"selector": {"app": "helloworld"}}}, "placement": dep["spec"]["placement"]}}
    n = len(_recorded(kind_lab))
    kind_lab.mesh.kubefed_place(dep, svc)
    placed = [s for s in _recorded(kind_lab)[n:] if any(m.get("kind") == "Deployment" for m in s.manifests)]
    assert placed and {s.cluster for s in placed} == {"cluster2"}
    assert {m["metadata"]["namespace"] for s in placed for m in s.manifests if m.get("kind") == "Deployment"} == {"kubefed"}


def test_cli_mesh_commands_mirror_the_facade(kind_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from meshlab.cli import main

    monkeypatch.setenv("MESHLAB_HOME", str(kind_lab.state.dir))
    assert main(["mesh", "discover"]) == 0
    assert "istiod-istio-system-cluster2" in capsys.readouterr().out
    vm = tmp_path / "vm.yaml"
    vm.write_text(yaml.safe_dump(VM))
    assert main(["mesh", "apply", "-f", str(vm), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# ---- cluster1" in out and "helloworld.sample.svc.cluster2.global" in out
    assert main(["mesh", "describe", "Mesh", "istiod-istio-system-cluster1"]) == 0
    assert "kind: Mesh" in capsys.readouterr().out
    assert main(["mesh", "describe", "Mesh", "nope"]) != 0
    assert "no Mesh named 'nope'" in capsys.readouterr().err
