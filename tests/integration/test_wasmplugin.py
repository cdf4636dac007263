"""Istio's WasmPlugin on the local backend, with real Envoy sidecars and modules pulled from the real hub.

One lab of pattern 2 (shared control plane, separate networks: one control plane serves both
clusters) and one hub for the module; each test applies its WasmPlugins and deletes them again.
Also: the kind backend's dry run of the same apply (the module push and the rewritten resource).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshlab.backends.local import net, procs
from meshlab.errors import MeshlabError, ResourceError
from meshlab.lab import Lab
from meshlab.state import prefix_for
from meshlab.wasm.build import build_once, filters
from meshlab.wasm.deploy import signature
from meshlab.wasm.handmade import write_crashing_filter
from meshlab.wasm.hub import Hub

pytestmark = pytest.mark.integration
FILTERS = {f.name: f for f in filters()}
URL = "http://helloworld.sample:5000/hello"
KEYS = ["key-alice-1234", "key-bob-5678"]


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="mlwp"))
    yield d
    Lab.down_all(d, quiet=True)
    Hub.down_all(d / "hub")
    assert not net.existing_namespaces(prefix_for(d)), "namespaces left behind"


@pytest.fixture(scope="module")
def lab(home: Path) -> Iterator[Lab]:
    lab = Lab.up("separate-networks", samples=True, home_dir=home, quiet=True)
    yield lab
    lab.down(quiet=True)


@pytest.fixture(scope="module")
def hub(home: Path) -> Iterator[Hub]:
    h = Hub.up(home / "hub")  # beside the lab's state: the lab's agent finds its CA and pull secrets there
    h.add_user("alice", "alice-pw")
    yield h
    h.down()


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return {n: build_once(FILTERS[n].dir).wasm for n in ("add-header", "api-key", "abi-tour")}


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    yield lab
    for r in list(lab.state.data.get("resources", [])):
        kind, ns, name = r["key"]
        lab.delete(kind, name, cluster="cluster1", namespace=ns)


def wasmplugin(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": name}, "spec": {"url": url, **spec}}


def wasm_filters(lab: Lab, app: str, cluster: str) -> dict[str, list[tuple[str, ...]]]:
    """What Envoy itself runs: the wasm filters of each active listener of the workload's sidecar."""
    dump = lab.envoy_config(app, cluster, "dynamic_listeners")
    return signature([c.get("active_state", {}).get("listener", {}) for c in dump.get("configs", [])])


def envoy_pids(lab: Lab) -> dict[str, tuple[int, int]]:
    return {p["name"]: (p["pid"], p["start_time"]) for p in lab.state.data["processes"] if p["name"].endswith("/envoy")}


def headers_by_version(lab: Lab, cluster: str, header: str, n: int = 12) -> dict[str, set[str | None]]:
    r = lab.call("curl", URL, cluster=cluster, n=n)
    assert r.errors == 0, r.tally
    out: dict[str, set[str | None]] = {}
    for a in r.answers:
        out.setdefault(a.version, set()).add(a.headers.get(header))
    return out


def lds_files(lab: Lab) -> dict[str, str]:
    run = Path(lab.state.data["run_dir"])
    return {str(p): p.read_text() for p in sorted(run.glob("proxies/*/xds/lds.json"))}


# ---- selection --------------------------------------------------------------------------------------
def test_wasmplugin_changes_only_the_selected_workload(clean: Lab, hub: Hub, built: dict[str, Path]) -> None:
    lab = clean
    pushed = hub.push(built["add-header"], "wasm/add-header:v1", user="alice")
    out = lab.apply(wasmplugin(
        "add-header", pushed.url, selector={"matchLabels": {"app": "helloworld", "version": "v1"}}, pluginName="add_header",
        imagePullSecret="alice", sha256=pushed.digest.split(":", 1)[1], pluginConfig={"name": "x-hello", "value": "from the hub"},
    ), cluster="cluster1")  # fmt: skip
    assert "fetched from " + hub.address in out[0]
    for caller in ("cluster1", "cluster2"):  # answers of v1 (cluster1) carry the header, v2's (cluster2) do not
        assert headers_by_version(lab, caller, "x-hello") == {"v1": {"from the hub"}, "v2": {None}}
    v1 = wasm_filters(lab, "helloworld-v1", "cluster1")
    inbound = [name for name in v1 if name.endswith("_5000")]
    assert [f[0] for f in v1[inbound[0]]] == ["sample.add-header"]
    assert v1["virtualOutbound"] and v1["virtualOutbound"][0][0] == "sample.add-header"  # no `match`: outbound too, as istiod
    for app, cluster in (("helloworld-v2", "cluster2"), ("curl", "cluster1"), ("curl", "cluster2")):
        assert not any(wasm_filters(lab, app, cluster).values()), f"{app} in {cluster} was not selected"
    module = lab.state.data["wasm_modules"]["cluster1|sample/add-header"]
    assert Path(module["path"]).read_bytes() == built["add-header"].read_bytes()  # cached by checksum under the run dir
    assert Path(module["path"]).name == pushed.digest.split(":", 1)[1] + ".wasm"
    assert lab.validate() >= 6  # every proxy config, wasm filter included, passes envoy --mode validate
    lab.delete("WasmPlugin", "add-header", cluster="cluster1")
    assert headers_by_version(lab, "cluster1", "x-hello") == {"v1": {None}, "v2": {None}}


def test_wrong_sha256_is_refused_and_nothing_changes(clean: Lab, hub: Hub, built: dict[str, Path]) -> None:
    lab = clean
    pushed = hub.push(built["add-header"], "wasm/add-header:v1", user="alice")
    lds, resources = lds_files(lab), json.dumps(lab.state.data.get("resources", []))
    wasm_sha = pushed.wasm_sha256.split(":", 1)[1]  # the sha256 of the .wasm file: not what oci:// compares
    with pytest.raises(ResourceError) as e:
        lab.apply(wasmplugin("add-header", pushed.url, imagePullSecret="alice", pluginName="add_header", sha256=wasm_sha,
                             pluginConfig={"name": "x-hello", "value": "never"}), cluster="cluster1")  # fmt: skip
    assert f"has checksum {pushed.digest.split(':', 1)[1]}, which does not match: {wasm_sha}" in e.value.message
    assert "manifest* digest" in (e.value.hint or "") and "sha256 of the .wasm file" in (e.value.hint or "")
    assert lds_files(lab) == lds, "a refused WasmPlugin must not touch any proxy"
    assert json.dumps(lab.state.data.get("resources", [])) == resources
    assert headers_by_version(lab, "cluster1", "x-hello") == {"v1": {None}, "v2": {None}}


def test_fetch_errors_name_the_problem(clean: Lab, hub: Hub, built: dict[str, Path]) -> None:
    lab = clean
    pushed = hub.push(built["add-header"], "wasm/add-header:errors", user="alice")  # a tag no earlier apply has cached
    with pytest.raises(ResourceError, match="refused an anonymous request"):
        lab.apply(wasmplugin("a", pushed.url, pluginName="add_header"), cluster="cluster1")
    with pytest.raises(ResourceError, match="imagePullSecret 'nobody' is not known"):
        lab.apply(wasmplugin("a", pushed.url, pluginName="add_header", imagePullSecret="nobody"), cluster="cluster1")
    with pytest.raises(ResourceError, match="pluginName 'addheader' is not a root id of this module"):
        lab.apply(wasmplugin("a", pushed.url, pluginName="addheader", imagePullSecret="alice"), cluster="cluster1")
    with pytest.raises(ResourceError, match="no image"):
        lab.apply(wasmplugin("a", hub.url("wasm/add-header:v404"), pluginName="add_header", imagePullSecret="alice"), cluster="cluster1")
    with pytest.raises(ResourceError, match="not a proxy-wasm filter"):
        bad = built["add-header"].parent / "not-proxy-wasm.wasm"
        bad.write_bytes(b"\0asm\x01\0\0\0")
        lab.apply(wasmplugin("a", f"file://{bad}"), cluster="cluster1")
    assert not lab.state.data.get("resources")


# ---- rollout ----------------------------------------------------------------------------------------
def test_a_new_tag_rolls_out_without_restarting_any_sidecar(clean: Lab, hub: Hub, built: dict[str, Path]) -> None:
    lab = clean
    v1 = hub.push(built["add-header"], "wasm/add-header:v1", user="alice")
    v2 = hub.push(built["add-header"], "wasm/add-header:v2", user="alice", variant="compat")  # another image of the module
    v3 = hub.push(built["abi-tour"], "wasm/abi-tour:v3", user="alice")  # a different module
    sel = {"matchLabels": {"app": "helloworld"}}
    lab.apply(wasmplugin("hello", v1.url, selector=sel, pluginName="add_header", imagePullSecret="alice",
                         pluginConfig={"name": "x-hello", "value": "v1"}), cluster="cluster1")  # fmt: skip
    assert headers_by_version(lab, "cluster1", "x-hello") == {"v1": {"v1"}, "v2": {"v1"}}
    pids = envoy_pids(lab)
    vm_before = wasm_filters(lab, "helloworld-v1", "cluster1")["virtualOutbound"][0][1]
    lab.apply(wasmplugin("hello", v2.url, selector=sel, pluginName="add_header", imagePullSecret="alice",
                         pluginConfig={"name": "x-hello", "value": "v2"}), cluster="cluster1")  # fmt: skip
    assert headers_by_version(lab, "cluster1", "x-hello") == {"v1": {"v2"}, "v2": {"v2"}}  # every answer: the rollout is complete
    lab.apply(wasmplugin("hello", v3.url, selector=sel, pluginName="abi_tour", imagePullSecret="alice",
                         pluginConfig={"greeting": "v3"}), cluster="cluster1")  # fmt: skip
    seen = headers_by_version(lab, "cluster2", "x-abi-tour-callbacks")
    assert all(v and None not in v for v in seen.values()), seen
    assert headers_by_version(lab, "cluster2", "x-hello") == {"v1": {None}, "v2": {None}}
    vm_after = wasm_filters(lab, "helloworld-v1", "cluster1")["virtualOutbound"][0][1]
    assert vm_before != vm_after and vm_after.startswith("sample.hello@")  # a new module, a fresh VM
    assert envoy_pids(lab) == pids, "a sidecar was restarted"
    assert all(procs.is_alive(p) for p in lab.state.data["processes"] if p["name"].endswith("/envoy"))


def test_fail_close_answers_503_fail_open_skips_the_broken_filter(clean: Lab, tmp_path: Path) -> None:
    lab = clean
    crash = write_crashing_filter(tmp_path / "crash.wasm")  # traps in proxy_on_request_headers
    sel = {"matchLabels": {"app": "helloworld"}}
    lab.apply(wasmplugin("crash", f"file://{crash}", selector=sel, failStrategy="FAIL_CLOSE"), cluster="cluster1")
    r = lab.call("curl", URL, cluster="cluster1", n=6)
    assert [a.status for a in r.answers] == [503] * 6, r.tally
    lab.apply(wasmplugin("crash", f"file://{crash}", selector=sel, failStrategy="FAIL_OPEN"), cluster="cluster1")
    r = lab.call("curl", URL, cluster="cluster1", n=8)
    assert [a.status for a in r.answers[-6:]] == [200] * 6, r.tally  # the crashed VM is bypassed
    config = wasm_filters(lab, "helloworld-v2", "cluster2")
    assert {f[3] for fs in config.values() for f in fs} == {"FAIL_OPEN"}


def test_a_module_envoy_refuses_is_rolled_back(clean: Lab, built: dict[str, Path]) -> None:
    """api-key refuses a configuration without keys (proxy_on_configure returns false): Envoy rejects the
    listener, meshlab puts the previous configuration back and says why."""
    lab = clean
    sel = {"matchLabels": {"app": "helloworld"}}
    lds = lds_files(lab)
    with pytest.raises(ResourceError) as e:
        lab.apply(wasmplugin("key", f"file://{built['api-key']}", selector=sel, pluginName="api_key", pluginConfig={"keys": []}), cluster="cluster1")
    assert "rejected its new configuration" in e.value.message
    assert lds_files(lab).keys() == lds.keys() and not lab.state.data.get("resources")
    assert headers_by_version(lab, "cluster1", "x-hello") == {"v1": {None}, "v2": {None}}


# ---- across clusters --------------------------------------------------------------------------------
def test_api_key_enforced_in_both_clusters_from_one_control_plane(clean: Lab, hub: Hub, built: dict[str, Path]) -> None:
    lab = clean
    pushed = hub.push(built["api-key"], "wasm/api-key:v1", user="alice")
    lab.apply(wasmplugin("api-key", pushed.url, selector={"matchLabels": {"app": "helloworld"}}, pluginName="api_key",
                         imagePullSecret="alice", phase="AUTHN", pluginConfig={"keys": KEYS}), cluster="cluster1")  # fmt: skip
    for caller in ("cluster1", "cluster2"):
        r = lab.call("curl", URL, cluster=caller, n=10)
        assert {a.status for a in r.answers} == {401} and all("missing API key" in a.body for a in r.answers)
        r = lab.call("curl", URL, cluster=caller, n=10, headers={"x-api-key": KEYS[1]})
        assert r.errors == 0 and r.versions == {"v1", "v2"}, r.tally  # both clusters answer, with the key
        r = lab.call("curl", URL, cluster=caller, n=4, headers={"x-api-key": "guess"})
        assert {a.status for a in r.answers} == {401}
    # cluster2 has no control plane: its sidecars got the plugin from cluster1's
    assert lab.stats("helloworld-v2", "cluster2", "wasm.envoy.wasm.runtime.v8.active")


def test_unsupported_wasmplugin_fields_are_refused_by_name(lab: Lab) -> None:
    for spec, field in (({"targetRefs": [{"kind": "Service", "name": "helloworld"}]}, "spec.targetRefs"),
                        ({"vmConfig": {"env": [{"name": "A"}]}}, "spec.vmConfig"),
                        ({"type": "NETWORK"}, "spec.type='NETWORK'")):  # fmt: skip
        with pytest.raises(ResourceError) as e:
            lab.apply(wasmplugin("x", "file:///x.wasm", **spec), cluster="cluster1")
        assert field in e.value.message and "not supported by the local backend" in e.value.message


# ---- the kind backend -------------------------------------------------------------------------------
def test_kind_dry_run_shows_the_module_push_and_the_wasmplugin_apply(tmp_path: Path, built: dict[str, Path]) -> None:
    from meshlab.backends.kind import KindBackend
    from meshlab.state import State
    from meshlab.topology import load_topology
    from meshlab.wasm import oci

    st = State(tmp_path)
    KindBackend.create(load_topology("separate-networks"), st, samples=True, dry_run=True, progress=None)
    st.save()
    kind = Lab.attach(tmp_path)
    recorded = kind.backend.executor.recorded  # type: ignore[union-attr]
    before = len(recorded)
    module = built["add-header"]
    sha = __import__("hashlib").sha256(module.read_bytes()).hexdigest()
    out = kind.apply(wasmplugin("add-header", f"file://{module}", selector={"matchLabels": {"app": "helloworld", "version": "v1"}},
                                pluginName="add_header", sha256=sha, pluginConfig={"name": "x-hello", "value": "kind"}), cluster="cluster2")  # fmt: skip
    assert out == ["wasmplugin/add-header not applied: dry run (recorded)"]
    steps = recorded.steps[before:]
    push = [s for s in steps if "wasm-push" in s.tags]
    apply = [s for s in steps if "apply" in s.tags]
    assert len(push) == 1 and len(apply) == 1 and steps.index(push[0]) < steps.index(apply[0])
    assert push[0].call == "wasm_push" and push[0].args["target"] == f"localhost:5001/wasm/add-header:sha-{sha[:12]}"
    [doc] = apply[0].manifests
    assert apply[0].argv[:3] == ["kubectl", "--context", "kind-cluster1"]  # istiod of cluster1 serves cluster2
    assert doc["spec"]["url"] == f"oci://meshlab-registry:5000/wasm/add-header:sha-{sha[:12]}"
    assert doc["spec"]["sha256"] == oci.package(module, ["add_header"]).digest.split(":", 1)[1]  # the manifest digest now
    assert "apiVersion: extensions.istio.io/v1alpha1" in apply[0].command_text()
    with pytest.raises(MeshlabError, match="WasmPlugin.*pluginNme"):  # strict schema: unknown fields refused on kind too
        kind.apply(wasmplugin("bad", "oci://meshlab-registry:5000/x:v1", pluginNme="x"), cluster="cluster1")
