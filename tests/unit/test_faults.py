"""meshlab.faults on the kind backend (dry run: every command recorded, manifests strictly valid), the
proxy-status parser, and the Gateway shape the local backend accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshlab import faults
from meshlab.lab import dry_run_lab
from meshlab.backends.kind.backend import parse_sync_rows
from meshlab.errors import MeshlabError, ResourceError
from meshlab.federation import expose_services_gateway
from meshlab.resources import parse


@pytest.fixture
def kind_lab(tmp_path: Path):  # type: ignore[no-untyped-def]
    return dry_run_lab("separate-networks", tmp_path)


def commands(lab, tag: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    return [" ".join(s.argv) for s in lab.backend.recorded if s.argv and (tag is None or tag in s.tags)]


def new_steps(lab, before: int) -> list:  # type: ignore[no-untyped-def]
    return list(lab.backend.recorded)[before:]


def test_network_label_fault_unlabels_the_remote_network_and_the_repair_puts_it_back(kind_lab) -> None:  # type: ignore[no-untyped-def]
    n = len(list(kind_lab.backend.recorded))
    faults.inject(kind_lab, "network-label")
    faults.repair(kind_lab, "network-label")
    argvs = [s.argv for s in new_steps(kind_lab, n) if "network-label" in s.tags]
    # istiod reads the pod's label before the namespace's (controller.go Network()), and the injector of a
    # cluster installed with a network labels every pod (webhook.go applyMetadata): both change, both come back
    pods = ["kubectl", "--context", "kind-cluster2", "-n", "sample", "label", "pods", "-l", "security.istio.io/tlsMode=istio"]
    assert argvs == [
        ["kubectl", "--context", "kind-cluster2", "label", "namespace", "istio-system", "topology.istio.io/network-", "--overwrite"],
        [*pods, "topology.istio.io/network-", "--overwrite"],
        ["kubectl", "--context", "kind-cluster2", "label", "namespace", "istio-system", "topology.istio.io/network=network2", "--overwrite"],
        [*pods, "topology.istio.io/network=network2", "--overwrite"],
    ]
    assert kind_lab.backend.recorded.problems() == []


def test_expose_services_fault_deletes_the_gateway_in_the_primary_and_the_repair_applies_it(kind_lab) -> None:  # type: ignore[no-untyped-def]
    n = len(list(kind_lab.backend.recorded))
    faults.inject(kind_lab, "expose-services")
    faults.repair(kind_lab, "expose-services")
    steps = [s for s in new_steps(kind_lab, n) if s.argv and s.argv[0] == "kubectl"]
    assert steps[0].argv == ["kubectl", "--context", "kind-cluster1", "-n", "istio-system", "delete", "gateway",
                             "cross-network-gateway", "--ignore-not-found"]
    [apply] = [s for s in steps if "apply" in s.argv]
    assert apply.argv[:3] == ["kubectl", "--context", "kind-cluster1"] and apply.manifests == [expose_services_gateway()]
    assert kind_lab.backend.recorded.problems() == []


@pytest.mark.parametrize("name, wrong, right", [
    ("subset-typo", "version: '2'", "version: v2"),
    ("max-ejection", "maxEjectionPercent: 10", "maxEjectionPercent: 100"),
    ("authz-deny", "cluster.local/ns/default/sa/curl", "cluster.local/ns/sample/sa/curl"),
])
def test_resource_faults_apply_the_mistake_and_the_repair_applies_the_fix(kind_lab, name: str, wrong: str, right: str) -> None:  # type: ignore[no-untyped-def]
    n = len(list(kind_lab.backend.recorded))
    faults.inject(kind_lab, name)
    faults.repair(kind_lab, name)
    applied = [s.command_text() for s in new_steps(kind_lab, n) if "apply" in s.tags]
    assert len(applied) == 2 and wrong in applied[0] and right in applied[1], applied
    assert kind_lab.backend.recorded.problems() == []


def test_two_roots_recuts_cacerts_restarts_istiod_then_the_workloads(tmp_path: Path) -> None:
    lab = dry_run_lab("separate-control-planes", tmp_path)
    n = len(list(lab.backend.recorded))
    faults.inject(lab, "two-roots")
    steps = new_steps(lab, n)
    [pki] = [s for s in steps if "pki" in s.tags]
    assert pki.args["clusters"] == {"cluster2": "other-root"}
    argvs = [s.argv for s in steps if s.argv]
    create = next(a for a in argvs if a[3:6] == ["create", "secret", "generic"])
    assert create[:3] == ["kubectl", "--context", "kind-cluster2"] and any("/other-root/cluster2/cacerts/" in a for a in create)
    order = [" ".join(a[3:6]) for a in argvs if "rollout" in a or "create" in a]
    assert order.index("create secret generic") < order.index("-n istio-system rollout") < order.index("-n sample rollout"), order
    faults.repair(lab, "two-roots")
    [_, back] = [s for s in lab.backend.recorded if "pki" in s.tags][-2:]
    assert back.args["clusters"] == {"cluster2": lab.topology.meshes["mesh2"].root_ca}
    assert lab.backend.recorded.problems() == []
    with pytest.raises(MeshlabError, match="one control plane"):
        faults.inject(dry_run_lab("separate-networks", tmp_path / "other"), "two-roots")


def test_wasm_digest_pushes_the_module_and_applies_the_plugin_with_a_wrong_then_the_right_digest(kind_lab) -> None:  # type: ignore[no-untyped-def]
    from meshlab.wasm.hub import Hub

    try:
        n = len(list(kind_lab.backend.recorded))
        faults.inject(kind_lab, "wasm-digest")
        faults.repair(kind_lab, "wasm-digest")
        hub = Hub.running()
        assert hub is not None, "the module is published in the hub, as in lab 08"
        digest = hub.pull("wasm/header-metric:v1", user="alice").digest.split(":", 1)[1]
    finally:
        Hub.down_all()
    steps = new_steps(kind_lab, n)
    applied = [s.manifests[0]["spec"] for s in steps if "apply" in s.tags and s.manifests and s.manifests[0]["kind"] == "WasmPlugin"]
    assert [a["sha256"] for a in applied] == [faults.OLD_DIGEST, digest]
    assert all(a["url"].startswith("oci://") for a in applied) and [s for s in steps if "wasm-push" in s.tags]
    assert kind_lab.backend.recorded.problems() == []


def test_unknown_fault_and_single_network_pattern_are_refused(tmp_path: Path) -> None:
    lab = dry_run_lab("flat-network", tmp_path)
    with pytest.raises(MeshlabError, match="no fault named 'nope'"):
        faults.inject(lab, "nope")
    with pytest.raises(MeshlabError, match="has one network"):
        faults.inject(lab, "network-label")


def test_proxy_status_rows_name_each_xds_type() -> None:
    syncz = {"resources": [{
        "node": {"id": "curl-1.sample", "metadata": {"CLUSTER_ID": "cluster1"}},
        "genericXdsConfigs": [
            {"typeUrl": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "configStatus": "SYNCED"},
            {"typeUrl": "type.googleapis.com/envoy.config.listener.v3.Listener", "configStatus": "STALE"},
            {"typeUrl": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "configStatus": "NOT_SENT"},
        ],
    }]}
    out = json.dumps(syncz) + "\n" + json.dumps({"resources": []})  # one document per istiod replica
    assert parse_sync_rows(out) == [{"NAME": "curl-1.sample", "CLUSTER": "cluster1", "CDS": "SYNCED", "LDS": "STALE",
                                     "EDS": "NOT SENT", "RDS": "NOT SENT", "ECDS": "NOT SENT"}]


def test_the_local_backend_accepts_expose_services_and_refuses_other_gateways() -> None:
    assert parse(expose_services_gateway())[0]["kind"] == "Gateway"
    tcp = expose_services_gateway()  # (HTTP and HTTPS servers are an ingress gateway's: tests/parity/test_edges.py)
    tcp["spec"]["servers"][0]["port"]["protocol"] = "TCP"
    with pytest.raises(ResourceError, match=r"spec.servers\[0\].port.protocol='TCP' is not supported"):
        parse(tcp)
    mutual = expose_services_gateway()
    mutual["spec"]["servers"][0]["tls"]["mode"] = "MUTUAL"
    with pytest.raises(ResourceError, match="AUTO_PASSTHROUGH"):
        parse(mutual)


def test_the_mystery_picks_two_or_three_faults_per_seed_and_names_none(kind_lab, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    picks = {seed: faults.pick(seed) for seed in range(40)}
    assert all(2 <= len(p) <= 3 and len(set(p)) == len(p) and set(p) <= set(faults.MYSTERY_POOL) for p in picks.values())
    assert {len(p) for p in picks.values()} == {2, 3} and set().union(*picks.values()) == set(faults.MYSTERY_POOL)
    assert faults.pick("learner07@room") == faults.pick("learner07@room"), "stable for one learner"
    assert len({tuple(faults.pick(f"learner{i:02}@room")) for i in range(20)}) > 5, "neighbours get other faults"
    mystery = faults.Mystery(kind_lab, 3)
    assert mystery.names == faults.pick(3) and not any(n in repr(mystery) for n in faults.FAULTS)
    mystery.inject()  # on kind: the operators' commands, recorded by the dry run
    assert not any(n in capsys.readouterr().out for n in faults.FAULTS)
    with pytest.raises(MeshlabError, match="not a dict of diagnoses"):
        mystery.grade("network-label")
    with pytest.raises(MeshlabError, match="no fault named 'typo'"):
        mystery.grade({"typo": 1})
    assert kind_lab.backend.recorded.problems() == []


def test_the_capstone_incident_is_one_unnamed_fault_of_its_pool(kind_lab, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """Lab 11: one fault per seed, from the faults that leave a secured, extended mesh's own resources alone."""
    picks = {seed: faults.pick(seed, faults.INCIDENT_POOL, (1,)) for seed in range(40)}
    assert all(len(p) == 1 for p in picks.values()) and {p[0] for p in picks.values()} == set(faults.INCIDENT_POOL)
    assert "authz-deny" not in faults.INCIDENT_POOL, "beside the learner's ALLOW policy for curl it would deny nothing"
    incident = faults.Mystery(kind_lab, 20, faults.INCIDENT_POOL, sizes=(1,))
    assert incident.names == ["wasm-digest"] and repr(incident) == "<mystery: 1 fault, seed 20>"
    incident.inject()
    out = capsys.readouterr().out
    assert out.startswith("1 fault injected") and not any(n in out for n in faults.FAULTS), out
    with pytest.raises(MeshlabError, match="faults: expose-services, network-label, subset-typo, wasm-digest"):
        incident.grade({"typo": 1})
    for pool, sizes in ((("no-such-fault",), (1,)), (faults.INCIDENT_POOL, (5,)), (faults.INCIDENT_POOL, ())):
        with pytest.raises(MeshlabError, match="cannot pick"):
            faults.Mystery(kind_lab, 1, pool, sizes)
    assert kind_lab.backend.recorded.problems() == []
