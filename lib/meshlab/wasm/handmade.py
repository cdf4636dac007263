"""WebAssembly modules assembled byte by byte, for experiments where a compiler would get in the way.

The main one is a *crashing filter*: a well-formed proxy-wasm module (it loads, configures and
passes ``meshlab wasm inspect``) whose ``proxy_on_request_headers`` logs a warning and then executes
``unreachable``, a trap. In Envoy that is a filter that fails at run time -- what
``failure_policy`` (FAIL_CLOSED / FAIL_OPEN / FAIL_RELOAD) is about.

    from meshlab.wasm.handmade import write_crashing_filter
    path = write_crashing_filter("/tmp/crash.wasm")
"""

from __future__ import annotations

from pathlib import Path

from ..state import write_atomic

I32, I64 = 0x7F, 0x7E
OP_UNREACHABLE, OP_END, OP_DROP, OP_CALL = 0x00, 0x0B, 0x1A, 0x10
OP_LOCAL_GET, OP_GLOBAL_GET, OP_GLOBAL_SET, OP_I32_CONST, OP_I32_ADD = 0x20, 0x23, 0x24, 0x41, 0x6A


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        done = (n == 0 and not b & 0x40) or (n == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def name(s: str) -> bytes:
    raw = s.encode()
    return uleb(len(raw)) + raw


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def section(sid: int, body: bytes) -> bytes:
    return bytes([sid]) + uleb(len(body)) + body


class ModuleBuilder:
    """Just enough of the binary format: function types, function imports, functions, one memory,
    one mutable i32 global, data segments and exports."""

    def __init__(self) -> None:
        self.types: list[bytes] = []
        self.imports: list[bytes] = []
        self.funcs: list[tuple[int, bytes]] = []  # (type index, code body)
        self.exports: list[bytes] = []
        self.globals: list[bytes] = []
        self.data: list[bytes] = []
        self.memory_pages: int | None = None
        self.num_imported = 0

    def type(self, params: tuple[int, ...], results: tuple[int, ...]) -> int:
        t = b"\x60" + vec([bytes([p]) for p in params]) + vec([bytes([r]) for r in results])
        if t not in self.types:
            self.types.append(t)
        return self.types.index(t)

    def import_func(self, module: str, field: str, params: tuple[int, ...], results: tuple[int, ...]) -> int:
        assert not self.funcs, "imports come before defined functions in the index space"
        self.imports.append(name(module) + name(field) + b"\x00" + uleb(self.type(params, results)))
        self.num_imported += 1
        return self.num_imported - 1

    def func(self, params: tuple[int, ...], results: tuple[int, ...], code: bytes, export: str | None = None) -> int:
        self.funcs.append((self.type(params, results), code))
        index = self.num_imported + len(self.funcs) - 1
        if export:
            self.exports.append(name(export) + b"\x00" + uleb(index))
        return index

    def memory(self, pages: int, export: str = "memory") -> None:
        self.memory_pages = pages
        self.exports.append(name(export) + b"\x02" + uleb(0))

    def global_i32(self, value: int) -> int:
        self.globals.append(bytes([I32, 0x01, OP_I32_CONST]) + sleb(value) + bytes([OP_END]))
        return len(self.globals) - 1

    def data_at(self, offset: int, payload: bytes) -> None:
        self.data.append(b"\x00" + bytes([OP_I32_CONST]) + sleb(offset) + bytes([OP_END]) + uleb(len(payload)) + payload)

    def to_bytes(self) -> bytes:
        out = b"\0asm" + (1).to_bytes(4, "little")
        out += section(1, vec(self.types))
        if self.imports:
            out += section(2, vec(self.imports))
        out += section(3, vec([uleb(t) for t, _ in self.funcs]))
        if self.memory_pages is not None:
            out += section(5, vec([b"\x00" + uleb(self.memory_pages)]))
        if self.globals:
            out += section(6, vec(self.globals))
        out += section(7, vec(self.exports))
        bodies = []
        for _, code in self.funcs:
            body = vec([]) + code + bytes([OP_END])  # no locals
            bodies.append(uleb(len(body)) + body)
        out += section(10, vec(bodies))
        if self.data:
            out += section(11, vec(self.data))
        return out


def const(n: int) -> bytes:
    return bytes([OP_I32_CONST]) + sleb(n)


CRASH_MESSAGE = b"crashing-filter: proxy_on_request_headers is about to execute 'unreachable'"


def crashing_filter() -> bytes:
    """A proxy-wasm (ABI 0.2.1) module that loads fine and traps on every request's headers."""
    m = ModuleBuilder()
    log = m.import_func("env", "proxy_log", (I32, I32, I32), (I32,))
    m.memory(1)
    heap = m.global_i32(4096)
    m.data_at(64, CRASH_MESSAGE)
    m.func((), (), b"", export="proxy_abi_version_0_2_1")
    # bump allocator: old = heap; heap += size; return old
    m.func(
        (I32,), (I32,),
        bytes([OP_GLOBAL_GET]) + uleb(heap)
        + bytes([OP_GLOBAL_GET]) + uleb(heap) + bytes([OP_LOCAL_GET, 0, OP_I32_ADD, OP_GLOBAL_SET]) + uleb(heap),
        export="proxy_on_memory_allocate",
    )  # fmt: skip
    m.func((I32, I32), (), b"", export="proxy_on_context_create")
    m.func((I32, I32), (I32,), const(1), export="proxy_on_vm_start")
    m.func((I32, I32), (I32,), const(1), export="proxy_on_configure")
    m.func(
        (I32, I32, I32), (I32,),
        const(3) + const(64) + const(len(CRASH_MESSAGE)) + bytes([OP_CALL]) + uleb(log) + bytes([OP_DROP, OP_UNREACHABLE]),
        export="proxy_on_request_headers",
    )  # fmt: skip
    return m.to_bytes()


def write_crashing_filter(path: str | Path) -> Path:
    p = Path(path)
    write_atomic(p, crashing_filter())
    return p
