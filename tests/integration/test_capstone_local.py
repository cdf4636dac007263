"""Lab 11's incident on the local backend: one unnamed fault of ``faults.INCIDENT_POOL``, on a mesh already secured
(STRICT mTLS, an ALLOW policy for curl on GET /hello) and extended (add-header from the hub on helloworld, as the
capstone's learner builds it). Over seeds that together pick every fault of the pool, a wrong diagnosis is refused
by traffic, the right one accepted, and afterwards the policy and the filter still hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab import faults
from meshlab.dataplane import access_logs_on
from meshlab.lab import Lab
from meshlab.wasm.publish import publish, wasm_plugin

pytestmark = pytest.mark.integration
URL = faults.URL
SEEDS = (0, 1, 4, 20)  # subset-typo, network-label, expose-services, wasm-digest
SECURE = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: helloworld-viewers, namespace: sample}
spec:
  selector: {matchLabels: {app: helloworld}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/sample/sa/curl"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/hello"]}}]
"""


@pytest.fixture(scope="module")
def lab(module_home: Path) -> Iterator[Lab]:
    lab = access_logs_on(Lab.up("separate-networks", samples=True, home_dir=module_home, quiet=True))
    lab.deploy("curl", cluster="cluster1", namespace="frontend")
    lab.apply(SECURE, cluster="cluster1")
    pushed = publish(lab, "add-header", "wasm/add-header:capstone")
    lab.apply(wasm_plugin("team-header", pushed, {"app": "helloworld"}, {"name": "x-team", "value": "hello"}), cluster="cluster1")
    assert secured_and_extended(lab)
    yield lab
    lab.down(quiet=True)


def secured_and_extended(lab: Lab) -> bool:
    """curl in both clusters: answered by both, every answer with x-team; another identity: 403."""
    for c in ("cluster1", "cluster2"):
        r = lab.call("curl", URL, cluster=c, n=20)
        if r.errors or r.clusters != {"cluster1", "cluster2"} or {a.headers.get("x-team") for a in r.answers} != {"hello"}:
            return False
    return {a.status for a in lab.call("curl.frontend", URL, cluster="cluster1", n=4).answers} == {403}


def test_the_seeds_pick_every_fault_of_the_pool() -> None:
    assert {faults.pick(s, faults.INCIDENT_POOL, (1,))[0] for s in SEEDS} == set(faults.INCIDENT_POOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_incident_is_graded_by_traffic_and_leaves_the_policy_and_filter(lab: Lab, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    incident = faults.Mystery(lab, seed, faults.INCIDENT_POOL, sizes=(1,))
    [name] = incident.names
    incident.inject()
    assert not any(n in capsys.readouterr().out for n in faults.FAULTS), "the incident is not named"
    try:
        assert not faults.FAULTS[name].works(lab), f"{name} should break the secured mesh"
        decoy = next(n for n in faults.INCIDENT_POOL if n != name)
        assert not incident.grade({decoy: faults.solution(lab, decoy)}), "a fault that is not there is a wrong diagnosis"
    finally:
        assert incident.grade(incident.solution())
        incident.clean_up()
    assert secured_and_extended(lab), "after the incident: the policy and the filter still hold"
