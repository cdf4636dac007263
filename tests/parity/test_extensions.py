"""TrafficExtension (Wasm and Lua) and WasmPlugin as Istio 1.31 delivers them: istiod's listener filters and
ECDS resources, the agent's fetch and its RBAC fallback, on the generated config and on real traffic.

One lab of the flat-network pattern (cluster1's control plane serves both clusters: helloworld v1 in
cluster1, v2 in cluster2, a curl client in each); each traffic test applies its resources and deletes
them again. Modules are served over plain HTTP from a server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshlab.lab import Lab
from meshlab.controlplane import extensions as deploy
from meshlab.runtime import agent
from meshlab.wasm.build import build_once, filters
from meshlab.wasm.handmade import crashing_filter
from meshlab.wasm.hub import Hub

URL = "http://helloworld.sample:5000/hello"
LUA = "function envoy_on_response(handle)\n  handle:headers():add('x-lua', 'from lua')\nend\n"
V1 = {"matchLabels": {"app": "helloworld", "version": "v1"}}


def resource(kind: str, name: str, namespace: str = "sample", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def wasm_te(name: str, url: str = "file:///m.wasm", namespace: str = "sample", wasm: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return resource("TrafficExtension", name, namespace, wasm={"url": url, **(wasm or {})}, **spec)


def names(filters: list[dict[str, Any]]) -> list[str]:
    return [f["name"].removeprefix(deploy.RESOURCE_PREFIX) for f in filters]


def hcm_filters(labels: dict[str, str], resources: list[dict[str, Any]], direction: str = "inbound", namespace: str = "sample") -> list[dict[str, Any]]:
    return deploy.http_filters(labels, namespace, resources, direction, lambda n: Path("/xds") / n, 5000 if direction == "inbound" else None)


# ---- istiod: translation, selection, order, the listener filter and the ECDS resource ------------------
@pytest.mark.istio("pilot/pkg/config/kube/extensions/translate.go: translateWasmPlugin")
def test_a_wasmplugin_becomes_a_synthetic_traffic_extension() -> None:
    wp = resource("WasmPlugin", "auth", url="oci://reg:5000/wasm/auth:v1", sha256="a" * 64, pluginName="auth", phase="AUTHN", priority=7,
                  failStrategy="FAIL_OPEN", selector=V1, pluginConfig={"k": 1}, imagePullSecret="s", match=[{"mode": "SERVER"}])  # fmt: skip
    te = deploy.as_traffic_extension(wp)
    assert te["kind"] == "TrafficExtension" and te["metadata"]["name"] == "auth~istio-translated-wasmplugin"
    assert (te["spec"]["phase"], te["spec"]["priority"], te["spec"]["selector"], te["spec"]["match"]) == ("AUTHN", 7, V1, [{"mode": "SERVER"}])
    assert te["spec"]["wasm"] == {"url": "oci://reg:5000/wasm/auth:v1", "sha256": "a" * 64, "pluginName": "auth", "failStrategy": "FAIL_OPEN",
                                  "pluginConfig": {"k": 1}, "imagePullSecret": "s"}  # fmt: skip
    assert deploy.resource_name(te) == "extensions.istio.io/trafficextension/sample.auth~istio-translated-wasmplugin"


@pytest.mark.istio("pilot/pkg/model/push_context.go: sortByPriority")
def test_extensions_are_ordered_by_phase_then_priority_then_creation() -> None:
    res = [
        wasm_te("a", phase="STATS"),
        wasm_te("b"),  # unspecified phase: last, right before the router
        wasm_te("c", phase="AUTHN", priority=1),
        wasm_te("d", phase="AUTHN", priority=100),  # higher priority first within a phase
        wasm_te("e", phase="AUTHZ"),
        wasm_te("f", phase="AUTHN"),  # no priority: after every prioritised one (math.MinInt32)
        wasm_te("g", phase="AUTHN", priority=1),  # same priority as c, created later: after c
        resource("WasmPlugin", "h", url="file:///h.wasm", phase="UNSPECIFIED_PHASE"),
    ]
    assert names(hcm_filters({"app": "x"}, res)) == ["sample.d", "sample.c", "sample.g", "sample.f", "sample.e", "sample.a", "sample.b",
                                                      "sample.h~istio-translated-wasmplugin"]  # fmt: skip


@pytest.mark.istio("pilot/pkg/model/extensions.go: MatchListener")
def test_selector_namespace_and_match_choose_the_listeners() -> None:
    res = [wasm_te("a", selector=V1), wasm_te("b", match=[{"mode": "SERVER"}]), wasm_te("c", match=[{"mode": "SERVER", "ports": [{"number": 9080}]}])]
    v1, v2 = {"app": "helloworld", "version": "v1"}, {"app": "helloworld", "version": "v2"}
    assert names(hcm_filters(v1, res)) == ["sample.a", "sample.b"]  # c: another port
    assert names(hcm_filters(v2, res)) == ["sample.b"]
    assert names(hcm_filters(v1, res, "outbound")) == ["sample.a"]  # no match: every HTTP connection manager; SERVER: inbound only
    assert hcm_filters(v1, res, namespace="other") == []  # another namespace
    root = wasm_te("r", namespace="istio-system")
    assert names(hcm_filters(v1, [root], namespace="other")) == ["istio-system.r"]  # the root namespace reaches every namespace


@pytest.mark.istio("pilot/pkg/networking/core/extension/extensionfilter.go: toEnvoyHTTPTrafficExtension")
def test_a_wasm_extension_is_discovered_over_ecds_with_remote_code() -> None:
    te = wasm_te("ah", "oci://reg:5000/wasm/ah:v1", wasm={"sha256": "b" * 64, "pluginName": "add_header", "pluginConfig": {"name": "x", "value": "1"},
                                                        "imagePullSecret": "alice", "imagePullPolicy": "Always"})  # fmt: skip
    te["metadata"]["resourceVersion"] = "42"
    [f] = hcm_filters({}, [te])
    name = "extensions.istio.io/trafficextension/sample.ah"
    assert f == {"name": name, "config_discovery": {
        "config_source": {"path_config_source": {"path": f"/xds/{name}"}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
        "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"]}}  # fmt: skip
    ext = deploy.extension_configs({}, "sample", [te])[name]
    assert ext["@type"] == "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig" and ext["name"] == name
    c = ext["typed_config"]["config"]
    assert (c["name"], c["root_id"], c["failure_policy"]) == ("sample.ah", "add_header", "FAIL_CLOSED")  # FAIL_CLOSE is the default
    assert c["configuration"] == {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": '{"name":"x","value":"1"}'}
    assert c["vm_config"] == {"runtime": "envoy.wasm.runtime.v8", "code": {"remote": {
        "http_uri": {"uri": "oci://reg:5000/wasm/ah:v1", "cluster": "_", "timeout": "30s"}, "sha256": "b" * 64}},
        "environment_variables": {"key_values": {"ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "42", "ISTIO_META_WASM_IMAGE_PULL_SECRET":
                                                 "kubernetes://sample/alice", "ISTIO_META_WASM_IMAGE_PULL_POLICY": "Always"}}}  # fmt: skip
    local = deploy.extension_configs({}, "sample", [wasm_te("f", "file:///opt/m.wasm")])
    assert local[deploy.RESOURCE_PREFIX + "sample.f"]["typed_config"]["config"]["vm_config"]["code"] == {"local": {"filename": "/opt/m.wasm"}}


# ---- the agent: fetch, verify, rewrite, or fall back to RBAC ----------------------------------------------
@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, Any]]:
    """A plain-HTTP server on 127.0.0.1 with a proxy-wasm module, bytes that are not wasm, and the add-header build."""
    d = Path(tempfile.mkdtemp(prefix="mlwx"))
    (d / "crash.wasm").write_bytes(crashing_filter())
    (d / "text.wasm").write_bytes(b"not a wasm module at all")
    (d / "add-header.wasm").write_bytes(build_once({f.name: f for f in filters()}["add-header"].dir).wasm.read_bytes())

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(d), **kw)

        def log_message(self, *a: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"base": base, "dir": d, "sha": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}}
    server.shutdown()
    shutil.rmtree(d, ignore_errors=True)


def ecds_for(te: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return deploy.extension_configs({}, "sample", [te])


@pytest.mark.istio("pkg/wasm/convert.go: rewriteVMConfig")
def test_the_agent_rewrites_remote_code_to_a_local_file_and_strips_istio_meta(served: dict[str, Any], tmp_path: Path) -> None:
    a = agent.Agent(tmp_path, tmp_path / "agent.log", [])
    te = wasm_te("ok", served["base"] + "/crash.wasm", wasm={"sha256": served["sha"]["crash.wasm"], "imagePullPolicy": "IfNotPresent"})
    out, events = a.convert(ecds_for(te))
    vm = out[deploy.RESOURCE_PREFIX + "sample.ok"]["typed_config"]["config"]["vm_config"]
    assert "environment_variables" not in vm, "ISTIO_META_* variables are for the agent, never for Envoy"
    path = Path(vm["code"]["local"]["filename"])
    assert path.read_bytes() == (served["dir"] / "crash.wasm").read_bytes()
    # Istio's cache layout: <dir>/<sha256 of the module name>/<checksum>.wasm
    assert path.parent.name == hashlib.sha256(te["spec"]["wasm"]["url"].encode()).hexdigest() and path.name == served["sha"]["crash.wasm"] + ".wasm"
    assert [e.level for e in events] == ["info"]
    assert a.metrics()['istio_agent_wasm_remote_fetch_count{result="success"}'] == 1
    again, events = a.convert(ecds_for(te))
    assert again == out and events == [], "an unchanged extension config is not converted again"


@pytest.mark.istio("pkg/wasm/convert.go: createHTTPDefaultFilter")
def test_a_failed_fetch_becomes_a_deny_all_or_allow_all_rbac_filter(tmp_path: Path) -> None:
    a = agent.Agent(tmp_path, tmp_path / "agent.log", [])
    closed = wasm_te("c", "http://127.0.0.1:9/none.wasm")  # nothing listens on port 9 (discard)
    opened = wasm_te("o", "http://127.0.0.1:9/none.wasm", wasm={"failStrategy": "FAIL_OPEN"})
    out, events = a.convert({**ecds_for(closed), **ecds_for(opened)})
    events = [e for e in events if e.level == "error"]  # meshlab's hints follow on lines of their own
    assert out[deploy.RESOURCE_PREFIX + "sample.c"]["typed_config"] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", "rules": {}, "rules_stat_prefix": "wasm-default-deny"}
    assert out[deploy.RESOURCE_PREFIX + "sample.o"]["typed_config"] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", "rules_stat_prefix": "wasm-default-allow"}
    assert out[deploy.RESOURCE_PREFIX + "sample.c"]["name"] == deploy.RESOURCE_PREFIX + "sample.c", "the fallback keeps the extension config's name"
    assert [e.message.split(". applying ")[1].split(" (")[0] for e in events] == ["deny RBAC filter", "allow RBAC filter"]
    assert all("error in converting the wasm config to local: cannot fetch Wasm module http://127.0.0.1:9/none.wasm" in e.message for e in events)
    assert "applying deny RBAC filter" in (tmp_path / "agent.log").read_text()


@pytest.mark.istio("pkg/wasm/convert.go: MaybeConvertWasmExtensionConfig")
def test_the_agent_log_keeps_istios_line_and_puts_meshlabs_hint_apart(tmp_path: Path) -> None:
    """A learner will look for the agent's line in real Istio logs: it must be Istio's alone, meshlab's advice labelled."""
    a = agent.Agent(tmp_path, tmp_path / "agent.log", [])
    ecds = ecds_for(wasm_te("s", "oci://127.0.0.1:9/wasm/x:v1", wasm={"imagePullSecret": "alice"}))
    for r in ecds.values():  # the ECDS generator found no such Secret in this proxy's cluster
        r["typed_config"]["config"]["vm_config"]["environment_variables"]["key_values"][deploy.SECRET_ENV] = ""
    _, events = a.convert(ecds)
    assert [e.level for e in events] == ["error", "hint"]
    assert events[0].message.endswith("missing image pulling secret. applying deny RBAC filter"), events[0].message
    assert "fix" not in events[0].message and "meshlab" not in events[0].message
    assert events[1].message.startswith(agent.HINT + ": ") and "imagePullSecret" in events[1].message
    lines = (tmp_path / "agent.log").read_text().splitlines()
    assert [ln.split("\t")[1] for ln in lines] == ["error", "hint"]


@pytest.mark.istio("pkg/wasm/cache.go: getOrFetch")
def test_a_wrong_checksum_or_bytes_that_are_not_wasm_fail_the_fetch(served: dict[str, Any], tmp_path: Path) -> None:
    a = agent.Agent(tmp_path, tmp_path / "agent.log", [])
    wrong = wasm_te("w", served["base"] + "/crash.wasm", wasm={"sha256": "c" * 64})
    text = wasm_te("t", served["base"] + "/text.wasm")
    _, events = a.convert({**ecds_for(wrong), **ecds_for(text)})
    events = [e for e in events if e.level == "error"]
    assert f"module downloaded from {served['base']}/crash.wasm has checksum {served['sha']['crash.wasm']}, which does not match: {'c' * 64}" in events[0].message
    assert f"fetched Wasm binary from {served['base']}/text.wasm is invalid" in events[1].message
    m = a.metrics()
    assert m['istio_agent_wasm_remote_fetch_count{result="checksum_mismatched"}'] == 1 and m['istio_agent_wasm_remote_fetch_count{result="fetch_failure"}'] == 1


# ---- on real Envoy sidecars -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(module_home: Path) -> Iterator[Lab]:
    lab = Lab.up("flat-network", samples=True, home_dir=module_home, quiet=True)
    yield lab
    lab.down(quiet=True)


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    yield lab
    for r in list(lab.state.data.get("resources", [])):
        kind, ns, name = r["key"]
        if kind in ("WasmPlugin", "TrafficExtension"):  # not the lab's own (the east-west Gateway)
            lab.delete(kind, name, cluster="cluster1", namespace=ns)


def by_version(lab: Lab, header: str | None = None, n: int = 12) -> dict[str, set[Any]]:
    """Per answering version (or the status of a local reply), the values of ``header`` (or the statuses)."""
    out: dict[str, set[Any]] = {}
    for a in lab.call("curl", URL, cluster="cluster1", n=n).answers:
        out.setdefault(a.version or str(a.status), set()).add(a.headers.get(header) if header else a.status)
    return out


def ecds_in_envoy(lab: Lab, app: str, cluster: str) -> dict[str, dict[str, Any]]:
    """Envoy's ECDS view (``istioctl proxy-config ecds``)."""
    return lab.extension_configs(app, cluster)


@pytest.mark.istio("pilot/pkg/networking/core/extension/lua.go: BuildHTTPLuaFilter")
def test_a_lua_traffic_extension_adds_a_header_on_the_selected_sidecar_only(clean: Lab) -> None:
    out = clean.apply(resource("TrafficExtension", "lua-header", selector=V1, lua={"inlineCode": LUA}), cluster="cluster1")
    assert out == ["trafficextension/lua-header configured (control plane cluster1)"]
    assert by_version(clean, "x-lua") == {"v1": {"from lua"}, "v2": {None}}
    dump = clean.envoy_config("helloworld-v1", "cluster1", "dynamic_listeners")
    lua = [hf for c in dump["configs"] for ch in c["active_state"]["listener"]["filter_chains"] for f in ch["filters"]
           for hf in f["typed_config"].get("http_filters", []) if hf["name"] == deploy.RESOURCE_PREFIX + "sample.lua-header"]  # fmt: skip
    assert lua and lua[0]["typed_config"]["@type"] == deploy.LUA_FILTER and lua[0]["typed_config"]["default_source_code"]["inline_string"] == LUA
    assert not ecds_in_envoy(clean, "helloworld-v1", "cluster1"), "Lua is inlined, never delivered over ECDS"


@pytest.mark.istio("pkg/wasm/convert.go: createHTTPDefaultFilter")
def test_fail_close_denies_and_fail_open_passes_when_the_module_cannot_be_fetched(clean: Lab) -> None:
    lab = clean
    broken = {"url": "http://127.0.0.1:9/none.wasm", "pluginName": "x"}
    out = lab.apply(wasm_te("gone", selector=V1, wasm=broken), cluster="cluster1")  # accepted: only the agents fail
    assert out[0] == "trafficextension/gone configured (control plane cluster1)" and "applying deny RBAC filter" in out[1]
    assert by_version(lab) == {"403": {403}, "v2": {200}}  # v1's sidecar denies everything; v2 is not selected
    assert lab.stats("helloworld-v1", "cluster1", "wasm-default-deny")["http.inbound_5000.rbac.wasm-default-deny.denied"] >= 1
    lab.apply(wasm_te("gone", selector=V1, wasm={**broken, "failStrategy": "FAIL_OPEN"}), cluster="cluster1")
    assert by_version(lab) == {"v1": {200}, "v2": {200}}
    [ext] = ecds_in_envoy(lab, "helloworld-v1", "cluster1").values()
    assert ext["ecds_filter"]["typed_config"]["rules_stat_prefix"] == "wasm-default-allow"


@pytest.mark.istio("pkg/wasm/cache.go: getOrFetch")
def test_a_wrong_sha256_fails_in_each_proxy_not_at_apply(clean: Lab, served: dict[str, Any]) -> None:
    lab = clean
    wrong = {"url": served["base"] + "/add-header.wasm", "sha256": "d" * 64, "pluginName": "add_header"}
    out = lab.apply(resource("WasmPlugin", "pinned", selector={"matchLabels": {"app": "helloworld"}}, **wrong), cluster="cluster1")
    assert out[0] == "wasmplugin/pinned configured (control plane cluster1)"
    assert len([ln for ln in out if "which does not match: " + "d" * 64 in ln]) == 2  # one per selected proxy (v1, v2)
    assert by_version(lab) == {"403": {403}}
    for app, cluster in (("helloworld-v1", "cluster1"), ("helloworld-v2", "cluster2")):
        assert any("has checksum " + served["sha"]["add-header.wasm"] in ln for ln in lab.agent_log(app, cluster))
        assert lab.stats(app, cluster, "wasm-default-deny.denied")
    assert not lab.agent_log("curl", "cluster1"), "the client's proxy is not selected: its agent fetched nothing"


@pytest.mark.istio("pilot/pkg/xds/ecds.go: Generate")
def test_a_new_plugin_config_reaches_envoy_over_ecds_alone(clean: Lab, served: dict[str, Any]) -> None:
    lab = clean

    def plugin(value: str) -> dict[str, Any]:
        return wasm_te("ah", selector=V1, wasm={"url": served["base"] + "/add-header.wasm", "sha256": served["sha"]["add-header.wasm"],
                                                "pluginName": "add_header", "pluginConfig": {"name": "x-hello", "value": value}})  # fmt: skip

    lab.apply(plugin("one"), cluster="cluster1")
    assert by_version(lab, "x-hello") == {"v1": {"one"}, "v2": {None}}
    run = Path(lab.state.data["run_dir"])
    pod = lab.backend.find("helloworld-v1", "cluster1").pod  # type: ignore[union-attr]
    lds = (run / "proxies" / pod / "xds" / "lds.json").read_text()
    envoys = {p["name"]: p["pid"] for p in lab.state.data["processes"] if p["name"].endswith("/envoy")}
    before = ecds_in_envoy(lab, "helloworld-v1", "cluster1")[deploy.RESOURCE_PREFIX + "sample.ah"]["version_info"]
    lab.apply(plugin("two"), cluster="cluster1")
    assert by_version(lab, "x-hello") == {"v1": {"two"}, "v2": {None}}
    after = ecds_in_envoy(lab, "helloworld-v1", "cluster1")[deploy.RESOURCE_PREFIX + "sample.ah"]
    assert int(after["version_info"]) == int(before) + 1 and json.loads(after["ecds_filter"]["typed_config"]["config"]["configuration"]["value"])["value"] == "two"
    assert (run / "proxies" / pod / "xds" / "lds.json").read_text() == lds, "the listener does not change: ECDS alone carries the new config"
    assert {p["name"]: p["pid"] for p in lab.state.data["processes"] if p["name"].endswith("/envoy")} == envoys


@pytest.mark.istio("pilot/pkg/xds/ecds.go: GeneratePullSecrets")
def test_the_pull_secret_is_read_in_each_proxys_own_cluster(clean: Lab, module_home: Path, served: dict[str, Any]) -> None:
    lab = clean
    hub = Hub.up(module_home / "hub")  # beside the lab's state: the agents trust its CA
    hub.add_user("alice", "alice-pw")
    pushed = hub.push(served["dir"] / "add-header.wasm", "wasm/add-header:v1", user="alice", root_ids=["add_header"])
    te = wasm_te("ah", selector={"matchLabels": {"app": "helloworld"}}, wasm={
        "url": pushed.url, "sha256": pushed.digest.split(":", 1)[1], "imagePullSecret": "alice", "pluginName": "add_header",
        "pluginConfig": {"name": "x-hello", "value": "pulled"}})  # fmt: skip
    lab.create_pull_secret("alice", "cluster1", **hub.pull_secret("alice"))  # only where istiod runs
    lab.apply(te, cluster="cluster1")
    assert by_version(lab, "x-hello") == {"v1": {"pulled"}, "403": {None}}  # v2's proxy is in cluster2: no secret there
    assert any("missing image pulling secret" in ln for ln in lab.agent_log("helloworld-v2", "cluster2"))
    lab.create_pull_secret("alice", "cluster2", **hub.pull_secret("alice"))  # a Secret change pushes ECDS again
    assert by_version(lab, "x-hello") == {"v1": {"pulled"}, "v2": {"pulled"}}
    hub.down()
