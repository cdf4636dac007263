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


def solution(cell_id: str, **names: object) -> dict[str, object]:
    """Run a solution cell of the notebook with solutions on; the names it assigned."""
    from types import SimpleNamespace

    cell = next(c for c in nbformat.read(LAB, as_version=4).cells if c.get("id") == cell_id)
    scope: dict[str, object] = {"ex": SimpleNamespace(solutions=True, stop_unless_answered=lambda *a: None), **names}
    exec(compile(cell.source, cell_id, "exec"), scope)
    return scope


def test_the_solutions_are_a_valid_kind_plan(tmp_path: Path) -> None:
    """On kind the same cells are kubectl and istioctl steps: the solutions' resources pass Istio 1.31's CRD schemas
    (strict), the module goes to the lab registry, the policy test's POST is a curl -X POST."""
    import pytest

    from meshlab.errors import LabStateError
    from meshlab.lab import dry_run_lab
    from meshlab.wasm.hub import Hub
    from meshlab.wasm.publish import SECRET, publish

    lab = dry_run_lab("separate-networks", tmp_path)
    lab.deploy("curl", cluster="cluster1", namespace="frontend")
    lab.deploy("curl", cluster="cluster1", namespace="legacy", sidecar=False)
    lab.apply(solution("lab11-s4")["answer_11_2"], cluster="cluster1")  # type: ignore[arg-type]
    try:
        pushed = publish(lab, "add-header", "wasm/add-header:capstone")
        extension = solution("lab11-f4", pushed=pushed, SECRET=SECRET)["answer_11_3"]
        lab.apply(extension, cluster="cluster1")  # type: ignore[arg-type]
    finally:
        Hub.down_all()
    with pytest.raises(LabStateError, match="dry run"):
        lab.call("curl", "http://helloworld.sample:5000/hello", cluster="cluster1", n=4, method="POST")
    steps = list(lab.backend.recorded)
    applied = [m["kind"] for s in steps if "apply" in s.tags for m in s.manifests]
    assert {"PeerAuthentication", "AuthorizationPolicy", "TrafficExtension"} <= set(applied), applied
    assert [s for s in steps if "wasm-push" in s.tags], "the module is copied to the lab registry"
    assert "-X POST" in steps[-1].argv[-1]
    assert lab.backend.recorded.problems() == []
