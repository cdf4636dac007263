"""Lab 11, the capstone, as a learner meets it: four parts (pattern, policy, filter, incident), each answered by
the learner and graded by a check that sends traffic; the incident is one unnamed fault of the capstone's pool,
seeded by a parameter; only solutions are hidden, and no cell but a check applies a learner's answer or a fix."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat

LAB = Path(__file__).resolve().parents[2] / "labs" / "11-capstone.ipynb"


def code_cells() -> list[nbformat.NotebookNode]:
    return [c for c in nbformat.read(LAB, as_version=4).cells if c.cell_type == "code"]


def test_four_parts_each_written_by_the_learner_and_graded_by_traffic() -> None:
    cells = code_cells()
    checks = {c.source.split('ex.check("', 1)[1][:4]: c.source for c in cells if 'ex.check("' in c.source}
    assert sorted(checks) == ["11.1", "11.2", "11.3", "11.4"], sorted(checks)
    assert "lab.call(" in "".join(c.source for c in cells if "baseline = lab.call" in c.source), "11.1 predicts a call's way"
    assert "locked_down" in checks["11.2"] and "lab.call(" in checks["11.2"]  # (inside statuses())
    assert "every_answer_tagged" in checks["11.3"] and "lab.call(" in checks["11.3"]
    assert "incident.grade" in checks["11.4"]
    incident = next(c.source for c in cells if "faults.Mystery(" in c.source)
    assert "faults.Mystery(lab, incident_seed, faults.INCIDENT_POOL, sizes=(1,))" in incident
    params = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    assert "incident_seed = None" in params, "CI and a learner re-roll the incident through a parameter"


def test_only_solutions_are_hidden_and_only_checks_apply_answers() -> None:
    for i, c in enumerate(code_cells()):
        solution = "solution" in c.metadata.get("tags", [])
        assert bool(c.metadata.get("jupyter", {}).get("source_hidden")) == solution, f"code cell {i}: only solutions are hidden"
        names = {ast.unparse(n.func) for n in ast.walk(ast.parse(c.source)) if isinstance(n, ast.Call)}
        if solution:
            continue
        assert not {"faults.repair", "faults.solution", "incident.solution"} & names, f"code cell {i} gives the fix away"
        assert "faults.fixed" not in names, f"code cell {i}: the capstone grades its incident with incident.grade"
