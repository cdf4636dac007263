"""docs/parity.md lists every parity test and the Istio source it follows."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def marked_tests() -> list[tuple[str, str]]:
    """(test name, Istio source path) for every ``@pytest.mark.istio(...)`` test in tests/parity/."""
    out = []
    for f in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                for d in node.decorator_list:
                    if isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "istio" and d.args:
                        out.append((node.name, ast.literal_eval(d.args[0])))
    return out


def test_every_parity_test_is_in_the_table() -> None:
    table = (ROOT / "docs" / "parity.md").read_text()
    missing = [f"{name} ({src})" for name, src in marked_tests() if name not in table or src not in table]
    assert not missing, "add these parity tests to docs/parity.md (test name and Istio source): " + ", ".join(missing)
