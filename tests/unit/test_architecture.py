"""The library's layers only point down (issue: "the house"): the import graph of lib/meshlab, read from the source.

model -> controlplane -> runtime -> backends -> facade (lab) -> course helpers, the management plane -> CLI.
Neither backend is imported from outside its own package (the facade reaches them through
``meshlab.backends.backend_class``), nothing outside ``backends/`` asks which backend it talks to, and no import
circle exists (type-only imports under ``if TYPE_CHECKING`` do not count: they never run).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "lib" / "meshlab"


def _name(p: Path) -> str:
    parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in ROOT.rglob("*.py")}


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}  # fmt: skip
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            out |= {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {t for t in out if t in MODULES and t != module}


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> int:
    """0 model, 1 control plane, 2 runtime, 3 backends, 4 facade, 5 course helpers / management plane / tools, 6 CLI."""
    rest = module.removeprefix("meshlab.")
    top = rest.split(".")[0]
    if top == "controlplane":
        return 1
    if top == "runtime" or rest in ("loadgen", "ratelimit", "apparmor"):  # wrk in a pod; the rate-limit service; userns profile
        return 2
    if top == "backends":
        return 3
    if rest in ("lab",):
        return 4
    if rest in ("cli", "wasm.cli", "__init__", "meshlab"):
        return 6
    model = {"errors", "exec", "versions", "state", "topology", "resources", "pki", "registry", "xds", "traffic", "display",
             "federation", "jwt", "system_packages", "wasm.oci", "wasm.abi", "wasm.inspect", "wasm.handmade",
             "otlp", "tracing", "realcluster", "quizzes"}  # fmt: skip
    return 0 if rest in model else 5


# the upward edges the design keeps, each with its reason
ALLOWED_UP = {
    ("meshlab.lab", "meshlab.mesh"): "lab.mesh: the management plane offered on the facade (mesh then works through the facade)",
    ("meshlab.lab", "meshlab.federation"): "lab.discover/federate: Service Mesh Hub's discovery on the facade",
    ("meshlab.lab", "meshlab.controlplane.extensions"): "lab.extension_configs reads ECDS from a config dump",
    ("meshlab.runtime.agent", "meshlab.wasm.hub"): "the agent trusts a running hub's CA, as istio-agent trusts a registry's",
    ("meshlab.backends.kind.executor", "meshlab.prereqs"): "a missing tool is reported as doctor's Check",
    ("meshlab.backends.kind.tools", "meshlab.prereqs"): "kind and istioctl are doctor's Checks",
    ("meshlab.backends.kind.wasm", "meshlab.wasm.hub"): "the lab's hub is the registry the clusters pull from",
    ("meshlab.backends.local.backend", "meshlab.wasm.hub"): "the lab's hub is the registry the agents pull from",
}


def test_no_module_outside_a_backend_imports_it() -> None:
    bad = [(m, t) for m, ts in GRAPH.items() for t in ts
           for b in ("meshlab.backends.local", "meshlab.backends.kind")
           if t.startswith(b) and not m.startswith(b)]  # fmt: skip
    assert not bad, f"imports of a backend from outside it (ask lab.backend / meshlab.backends.backend_class instead): {bad}"


def test_no_import_circle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


def test_layers_only_point_down() -> None:
    up = [(m, t) for m, ts in GRAPH.items() for t in ts if _layer(t) > _layer(m) and (m, t) not in ALLOWED_UP
          and not (m.startswith("meshlab.backends") and t == "meshlab.backends")]  # fmt: skip
    assert not up, f"imports that point up a layer ({_layer.__doc__}): {sorted(up)}"


def test_the_control_plane_runs_nothing() -> None:
    """Istio resources + the registry in, Envoy config out: no processes, no files written, no network."""
    for m, p in MODULES.items():
        if m.startswith("meshlab.controlplane"):
            text = p.read_text()
            assert not re.search(r"\bimport (subprocess|socket|http\.client)\b|\bwrite_text\(|\bwrite_atomic\(|from \.\.runtime\b", text), m


def test_nothing_outside_backends_asks_for_a_backend_by_name() -> None:
    pattern = re.compile(r"""[!=]=\s*["'](kind|local)["']""")
    bad = [f"{p.relative_to(ROOT)}:{i}" for m, p in MODULES.items() if not m.startswith("meshlab.backends")
           for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]  # fmt: skip
    assert not bad, f"backend-name comparisons outside backends/ (ask lab.backend.capabilities or a method): {bad}"
