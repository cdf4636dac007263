"""The proxy-wasm ABI as data: what a module may export (callbacks) and import (host functions).

Signatures use wasm value types (``i32``, ``i64``); every host function returns an ``i32``
``proxy_status_t``. The tables follow the proxy-wasm spec (v0.1.0, v0.2.0, v0.2.1) and what Envoy's
host (proxy-wasm-cpp-host) registers: host functions common to every version, plus a few that exist
only in some versions. A module that imports a function its ABI version does not have fails to
load in Envoy with "Failed to load Wasm module due to a missing import: env.<name>".
"""

from __future__ import annotations

from dataclasses import dataclass

ABI_VERSIONS = ("0.1.0", "0.2.0", "0.2.1")
ALL = frozenset(ABI_VERSIONS)
V2 = frozenset({"0.2.0", "0.2.1"})


@dataclass(frozen=True)
class Fn:
    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    versions: frozenset[str] = ALL
    doc: str = ""

    @property
    def signature(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"


def _i32(n: int) -> tuple[str, ...]:
    return ("i32",) * n


def _host(name: str, n: int, doc: str, versions: frozenset[str] = ALL, params: tuple[str, ...] | None = None) -> Fn:
    return Fn(name, params if params is not None else _i32(n), ("i32",), versions, doc)


# ---- host functions: imported by the module from "env" ----------------------------------------------
HOST_FUNCTIONS: dict[str, Fn] = {
    f.name: f
    for f in [
        _host("proxy_log", 3, "log a message at a level (trace=0 .. critical=5)"),
        _host("proxy_get_log_level", 1, "the host's current log level", frozenset({"0.2.1"})),
        _host("proxy_get_current_time_nanoseconds", 1, "wall-clock time (deprecated: use WASI clock_time_get)"),
        _host("proxy_set_tick_period_milliseconds", 1, "call proxy_on_tick every N ms (0 stops)"),
        _host("proxy_get_buffer_bytes", 5, "copy bytes of a buffer (body, configuration, ...) into the module"),
        _host("proxy_set_buffer_bytes", 5, "replace, prepend or append bytes of a buffer"),
        _host("proxy_get_buffer_status", 3, "size and flags of a buffer"),
        _host("proxy_get_header_map_size", 2, "serialized size of a header map"),
        _host("proxy_get_header_map_pairs", 3, "all pairs of a header map, serialized"),
        _host("proxy_set_header_map_pairs", 3, "replace a whole header map"),
        _host("proxy_get_header_map_value", 5, "one header's value (NOT_FOUND if absent)"),
        _host("proxy_add_header_map_value", 5, "add a header"),
        _host("proxy_replace_header_map_value", 5, "add or replace a header"),
        _host("proxy_remove_header_map_value", 3, "remove a header"),
        _host("proxy_continue_stream", 1, "resume a paused request or response", V2),
        _host("proxy_close_stream", 1, "close a request or response stream", V2),
        _host("proxy_get_status", 3, "status of an HTTP call response or gRPC close"),
        _host("proxy_send_local_response", 8, "answer the request from the proxy itself (e.g. 401)"),
        _host("proxy_http_call", 10, "call an upstream cluster over HTTP"),
        _host("proxy_grpc_call", 12, "a unary gRPC call"),
        _host("proxy_grpc_stream", 9, "open a gRPC stream"),
        _host("proxy_grpc_send", 4, "send on a gRPC stream"),
        _host("proxy_grpc_cancel", 1, "cancel a gRPC call or stream"),
        _host("proxy_grpc_close", 1, "close a gRPC call or stream"),
        _host("proxy_set_shared_data", 5, "write to the key-value store shared by VMs"),
        _host("proxy_get_shared_data", 5, "read from the shared key-value store"),
        _host("proxy_register_shared_queue", 3, "create a shared queue"),
        _host("proxy_resolve_shared_queue", 5, "look up another VM's shared queue"),
        _host("proxy_enqueue_shared_queue", 3, "put an item on a shared queue"),
        _host("proxy_dequeue_shared_queue", 3, "take an item off a shared queue"),
        _host("proxy_define_metric", 4, "define a counter, gauge or histogram"),
        _host("proxy_increment_metric", 2, "add to a metric", params=("i32", "i64")),
        _host("proxy_record_metric", 2, "set a gauge / record a histogram value", params=("i32", "i64")),
        _host("proxy_get_metric", 2, "read a metric"),
        _host("proxy_get_property", 4, "read a host property (e.g. plugin_root_id, source.address)"),
        _host("proxy_set_property", 4, "write a host property"),
        _host("proxy_call_foreign_function", 6, "call a host-specific extension function"),
        _host("proxy_done", 0, "a context that returned false from proxy_on_done is finished"),
        _host("proxy_set_effective_context", 1, "make a context current (e.g. from a tick or callout)"),
        # ABI 0.1.0 only
        _host("proxy_get_configuration", 2, "the plugin configuration (0.1.0 only)", frozenset({"0.1.0"})),
        _host("proxy_continue_request", 0, "resume a paused request (0.1.0 only)", frozenset({"0.1.0"})),
        _host("proxy_continue_response", 0, "resume a paused response (0.1.0 only)", frozenset({"0.1.0"})),
        _host("proxy_clear_route_cache", 0, "recompute the route (0.1.0 only)", frozenset({"0.1.0"})),
    ]
}

# Toolchain support the C++ host also registers under "env" (emscripten builds).
ENV_EXTRAS: dict[str, Fn] = {
    f.name: f
    for f in [
        Fn("emscripten_notify_memory_growth", ("i32",), (), ALL, "emscripten runtime hook"),
        Fn("pthread_equal", ("i32", "i32"), ("i32",), ALL, "emscripten runtime hook"),
    ]
}

# WASI functions Envoy's host provides, under both "wasi_snapshot_preview1" and "wasi_unstable".
# Newer hosts add more; an import outside this list is reported as a warning, not an error.
WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")
WASI_FUNCTIONS: dict[str, Fn] = {
    f.name: f
    for f in [
        Fn("fd_write", _i32(4), ("i32",), doc="stdout -> info log, stderr -> error log"),
        Fn("fd_read", _i32(4), ("i32",)),
        Fn("fd_seek", ("i32", "i64", "i32", "i32"), ("i32",)),
        Fn("fd_close", _i32(1), ("i32",)),
        Fn("fd_fdstat_get", _i32(2), ("i32",)),
        Fn("environ_get", _i32(2), ("i32",)),
        Fn("environ_sizes_get", _i32(2), ("i32",)),
        Fn("args_get", _i32(2), ("i32",)),
        Fn("args_sizes_get", _i32(2), ("i32",)),
        Fn("clock_time_get", ("i32", "i64", "i32"), ("i32",)),
        Fn("random_get", _i32(2), ("i32",)),
        Fn("proc_exit", _i32(1), ()),
        Fn("path_open", ("i32", "i32", "i32", "i32", "i32", "i64", "i64", "i32", "i32"), ("i32",)),
        Fn("fd_prestat_get", _i32(2), ("i32",)),
        Fn("fd_prestat_dir_name", _i32(3), ("i32",)),
    ]
}


def _cb(name: str, n: int, result: bool, doc: str, versions: frozenset[str] = ALL) -> Fn:
    return Fn(name, _i32(n), ("i32",) if result else (), versions, doc)


# ---- callbacks: exported by the module, called by the host (spec order) ---------------------------
CALLBACKS: dict[str, Fn] = {
    f.name: f
    for f in [
        Fn("_initialize", (), (), ALL, "WASI reactor start-up, called once at load"),
        Fn("_start", (), (), ALL, "WASI command start-up (when there is no _initialize)"),
        Fn("main", ("i32", "i32"), ("i32",), ALL, "called after _initialize if present"),
        _cb("proxy_on_memory_allocate", 1, True, "the host allocates memory inside the module"),
        _cb("malloc", 1, True, "the older name of the allocator (Envoy looks for it first)"),
        _cb("proxy_on_context_create", 2, False, "a root (parent 0) or stream context is created"),
        _cb("proxy_on_vm_start", 2, True, "once per VM; read VM_CONFIGURATION; false = VM unusable"),
        _cb("proxy_on_configure", 2, True, "a plugin configuration arrives; false = rejected"),
        _cb("proxy_validate_configuration", 2, True, "validate a configuration (host-specific)"),
        _cb("proxy_on_tick", 1, False, "the timer set by proxy_set_tick_period_milliseconds"),
        _cb("proxy_on_queue_ready", 2, False, "a shared queue has items"),
        _cb("proxy_on_foreign_function", 3, False, "the host calls a module function", V2),
        _cb("proxy_on_new_connection", 1, True, "TCP: a new connection"),
        _cb("proxy_on_downstream_data", 3, True, "TCP: bytes from the client"),
        _cb("proxy_on_upstream_data", 3, True, "TCP: bytes from the upstream"),
        _cb("proxy_on_downstream_connection_close", 2, False, "TCP: the client side closed"),
        _cb("proxy_on_upstream_connection_close", 2, False, "TCP: the upstream side closed"),
        _cb("proxy_on_request_headers", 3, True, "HTTP: request headers (context, count, end_of_stream) -> action"),
        _cb("proxy_on_request_body", 3, True, "HTTP: request body bytes"),
        _cb("proxy_on_request_trailers", 2, True, "HTTP: request trailers"),
        _cb("proxy_on_request_metadata", 2, True, "HTTP: request metadata (host-specific)"),
        _cb("proxy_on_response_headers", 3, True, "HTTP: response headers -> action"),
        _cb("proxy_on_response_body", 3, True, "HTTP: response body bytes"),
        _cb("proxy_on_response_trailers", 2, True, "HTTP: response trailers"),
        _cb("proxy_on_response_metadata", 2, True, "HTTP: response metadata (host-specific)"),
        _cb("proxy_on_http_call_response", 5, False, "the answer to a proxy_http_call"),
        _cb("proxy_on_grpc_receive_initial_metadata", 3, False, "gRPC call: initial metadata"),
        _cb("proxy_on_grpc_receive", 3, False, "gRPC call: a message"),
        _cb("proxy_on_grpc_receive_trailing_metadata", 3, False, "gRPC call: trailing metadata"),
        _cb("proxy_on_grpc_close", 3, False, "gRPC call: closed"),
        _cb("proxy_on_done", 1, True, "a context is finishing; true = it may be deleted"),
        _cb("proxy_on_log", 1, False, "last look at a finished request (access-log time)"),
        _cb("proxy_on_delete", 1, False, "a context is deleted"),
    ]
}

# ABI 0.1.0 header callbacks have no end_of_stream parameter.
V010_SIGNATURES = {
    "proxy_on_request_headers": (("i32", "i32"), ("i32",)),
    "proxy_on_response_headers": (("i32", "i32"), ("i32",)),
}

ALLOCATORS = ("malloc", "proxy_on_memory_allocate")  # Envoy's host looks them up in this order
VERSION_EXPORT_PREFIX = "proxy_abi_version_"


def version_of_export(name: str) -> str | None:
    """``proxy_abi_version_0_2_1`` -> ``0.2.1``; None for any other name."""
    if not name.startswith(VERSION_EXPORT_PREFIX):
        return None
    parts = name[len(VERSION_EXPORT_PREFIX) :].split("_")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return ".".join(parts)


def callback_signature(name: str, version: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    if version == "0.1.0" and name in V010_SIGNATURES:
        return V010_SIGNATURES[name]
    f = CALLBACKS.get(name)
    return (f.params, f.results) if f else None
