"""The filters of wasm-filters/ in a real Envoy 1.40 (V8): each does what its README says.

One standalone Envoy (meshlab.wasm.envoy) serves the module; filters are hot-swapped into it. Also:
hot load keeps the Envoy process, fail-closed (503) against fail-open, a module that does not load
is rejected while the previous filter keeps serving, reproducible builds, wasm stats, cleanup.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab.runtime import procs
from meshlab.errors import MeshlabError
from meshlab.wasm.build import build_filter, build_once, filters, up_to_date
from meshlab.wasm.handmade import write_crashing_filter
from meshlab.wasm.standalone import WasmEnvoy, down_all, envoy

pytestmark = pytest.mark.integration
FILTERS = {f.name: f for f in filters()}


@pytest.fixture(scope="session")
def built() -> dict[str, Path]:
    return {name: build_once(f.dir).wasm for name, f in FILTERS.items()}


@pytest.fixture(scope="module")
def wenv() -> Iterator[WasmEnvoy]:
    e = envoy()
    records = list(e.state.data["processes"])
    yield e
    e.close()
    assert not any(procs.is_alive(r) for r in records), "close() left processes running"
    assert not e.dir.exists()


def load(e: WasmEnvoy, built: dict[str, Path], name: str, config: object = None, **kw: object):  # type: ignore[no-untyped-def]
    f = FILTERS[name]
    return e.load(built[name], f.config if config is None else config, root_id=f.root_id, **kw)


# ---- builds ----------------------------------------------------------------------------------------
def test_builds_are_reproducible(built: dict[str, Path], tmp_path: Path) -> None:
    """Two builds -- in place and in a copy elsewhere -- give the same bytes for every filter."""
    copy = tmp_path / "elsewhere" / "wasm-filters"
    src = next(iter(FILTERS.values())).dir.parent
    shutil.copytree(src, copy, symlinks=True, ignore=shutil.ignore_patterns("build"))  # node_modules/ kept: a cache
    for name, f in FILTERS.items():
        first = hashlib.sha256(built[name].read_bytes()).hexdigest()
        again = build_filter(copy / f.dir.name)
        assert again.sha256 == first, f"{name}: a second build gave different bytes"
        assert b"elsewhere" not in again.wasm.read_bytes() and str(src).encode() not in again.wasm.read_bytes()


def test_build_once_takes_an_up_to_date_module_and_rebuilds_after_an_edit(tmp_path: Path) -> None:
    """make setup built every filter: a notebook or a test takes the module as it is, unless its sources (or
    the module itself) changed since -- then it builds, as make would."""
    src = FILTERS["api-key"].dir
    shutil.copytree(src.parent / "include", tmp_path / "include")
    d = shutil.copytree(src, tmp_path / "api-key", ignore=shutil.ignore_patterns("build"))
    assert up_to_date(d) is None, "never built"
    built = build_once(d)
    assert built.steps and not built.steps[0].startswith("up to date")
    again = build_once(d)
    assert again.steps == ["up to date: sources unchanged since the last build"] and again.sha256 == built.sha256
    (d / "api_key.c").write_text((d / "api_key.c").read_text() + "\n/* an edit */\n")
    assert up_to_date(d) is None, "a changed source needs a build"
    assert not build_once(d).steps[0].startswith("up to date")
    (d / "build" / "filter.wasm").write_bytes(b"\0asm\1\0\0\0")  # replaced by hand: no longer what the build wrote
    assert up_to_date(d) is None


def test_build_errors_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "filter.json").write_text(json.dumps({"name": "broken", "language": "c", "sources": ["f.c"]}))
    (tmp_path / "broken" / "f.c").write_text("int oops( {\n")
    with pytest.raises(MeshlabError) as e:
        build_filter(tmp_path / "broken")
    assert "ziglang" in e.value.message and "f.c" in e.value.message  # the exact command and the compiler's message
    with pytest.raises(MeshlabError, match="no filter.json"):
        build_filter(tmp_path)


# ---- each filter does what its README says ---------------------------------------------------------
def test_add_header_adds_the_configured_response_header(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    load(wenv, built, "add-header", {"name": "X-Hello", "value": "from wasm"})
    r = wenv.request("/hello")
    assert r.status == 200 and r.body.startswith("Hello version: v1")
    assert r.headers["x-hello"] == "from wasm"  # header names are lower-cased
    load(wenv, built, "add-header", {"name": "x-team", "value": "mesh \u00e9quipe"})
    r = wenv.request("/hello")
    assert r.headers["x-team"].encode("latin-1").decode() == "mesh \u00e9quipe" and "x-hello" not in r.headers


def test_add_header_rejects_a_bad_configuration_and_keeps_the_last_good_one(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    load(wenv, built, "add-header", {"name": "x-good", "value": "1"})
    bad_configs = [
        ({"value": "no name"}, '"name" (a string) is missing'),
        ({"name": "bad header", "value": "x"}, '"name" is not a valid header name'),
        ({"name": "x-a", "value": "line\nbreak"}, "control characters"),
        ('{"name": "x-a", "value": "b",}', "malformed JSON"),
        ("not json", "not a JSON object"),
    ]
    for bad, why in bad_configs:
        with pytest.raises(MeshlabError) as e:
            load(wenv, built, "add-header", bad)
        assert "rejected" in e.value.message and why in e.value.message, e.value.message
    with pytest.raises(MeshlabError, match="Missing root context factory for root id: wrong"):
        wenv.load(built["add-header"], {"name": "x-a", "value": "b"}, root_id="wrong")  # root_id must be add_header
    assert wenv.request("/hello").headers["x-good"] == "1"


def test_abi_tour_logs_each_callback_and_adds_the_config_it_read(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    config = {"greeting": "hello", "n": 7}
    load(wenv, built, "abi-tour", config)
    r = wenv.request("/hello?tour=1", {"x-probe": "1"})
    assert r.status == 200
    assert r.headers["x-abi-tour-callbacks"] == "proxy_on_context_create,proxy_on_request_headers,proxy_on_response_headers"
    entry = next(a for a in reversed(wenv.access_log()) if a["path"] == "/hello?tour=1")
    assert json.loads(entry["x-abi-tour-config"]) == config  # the request header the upstream received
    wenv.wait_for_log("proxy_on_delete(context_id=")
    logs = "\n".join(wenv.logs(contains="abi-tour:"))
    for cb in ("proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure", "proxy_on_request_headers",
               "proxy_on_response_headers", "proxy_on_log", "proxy_on_done", "proxy_on_delete"):  # fmt: skip
        assert f"{cb}(" in logs, cb
    size = len(json.dumps(config))
    assert f"plugin_configuration_size={size}" in logs
    assert f"proxy_get_buffer_bytes(PLUGIN_CONFIGURATION) -> {size} bytes" in logs
    assert "proxy_get_property(plugin_root_id) -> abi_tour" in logs
    assert "proxy_get_header_map_value(:path) -> /hello?tour=1" in logs


def test_calls_traces_the_stream_context_envoy_calls_by_the_abis_names(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    load(wenv, built, "abi-tour", {"greeting": "trace"})
    tour = wenv.calls()
    assert tour.status == 200
    assert [c for c in tour.callbacks if c != "proxy_on_memory_allocate"] == [
        "proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers", "proxy_on_log", "proxy_on_done", "proxy_on_delete"]
    assert "env.proxy_get_header_map_value" in tour.host_functions and "env.proxy_add_header_map_value" in tour.host_functions
    load(wenv, built, "add-header", {"name": "x-hello", "value": "trace"})  # the SDK exports every callback
    sdk = wenv.calls()
    assert {"proxy_on_request_body", "proxy_on_response_body"} <= set(sdk.callbacks) and sdk.callbacks[-1] == "proxy_on_delete"
    assert sdk.callbacks.count("proxy_on_context_create") == 1, "only the request's stream context, not a swapped-out plugin's"
    assert wenv._log_level("wasm") != "trace", "the trace level is switched off again"


def test_api_key_rejects_missing_and_invalid_keys_with_a_local_401(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    load(wenv, built, "api-key", {"keys": ["k-alice", "k-bob"]})
    missing = wenv.request("/hello")
    assert (missing.status, missing.body) == (401, "missing API key\n")
    assert missing.headers["www-authenticate"] == 'ApiKey header="x-api-key"'
    invalid = wenv.request("/hello", {"x-api-key": "k-alic"})
    assert (invalid.status, invalid.body) == (401, "invalid API key\n")
    ok = wenv.request("/hello", {"x-api-key": "k-bob"})
    assert ok.status == 200 and ok.body.startswith("Hello version")
    log = wenv.access_log(last=3)
    assert [a["details"] for a in log] == ["api_key_missing", "api_key_invalid", "via_upstream"]
    assert log[0]["upstream_host"] is None and log[1]["upstream_host"] is None  # never reached the upstream
    assert log[2]["x-api-key"] is None  # the valid key was removed before forwarding


def test_api_key_uses_the_configured_header_and_refuses_an_empty_key_list(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    load(wenv, built, "api-key", {"header": "Authorization-Key", "keys": ["s3cret"]})
    assert wenv.request("/hello", {"x-api-key": "s3cret"}).status == 401
    assert wenv.request("/hello", {"authorization-key": "s3cret"}).status == 200
    with pytest.raises(MeshlabError, match="empty"):
        load(wenv, built, "api-key", {"keys": []})
    assert wenv.request("/hello", {"authorization-key": "s3cret"}).status == 200  # the previous config stays


def test_header_metric_counts_requests_by_header_value(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    metric = f"users_{secrets.token_hex(3)}"  # stats outlive a filter swap: a fresh name per test
    load(wenv, built, "header-metric", {"header": "x-user", "metric": metric, "max_values": 3})
    sent = ["alice", "bob", "alice", None, "eve.example", "alice", "carol", "dave"]
    for user in sent:
        assert wenv.request("/hello", {"x-user": user} if user else {}).status == 200
    stats = wenv.stats(f"wasmcustom.{metric}.")
    p = f"wasmcustom.{metric}."
    assert stats == {
        p + "alice": 3, p + "bob": 1, p + "eve_example": 1,  # '.' in a value becomes '_'
        p + "_missing": 1, p + "_other": 2,  # carol and dave: beyond max_values=3
    }, stats
    _, text = wenv.admin.get(f"/stats?filter={metric}")
    assert f"wasmcustom.{metric}.alice: 3" in text  # Envoy's custom stat namespace for Wasm metrics
    _, prom = wenv.admin.get("/stats/prometheus")
    assert f"{metric}_alice{{}} 3" in prom  # Prometheus output drops the namespace
    # the counters live in Envoy's stat store: a new load with the same metric name keeps counting
    load(wenv, built, "header-metric", {"header": "x-user", "metric": metric, "max_values": 3})
    wenv.request("/hello", {"x-user": "alice"})
    assert wenv.stats(p + "alice") == {p + "alice": 4}


def test_header_metric_defaults_without_configuration(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    user = f"u{secrets.token_hex(3)}"
    wenv.load(built["header-metric"], None, root_id="header_metric")  # no configuration at all
    wenv.request("/hello", {"X-User": user})
    assert wenv.stats(f"wasmcustom.requests_by_x_user.{user}") == {f"wasmcustom.requests_by_x_user.{user}": 1}


# ---- loading without a restart ---------------------------------------------------------------------
def test_hot_load_swaps_the_filter_while_traffic_flows_in_the_same_process(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    load(wenv, built, "add-header", {"name": "x-version", "value": "v0"})
    pid, started = wenv.pid, procs.start_time(wenv.pid)
    seen: Counter[str] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                r = wenv.request("/hello")
                if r.status != 200:
                    failures.append(f"status {r.status}")
                seen[r.headers.get("x-version", "none")] += 1
            except Exception as e:  # a dropped connection would be a failure of the hot swap
                failures.append(repr(e))

    t = threading.Thread(target=traffic)
    t.start()
    try:
        for i in range(1, 6):
            time.sleep(0.15)
            load(wenv, built, "add-header", {"name": "x-version", "value": f"v{i}"})
        time.sleep(0.2)
    finally:
        stop.set()
        t.join()
    assert not failures, failures[:5]
    assert seen["v0"] and seen["v5"], seen
    assert len([v for v in seen if v.startswith("v")]) >= 4, seen  # most versions answered in turn
    assert wenv.pid == pid and procs.start_time(pid) == started, "Envoy was restarted"
    # a different module (not just a new config) swaps in the same way
    load(wenv, built, "abi-tour", {"swapped": True})
    assert "x-abi-tour-callbacks" in wenv.request("/hello").headers
    assert wenv.pid == pid and procs.start_time(pid) == started


def test_fail_closed_answers_503_fail_open_lets_requests_pass(wenv: WasmEnvoy, tmp_path: Path) -> None:
    crash = write_crashing_filter(tmp_path / "crash.wasm")
    wenv.load(crash, {}, fail_open=False)
    assert wenv.config()["typed_config"]["config"]["failure_policy"] == "FAIL_CLOSED"
    first = wenv.request("/hello")
    assert first.status == 503  # the request during which the VM crashed
    assert [wenv.request("/hello").status for _ in range(5)] == [503] * 5  # fail closed: the failed filter blocks
    wenv.load(crash, {}, fail_open=True)
    assert wenv.config()["typed_config"]["config"]["failure_policy"] == "FAIL_OPEN"
    assert wenv.request("/hello").status == 503  # this request crashes the new VM
    after = [wenv.request("/hello") for _ in range(5)]
    assert [r.status for r in after] == [200] * 5  # fail open: the failed filter is skipped
    assert after[0].body.startswith("Hello version")
    wenv.wait_for_log("Uncaught RuntimeError: unreachable")
    assert wenv.logs(contains="crashing-filter: proxy_on_request_headers is about to execute")


def test_a_module_that_does_not_load_is_rejected_and_the_previous_filter_keeps_serving(wenv: WasmEnvoy, built: dict[str, Path], tmp_path: Path) -> None:
    load(wenv, built, "add-header", {"name": "x-still", "value": "here"})
    broken = tmp_path / "truncated.wasm"
    broken.write_bytes(built["add-header"].read_bytes()[:2000])
    with pytest.raises(MeshlabError, match="truncated"):  # inspect refuses it before Envoy sees it
        wenv.load(broken, {"name": "x", "value": "y"}, root_id="add_header")
    with pytest.raises(MeshlabError) as e:  # without the check, Envoy itself refuses it
        wenv.load(broken, {"name": "x", "value": "y"}, root_id="add_header", check=False)
    assert "rejected" in e.value.message and "Unable to create Wasm plugin" in e.value.message
    assert wenv.request("/hello").headers["x-still"] == "here"


def test_wasm_stats(wenv: WasmEnvoy, built: dict[str, Path]) -> None:
    load(wenv, built, "add-header", {"name": "x-s", "value": "1"})
    wenv.request("/hello")
    s = wenv.stats("wasm.")
    assert s["wasm.envoy.wasm.runtime.v8.active"] >= 1
    assert s["wasm.envoy.wasm.runtime.v8.created"] >= s["wasm.envoy.wasm.runtime.v8.active"]
    assert "wasm.add_header.vm_reload" in s
    assert wenv.stats("wasm.wasm_vm_count")["wasm.wasm_vm_count"] >= 1


# ---- ports and cleanup ------------------------------------------------------------------------------
def test_a_busy_port_is_refused_clearly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(MeshlabError) as e:
            envoy(port=port)
        assert f"127.0.0.1:{port} is already in use" in e.value.message


def test_a_port_taken_after_the_check_fails_with_envoys_reason_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meshlab.wasm import standalone

    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path))
    monkeypatch.setattr(standalone, "port_is_free", lambda port, host="127.0.0.1": True)  # lose the race on purpose
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(MeshlabError) as e:
            envoy(port=port)
    assert "could not open its listener" in e.value.message and "Address already in use" in e.value.message
    assert not list((tmp_path / "wasm").glob("envoy-*")), "a failed start must clean up"


def test_close_and_down_all_leave_no_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path))
    e = envoy()
    records = list(e.state.data["processes"])
    assert len(records) == 2 and all(procs.is_alive(r) for r in records)
    e.close()
    e.close()  # twice is fine
    assert not any(procs.is_alive(r) for r in records)
    # a "crashed kernel": the object is gone, the state file remains; down_all stops what it records
    e2 = envoy()
    records = list(e2.state.data["processes"])
    assert down_all() == 2
    assert not any(procs.is_alive(r) for r in records)
    assert not list((tmp_path / "wasm").glob("envoy-*"))
    for use in (lambda: e.load(tmp_path / "x.wasm"), e.request, e.calls, e.stats, e.access_log):  # after the Cleanup
        with pytest.raises(MeshlabError, match="this lab is down — run it again from the top"):
            use()
