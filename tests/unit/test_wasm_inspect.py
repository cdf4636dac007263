"""`meshlab wasm inspect`: the wasm parser and the proxy-wasm ABI check.

Accepts every filter of wasm-filters/ (built once per session), shows what each one really imports
and exports, and refuses -- with a message that names the problem and the fix -- a text file, a
truncated module, a WebAssembly module that is not proxy-wasm, and modules Envoy would not load.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshlab.errors import MeshlabError
from meshlab.wasm import abi
from meshlab.wasm.build import build_once, filters
from meshlab.wasm.cli import main as wasm_cli
from meshlab.wasm.handmade import I32, I64, ModuleBuilder, crashing_filter
from meshlab.wasm.inspect import NotProxyWasmError, WasmFormatError, inspect, inspect_bytes, parse

FILTERS = {f.name: f for f in filters()}

# add(i32, i32) -> i32, written out byte by byte: a valid module, but not a proxy-wasm filter.
PLAIN_WASM = bytes.fromhex(
    "0061736d 01000000"  # magic, version 1
    "01 07 01 60 02 7f7f 01 7f"  # type section: one type (i32, i32) -> i32
    "03 02 01 00"  # function section: one function of type 0
    "07 07 01 03 616464 00 00"  # export section: "add" = function 0
    "0a 09 01 07 00 2000 2001 6a 0b"  # code: local.get 0, local.get 1, i32.add, end
)


@pytest.fixture(scope="session")
def built() -> dict[str, Path]:
    """Every filter folder built once for the whole session (node_modules/ is a cache)."""
    return {name: build_once(f.dir).wasm for name, f in FILTERS.items()}


def test_the_repository_has_the_five_filters() -> None:
    assert set(FILTERS) == {"abi-tour", "add-header", "api-key", "header-metric", "istio-stats"}
    assert FILTERS["add-header"].language == "assemblyscript"
    assert {FILTERS[n].language for n in ("abi-tour", "api-key", "header-metric", "istio-stats")} == {"c"}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_accepts_each_built_filter(built: dict[str, Path], name: str) -> None:
    r = inspect(built[name])
    assert r.ok, r.errors
    assert r.size == built[name].stat().st_size
    assert len(r.sha256) == 64
    assert r.abi_version in abi.ABI_VERSIONS
    assert r.allocator in abi.ALLOCATORS
    assert "proxy_on_context_create" in r.callbacks
    assert all(i.status == "ok" for i in r.module.imports), [(i.name, i.status) for i in r.module.imports]
    assert r.module.memory_exported


def test_the_c_filters_speak_abi_0_2_1_and_import_only_what_they_use(built: dict[str, Path]) -> None:
    tour = inspect(built["abi-tour"])
    assert tour.abi_version == "0.2.1"
    assert tour.allocator == "proxy_on_memory_allocate"
    for cb in ("proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure", "proxy_on_request_headers",
               "proxy_on_response_headers", "proxy_on_done", "proxy_on_log", "proxy_on_delete"):  # fmt: skip
        assert cb in tour.callbacks, cb
    assert set(tour.host_functions) == {
        "env.proxy_log", "env.proxy_get_buffer_bytes", "env.proxy_get_property",
        "env.proxy_get_header_map_value", "env.proxy_add_header_map_value",
    }  # fmt: skip
    key = inspect(built["api-key"])
    assert "env.proxy_send_local_response" in key.host_functions
    assert "env.proxy_remove_header_map_value" in key.host_functions
    metric = inspect(built["header-metric"])
    assert {"env.proxy_define_metric", "env.proxy_increment_metric"} <= set(metric.host_functions)
    increment = next(i for i in metric.module.imports if i.name == "proxy_increment_metric")
    assert increment.params == ("i32", "i64")  # the delta is a 64-bit integer


def test_the_assemblyscript_filter_is_abi_0_2_0_with_malloc(built: dict[str, Path]) -> None:
    r = inspect(built["add-header"])
    assert r.abi_version == "0.2.0"  # @solo-io/proxy-runtime 0.1.8
    assert r.allocator == "malloc"
    assert "wasi_unstable.proc_exit" in r.host_functions  # abort -> proc_exit (--use abort=abort_proc_exit)
    assert "proxy_on_response_headers" in r.callbacks
    # proxy-runtime exports a gRPC callback under a non-spec name: a warning, not an error
    assert any("proxy_on_grpc_trailing_metadata" in w for w in r.warnings)


def test_report_renders_as_text_and_json(built: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    text = str(inspect(built["abi-tour"]))
    assert "ABI version:  0.2.1" in text and "proxy_on_request_headers" in text and "env.proxy_log" in text
    assert wasm_cli(["inspect", str(built["api-key"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["abi_version"] == "0.2.1" and doc["ok"] is True
    assert doc["sha256"] == inspect(built["api-key"]).sha256
    assert "env.proxy_send_local_response" in doc["host_functions"]


def test_refuses_a_text_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "filter.wasm"
    f.write_text("this is not a module\n")
    with pytest.raises(WasmFormatError) as e:
        inspect(f)
    assert "text file" in e.value.message and "00 61 73 6d" in e.value.message
    assert "meshlab wasm build" in (e.value.hint or "")
    assert wasm_cli(["inspect", str(f)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "fix:" in err


@pytest.mark.parametrize("cut", [0, 3, 8, 9, 40, -1])
def test_refuses_a_truncated_module(built: dict[str, Path], cut: int) -> None:
    data = built["abi-tour"].read_bytes()
    data = data[:cut] if cut >= 0 else data[: len(data) // 2]
    if cut == 8:  # header only: a valid empty module -- but it exports no ABI version
        with pytest.raises(NotProxyWasmError):
            inspect_bytes(data)
        return
    with pytest.raises(WasmFormatError) as e:
        inspect_bytes(data, "cut.wasm")
    assert "cut.wasm" in e.value.message
    assert ("truncated" in e.value.message) or ("too short" in e.value.message)


def test_refuses_a_valid_wasm_module_that_is_not_proxy_wasm() -> None:
    m = parse(PLAIN_WASM)
    assert [(e.name, e.params, e.results) for e in m.exports] == [("add", ("i32", "i32"), ("i32",))]
    with pytest.raises(NotProxyWasmError) as e:
        inspect_bytes(PLAIN_WASM, "plain.wasm")
    assert "not a proxy-wasm filter" in e.value.message
    assert "proxy_abi_version" in e.value.message and "add" in e.value.message
    assert "proxy_abi_version_0_2_1" in (e.value.hint or "")
    assert isinstance(e.value, MeshlabError)


def test_refuses_other_binary_formats(tmp_path: Path) -> None:
    with pytest.raises(WasmFormatError, match="too short"):
        inspect_bytes(b"\0asm")
    with pytest.raises(WasmFormatError, match="version 13"):
        inspect_bytes(b"\0asm" + (13).to_bytes(4, "little"))
    with pytest.raises(WasmFormatError, match="not WebAssembly"):
        inspect_bytes(bytes(range(200, 256)) * 2)
    with pytest.raises(MeshlabError, match="no such file"):
        inspect(tmp_path / "missing.wasm")


def _proxy_module(extra_import: tuple[str, str, tuple[int, ...], tuple[int, ...]] | None = None, version: str = "0_2_1",
                  allocator: bool = True) -> bytes:  # fmt: skip
    m = ModuleBuilder()
    if extra_import:
        m.import_func(*extra_import)
    m.memory(1)
    m.func((), (), b"", export=f"proxy_abi_version_{version}")
    if allocator:
        m.func((I32,), (I32,), bytes([0x41, 0x10]), export="proxy_on_memory_allocate")
    m.func((I32, I32), (), b"", export="proxy_on_context_create")
    return m.to_bytes()


def test_an_unknown_import_is_an_error() -> None:
    r = inspect_bytes(_proxy_module(("env", "proxy_teleport", (I32,), (I32,))))
    assert not r.ok
    assert any("env.proxy_teleport" in e and "missing import" in e for e in r.errors)
    assert r.module.imports[0].status.startswith("error")
    r = inspect_bytes(_proxy_module(("my_host", "magic", (), ())))
    assert any("my_host" in e for e in r.errors)


def test_an_import_from_another_abi_version_is_an_error() -> None:
    # proxy_get_log_level exists from ABI 0.2.1 only
    ok = inspect_bytes(_proxy_module(("env", "proxy_get_log_level", (I32,), (I32,)), version="0_2_1"))
    assert ok.ok, ok.errors
    old = inspect_bytes(_proxy_module(("env", "proxy_get_log_level", (I32,), (I32,)), version="0_2_0"))
    assert any("ABI 0.2.0 does not have" in e for e in old.errors)


def test_a_wrong_signature_is_an_error() -> None:
    r = inspect_bytes(_proxy_module(("env", "proxy_increment_metric", (I32, I32), (I32,))))
    assert any("proxy_increment_metric" in e and "(i32, i64)" in e for e in r.errors)
    ok = inspect_bytes(_proxy_module(("env", "proxy_increment_metric", (I32, I64), (I32,))))
    assert ok.ok


def test_a_module_without_allocator_is_an_error() -> None:
    r = inspect_bytes(_proxy_module(allocator=False))
    assert any("malloc" in e for e in r.errors)
    assert r.allocator is None


def test_the_handmade_crashing_filter_is_valid_proxy_wasm() -> None:
    r = inspect_bytes(crashing_filter())
    assert r.ok, r.errors
    assert r.abi_version == "0.2.1"
    assert r.host_functions == ["env.proxy_log"]
    assert "proxy_on_request_headers" in r.callbacks
