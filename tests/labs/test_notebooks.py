"""The lab notebooks as tests: hygiene (what is committed), papermill (runs top to bottom), nbval (per cell)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "labs"
ALL_NOTEBOOKS = sorted(LABS.glob("*.ipynb"))
LAB_NOTEBOOKS = sorted(LABS.glob("[0-9]*.ipynb"))  # the ones `make labs` runs
CELL_TIMEOUT = 600


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=ids(ALL_NOTEBOOKS))
def test_hygiene(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec name must be python3"
    assert nb.metadata.get("kernelspec", {}).get("language", "python") == "python"

    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, c in enumerate(code):
        assert not c.outputs, f"code cell {i} has committed outputs: clear them before committing"
        assert c.execution_count is None, f"code cell {i} has execution_count {c.execution_count}"

    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"need exactly one cell tagged 'parameters', found {len(params)}"
    assert params[0].cell_type == "code", "the 'parameters' cell must be a code cell"
    assigned = {
        t.id
        for node in ast.walk(ast.parse(params[0].source))
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    assert "backend" in assigned, "the 'parameters' cell must assign `backend`"

    headings = [
        line
        for c in nb.cells
        if c.cell_type == "markdown"
        for line in c.source.splitlines()
        if re.match(r"^#{1,6}\s", line)
    ]
    assert any("cleanup" in h.lower() for h in headings), "the notebook must end with a '## Cleanup' section"


@pytest.mark.notebook
@pytest.mark.parametrize("path", LAB_NOTEBOOKS, ids=ids(LAB_NOTEBOOKS))
def test_runs_with_papermill(path: Path, tmp_path: Path) -> None:
    import papermill

    out = tmp_path / path.name
    papermill.execute_notebook(
        str(path),
        str(out),
        parameters={"backend": "local"},
        kernel_name="python3",
        cwd=str(LABS),
        execution_timeout=CELL_TIMEOUT,
        log_output=False,
        progress_bar=False,
    )
    executed = nbformat.read(out, as_version=4)
    assert executed.metadata.papermill.get("exception") in (None, False)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "not every code cell ran"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)


@pytest.mark.notebook
@pytest.mark.parametrize("path", LAB_NOTEBOOKS, ids=ids(LAB_NOTEBOOKS))
def test_nbval(path: Path) -> None:
    argv = [
        sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
        f"--nbval-cell-timeout={CELL_TIMEOUT}", "-p", "no:cacheprovider", "-q",
        str(path.relative_to(ROOT)),
    ]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3 * CELL_TIMEOUT)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
    assert proc.returncode == 0, f"nbval failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}"
