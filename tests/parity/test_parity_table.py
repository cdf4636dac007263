"""The parity suite's own rules: every parity test names the Istio function it follows, and docs/parity.md
lists every parity test with that reference (docs/parity.md, "How to add a behaviour")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
META = {"test_every_parity_test_is_in_the_table", "test_every_parity_test_names_an_istio_function"}
# "<path in istio/istio>.go: <Function>" (a method as Type.method), or a data file and the element it follows
REFERENCE = re.compile(r"^[\w./-]+\.go: [A-Za-z_]\w*(\.[A-Za-z_]\w*)?$|^[\w./-]+\.(json|yaml): [\w.\-\[\]]+$")


def parity_tests() -> list[tuple[str, str, str | None]]:
    """(file, test name, the ``@pytest.mark.istio`` reference or None) for every test in tests/parity/."""
    out = []
    for f in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and node.name not in META:
                refs = [ast.literal_eval(d.args[0]) for d in node.decorator_list
                        if isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "istio" and d.args]  # fmt: skip
                out.append((f.name, node.name, refs[0] if refs else None))
    return out


def marked_tests() -> list[tuple[str, str]]:
    """(test name, Istio reference) for every marked test."""
    return [(name, ref) for _f, name, ref in parity_tests() if ref is not None]


def test_every_parity_test_names_an_istio_function() -> None:
    bad = [f"{f}::{name} ({ref!r})" for f, name, ref in parity_tests() if ref is None or not REFERENCE.match(ref)]
    assert not bad, (
        "a parity test is written from Istio's source: mark it @pytest.mark.istio('<path>.go: <Function>') naming the "
        "file and the function (at release-1.31) it follows; these do not: " + ", ".join(bad)
    )


def test_every_parity_test_is_in_the_table() -> None:
    table = (ROOT / "docs" / "parity.md").read_text()
    missing = [f"{name} ({src})" for name, src in marked_tests() if name not in table or src not in table]
    assert not missing, "add these parity tests to docs/parity.md (test name and Istio source): " + ", ".join(missing)
