"""Read a WebAssembly binary and show its proxy-wasm ABI: version, callbacks, host functions.

The parser is written from the WebAssembly binary format (core spec, chapter 5) and reads only
what the ABI view needs -- the type, import, function, memory, export and custom sections -- with
every length checked, so a truncated or corrupt file is reported instead of half-read.

    report = inspect("wasm-filters/abi-tour/build/filter.wasm")
    report.abi_version    # "0.2.1"
    report.errors         # [] when Envoy would load it
    print(report)         # a table for humans; report.to_dict() for --json
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..display import Table
from ..errors import MeshlabError
from . import abi

MAGIC = b"\0asm"
VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref", 0x6F: "externref"}
KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}
SECTION_NAMES = {
    0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
    7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "data count", 13: "tag",
}  # fmt: skip

HINT_NOT_WASM = "build the filter first (`meshlab wasm build DIR`) and pass its build/filter.wasm"


class WasmFormatError(MeshlabError):
    """The bytes are not a (complete, well-formed) WebAssembly module."""


class NotProxyWasmError(MeshlabError):
    """A valid WebAssembly module that does not implement the proxy-wasm ABI."""


# ---- the binary format ---------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def fail(self, what: str) -> WasmFormatError:
        return WasmFormatError(
            f"{self.where}: {what} at byte {self.pos} -- the file is truncated or corrupt",
            "rebuild the module; if it was downloaded, download it again and compare its sha256",
        )

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of data")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def bytes(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"{n} bytes expected, only {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        """Unsigned LEB128, at most 5 bytes."""
        result = shift = 0
        for _ in range(5):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                if result > 0xFFFFFFFF:
                    raise self.fail("LEB128 value out of range")
                return result
            shift += 7
        raise self.fail("LEB128 value longer than 5 bytes")

    def name(self) -> str:
        raw = self.bytes(self.u32())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("a name that is not valid UTF-8") from None

    def valtype(self) -> str:
        b = self.byte()
        if b not in VALTYPES:
            raise self.fail(f"unknown value type 0x{b:02x}")
        return VALTYPES[b]

    def limits(self) -> tuple[int, int | None]:
        flags = self.byte()
        if flags not in (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
            raise self.fail(f"unknown limits flags 0x{flags:02x}")
        memory64 = bool(flags & 0x04)
        lo = self._u64() if memory64 else self.u32()
        hi = (self._u64() if memory64 else self.u32()) if flags & 0x01 else None
        return lo, hi

    def _u64(self) -> int:
        result = shift = 0
        for _ in range(10):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
        raise self.fail("LEB128 value longer than 10 bytes")

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


@dataclass
class Import:
    module: str
    name: str
    kind: str
    params: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    status: str = ""  # ok | error: ... | warning: ... (set by the ABI check)
    doc: str = ""

    @property
    def signature(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})" if self.kind == "func" else self.kind


@dataclass
class Export:
    name: str
    kind: str
    params: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    status: str = ""
    doc: str = ""

    @property
    def signature(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})" if self.kind == "func" else self.kind


@dataclass
class Module:
    """What the binary declares (no ABI interpretation)."""

    sections: list[tuple[str, int]]  # (name, size in bytes) in file order; custom sections as "custom:<name>"
    imports: list[Import]
    exports: list[Export]
    memory: tuple[int, int | None] | None  # pages (64 KiB): initial, maximum
    memory_exported: bool
    memory_imported: bool
    defined_functions: int


def parse(data: bytes, where: str = "module") -> Module:
    """Parse the sections of a WebAssembly binary (raises WasmFormatError if it is not one)."""
    if len(data) < 8:
        raise WasmFormatError(
            f"{where}: {len(data)} bytes is too short to be a WebAssembly module (it needs at least the 8-byte header)",
            HINT_NOT_WASM,
        )
    if data[:4] != MAGIC:
        what = "a text file" if all(32 <= b < 127 or b in (9, 10, 13) for b in data[:64]) else "not WebAssembly"
        raise WasmFormatError(
            f"{where} is {what}: a WebAssembly module starts with the bytes 00 61 73 6d ('\\0asm'), this one with {data[:4].hex(' ')}",
            HINT_NOT_WASM,
        )
    version = int.from_bytes(data[4:8], "little")
    if version != 1:
        raise WasmFormatError(
            f"{where}: WebAssembly binary version {version} is not supported (Envoy's V8 runs version 1 core modules)",
            "a component-model or future-format binary cannot be a proxy-wasm filter; build a core module",
        )
    r = _Reader(data, where)
    r.pos = 8
    types: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    imports: list[Import] = []
    func_types: list[int] = []  # type index of each function, imported first
    exports_raw: list[tuple[str, int, int]] = []
    memory: tuple[int, int | None] | None = None
    memory_imported = False
    sections: list[tuple[str, int]] = []
    defined = 0
    while not r.done:
        sid = r.byte()
        if sid not in SECTION_NAMES:
            raise r.fail(f"unknown section id {sid}")
        size = r.u32()
        if size > len(data) - r.pos:
            raise WasmFormatError(
                f"{where}: the {SECTION_NAMES[sid]} section at byte {r.pos} claims {size} bytes, "
                f"but only {len(data) - r.pos} are left -- the file is truncated",
                "rebuild the module; if it was downloaded or copied, fetch it again and compare its sha256",
            )
        body = _Reader(r.bytes(size), f"{where} ({SECTION_NAMES[sid]} section)")
        label = SECTION_NAMES[sid]
        if sid == 0:
            label = "custom:" + body.name()
        elif sid == 1:
            for _ in range(body.u32()):
                form = body.byte()
                if form != 0x60:
                    raise body.fail(f"function type expected (0x60), found 0x{form:02x}")
                params = tuple(body.valtype() for _ in range(body.u32()))
                results = tuple(body.valtype() for _ in range(body.u32()))
                types.append((params, results))
        elif sid == 2:
            for _ in range(body.u32()):
                module, name, kind = body.name(), body.name(), body.byte()
                if kind not in KINDS:
                    raise body.fail(f"unknown import kind {kind}")
                imp = Import(module, name, KINDS[kind])
                if kind == 0:
                    t = body.u32()
                    if t >= len(types):
                        raise body.fail(f"import {module}.{name} uses type {t}, only {len(types)} defined")
                    imp.params, imp.results = types[t]
                    func_types.append(t)
                elif kind == 1:
                    body.byte()
                    body.limits()
                elif kind == 2:
                    memory = body.limits()
                    memory_imported = True
                elif kind == 3:
                    body.valtype()
                    body.byte()
                else:
                    body.byte()
                    body.u32()
                imports.append(imp)
        elif sid == 3:
            for _ in range(body.u32()):
                t = body.u32()
                if t >= len(types):
                    raise body.fail(f"function uses type {t}, only {len(types)} defined")
                func_types.append(t)
                defined += 1
        elif sid == 5:
            count = body.u32()
            for _ in range(count):
                lim = body.limits()
                memory = memory or lim
        elif sid == 7:
            for _ in range(body.u32()):
                name, kind, index = body.name(), body.byte(), body.u32()
                if kind not in KINDS:
                    raise body.fail(f"unknown export kind {kind}")
                exports_raw.append((name, kind, index))
        sections.append((label, size))
    exports = []
    memory_exported = False
    for name, kind, index in exports_raw:
        e = Export(name, KINDS[kind])
        if kind == 0:
            if index >= len(func_types):
                raise WasmFormatError(
                    f"{where}: export {name!r} refers to function {index}, but the module has {len(func_types)}",
                    "the module is corrupt: rebuild it",
                )
            e.params, e.results = types[func_types[index]]
        elif kind == 2:
            memory_exported = True
        exports.append(e)
    return Module(sections, imports, exports, memory, memory_exported, memory_imported, defined)


# ---- the ABI view --------------------------------------------------------------------------------
@dataclass
class Report:
    path: str
    size: int
    sha256: str
    abi_version: str
    module: Module
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def callbacks(self) -> list[str]:
        """The known proxy-wasm callbacks the module exports, in spec order."""
        names = {e.name for e in self.module.exports if e.kind == "func"}
        return [n for n in abi.CALLBACKS if n in names]

    @property
    def missing_callbacks(self) -> list[str]:
        """Known callbacks the module does not export (the host skips those events)."""
        have = set(self.callbacks)
        return [
            n for n, f in abi.CALLBACKS.items()
            if n not in have and self.abi_version in f.versions and n.startswith("proxy_on_") and n != "proxy_on_memory_allocate"
        ]  # fmt: skip

    @property
    def host_functions(self) -> list[str]:
        return [f"{i.module}.{i.name}" for i in self.module.imports if i.kind == "func"]

    @property
    def allocator(self) -> str | None:
        names = {e.name for e in self.module.exports if e.kind == "func"}
        return next((a for a in abi.ALLOCATORS if a in names), None)

    def imports_table(self) -> Table:
        return Table(
            [{"IMPORT": f"{i.module}.{i.name}", "SIGNATURE": i.signature, "STATUS": i.status, "WHAT IT DOES": i.doc} for i in self.module.imports],
            title=f"imports: host functions the module calls ({len(self.module.imports)})",
        )

    def exports_table(self) -> Table:
        return Table(
            [{"EXPORT": e.name, "SIGNATURE": e.signature, "STATUS": e.status, "WHAT IT IS": e.doc} for e in self.module.exports],
            title=f"exports: what the host can call or read ({len(self.module.exports)})",
        )

    def summary(self) -> str:
        mem = self.module.memory
        memory = "none"
        if mem:
            memory = f"{mem[0]} page(s) of 64 KiB" + (f", max {mem[1]}" if mem[1] is not None else "")
            memory += " (exported)" if self.module.memory_exported else " (imported)" if self.module.memory_imported else ""
        lines = [
            f"file:         {self.path}",
            f"size:         {self.size} bytes",
            f"sha256:       {self.sha256}",
            f"ABI version:  {self.abi_version} (exports proxy_abi_version_{self.abi_version.replace('.', '_')})",
            f"allocator:    {self.allocator or 'MISSING'}",
            f"memory:       {memory}",
            f"functions:    {self.module.defined_functions} defined, {len(self.host_functions)} imported",
            f"sections:     {', '.join(f'{n} ({s} B)' for n, s in self.module.sections)}",
            f"callbacks:    {', '.join(self.callbacks) or 'none'}",
            f"host calls:   {', '.join(self.host_functions) or 'none'}",
            f"verdict:      {'OK: Envoy can load this module' if self.ok else 'ERRORS: Envoy would refuse this module'}",
        ]
        lines += [f"  error:   {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return "\n\n".join([self.summary(), str(self.exports_table()), str(self.imports_table())])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        import html

        return (
            f"<pre>{html.escape(self.summary())}</pre>"
            + self.exports_table()._repr_html_()
            + self.imports_table()._repr_html_()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "abi_version": self.abi_version,
            "ok": self.ok,
            "allocator": self.allocator,
            "callbacks": self.callbacks,
            "missing_callbacks": self.missing_callbacks,
            "host_functions": self.host_functions,
            "memory": {
                "initial_pages": self.module.memory[0] if self.module.memory else None,
                "max_pages": self.module.memory[1] if self.module.memory else None,
                "exported": self.module.memory_exported,
                "imported": self.module.memory_imported,
            },
            "sections": [{"name": n, "size": s} for n, s in self.module.sections],
            "imports": [
                {"module": i.module, "name": i.name, "kind": i.kind, "signature": i.signature, "status": i.status} for i in self.module.imports
            ],
            "exports": [{"name": e.name, "kind": e.kind, "signature": e.signature, "status": e.status} for e in self.module.exports],
            "errors": self.errors,
            "warnings": self.warnings,
        }


def _check(report: Report) -> None:
    """Check imports and exports against the ABI tables; fills statuses, errors and warnings."""
    version = report.abi_version
    mod = report.module
    for imp in mod.imports:
        qual = f"{imp.module}.{imp.name}"
        known = None
        if imp.module == "env":
            known = abi.HOST_FUNCTIONS.get(imp.name) or abi.ENV_EXTRAS.get(imp.name)
        elif imp.module in abi.WASI_MODULES:
            known = abi.WASI_FUNCTIONS.get(imp.name)
        if imp.kind == "memory" and imp.module == "env":
            imp.status, imp.doc = "ok", "linear memory provided by the host"
            continue
        if imp.kind != "func":
            imp.status = "error: not provided"
            report.errors.append(f"imports {imp.kind} {qual}: Envoy provides only functions (and memory) to modules")
            continue
        if known is None:
            if imp.module in abi.WASI_MODULES:
                imp.status = "warning: not in Envoy's basic WASI set"
                report.warnings.append(f"imports {qual}: a WASI function outside the set every Envoy provides; older hosts refuse the module")
            elif imp.module == "env":
                imp.status = "error: unknown host function"
                report.errors.append(
                    f"imports unknown host function {qual}: not part of the proxy-wasm ABI, Envoy fails with "
                    f"'missing import: {qual}'"
                )
            else:
                imp.status = "error: unknown module"
                report.errors.append(f"imports {qual} from module {imp.module!r}: Envoy provides only 'env' and WASI")
            continue
        imp.doc = known.doc
        if version not in known.versions:
            imp.status = f"error: not in ABI {version}"
            report.errors.append(f"imports {qual}, which ABI {version} does not have (only {', '.join(sorted(known.versions))})")
        elif (imp.params, imp.results) != (known.params, known.results):
            imp.status = f"error: signature, expected {known.signature}"
            report.errors.append(f"imports {qual} with signature {imp.signature}, the host's is {known.signature}")
        else:
            imp.status = "ok"
    for e in mod.exports:
        if e.kind == "memory":
            e.status, e.doc = "ok", "linear memory: the host reads and writes the module's data here"
            continue
        if e.kind != "func":
            e.status = "other"
            continue
        if abi.version_of_export(e.name):
            e.status, e.doc = "ok", "ABI version marker (never called)"
            continue
        expected = abi.callback_signature(e.name, version)
        if expected is None:
            if e.name.startswith("proxy_on_") or e.name.startswith("proxy_"):
                e.status = "warning: unknown callback"
                report.warnings.append(f"exports {e.name}: not a proxy-wasm callback, the host never calls it")
            else:
                e.status = "other"
                e.doc = "not part of the ABI (ignored by the host)"
            continue
        known = abi.CALLBACKS[e.name]
        e.doc = known.doc
        if version not in known.versions:
            e.status = f"warning: not in ABI {version}"
            report.warnings.append(f"exports {e.name}, which ABI {version} does not call")
        elif (e.params, e.results) != expected:
            e.status = "error: signature"
            report.errors.append(
                f"exports {e.name} with signature {e.signature}, the ABI expects "
                f"({', '.join(expected[0])}) -> ({', '.join(expected[1])})"
            )
        else:
            e.status = "ok"
    if report.allocator is None:
        report.errors.append(
            "exports no allocator (proxy_on_memory_allocate or malloc): Envoy fails with 'Wasm module is missing malloc function'"
        )
    if not (mod.memory_exported or mod.memory_imported):
        report.errors.append("has no linear memory (exported or imported): the host cannot pass it any data")
    names = {e.name for e in mod.exports}
    if "proxy_on_context_create" not in names:
        report.warnings.append("exports no proxy_on_context_create: the module is never told about its contexts")
    if not any(n.startswith("proxy_on_") and n in abi.CALLBACKS and n not in ("proxy_on_memory_allocate",) for n in names):
        report.warnings.append("exports no proxy_on_* callback: the filter will never run any code")


def inspect(path: str | Path) -> Report:
    """The ABI view of a module file. Raises for a file that is not WebAssembly or not proxy-wasm.

    A module that *is* proxy-wasm but would not load (unknown import, wrong signature, no
    allocator) is returned with ``report.errors`` listing why; ``report.ok`` is False.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise MeshlabError(f"no such file: {p}", HINT_NOT_WASM) from None
    except IsADirectoryError:
        raise MeshlabError(f"{p} is a directory, not a .wasm file", f"inspect {p / 'build' / 'filter.wasm'} (build it with `meshlab wasm build {p}`)") from None
    return inspect_bytes(data, str(p))


def inspect_bytes(data: bytes, where: str = "module") -> Report:
    module = parse(data, where)
    versions = [v for e in module.exports if e.kind == "func" and (v := abi.version_of_export(e.name))]
    if not versions:
        others = [e.name for e in module.exports if e.kind == "func"][:8]
        raise NotProxyWasmError(
            f"{where} is a WebAssembly module but not a proxy-wasm filter: it exports no proxy_abi_version_* function "
            f"(its function exports: {', '.join(others) or 'none'}). Envoy refuses it with 'Missing or unknown Proxy-Wasm ABI version'",
            "build it with a proxy-wasm SDK (AssemblyScript: keep `export * from \"@solo-io/proxy-runtime/proxy\"`) "
            "or, in C, export an empty function named proxy_abi_version_0_2_1",
        )
    version = versions[0]
    report = Report(where, len(data), hashlib.sha256(data).hexdigest(), version, module)
    if len(set(versions)) > 1:
        report.errors.append(f"exports several ABI version markers ({', '.join(versions)}): the host cannot tell which ABI it speaks")
    unknown = [v for v in versions if v not in abi.ABI_VERSIONS]
    if unknown:
        report.errors.append(f"ABI version {unknown[0]} is not one Envoy 1.40 knows ({', '.join(abi.ABI_VERSIONS)})")
    _check(report)
    return report
