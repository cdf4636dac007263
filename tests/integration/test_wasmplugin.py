"""Istio's WasmPlugin on the local backend, with real Envoy sidecars and modules pulled from the real hub.

One lab of pattern 2 (shared control plane, separate networks: one control plane serves both
clusters) and one hub for the module; each test applies its WasmPlugins and deletes them again.
Also: the kind backend's dry run of the same apply (the module push and the rewritten resource).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshlab.runtime import procs
from meshlab.errors import MeshlabError, ResourceError
from meshlab.lab import Lab
from meshlab.wasm.build import build_once, filters
from meshlab.controlplane.extensions import signature
from meshlab.wasm.handmade import write_crashing_filter
from meshlab.wasm.hub import Hub

pytestmark = pytest.mark.integration
FILTERS = {f.name: f for f in filters()}
URL = "http://helloworld.sample:5000/hello"
KEYS = ["key-alice-1234", "key-bob-5678"]


@pytest.fixture(scope="module")
def lab(module_home: Path) -> Iterator[Lab]:
    lab = Lab.up("separate-networks", samples=True, home_dir=module_home, quiet=True)
    yield lab
    lab.down(quiet=True)


@pytest.fixture(scope="module")
def hub(module_home: Path, lab: Lab) -> Iterator[Hub]:
    h = Hub.up(module_home / "hub")  # beside the lab's state: the proxies' agents trust its CA
    h.add_user("alice", "alice-pw")
    for cluster in ("cluster1", "cluster2"):  # Istio reads the pull secret in each proxy's own cluster
        lab.create_pull_secret("alice", cluster, **h.pull_secret("alice"))
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
        if kind in ("WasmPlugin", "TrafficExtension"):  # not the lab's own (the east-west Gateway)
            lab.delete(kind, name, cluster="cluster1", namespace=ns)


def wasmplugin(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": name}, "spec": {"url": url, **spec}}


def wasm_filters(lab: Lab, app: str, cluster: str) -> dict[str, list[tuple[str, ...]]]:
    """What Envoy itself runs: the extension filters of each active listener of the workload's sidecar,
    the Wasm ones with the config Envoy discovered over ECDS."""
    dump = lab.envoy_config(app, cluster, "dynamic_listeners")
    ecds = {name: c["ecds_filter"] for name, c in lab.extension_configs(app, cluster).items()}
    return signature([c.get("active_state", {}).get("listener", {}) for c in dump.get("configs", [])], ecds)


SAMPLE = "extensions.istio.io/trafficextension/sample."


def envoy_pids(lab: Lab) -> dict[str, tuple[int, int]]:
    return {p["name"]: (p["pid"], p["start_time"]) for p in lab.state.data["processes"] if p["name"].endswith("/envoy")}


def headers_by_version(lab: Lab, cluster: str, header: str, n: int = 12, expect_errors: bool = False) -> dict[str, set[str | None]]:
    r = lab.call("curl", URL, cluster=cluster, n=n)
    assert expect_errors or r.errors == 0, r.tally
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
    assert len([ln for ln in out if "fetched from " + hub.address in ln]) == 1  # v1's agent pulled it
    for caller in ("cluster1", "cluster2"):  # answers of v1 (cluster1) carry the header, v2's (cluster2) do not
        assert headers_by_version(lab, caller, "x-hello") == {"v1": {"from the hub"}, "v2": {None}}
    v1 = wasm_filters(lab, "helloworld-v1", "cluster1")
    inbound = [name for name in v1 if name.endswith("_5000")]
    assert [f[:2] for f in v1[inbound[0]]] == [(SAMPLE + "add-header~istio-translated-wasmplugin", "wasm")]
    assert v1["virtualOutbound"] and v1["virtualOutbound"][0][1] == "wasm"  # no `match`: outbound too, as istiod
    for app, cluster in (("helloworld-v2", "cluster2"), ("curl", "cluster1"), ("curl", "cluster2")):
        assert not any(wasm_filters(lab, app, cluster).values()), f"{app} in {cluster} was not selected"
    ecds = json.loads(next(Path(lab.state.data["run_dir"]).glob("proxies/helloworld-v1-*/xds/ecds/*.json")).read_text())
    module = Path(ecds["resources"][0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"])
    assert module.read_bytes() == built["add-header"].read_bytes()  # in v1's agent cache, by checksum
    assert module.name == pushed.digest.split(":", 1)[1] + ".wasm"
    assert lab.validate() >= 6  # every proxy config, wasm filter included, passes envoy --mode validate
    lab.delete("WasmPlugin", "add-header", cluster="cluster1")
    assert headers_by_version(lab, "cluster1", "x-hello") == {"v1": {None}, "v2": {None}}


def test_the_sha256_of_the_wasm_file_is_not_the_oci_digest(clean: Lab, hub: Hub, built: dict[str, Path]) -> None:
    """For oci:// Istio compares the manifest digest: the file's sha256 fails in each proxy (FAIL_CLOSE: denied),
    and meshlab's agent says which digest was meant."""
    lab = clean
    pushed = hub.push(built["add-header"], "wasm/add-header:v1", user="alice")
    wasm_sha = pushed.wasm_sha256.split(":", 1)[1]  # the sha256 of the .wasm file: not what oci:// compares
    out = lab.apply(wasmplugin("add-header", pushed.url, imagePullSecret="alice", pluginName="add_header", sha256=wasm_sha,
                               selector={"matchLabels": {"app": "helloworld"}}, pluginConfig={"name": "x-hello", "value": "never"}),
                    cluster="cluster1")  # fmt: skip
    failures = [ln for ln in out if f"has checksum {pushed.digest.split(':', 1)[1]}, which does not match: {wasm_sha}" in ln]
    assert len(failures) == 2  # Istio's own line, word for word, from each selected proxy's agent
    hints = [ln for ln in out if "meshlab hint" in ln]  # meshlab's advice on a line of its own, labelled
    assert len(hints) == 2 and all("manifest* digest" in ln and "sha256 of the .wasm file" in ln for ln in hints)
    r = lab.call("curl", URL, cluster="cluster2", n=6)
    assert {a.status for a in r.answers} == {403} and {a.body.strip() for a in r.answers} == {"RBAC: access denied"}


def test_fetch_failures_are_reported_by_each_agent(clean: Lab, hub: Hub, built: dict[str, Path]) -> None:
    lab = clean
    pushed = hub.push(built["add-header"], "wasm/add-header:errors", user="alice")  # a tag no earlier apply has cached
    sel = {"selector": {"matchLabels": {"app": "helloworld", "version": "v1"}}}
    cases = [
        (wasmplugin("a", pushed.url, pluginName="add_header", **sel), "refused an anonymous request"),
        (wasmplugin("a", pushed.url, pluginName="add_header", imagePullSecret="nobody", **sel), "missing image pulling secret"),
        (wasmplugin("a", hub.url("wasm/add-header:v404"), pluginName="add_header", imagePullSecret="alice", **sel), "no image"),
    ]
    for doc, words in cases:
        out = lab.apply(doc, cluster="cluster1")
        istio_lines = [ln for ln in out[1:] if "meshlab hint" not in ln]  # v1's agent: Istio's line (and maybe meshlab's hint)
        assert len(istio_lines) == 1 and words in istio_lines[0] and "applying deny RBAC filter" in istio_lines[0], out
        assert headers_by_version(lab, "cluster1", "x-hello", expect_errors=True) == {"": {None}, "v2": {None}}
    # meshlab's own hint (Istio does not check the root id): the module is fetched, then fails to start in Envoy
    with pytest.raises(ResourceError) as e:
        lab.apply(wasmplugin("a", pushed.url, pluginName="addheader", imagePullSecret="alice", **sel), cluster="cluster1")
    assert "rejected its new extension config" in e.value.message
    assert "meshlab hint (Istio does not check this): pluginName 'addheader' is not a root id of this module" in e.value.message


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
    pids, lds = envoy_pids(lab), lds_files(lab)
    lab.apply(wasmplugin("hello", v2.url, selector=sel, pluginName="add_header", imagePullSecret="alice",
                         pluginConfig={"name": "x-hello", "value": "v2"}), cluster="cluster1")  # fmt: skip
    assert headers_by_version(lab, "cluster1", "x-hello") == {"v1": {"v2"}, "v2": {"v2"}}  # every answer: the rollout is complete
    lab.apply(wasmplugin("hello", v3.url, selector=sel, pluginName="abi_tour", imagePullSecret="alice",
                         pluginConfig={"greeting": "v3"}), cluster="cluster1")  # fmt: skip
    seen = headers_by_version(lab, "cluster2", "x-abi-tour-callbacks")
    assert all(v and None not in v for v in seen.values()), seen
    assert headers_by_version(lab, "cluster2", "x-hello") == {"v1": {None}, "v2": {None}}
    assert lds_files(lab) == lds, "a new module travels over ECDS alone: no listener changes"
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
    assert r.tally.get(("error", "503"), 0) <= 2, r.tally  # at most the request that crashes each serving proxy's new VM
    r = lab.call("curl", URL, cluster="cluster1", n=6)
    assert [a.status for a in r.answers] == [200] * 6, r.tally  # then the crashed VM is bypassed
    config = wasm_filters(lab, "helloworld-v2", "cluster2")
    assert {f[3] for fs in config.values() for f in fs} == {"FAIL_OPEN"}


def test_a_module_envoy_refuses_is_rolled_back(clean: Lab, built: dict[str, Path]) -> None:
    """api-key refuses a configuration without keys (proxy_on_configure returns false): Envoy rejects the
    extension config, meshlab puts the previous configuration back and says why."""
    lab = clean
    sel = {"matchLabels": {"app": "helloworld"}}
    lds, resources = lds_files(lab), json.dumps(lab.state.data.get("resources", []))
    with pytest.raises(ResourceError) as e:
        lab.apply(wasmplugin("key", f"file://{built['api-key']}", selector=sel, pluginName="api_key", pluginConfig={"keys": []}), cluster="cluster1")
    assert "rejected its new extension config" in e.value.message and "(ECDS)" in e.value.message
    listeners = lambda files: {k: json.loads(v)["resources"] for k, v in files.items()}  # noqa: E731 (versions rise on the rollback)
    assert listeners(lds_files(lab)) == listeners(lds) and json.dumps(lab.state.data.get("resources", [])) == resources
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
        r = lab.call("curl", URL, cluster=caller, n=20, headers={"x-api-key": KEYS[1]})
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


def test_kind_dry_run_ships_a_wasm_traffic_extension_and_applies_a_lua_one(tmp_path: Path, built: dict[str, Path]) -> None:
    from meshlab.backends.kind import KindBackend
    from meshlab.state import State
    from meshlab.topology import load_topology

    st = State(tmp_path)
    KindBackend.create(load_topology("flat-network"), st, samples=True, dry_run=True, progress=None)
    st.save()
    kind = Lab.attach(tmp_path)
    recorded = kind.backend.executor.recorded  # type: ignore[union-attr]
    before = len(recorded)
    module = built["add-header"]
    sha = __import__("hashlib").sha256(module.read_bytes()).hexdigest()
    te = {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "TrafficExtension", "metadata": {"name": "ah"},
          "spec": {"selector": {"matchLabels": {"app": "helloworld"}}, "phase": "STATS",
                   "wasm": {"url": f"file://{module}", "pluginName": "add_header", "pluginConfig": {"name": "x-hello", "value": "kind"}}}}  # fmt: skip
    lua = {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "TrafficExtension", "metadata": {"name": "lua"},
           "spec": {"selector": {"matchLabels": {"app": "helloworld"}}, "lua": {"inlineCode": "function envoy_on_response(h) end"}}}  # fmt: skip
    kind.apply([te, lua], cluster="cluster2")
    steps = recorded.steps[before:]
    [push] = [s for s in steps if "wasm-push" in s.tags]
    [apply] = [s for s in steps if "apply" in s.tags]
    assert push.args["target"] == f"localhost:5001/wasm/ah:sha-{sha[:12]}" and steps.index(push) < steps.index(apply)
    shipped, lua_doc = apply.manifests
    assert shipped["spec"]["wasm"]["url"] == f"oci://meshlab-registry:5000/wasm/ah:sha-{sha[:12]}" and shipped["spec"]["phase"] == "STATS"
    assert lua_doc == {**lua, "metadata": {"name": "lua", "namespace": "sample"}}  # inline code: nothing to ship
    assert "not created in cluster2" in kind.create_pull_secret("alice", "cluster2", "127.0.0.1:5000", "alice", "pw")  # no accounts on kind's registry
    assert kind.agent_log("helloworld", "cluster1") == []  # dry run: the command is recorded
    assert recorded.steps[-1].argv[-4:] == ["logs", "$(kubectl --context kind-cluster1 -n sample get pod -l app=helloworld -o jsonpath='{.items[0].metadata.name}')", "-c", "istio-proxy"]
    for bad, field in (({"lua": {"inlineCode": "x", "file": "y"}}, "file"), ({"wasm": {"url": "oci://r:1/x:v1", "rootId": "x"}}, "rootId")):
        with pytest.raises(MeshlabError, match=f"TrafficExtension.*{field}"):  # strict CRD schema on kind
            kind.apply({**lua, "spec": bad}, cluster="cluster1")


def test_a_wrong_digest_fault_denies_everything_and_the_right_one_repairs_it(clean: Lab, hub: Hub) -> None:
    """What lab 10's seeded fault uses: meshlab.wasm.publish on the local backend."""
    from meshlab.wasm.publish import publish, wasm_plugin, wrong_digest

    lab = clean
    pushed = publish(lab, "header-metric", "wasm/header-metric:fault", hub=hub)
    config = {"header": "x-user", "metric": "fault_requests"}
    out = lab.apply(wasm_plugin("metric", pushed, {"app": "helloworld"}, config, sha256=wrong_digest(pushed)), cluster="cluster1")
    assert sum("applying deny RBAC filter" in ln for ln in out) == 2
    for caller in ("cluster1", "cluster2"):
        r = lab.call("curl", URL, cluster=caller, n=6)
        assert {(a.status, a.body.strip()) for a in r.answers} == {(403, "RBAC: access denied")}, r.tally
    assert lab.stats("helloworld-v2", "cluster2", "wasm-default-deny.denied")
    lab.apply(wasm_plugin("metric", pushed, {"app": "helloworld"}, config), cluster="cluster1")
    r = lab.call("curl", URL, cluster="cluster1", n=20, headers={"x-user": "alice"})
    assert r.errors == 0 and r.versions == {"v1", "v2"}, r.tally
    assert lab.stats("helloworld-v1", "cluster1", "wasmcustom.fault_requests.alice")


def test_cli_pull_secret_ecds_and_agent_log(clean: Lab, hub: Hub, module_home: Path, built: dict[str, Path],
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from meshlab.wasm.cli import main

    monkeypatch.setenv("MESHLAB_HOME", str(module_home))  # the lab's and the hub's home: what the CLI attaches to
    assert main(["secret", "alice", "--cluster", "cluster2"]) == 0
    assert "secret/alice created in cluster2" in capsys.readouterr().out
    pushed = hub.push(built["add-header"], "wasm/add-header:cli", user="alice")
    clean.apply(wasmplugin("cli", pushed.url, selector={"matchLabels": {"app": "helloworld", "version": "v2"}}, pluginName="add_header",
                           imagePullSecret="alice", sha256="e" * 64), cluster="cluster1")  # fmt: skip
    assert main(["ecds", "helloworld-v2", "--cluster", "cluster2"]) == 0
    out = capsys.readouterr().out
    assert "extensions.istio.io/trafficextension/sample.cli~istio-translated-wasmplugin" in out and '"rules_stat_prefix": "wasm-default-deny"' in out
    assert main(["agent-log", "helloworld-v2", "--cluster", "cluster2"]) == 0
    assert "which does not match: " + "e" * 64 in capsys.readouterr().out
