"""Back to real Istio: every ``lab.*`` view and action the labs use has the command a learner types at work,
shown the same way under the cell that called it (issue 20 item 5)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from meshlab import realcluster
from meshlab.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
# lab.* calls with no kubectl/istioctl counterpart: the lab's own life cycle and meshlab's teaching views
NO_EQUIVALENT = {"down", "status", "diagram", "validate", "discover", "federate", "external_https", "deploy_samples",
                 "state", "topology", "backend", "mesh"}

EXAMPLES: dict[str, dict[str, Any]] = {
    "deploy": {"cluster": "cluster1", "app": "helloworld", "version": "v2"},
    "undeploy": {"cluster": "cluster2", "app": "helloworld"},
    "call": {"cluster": "cluster1", "workload": "curl", "url": "http://helloworld.sample:5000/hello", "n": 3},
    "load": {"cluster": "cluster1", "workload": "curl", "url": "http://helloworld.sample:5000/hello"},
    "endpoints": {"cluster": "cluster1", "workload": "curl", "service": "helloworld"},
    "proxy_status": {"primaries": ["cluster1", "cluster2"]},
    "access_log": {"cluster": "cluster2", "workload": "helloworld", "deployment": "helloworld-v2"},
    "stats": {"cluster": "cluster1", "workload": "curl", "contains": "upstream_rq_retry"},
    "envoy_config": {"cluster": "cluster1", "workload": "curl", "resource": "dynamic_active_clusters"},
    "extension_configs": {"cluster": "cluster1", "workload": "helloworld", "deployment": "helloworld-v1"},
    "agent_log": {"cluster": "cluster1", "workload": "helloworld"},
    "connect": {"cluster": "cluster1", "workload": "curl", "address": "10.20.0.10", "port": 5000},
    "apply": {"cluster": "cluster1", "kinds": ["DestinationRule helloworld"]},
    "delete": {"cluster": "cluster1", "kind": "DestinationRule", "name": "helloworld"},
    "create_pull_secret": {"cluster": "cluster2", "name": "alice", "registry": "hub:5000", "username": "alice"},
    "create_tls_secret": {"cluster": "cluster1", "name": "hello-credential"},
    "kill": {"cluster": "cluster1", "workload": "helloworld", "deployment": "helloworld-v1"},
    "restore": {"cluster": "cluster1", "workload": "helloworld", "deployment": "helloworld-v1"},
    "stop_control_plane": {"cluster": "cluster1"},
    "start_control_plane": {"cluster": "cluster1"},
    "pods": {"clusters": ["cluster1", "cluster2"]},
    "sidecars": {"clusters": ["cluster1"]},
    "remote_clusters": {"cluster": "cluster1"},
    "create_remote_secret": {"cluster": "cluster1", "of": "cluster2"},
    "delete_remote_secret": {"cluster": "cluster1", "of": "cluster2"},
    "set_mesh_config": {"cluster": "cluster1", "keys": ["serviceSettings"]},
    "enable_tracing": {"primaries": ["cluster1", "cluster2"]},
    "traces": {},
    "call_from_outside": {"cluster": "cluster1", "url": "https://hello.example.com/hello", "host": "hello.example.com"},
}


def lab_calls() -> set[str]:
    calls: set[str] = set()
    for path in (ROOT / "labs").glob("[0-9]*.ipynb"):
        for c in nbformat.read(path, 4).cells:
            if c.cell_type == "code":
                calls |= set(re.findall(r"\blab\.([a-z_]+)\b", c.source))
    return calls


def test_every_lab_call_in_the_labs_has_a_real_cluster_command() -> None:
    missing = sorted(lab_calls() - NO_EQUIVALENT - set(EXAMPLES))
    assert not missing, f"lab.* calls in the labs without an equivalent in meshlab.realcluster: {missing}"
    for op, kw in EXAMPLES.items():
        assert realcluster.command(op, **kw), f"no command for lab.{op}"
        assert hasattr(Lab, op), f"EXAMPLES names lab.{op}, which the facade does not have"


def test_the_management_plane_calls_have_theirs_too() -> None:
    for op, kw in {"mesh_discover": {}, "mesh_apply": {"kind": "VirtualMesh", "name": "vm"}, "mesh_delete": {"kind": "AccessPolicy", "name": "a"},
                   "mesh_describe": {"kind": "Destination", "name": "d"}, "mesh_generated": {"clusters": ["cluster1"]}, "mesh_check": {}}.items():
        assert realcluster.command(op, **kw), op
    assert realcluster.command("mesh_apply", kind="VirtualMesh", name="vm") == ['kubectl apply --context="${MGMT_CONTEXT}" -f virtualmesh.yaml   # VirtualMesh vm']


def test_commands_read_like_istios_guides() -> None:
    ep = realcluster.command("endpoints", **EXAMPLES["endpoints"])
    assert ep == ['istioctl proxy-config endpoints deploy/curl.sample --context="${CTX_CLUSTER1}" | grep helloworld']
    deploy = realcluster.command("deploy", **EXAMPLES["deploy"])
    assert deploy[-1] == 'kubectl apply -n sample --context="${CTX_CLUSTER1}" -f samples/helloworld/helloworld.yaml -l version=v2'
    call = realcluster.command("call", **EXAMPLES["call"])[0]
    assert call.startswith("for i in $(seq 3); do kubectl exec -n sample") and "-- curl -sS helloworld.sample:5000/hello" in call
    assert realcluster.command("stats", **EXAMPLES["stats"])[0].endswith("pilot-agent request GET stats | grep 'upstream_rq_retry'")
    assert realcluster.command("access_log", **EXAMPLES["access_log"])[0].startswith("kubectl logs -n sample --context=\"${CTX_CLUSTER2}\" deploy/helloworld-v2")
    assert "namespace" not in realcluster.command("call", cluster="cluster1", workload="curl.legacy", url="http://x")[0]
    assert realcluster.command("access_log", cluster="cluster2", workload="istio-eastwestgateway")[0].startswith(
        'kubectl logs -n istio-system --context="${CTX_CLUSTER2}" deploy/istio-eastwestgateway -c istio-proxy')
    assert " -n legacy " in realcluster.command("call", cluster="cluster1", workload="curl.legacy", url="http://x")[0]
    assert realcluster.command("call", cluster="cluster1", workload="curl", url="http://x/y", method="POST")[0].endswith("-- curl -sS -X POST x/y")


def test_shown_once_per_cell_under_a_live_kernel_and_never_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython
    import IPython.display

    shown: list[Any] = []

    class Shell:
        kernel = object()
        execution_count = 7

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    realcluster.show(["istioctl proxy-status"])
    realcluster.show(["istioctl proxy-status"])  # a loop of calls in one cell: shown once
    Shell.execution_count = 8
    realcluster.show(["istioctl proxy-status"])
    assert [str(s) for s in shown] == ["on a real cluster: istioctl proxy-status"] * 2
    assert "on a real cluster" in shown[0]._repr_html_() and "<code>istioctl proxy-status</code>" in shown[0]._repr_html_()
    monkeypatch.setenv("MESHLAB_REAL_COMMANDS", "0")
    realcluster.show(["kubectl get pods"])
    assert len(shown) == 2
    monkeypatch.delenv("MESHLAB_REAL_COMMANDS")
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # a script, a test, the CLI: nothing is displayed
    realcluster.show(["kubectl get pods"])
    assert len(shown) == 2


AT_WORK = {"02": "flat-network.md", "03": "separate-networks.md", "03b": "multi-primary.md", "04": "separate-control-planes.md",
           "05": "management-plane.md", "06": "separate-networks.md", "06b": "separate-networks.md", "11": "separate-networks.md"}


@pytest.mark.parametrize("lab", sorted(AT_WORK))
def test_each_pattern_ends_with_a_do_this_at_work_page(lab: str) -> None:
    """The lab links its page, and the page uses the very commands the lab printed (from the same helper)."""
    page = ROOT / "docs" / "at-work" / AT_WORK[lab]
    text = page.read_text()
    nb = next((ROOT / "labs").glob(f"{lab}-*.ipynb"))
    assert f"../docs/at-work/{AT_WORK[lab]}" in "\n".join(c.source for c in nbformat.read(nb, 4).cells), f"lab {lab} must link {page.name}"
    assert AT_WORK[lab] in (ROOT / "docs" / "at-work" / "README.md").read_text()
    if lab != "05":  # the management plane's page inspects generated objects instead
        assert realcluster.command("endpoints", cluster="cluster1", workload="curl", service="helloworld")[0] in text
        assert realcluster.command("proxy_status", primaries=["cluster1"])[0] in text
    assert not re.search(r"\]\((?!https://|[a-z-]+\.md\b|\.\./)", text), "links: public URLs or pages of docs/ only"
