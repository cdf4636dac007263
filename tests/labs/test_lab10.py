"""Lab 10 as a learner meets it: hidden means hidden. Diagnoses stay closed until opened (a closed <details>
with a summary that gives nothing away: JupyterLab shows a hidden markdown cell's source again when "Run All"
renders it), the only hidden code is the solutions', no cell repairs a fault except a check grading the learner's
fix, and "Run All" on a fresh copy stops at the first unanswered exercise with its fault still broken."""

from __future__ import annotations

import ast
import json
import re
import tempfile
from pathlib import Path

import nbformat
import pytest

from meshlab import faults
from meshlab.exercises import ENV
from meshlab.lab import Lab

LAB = Path(__file__).resolve().parents[2] / "labs" / "10-troubleshooting.ipynb"
SUMMARY = "<details><summary>Diagnosis (open it once you have tried)</summary>"


def lab10() -> nbformat.NotebookNode:
    return nbformat.read(LAB, as_version=4)


def calls(source: str) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]


def name(call: ast.Call) -> str:
    return ast.unparse(call.func)


def test_diagnoses_stay_closed_and_give_nothing_away() -> None:
    diagnoses = [c for c in lab10().cells if "diagnosis" in c.metadata.get("tags", [])]
    assert len(diagnoses) >= 7, "a diagnosis per named fault"
    for c in diagnoses:
        assert c.cell_type == "markdown" and c.source.startswith(SUMMARY + "\n\n") and c.source.endswith("</details>"), c.source[:200]
        assert "<details open" not in c.source and c.source.count("<details") == 1
        assert "jupyter" not in c.metadata, "a hidden markdown cell opens when Run All renders it: use <details>"


def test_only_solutions_are_hidden_and_only_graders_repair() -> None:
    cells = lab10().cells
    for i, c in enumerate(cells):
        hidden = c.metadata.get("jupyter", {}).get("source_hidden")
        solution = "solution" in c.metadata.get("tags", [])
        assert bool(hidden) == solution, f"cell {i}: only solution cells are hidden ({c.source[:80]!r})"
        if c.cell_type != "code":
            continue
        tree = ast.parse(c.source)
        names = [name(n) for n in calls(c.source)]
        assert "faults.repair" not in names, f"cell {i} repairs a fault by itself: the learner writes the fix"
        if solution:
            body = tree.body[0]
            assert isinstance(body, ast.If) and ast.unparse(body.test) == "ex.solutions", f"cell {i}"
            continue
        assert not {"faults.solution", "mystery.solution"} & set(names), f"cell {i} uses a solution outside the solutions"
        graders = [n for n in names if n in ("faults.fixed", "faults.fails_over", "mystery.grade")] + \
                  [ast.unparse(a) for n in calls(c.source) for a in n.args if ast.unparse(a) == "mystery.grade"]
        if graders:
            [check] = [n for n in calls(c.source) if name(n) == "ex.check"]
            assert all(g in ast.unparse(check) for g in graders), f"cell {i}: a fix is applied only by ex.check, grading an answer"


def test_every_named_fault_is_fixed_by_the_learner() -> None:
    cells = lab10().cells
    injected = [m for c in cells if c.cell_type == "code" for m in re.findall(r'faults\.inject\(lab, "([a-z0-9-]+)"\)', c.source)]
    graded = {m for c in cells if c.cell_type == "code" for m in re.findall(r'faults\.fixed\(lab, "([a-z0-9-]+)"', c.source)}
    graded |= {"max-ejection"} if any("faults.fails_over(lab" in c.source for c in cells) else set()
    assert sorted(injected) == sorted(faults.FAULTS), injected
    assert set(injected) == graded, f"faults whose fix no exercise grades: {set(injected) - graded}"
    assert any("faults.Mystery(lab, mystery_seed)" in c.source for c in cells), "the mystery round"


@pytest.mark.notebook
def test_run_all_stops_at_the_first_exercise_with_its_fault_still_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run All as a learner (solutions off) in one kernel, then look at the lab that kernel left, before it exits."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    home = Path(tempfile.mkdtemp(prefix="mlt"))  # short: Envoy's admin sockets live below it
    monkeypatch.setenv("MESHLAB_HOME", str(home))  # the kernel inherits it
    monkeypatch.delenv(ENV, raising=False)
    nb = lab10()
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += '\nbackend = "local"\nsolutions = False'
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(LAB.parent)}})
    stopped, error = None, None
    try:
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                try:
                    client.execute_cell(cell, i)
                except CellExecutionError as e:
                    stopped, error = i, e
                    break
            probe = nbformat.v4.new_code_cell(
                "import json\n"
                "_gw = lab.envoy_config('istio-eastwestgateway', 'cluster2', 'dynamic_listeners').get('configs', [])\n"
                "_r = lab.call('curl', URL, cluster='cluster1', n=6)\n"
                "print(json.dumps({'listeners': len(_gw), 'answered_by': sorted(_r.clusters)}))")
            nb.cells.append(probe)
            client.execute_cell(probe, len(nb.cells) - 1)
    finally:
        Lab.down_all(home, quiet=True)
    first = next(i for i, c in enumerate(nb.cells) if "solution" in c.metadata.get("tags", []))
    assert stopped == first, f"Run All should stop at the first exercise's gate (cell {first}), stopped at {stopped}"
    assert error is not None and error.ename == "NotYet" and "10.1" in error.evalue, error
    shown = "".join(o.get("text", "") + "".join(o.get("traceback", [])) for o in nb.cells[first].outputs)
    assert "waiting for your answer" in shown and "Traceback" not in shown, f"feedback, not a traceback: {shown}"
    assert all(c.get("execution_count") is None for c in nb.cells[first + 1:-1] if c.cell_type == "code"), "nothing ran after the stop"
    assert all(c.source.startswith(SUMMARY) and "jupyter" not in c.metadata
               for c in nb.cells if "diagnosis" in c.metadata.get("tags", [])), "every diagnosis still closed"
    seen = json.loads(probe.outputs[-1]["text"])
    assert seen == {"listeners": 0, "answered_by": ["cluster1"]}, f"the expose-services fault should still be there: {seen}"
