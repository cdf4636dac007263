"""Lab 09's kind branch in a dry run: the security resources pass Istio's CRD schemas, the edges
(TLS secret, external HTTPS server, calls from outside) are the right commands, trust domain aliases
reach the mesh config, and `down` removes what was started."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshlab.lab import dry_run_lab
from meshlab.backends.kind.backend import EXTERNAL_NAME, KindBackend
from meshlab.backends.kind.istio import primary_iop
from meshlab.backends.kind.schema import validate
from meshlab.errors import LabStateError
from meshlab.jwt import Issuer
from meshlab.topology import parse_topology

ISSUER = Issuer("https://issuer.meshlab.example")
RESOURCES = f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: hello-only-frontend}}
spec:
  selector: {{matchLabels: {{app: helloworld}}}}
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/frontend/sa/curl]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-healthz}}
spec:
  selector: {{matchLabels: {{app: helloworld}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: [/healthz]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ingress-jwt, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules: [{{issuer: "{ISSUER.iss}", jwks: '{ISSUER.jwks()}'}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: hello-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 443, name: https, protocol: HTTPS}}, hosts: [hello.example.com], tls: {{mode: SIMPLE, credentialName: hello-credential}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: hello-ingress}}
spec:
  hosts: [hello.example.com]
  gateways: [hello-gateway]
  http: [{{route: [{{destination: {{host: helloworld}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: external}}
spec: {{host: external.meshlab.test, trafficPolicy: {{tls: {{mode: SIMPLE, credentialName: external-ca}}}}}}
"""


def test_lab09_resources_apply_on_kind_with_strict_schemas(tmp_path: Path) -> None:
    lab = dry_run_lab("flat-network", tmp_path, samples=True)
    docs = list(yaml.safe_load_all(RESOURCES))
    lab.apply(docs, "cluster1")
    [step] = lab.backend.recorded.find(tag="apply")[-1:]
    assert [d["kind"] for d in step.manifests] == [d["kind"] for d in docs]
    assert lab.backend.recorded.problems() == []
    bad = {**docs[1], "spec": {"action": "SOMETIMES"}}
    with pytest.raises(Exception, match="SOMETIMES"):
        validate(bad)


def test_edges_are_recorded_commands_and_down_removes_the_external_server(tmp_path: Path) -> None:
    lab = dry_run_lab("flat-network", tmp_path, samples=True)
    lab.deploy("istio-ingressgateway", "cluster1")
    assert lab.backend.recorded.find(tag="ingress")[-1].argv[-3:] == ["status", "deployment/istio-ingressgateway", "--timeout=300s"]
    secret = lab.create_tls_secret("hello-credential", ["hello.example.com"], "cluster1")
    create = lab.backend.recorded.find(tag="tls-secret")[-1]
    assert create.argv[-6:] == ["create", "secret", "tls", "hello-credential", f"--cert={secret['cert']}", f"--key={secret['key']}"]
    ext = lab.external_https("external.meshlab.test")
    run = lab.backend.recorded.find(tag="external")[0]
    assert run.argv[:4] == ["docker", "run", "-d", "--name"] and EXTERNAL_NAME in run.argv and "--network" in run.argv
    assert ext["secret"] == "external-ca"
    patches = [s for s in lab.backend.recorded.find(tag="dns-capture") if "patch" in s.argv]
    assert {s.cluster for s in patches} == {"cluster1", "cluster2"}  # the curls resolve external.meshlab.test through Istio's DNS proxy
    assert "ISTIO_META_DNS_CAPTURE" in patches[0].argv[-1]
    assert len([s for s in lab.backend.recorded.find(tag="tls-secret") if "generic" in s.argv]) == 2  # the CA in both clusters
    with pytest.raises(LabStateError, match="dry run"):
        lab.call_from_outside("https://hello.example.com/hello", "cluster1", ca=secret["ca"])
    curl = lab.backend.recorded.find(tag="outside-call")[-1]
    # curl in a container on the kind network (Docker Desktop does not route the host to it), the CA on stdin
    assert curl.argv[:2] == ["docker", "run"] and curl.argv[curl.argv.index("--network") + 1] == "kind"
    assert "--resolve 'hello.example.com:443:" in curl.argv[-1] and "--cacert /tmp/ca.pem" in curl.argv[-1]
    assert curl.stdin == Path(secret["ca"]).read_text()
    lab.backend.state.data.setdefault("containers", []).append(EXTERNAL_NAME)
    down = KindBackend.down_plan(lab.backend.state)
    assert any(s.argv == ["docker", "rm", "-f", EXTERNAL_NAME] for s in down.steps)


def test_plaintext_client_calls_from_its_own_namespace(tmp_path: Path) -> None:
    lab = dry_run_lab("flat-network", tmp_path, samples=True)
    lab.deploy("curl", "cluster1", namespace="legacy", sidecar=False)
    with pytest.raises(LabStateError):
        lab.call("curl.legacy", "http://helloworld.sample:5000/hello", "cluster1")
    step = lab.backend.recorded.steps[-1]
    assert step.argv[step.argv.index("-n") + 1] == "legacy" and step.argv[step.argv.index("-c") + 1] == "curl"
    assert "-l app=curl" in step.argv[step.argv.index("exec") + 1]


def test_trust_domain_aliases_reach_the_mesh_config() -> None:
    t = parse_topology({
        "name": "td", "networks": {"n1": {}, "n2": {}},
        "meshes": {"mesh1": {"trustDomain": "cluster1.local", "rootCA": "shared", "trustDomainAliases": ["cluster2.local"]},
                   "mesh2": {"trustDomain": "cluster2.local", "rootCA": "shared", "trustDomainAliases": ["cluster1.local"]}},
        "clusters": {
            "cluster1": {"mesh": "mesh1", "network": "n1", "region": "r1", "zone": "z1", "podCIDR": "10.10.0.0/16", "serviceCIDR": "10.255.10.0/24", "controlPlane": "primary"},
            "cluster2": {"mesh": "mesh2", "network": "n2", "region": "r2", "zone": "z2", "podCIDR": "10.20.0.0/16", "serviceCIDR": "10.255.20.0/24", "controlPlane": "primary"},
        },
    })  # fmt: skip
    iop = primary_iop(t, t.clusters["cluster2"])
    assert iop["spec"]["meshConfig"]["trustDomain"] == "cluster2.local"
    assert iop["spec"]["meshConfig"]["trustDomainAliases"] == ["cluster1.local"]
    validate(iop)
