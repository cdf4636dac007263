"""Lab 10's faults on the local backend: each shows the symptom a real cluster shows, a wrong fix is refused
by traffic and the right one accepted, and the mystery round (several seeds, covering every fault of its
pool) is graded the same way."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab import dataplane, faults
from meshlab.errors import MeshlabError
from meshlab.lab import Lab

pytestmark = pytest.mark.integration
URL = faults.URL
netns_only = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs network namespaces (root)")
SEEDS = (0, 2, 3)  # together: every fault of the mystery pool, rounds of two and of three


@pytest.fixture(scope="module")
def lab(module_home: Path) -> Iterator[Lab]:
    lab = dataplane.access_logs_on(Lab.up("separate-networks", samples=True, home_dir=module_home, quiet=True))
    yield lab
    lab.down(quiet=True)


def healthy(lab: Lab) -> bool:
    return faults._works(lab, faults.FAULTS["expose-services"])  # both clusters answer, from either side


@netns_only
def test_network_label_fault_black_holes_the_remote_pod_ip_connect_times_out(lab: Lab) -> None:
    """Istio's symptom: a remote pod IP across networks leads nowhere, so the calls sent there hang until the
    client gives up (5 s) and the sidecar logs DC; no retry hides it, unlike a refused connection."""
    remote_ip = lab.backend.find("helloworld", "cluster2").ip
    faults.inject(lab, "network-label")
    try:
        r = faults.call_until_one_fails(lab, "cluster1")
        slow = [a for a in r.answers if not a.ok]
        assert slow and all(a.seconds >= 4.5 for a in slow), [(a.status, a.seconds) for a in r.answers]
        log = list(lab.access_log("curl", "cluster1", last=len(r.answers)))
        assert {e["flags"] for e in log if e["upstream_host"] == f"{remote_ip}:5000"} == {"DC"}, log
        assert lab.connect("curl", "cluster1", remote_ip, 5000) == "refused: timed out"
        assert not faults.fixed(lab, "network-label", "network1"), "cluster2 is not on network1"
    finally:
        assert faults.fixed(lab, "network-label", "network2")
    assert healthy(lab)


@pytest.mark.parametrize("name, wrong", [
    ("expose-services", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: cross-network-gateway, namespace: istio-system}\n"
                        "spec:\n  selector: {istio: eastwestgateway}\n  servers:\n"
                        "  - {port: {number: 15443, name: tls, protocol: TLS}, tls: {mode: AUTO_PASSTHROUGH}, hosts: ['*.svc.example']}"),
    ("subset-typo", {"app": "helloworld"}),
    ("authz-deny", "cluster.local/ns/sample/sa/helloworld"),
])
def test_a_wrong_fix_is_refused_by_traffic_and_the_right_one_accepted(lab: Lab, name: str, wrong: object) -> None:
    faults.inject(lab, name)
    try:
        assert not faults.fixed(lab, name, wrong)
        assert not faults.fixed(lab, name, wrong), "a second wrong try is refused the same way"
    finally:
        assert faults.fixed(lab, name, faults.solution(lab, name))
        faults.clean_up(lab, name)
    assert healthy(lab)


def test_values_that_cannot_be_fixes_are_refused_with_the_fix_named(lab: Lab) -> None:
    for name, value, message in [
        ("expose-services", {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                             "metadata": {"name": "x", "namespace": "sample"}, "spec": {"host": "x"}}, "expected one Gateway"),
        ("network-label", "topology.istio.io/network=network2", "not a label value"),
        ("subset-typo", "", "not a set of labels"),
        ("authz-deny", "cluster.local/ns/sample/sa/*", "wildcard"),
        ("max-ejection", "100", "not a percentage"),
    ]:
        with pytest.raises(MeshlabError, match=message):
            faults.fixed(lab, name, value)


@pytest.mark.parametrize("seed", SEEDS)
def test_mystery_round_is_graded_by_traffic(lab: Lab, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    mystery = faults.Mystery(lab, seed)
    assert 2 <= len(mystery.names) <= 3 and faults.Mystery(lab, seed).names == mystery.names, "stable per seed"
    assert not any(n in repr(mystery) for n in faults.FAULTS), "the mystery never names its faults"
    mystery.inject()
    out = capsys.readouterr().out
    assert not any(n in out for n in faults.FAULTS), out
    try:
        first_checked = sorted(mystery.names, key=lambda n: n != "network-label")[0]  # as grade() checks them
        assert not faults.FAULTS[first_checked].works(lab), f"{mystery.names} should break the mesh"
        solution = mystery.solution()
        first, *rest = mystery.names
        assert not mystery.grade({first: solution[first]}), "one fault fixed of several is not done"
        decoy = next(n for n in faults.MYSTERY_POOL if n not in mystery.names)
        assert not mystery.grade({**solution, decoy: faults.solution(lab, decoy)}), "a fault that is not there is a wrong diagnosis"
    finally:
        assert mystery.grade(mystery.solution())
        mystery.clean_up()
    assert healthy(lab)
