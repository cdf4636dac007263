"""Strict schema validation of the kind backend's manifests: everything it emits passes, and the
validator demonstrably fails on unknown fields, wrong types and missing required fields."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from meshlab.backends.kind import SchemaError, up_plan, validate
from meshlab.backends.kind import crd_schemas
from meshlab.backends.kind.istio import eastwest_iop, expose_istiod, primary_iop, remote_iop
from meshlab.backends.kind.samples import curl, helloworld_deployment, helloworld_service, namespace
from meshlab.topology import load_topology

PATTERNS = ["flat-network", "separate-networks", "separate-control-planes", "multi-primary"]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = []
    for p in PATTERNS:
        out += [d for _, d in up_plan(load_topology(p), tmp_path_factory.mktemp("lab")).manifests()]
    return out


def test_every_manifest_of_every_pattern_passes(manifests: list[dict[str, Any]]) -> None:
    kinds = set()
    for d in manifests:
        validate(d)
        kinds.add(d["kind"])
    assert {"Cluster", "ConfigMap", "IPAddressPool", "L2Advertisement", "Namespace", "IstioOperator", "Gateway",
            "VirtualService", "ServiceAccount", "Service", "Deployment", "ServiceEntry", "DestinationRule"} <= kinds


def with_change(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``value`` set at a dotted path (list indexes as numbers)."""
    d = copy.deepcopy(doc)
    keys = path.split(".")
    cur: Any = d
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur[k]
    last = keys[-1]
    if value is DELETE:
        del cur[last]
    elif isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return d


DELETE = object()
T = load_topology("separate-networks")
C1, C2 = T.clusters["cluster1"], T.clusters["cluster2"]

UNKNOWN_FIELD_CASES = [
    # (document, dotted path of a new field, what the error must name)
    (namespace(), "metadata.labelz", "metadata.labelz"),
    (helloworld_deployment("v1"), "spec.template.spec.containers.0.imagePullPolicyy", "imagePullPolicyy"),
    (helloworld_service()[1], "spec.ports.0.nodeport", "nodeport"),
    (curl()[0], "automount", "automount"),
    (primary_iop(T, C1), "spec.values.global.meshId", "spec.values.global.meshId"),
    (primary_iop(T, C1), "spec.meshConfig.accessLogFiles", "spec.meshConfig.accessLogFiles"),
    (remote_iop(C2, "${CLUSTER1_EW_IP}"), "spec.values.istiodRemote.injectionPat", "injectionPat"),
    (eastwest_iop("network1"), "spec.components.ingressGateways.0.k8s.service.portz", "portz"),
    (eastwest_iop("network1"), "spec.components.ingressGateways.0.k8s.env.0.valueFrm", "valueFrm"),
    (expose_istiod()[0], "spec.servers.0.port.nmber", "spec.servers[0].port.nmber"),
    (expose_istiod()[1], "spec.tls.0.match.0.sniHost", "sniHost"),
    ({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "x"},
      "spec": {"hosts": ["a.b"], "endpoints": [{"address": "1.2.3.4"}]}}, "spec.endpoints.0.adress", "adress"),
    ({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "x"},
      "spec": {"host": "a", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}, "spec.trafficPolicy.tls.sni_name", "sni_name"),
    ({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "p", "namespace": "metallb-system"},
      "spec": {"addresses": ["10.0.0.1-10.0.0.9"]}}, "spec.autoassign", "spec.autoassign"),
    ({"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "l"}, "spec": {}}, "spec.ipAddressPool", "ipAddressPool"),
    ({"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": [{"role": "control-plane"}]}, "nodes.0.label", "nodes[0].label"),
    ({"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "networking": {}}, "networking.podSubnets", "podSubnets"),
]  # fmt: skip


@pytest.mark.parametrize("doc,path,named", UNKNOWN_FIELD_CASES, ids=[f"{c[0]['kind']}:{c[1]}" for c in UNKNOWN_FIELD_CASES])
def test_unknown_field_fails(doc: dict[str, Any], path: str, named: str) -> None:
    validate(doc)  # the original passes ...
    with pytest.raises(SchemaError) as e:
        validate(with_change(doc, path, "x"))  # ... one unknown field does not
    assert named in e.value.message
    assert "unknown field" in e.value.message or "spelling" in e.value.message
    assert e.value.hint


@pytest.mark.parametrize("doc,path,value,problem", [
    (helloworld_deployment("v1"), "spec.replicas", "1", "valid integer"),
    (helloworld_service()[1], "spec.ports.0.port", DELETE, "required"),
    (helloworld_deployment("v1"), "spec.template.spec.containers.0.name", DELETE, "required"),
    (eastwest_iop("network1"), "spec.components.ingressGateways.0.enabled", "true", "must be boolean"),
    (expose_istiod()[0], "spec.servers.0.tls.mode", "PASSTHRU", "not allowed"),
    (expose_istiod()[0], "spec.servers.0.hosts", DELETE, "required field 'hosts'"),
    (primary_iop(T, C1), "spec.meshConfig.accessLogEncoding", "XML", "not allowed"),
    ({"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": [{"role": "worker"}]}, "nodes.0.role", "master", "not allowed"),
])  # fmt: skip
def test_wrong_type_or_missing_required_fails(doc: dict[str, Any], path: str, value: Any, problem: str) -> None:
    validate(doc)
    with pytest.raises(SchemaError) as e:
        validate(with_change(doc, path, value))
    assert problem in e.value.message


def test_core_kinds_reject_snake_case_that_the_api_server_would_not_accept() -> None:
    svc = helloworld_service()[1]
    bad = copy.deepcopy(svc)
    bad["spec"]["ports"][0]["target_port"] = 5000
    with pytest.raises(SchemaError, match="target_port"):
        validate(bad)


def test_versions_groups_and_unknown_kinds() -> None:
    gw = expose_istiod()[0]
    validate(with_change(gw, "apiVersion", "networking.istio.io/v1beta1"))  # served too
    with pytest.raises(SchemaError, match="not 'v2'"):
        validate(with_change(gw, "apiVersion", "networking.istio.io/v2"))
    with pytest.raises(SchemaError, match="no schema"):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    with pytest.raises(SchemaError, match="metadata.name is required"):
        validate({"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "spec": {}})
    with pytest.raises(SchemaError, match="unknown top-level field 'status'"):
        validate({**gw, "status": {}})
    with pytest.raises(SchemaError, match="IstioOperator is install.istio.io/v1alpha1"):
        validate({**eastwest_iop("n"), "apiVersion": "install.istio.io/v1"})


def test_generated_istio_schemas_cover_the_istio_api() -> None:
    """Generated from Istio 1.31's CRDs (schemagen): the kinds and some fields a learner uses."""
    assert {"Gateway", "VirtualService", "ServiceEntry", "DestinationRule", "PeerAuthentication", "AuthorizationPolicy",
            "WasmPlugin", "Sidecar", "WorkloadEntry"} <= set(crd_schemas.ISTIO)
    dr = crd_schemas.ISTIO["DestinationRule"]["spec"]["props"]
    lb = dr["trafficPolicy"]["props"]["loadBalancer"]["props"]
    assert {"simple", "localityLbSetting", "consistentHash"} <= set(lb)
    assert "failoverPriority" in lb["localityLbSetting"]["props"]
    assert crd_schemas.ISTIO["ServiceEntry"]["spec"]["required"] == ["hosts"]
    validate({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "hw", "namespace": "sample"},
              "spec": {"host": "helloworld", "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {
                  "enabled": True, "failover": [{"from": "region1", "to": "region2"}]}},
                  "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "10m"}}}})  # fmt: skip


def test_schemagen_roundtrip(tmp_path: Path) -> None:
    """The generator reproduces a CRD's structure in the compact notation."""
    from meshlab.backends.kind.schemagen import extract

    crd = tmp_path / "crd.yaml"
    crd.write_text("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
spec:
  group: example.com
  names: {kind: Widget}
  versions:
  - name: v1
    storage: true
    schema:
      openAPIV3Schema:
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer}
              mode: {type: string, enum: [A, B]}
              tags: {type: object, additionalProperties: {type: string}}
              ports: {type: array, items: {type: object, properties: {number: {type: integer}}}}
              anything: {type: object, x-kubernetes-preserve-unknown-fields: true}
              port: {x-kubernetes-int-or-string: true}
""")
    assert extract(str(crd)) == {"Widget": {"group": "example.com", "versions": ["v1"], "spec": {
        "props": {"anything": "any", "mode": {"enum": ["A", "B"]}, "port": "int-or-string",
                  "ports": {"list": {"props": {"number": "integer"}}}, "size": "integer", "tags": {"map": "string"}},
        "required": ["size"]}}}  # fmt: skip
