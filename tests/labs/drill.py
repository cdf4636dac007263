"""The exercise drill: a lab notebook rewritten so that, as it runs with the solutions on, every exercise's
check cell also runs as a learner would meet it -- twice with a wrong answer, once with an empty one, once
unanswered -- before the solution's right answer is checked by the original cell.

Each wrong or empty run must be refused with feedback (:class:`meshlab.exercises.NotYet`, whose lines carry
no traceback); a wrong run must show its evidence; the unanswered run must stop at the gate; and the right
answer, checked last, must still pass (so a check cell that changes the lab on every run -- one more pod per
run -- fails here). The wrong answer of each exercise is a Python expression in its solution cell's metadata
(``meshlab.wrong``: a misconception a learner might have; ``_right`` names the solution's answer there).

The drilled notebook is for the test run only (``make labs`` and the handout run the lab as written).
"""

from __future__ import annotations

import ast
import copy

import nbformat

WRONG_KEY = "wrong"  # cell.metadata["meshlab"]["wrong"]

# Runs in the kernel, once, after the cell that creates `ex`.
HELPERS = '''\
from IPython.utils.capture import capture_output as _drill_capture
from meshlab.exercises import NotYet as _DrillNotYet


def _drill(ex_id, label, source, evidence):
    """Run a check cell's source as a learner (solutions off): it must refuse, with feedback only."""
    ex.solutions, lines = False, None
    try:
        with _drill_capture() as shown:
            try:
                exec(compile(source, f"<check {ex_id}>", "exec"), globals())
            except _DrillNotYet as e:
                lines = e._render_traceback_()
    finally:
        ex.solutions = True
    assert lines is not None, f"exercise {ex_id}: the {label} answer was accepted"
    text = "\\n".join(lines)
    assert "Traceback" not in text and 'File "' not in text, f"exercise {ex_id}: the feedback is a traceback:\\n{text}"
    if evidence and "could not be checked" not in text:  # (else the error the answer caused is the evidence)
        assert shown.stdout.strip() or shown.outputs, f"exercise {ex_id}: a {label} answer shows no evidence"
    print(f"drill {ex_id}, {label} answer: refused -- {lines[0]}")


def _drill_gate(ex_id, answer):
    """The gate after the solution cell, as a learner who has not answered meets it."""
    ex.solutions = False
    try:
        ex.stop_unless_answered(ex_id, answer)
    except _DrillNotYet as e:
        print(f"drill {ex_id}, unanswered: Run All stops -- {e._render_traceback_()[0]}")
    else:
        raise AssertionError(f"exercise {ex_id}: the gate let an unanswered exercise through")
    finally:
        ex.solutions = True
'''


def _check_call(tree: ast.AST) -> ast.Call | None:
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "check" \
                and isinstance(n.func.value, ast.Name) and n.func.value.id == "ex":
            return n
    return None


def _assigned(tree: ast.AST) -> set[str]:
    return {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}


def exercises(nb: nbformat.NotebookNode) -> list[tuple[int, int, str, str, str]]:
    """(index of the solution cell, index of its check cell, exercise id, answer name, wrong-answer expression) of
    every exercise. The check follows the solution, at once or after the experiment a prediction is about."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "solution" not in cell.metadata.get("tags", []) or i + 1 >= len(nb.cells):
            continue
        names = _assigned(ast.parse(cell.source))
        for j in range(i + 1, len(nb.cells)):
            if nb.cells[j].cell_type != "code":
                continue
            call = _check_call(ast.parse(nb.cells[j].source))
            if call is not None and len(call.args) >= 2 and isinstance(call.args[1], ast.Name) and call.args[1].id in names:
                wrong = cell.metadata.get("meshlab", {}).get(WRONG_KEY)
                found.append((i, j, call.args[0].value, call.args[1].id, wrong))  # type: ignore[attr-defined]
                break
    return found


def drilled(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` with the drill cells before every check cell (after its experiment), and the helpers
    after ``ex``'s cell."""
    out = copy.deepcopy(nb)
    v4 = nbformat.v4
    plan = {j: (ex_id, name, wrong) for _, j, ex_id, name, wrong in exercises(nb)}
    missing = [ex_id for ex_id, _, wrong in plan.values() if not wrong]
    if missing:
        raise ValueError(f"exercises without a wrong answer to drill: {missing} (metadata meshlab.wrong of the solution cell)")
    cells = []
    for i, cell in enumerate(nb.cells):
        if i in plan:  # the learner's runs of the check, with the experiment (if any) already done
            ex_id, name, wrong = plan[i]
            check = cell.source
            steps = [
                f"_right = {name}\n{name} = {wrong}",
                f"_drill({ex_id!r}, 'wrong', {check!r}, evidence=True)",
                f"_drill({ex_id!r}, 'wrong (again)', {check!r}, evidence=True)",
                f"{name} = type(_right)() if isinstance(_right, (str, dict, list, set, tuple)) and _right else None\n"
                f"_drill({ex_id!r}, 'empty', {check!r}, evidence=False)",
                f"{name} = ...\n_drill_gate({ex_id!r}, {name})\n{name} = _right",
            ]
            cells += [v4.new_code_cell(s, metadata={"tags": ["drill"]}) for s in steps]
        cells.append(out.cells[i])
        if cell.cell_type == "code" and "Exercises(solutions)" in cell.source:
            cells.append(v4.new_code_cell(HELPERS, metadata={"tags": ["drill"]}))
    out.cells = cells  # the lab's cells keep their ids; new_code_cell gives the drill cells fresh ones
    return out
