"""The lab notebooks as tests: hygiene (what is committed), exercises (rules, solutions run), papermill (every
lab runs top to bottom with solutions=True), nbval (reference outputs: where nbval compares something)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from drill import WRONG_KEY, drilled  # tests/labs/drill.py
from run_labs import default_jobs, kernel_manager, run_all  # tests/labs/run_labs.py

from meshlab.exercises import ENV

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
    for i, c in enumerate(code):  # files where `meshlab down` finds them, also after a killed kernel
        assert "tempfile" not in c.source and "/tmp" not in c.source, (
            f"code cell {i} writes to the system's temp directory: use Lab.workdir(purpose), which `meshlab down` removes")
    marked = [i for i, c in enumerate(code) if "NBVAL_CHECK_OUTPUT" in c.source]
    assert not marked, (
        f"code cells {marked} carry # NBVAL_CHECK_OUTPUT, but labs commit no outputs, so nbval would compare nothing: "
        "make the cell assert what it shows instead"
    )


def assigned_names(tree: ast.AST) -> dict[str, ast.expr]:
    """Simple `name = value` assignments anywhere in ``tree``: name -> value."""
    return {
        t.id: node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def calls(tree: ast.AST, obj: str, method: str) -> list[ast.Call]:
    return [
        n for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == method
        and isinstance(n.func.value, ast.Name) and n.func.value.id == obj
    ]


def exercise_problems(nb: nbformat.NotebookNode, lab: str) -> list[str]:
    """What keeps notebook ``lab`` (its number, e.g. "02") from meeting the exercise rules of TEAM.md."""
    problems: list[str] = []
    cells = nb.cells
    trees = [ast.parse(c.source) if c.cell_type == "code" else None for c in cells]
    params = next((i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])), None)
    if params is None or assigned_names(trees[params]).get("solutions") is None:
        problems.append("the parameters cell must assign `solutions = False`")
    elif not (isinstance(v := assigned_names(trees[params])["solutions"], ast.Constant) and v.value is False):
        problems.append("`solutions` must default to False in the parameters cell")
    else:
        first = next((i for i in range(params + 1, len(cells)) if cells[i].cell_type == "code"), None)
        if first is None or "Exercises(solutions)" not in cells[first].source:
            problems.append("the first code cell after the parameters cell must create `ex = Exercises(solutions)`")

    ids: list[str] = []
    answers: set[str] = set()  # names the learner assigns in exercise cells
    exercise_cells: set[int] = set()
    for i, c in enumerate(cells):
        if "solution" not in c.metadata.get("tags", []):
            continue
        where = f"solution cell {i}"
        if c.metadata.get("jupyter", {}).get("source_hidden") is not True:
            problems.append(f"{where}: hide it with metadata jupyter.source_hidden = true")
        if not str(c.metadata.get("meshlab", {}).get(WRONG_KEY, "")).strip():
            problems.append(f"{where}: give a wrong answer a learner might give (a Python expression; `_right` is the "
                            f"solution's answer) in its metadata meshlab.{WRONG_KEY}: the drill checks it is refused")
        body = trees[i].body if trees[i] else []
        if not (body and isinstance(body[0], ast.If) and ast.unparse(body[0].test) == "ex.solutions"):
            problems.append(f"{where}: it must be one `if ex.solutions:` block, then ex.stop_unless_answered(...)")
            continue
        gates = calls(trees[i], "ex", "stop_unless_answered")
        if len(body) != 2 or len(gates) != 1 or not (isinstance(body[1], ast.Expr) and body[1].value is gates[0]):
            problems.append(f"{where}: after its `if ex.solutions:` block it must call ex.stop_unless_answered(id, answer) "
                            "once, so Run All stops there until the learner has answered")
            continue
        prev = trees[i - 1] if i > 0 else None
        todo = {n for n, v in assigned_names(prev).items()
                if isinstance(v, ast.Constant) and v.value is Ellipsis} if prev else set()
        if not todo:
            problems.append(f"{where}: the cell before it must be the exercise, assigning `...` to the answer")
            continue
        if missing := todo - set(assigned_names(body[0])):
            problems.append(f"{where}: it does not assign {sorted(missing)}")
        # the check follows the solution, right away or after the experiment a prediction is about (issue 20)
        graded = next((j for j in range(i + 1, len(cells)) if trees[j] and any(
            isinstance(a, ast.Name) and a.id in todo for c in calls(trees[j], "ex", "check") for a in c.args[1:2])), None)
        checks = calls(trees[graded], "ex", "check") if graded is not None else []
        if len(checks) != 1:
            problems.append(f"{where}: a cell after it must call ex.check(...) once and must grade the exercise's answer")
            continue
        args = checks[0].args
        ex_id = args[0].value if args and isinstance(args[0], ast.Constant) else None
        if not (isinstance(ex_id, str) and re.fullmatch(rf"{lab}\.\d+", ex_id)):
            problems.append(f"{where}: its check needs a literal id like \"{lab}.1\", got {ast.unparse(args[0]) if args else 'none'}")
        if len(args) < 2 or not (isinstance(args[1], ast.Name) and args[1].id in todo):
            problems.append(f"{where}: its check must grade the exercise's answer ({', '.join(sorted(todo))})")
        if len(args) > 1 and [ast.unparse(a) for a in gates[0].args] != [repr(ex_id), ast.unparse(args[1])]:
            problems.append(f"{where}: its gate must name the same exercise and answer as the check: "
                            f"ex.stop_unless_answered({ex_id!r}, {ast.unparse(args[1]) if len(args) > 1 else '...'})")
        ids.append(str(ex_id))
        answers |= todo
        exercise_cells |= {i - 1, i, graded}
    for i, tree in enumerate(trees):
        if tree is None or i in exercise_cells:
            continue
        names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in answers]
        if used := sorted({n.id for n in names if isinstance(n.ctx, ast.Load)} - {n.id for n in names if isinstance(n.ctx, ast.Store)}):
            problems.append(f"code cell {i} uses {used}, which is `...` for a learner who skips the exercise: "
                            "read what the lab observed instead")
    if len(ids) < 2:
        problems.append(f"{len(ids)} exercises: each lab needs 2 or more (exercise, hidden solution, check)")
    if len(set(ids)) != len(ids):
        problems.append(f"exercise ids repeat: {ids}")
    quizzes = [q for t in trees if t for q in calls(t, "ex", "quiz")]
    if not any(q.args and isinstance(q.args[0], ast.Constant) and q.args[0].value == lab for q in quizzes):
        problems.append(f'no quiz: call ex.quiz("{lab}") once (its questions live in meshlab/quizzes.py)')
    if any(len(q.args) > 1 or q.keywords for q in quizzes):
        problems.append("a quiz cell lists its questions (and so its key): move them to meshlab/quizzes.py, "
                        f'call ex.quiz("{lab}")')
    return problems


@pytest.mark.parametrize("path", LAB_NOTEBOOKS, ids=ids(LAB_NOTEBOOKS))
def test_exercises(path: Path) -> None:
    """Every lab: a ``solutions`` parameter, 2+ exercises (exercise, hidden solution, check) and a quiz."""
    nb = nbformat.read(path, as_version=4)
    problems = exercise_problems(nb, path.name.split("-", 1)[0])  # "03", or "03b" for a lab between two others
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


@pytest.mark.notebook
def test_every_lab_runs_with_papermill(tmp_path: Path) -> None:
    """Every lab runs top to bottom with its solutions, several at once, each in its own state directory (the
    parallel runner of ``make labs``, tests/labs/run_labs.py); on the way the exercise drill
    (tests/labs/drill.py) runs every check twice with a wrong answer, once empty and once unanswered, each
    refused with feedback and no traceback, before the solution's answer passes the original check cell."""
    sources, out = tmp_path / "drilled", tmp_path / "executed"
    sources.mkdir()
    out.mkdir()
    for path in LAB_NOTEBOOKS:
        nbformat.write(drilled(nbformat.read(path, as_version=4)), sources / path.name)
    drilled_labs = [sources / path.name for path in LAB_NOTEBOOKS]
    # CI runs every exercise's solution
    results = run_all(drilled_labs, out, {"backend": "local", "solutions": True}, CELL_TIMEOUT, default_jobs())
    failed = {nb.name: f"{status}\n{reason}" for nb, (ok, status, reason, _) in results.items() if not ok}
    assert not failed, "\n\n".join(f"{name}: {why}" for name, why in failed.items())
    for path in LAB_NOTEBOOKS:
        executed = nbformat.read(out / path.name, as_version=4)
        assert executed.metadata.papermill.get("exception") in (None, False), path.name
        code = [c for c in executed.cells if c.cell_type == "code"]
        assert code and all(c.execution_count is not None for c in code), f"{path.name}: not every code cell ran"
        assert not any(o.get("output_type") == "error" for c in code for o in c.outputs), path.name
        drill = "".join(o.get("text", "") for c in code if "drill" in c.metadata.get("tags", []) for o in c.outputs)
        for ex_id in re.findall(r'ex\.check\("(\d\d[a-z]?\.\d+)"', "".join(c.source for c in code)):
            for what in ("wrong answer: refused", "wrong (again) answer: refused", "empty answer: refused", "unanswered: Run All stops"):
                assert f"drill {ex_id}, {what}" in drill, f"{path.name}: exercise {ex_id}: the drill did not report '{what}'"


def run_nbval(path: Path, solutions: bool = True) -> subprocess.CompletedProcess[str]:
    """nbval in lax mode on ``path``: every cell must run; cells marked ``# NBVAL_CHECK_OUTPUT`` must
    reproduce their stored output. nbval cannot pass parameters: ``Exercises`` reads the solutions switch
    from the environment."""
    argv = [
        sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
        f"--nbval-cell-timeout={CELL_TIMEOUT}", "-p", "no:cacheprovider", "-q", path.name,
    ]
    env = {k: v for k, v in os.environ.items() if k != ENV} | ({ENV: "1"} if solutions else {})
    return subprocess.run(argv, cwd=path.parent, env=env, capture_output=True, text=True, timeout=3 * CELL_TIMEOUT)


@pytest.mark.notebook
def test_nbval_compares_reference_outputs(tmp_path: Path) -> None:
    """Where nbval checks something: committed reference outputs. The labs commit none (their check cells
    assert instead), so nbval runs here, on a fixture, rather than re-running every lab papermill ran."""
    fixture = Path(__file__).parent / "fixtures" / "nbval-reference.ipynb"
    nb = nbformat.read(fixture, as_version=4)
    nbformat.write(nb, tmp_path / "same.ipynb")
    ok = run_nbval(tmp_path / "same.ipynb")
    assert ok.returncode == 0, f"nbval should accept the outputs as stored:\n{ok.stdout[-3000:]}"

    assert "NBVAL_CHECK_OUTPUT" in nb.cells[1].source
    nb.cells[1].outputs[0].text = "[('cluster1', 'v1')]\n"  # a changed output of a marked cell
    nbformat.write(nb, tmp_path / "changed.ipynb")
    changed = run_nbval(tmp_path / "changed.ipynb")
    assert changed.returncode != 0 and "[('cluster1', 'v1'), ('cluster2', 'v2')]" in changed.stdout, (
        f"nbval must fail on a changed output and show the new one:\n{changed.stdout[-3000:]}"
    )

    off = run_nbval(tmp_path / "same.ipynb", solutions=False)
    assert off.returncode != 0 and "solutions: False" in off.stdout, (
        f"without {ENV}=1 the solutions cell must print False and fail its comparison:\n{off.stdout[-3000:]}"
    )


def fixture_lab(**overrides: str) -> nbformat.NotebookNode:
    """A minimal notebook that meets the exercise rules; ``overrides`` replace cells' sources by name."""
    v4 = nbformat.v4
    src = {
        "params": 'backend = "local"\nsolutions = False',
        "setup": "from meshlab.exercises import Exercises\nex = Exercises(solutions)\nobserved = 2",
        "ex1": "answer = ...", "sol1": 'if ex.solutions:\n    answer = 2\nex.stop_unless_answered("05.1", answer)',
        "check1": 'ex.check("05.1", answer, observed, hint="count", evidence=f"observed: {observed}")',
        "ex2": "rule = ...", "sol2": 'if ex.solutions:\n    rule = "x"\nex.stop_unless_answered("05.2", rule)',
        "check2": 'print("rule applied")\nex.check("05.2", rule, lambda r: r == "x", hint="write it")',
        "quiz": 'ex.quiz("05")',
    } | overrides
    wrong = {"sol1": "_right + 1", "sol2": '"y"'}

    def metadata(k: str) -> dict:
        if k == "params":
            return {"tags": ["parameters"]}
        if k in wrong:
            return {"tags": ["solution"], "jupyter": {"source_hidden": True}, "meshlab": {WRONG_KEY: wrong[k]}}
        return {}

    nb = v4.new_notebook()
    nb.cells = [v4.new_code_cell(s, metadata=metadata(k)) for k, s in src.items()]
    return nb


def test_exercise_rules_accept_a_complete_lab_and_name_each_defect() -> None:
    assert exercise_problems(fixture_lab(), "05") == []
    for overrides, problem in [
        ({"params": 'backend = "local"'}, "must assign `solutions = False`"),
        ({"params": "solutions = True"}, "must default to False"),
        ({"setup": "ex = object()"}, "must create `ex = Exercises(solutions)`"),
        ({"ex1": "answer = 3"}, "assigning `...` to the answer"),
        ({"sol1": "answer = 2"}, "one `if ex.solutions:` block"),
        ({"sol1": "if ex.solutions:\n    answer = 2"}, "must call ex.stop_unless_answered(id, answer)"),
        ({"sol1": 'if ex.solutions:\n    answer = 2\nex.stop_unless_answered("05.2", answer)'}, "same exercise and answer"),
        ({"sol1": 'if ex.solutions:\n    other = 2\nex.stop_unless_answered("05.1", answer)'}, "does not assign ['answer']"),
        ({"check1": "print(answer)"}, "must call ex.check(...) once"),
        ({"check1": 'ex.check("5.1", answer, bool, hint="h")'}, 'literal id like "05.1"'),
        ({"check1": 'ex.check("05.1", 2, bool, hint="h")'}, "must grade the exercise's answer"),
        ({"check2": 'ex.check("05.1", rule, bool, hint="h")'}, "ids repeat"),
        ({"quiz": "pass"}, "no quiz"),
        ({"quiz": 'ex.quiz("05")\nprint(answer + 1)'}, "which is `...` for a learner who skips"),
        ({"quiz": 'ex.quiz("05", [("q?", ["a", "b"], 0, "why")])'}, "lists its questions"),
    ]:
        problems = exercise_problems(fixture_lab(**overrides), "05")
        assert any(problem in p for p in problems), f"{overrides}: expected {problem!r} in {problems}"
    nb = fixture_lab()
    del nb.cells[3].metadata["jupyter"]
    assert any("source_hidden" in p for p in exercise_problems(nb, "05"))
    del nb.cells[3].metadata["meshlab"]
    assert any("meshlab.wrong" in p for p in exercise_problems(nb, "05"))
    nb.cells = nb.cells[:3] + nb.cells[6:]  # one exercise left
    assert any("2 or more" in p for p in exercise_problems(nb, "05"))


@pytest.mark.notebook
def test_quiz_in_a_kernel_is_a_widget_with_its_text_behind_it() -> None:
    """In a kernel the quiz is an ipywidgets form; an executed notebook (no widget state) still shows its text."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell(
        "from meshlab.exercises import Exercises, Question\n"
        'Exercises(False).quiz("05", [Question("Which port?", "15443", ("15012", "15017", "15021"), "the gateway\'s mTLS port")])'
    )]
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    (out,) = nb.cells[0].outputs
    assert "application/vnd.jupyter.widget-view+json" in out.data
    assert "1. Which port?" in out.data["text/plain"] and ") 15443" in out.data["text/plain"]


@pytest.mark.notebook
def test_feedback_in_a_kernel_has_no_traceback_and_stops_run_all() -> None:
    """What JupyterLab's Run All does: queue every cell with stop_on_error. A wrong answer shows only the
    verdict and the hint, and the cells queued after it are aborted (the experiment after it does not run)."""
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3", transport="ipc")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        cells = [
            "from meshlab.exercises import Exercises\nex = Exercises(False)",
            'ex.check("05.1", 3, 2, hint="count the endpoints", evidence="the table")',
            "experiment_ran = True",
        ]
        msg_ids = [kc.execute(src) for src in cells]  # queued at once, as Run All does
        by_id: dict[str, dict] = {}
        while len(by_id) < len(msg_ids):
            reply = kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") in msg_ids:
                by_id[reply["parent_header"]["msg_id"]] = reply["content"]
        replies = [by_id[m] for m in msg_ids]
        assert [r["status"] for r in replies] == ["ok", "error", "aborted"]
        assert replies[1]["ename"] == "NotYet"
        error = None
        while True:
            msg = kc.get_iopub_msg(timeout=10)
            if msg["msg_type"] == "error":
                error = msg["content"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle" \
                    and msg["parent_header"].get("msg_id") == msg_ids[-1]:
                break
        assert error is not None
        shown = "\n".join(error["traceback"])
        assert shown.startswith("✗ exercise 05.1: your answer 3 is not what the lab observed")
        assert "hint: count the endpoints" in shown and "Traceback" not in shown and "File " not in shown
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_drilled(nb: nbformat.NotebookNode, tmp_path: Path) -> str:
    """Execute the drilled ``nb`` with solutions on (nbclient, as papermill would); all its output text."""
    from nbclient import NotebookClient

    nb = drilled(nb)
    nb.cells[0].source = 'backend = "local"\nsolutions = True'
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    NotebookClient(nb, timeout=60, kernel_name="python3", kernel_manager_class=kernel_manager()).execute()
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.notebook
def test_the_drill_passes_good_exercises_and_catches_bad_ones(tmp_path: Path) -> None:
    from nbclient.exceptions import CellExecutionError

    out = run_drilled(fixture_lab(), tmp_path)
    for what in ("wrong answer: refused", "wrong (again) answer: refused", "empty answer: refused", "unanswered: Run All stops"):
        assert f"drill 05.1, {what}" in out and f"drill 05.2, {what}" in out
    assert "✓ exercise 05.1: right" in out

    for overrides, problem in [
        # a check cell that changes the lab on every run: after two wrong tries the right answer is refused
        ({"check1": "observed += 1\nex.check('05.1', answer, observed, hint='count', evidence=observed)"}, "answer was accepted"),
        ({"check2": 'print("applied")\nex.check("05.2", rule, lambda r: "x".startswith(r), hint="write it")'}, "the empty answer was accepted"),
        ({"check1": 'ex.check("05.1", answer, observed, hint="count")'}, "shows no evidence"),
        ({"check2": 'rule + 1\nex.check("05.2", rule, "x", hint="h", evidence="e")'}, "TypeError"),  # a traceback
    ]:
        with pytest.raises(CellExecutionError, match=problem):
            run_drilled(fixture_lab(**overrides), tmp_path)


@pytest.mark.notebook
def test_run_all_as_a_learner_stops_at_the_first_unanswered_exercise(tmp_path: Path) -> None:
    """A fresh lab, Run All, solutions off (a learner): the run stops at the first exercise's gate with the
    friendly line and no traceback; nothing after it ran."""
    import papermill

    path = LABS / "00-setup.ipynb"
    out = tmp_path / path.name
    with pytest.raises(papermill.PapermillExecutionError):
        papermill.execute_notebook(str(path), str(out), parameters={"backend": "local", "solutions": False},
                                   kernel_name="python3", kernel_manager_class=kernel_manager(), cwd=str(LABS),
                                   execution_timeout=CELL_TIMEOUT, log_output=False, progress_bar=False)
    code = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    stopped = next(i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.outputs))
    assert "solution" in code[stopped].metadata.get("tags", []), "the first stop is the first exercise's gate"
    (error,) = [o for o in code[stopped].outputs if o.get("output_type") == "error"]
    assert error.ename == "NotYet" and error.traceback[0].startswith("✎ exercise 00.1 is waiting for your answer")
    assert len(error.traceback) == 1, "a friendly line, no traceback"
    assert all(c.execution_count is None for c in code[stopped + 1:]), "nothing after the gate ran"
