"""The course catalogue (meshlab.labs) is the one source of lab metadata: README, `meshlab labs` and the
notebooks agree with it; the CLI's commands are all documented and all explained."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from meshlab import labs
from meshlab.cli import _parser
from meshlab.errors import MeshlabError
from meshlab.topology import builtin_patterns

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_lab_table_comes_from_the_catalogue() -> None:
    assert labs.readme_table() in README, "README's lab table differs from meshlab.labs: paste labs.readme_table()"


def test_every_notebook_is_in_the_catalogue() -> None:
    on_disk = {p.name for p in (ROOT / "labs").glob("[0-9]*.ipynb")}
    listed = {i.notebook for i in labs.LABS}
    assert on_disk <= listed, f"notebooks missing from meshlab.labs.LABS (add an entry): {sorted(on_disk - listed)}"
    assert listed <= on_disk, f"meshlab.labs.LABS names notebooks that do not exist (renamed?): {sorted(listed - on_disk)}"
    numbers = [i.number for i in labs.LABS]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for i in labs.LABS:
        assert i.notebook.startswith(i.number + "-"), i.notebook


def test_catalogue_entries_are_complete() -> None:
    for i in labs.LABS:
        assert set(i.minutes) == {"local", "kind"}, f"lab {i.number}: every lab runs on both backends"
        assert all(m > 0 for m in i.minutes.values())
        assert i.start.pattern is None or i.start.pattern in builtin_patterns(), f"lab {i.number}: unknown pattern"
        assert set(i.start.prepare) <= set(labs.PREREQUISITES), f"lab {i.number}: unknown prerequisite"


def test_meshlab_labs_table() -> None:
    t = labs.table()
    assert [r["LAB"] for r in t] == [i.number for i in labs.LABS]
    assert {"LOCAL (min)", "KIND (min)", "STARTS FROM"} <= set(t.columns)
    assert "separate-networks up" in next(r for r in t if r["LAB"] == "06")["STARTS FROM"]
    assert "KIND (min)" not in labs.table("local").columns


@pytest.mark.parametrize("key", [6, "6", "06", "06-locality-failover", "06-locality-failover.ipynb"])
def test_find(key: object) -> None:
    assert labs.find(key).number == "06"  # type: ignore[arg-type]


def test_find_unknown() -> None:
    with pytest.raises(MeshlabError) as e:
        labs.find("42")
    assert "meshlab labs" in (e.value.hint or "")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_in_the_readme() -> None:
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", README, re.S))
    documented = {w for m in re.findall(r"\bmeshlab ([a-z][a-z|-]*)", blocks) for w in m.split("|")}
    missing = set(_subparsers()) - documented
    assert not missing, f"README's command list misses: {sorted(missing)}"


def _undocumented(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        if not a.help:
            out.append(f"`{prefix}`: {a.dest}")
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += _undocumented(sub, f"{prefix} {name}")
    return out


def test_every_option_has_help() -> None:
    from meshlab.wasm.cli import _parser as wasm_parser

    missing = _undocumented(_parser(), "meshlab") + _undocumented(wasm_parser(), "meshlab wasm")
    assert not missing, "options without help text: " + ", ".join(missing)


def test_closed_pipe_ends_quietly() -> None:
    """`meshlab logs ... | head`: when the reader has gone, no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    proc = subprocess.run([sys.executable, "-m", "meshlab.cli", "labs"], stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(w)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141


def test_plan_tags_are_documented() -> None:
    """Every tag a kind bring-up plan uses is explained in the README (`plan.find(tag=...)`)."""
    from meshlab.lab import Lab

    tags = {t for p in builtin_patterns() for s in Lab.up(p, backend="kind", dry_run=True, samples=True).steps for t in s.tags}
    documented = set(re.findall(r"`([a-z][a-z-]*)`", README[README.index("Step tags, by purpose"):]))
    assert tags <= documented, f"README does not explain the plan tags {sorted(tags - documented)}"


# ---- one source of time (issue 20 item 4) -----------------------------------------------------------------
def _reading_model(path: Path) -> float:
    """Minutes to read a notebook at a learner's pace: 130 words of text and 12 lines of code (with its output) a minute."""
    import nbformat

    nb = nbformat.read(path, 4)
    words = sum(len(re.findall(r"\w+", c.source)) for c in nb.cells if c.cell_type == "markdown")
    lines = sum(len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code" and "solution" not in c.metadata.get("tags", []))
    return words / 130 + lines / 12


@pytest.mark.parametrize("info", labs.LABS, ids=lambda i: i.number)
def test_reading_time_follows_the_notebook(info: labs.LabInfo) -> None:
    """A notebook that grows (or shrinks) by a third must have its reading time updated in the catalogue."""
    model = _reading_model(info.path)
    assert abs(info.time.reading - model) <= max(5, 0.35 * model), (
        f"lab {info.number}: the catalogue says {info.time.reading} min of reading, the notebook reads in about {model:.0f}: "
        "update its Minutes in lib/meshlab/labs.py (and the README table: labs.readme_table())")
    exercises = len(set(re.findall(r'ex\.check\("(\d\d[a-z]?\.\d+)"', "\n".join(c for c in _sources(info.path)))))
    assert info.time.exercises >= 5 * exercises, f"lab {info.number}: {exercises} exercises and a quiz take more than {info.time.exercises} min"


def _sources(path: Path) -> list[str]:
    import nbformat

    return [c.source for c in nbformat.read(path, 4).cells]


@pytest.mark.parametrize("info", labs.LABS, ids=lambda i: i.number)
def test_notebook_shows_its_time_from_the_catalogue(info: labs.LabInfo) -> None:
    import nbformat

    cells = nbformat.read(info.path, 4).cells
    first_code = next(c for c in cells if c.cell_type == "code")
    assert f'header("{info.number}")' in first_code.source, f"lab {info.number}: its first code cell must be header(\"{info.number}\")"
    written = [c.source for c in cells if c.cell_type == "markdown" and re.search(r"\*\*Time:\*\*|about \d+ minutes", c.source)]
    assert not written, f"lab {info.number}: a time written into the notebook drifts from the catalogue: {written[0][:120]!r}"
    shown = str(labs.header(info.number))
    assert len(info.you_will) >= 2 and "You will" in shown, f"lab {info.number}: say what the learner will do (you_will)"
    assert f"about {info.minutes['local']} minutes" in shown and all(f"lab {n}" in shown for n in info.needs)


def test_needs_name_earlier_labs_in_the_teaching_order() -> None:
    order = [n for parts in labs.AGENDAS["Two days"].values() for n in parts if n not in labs.BREAKS]
    for i in labs.LABS:
        for n in i.needs:
            assert order.index(n) < order.index(i.number), f"lab {i.number} needs lab {n}, which the two-day agenda puts later"


def test_every_day_of_an_agenda_ends_by_the_end_of_a_rooms_day() -> None:
    for name, parts in labs.AGENDAS.items():
        for part, items in parts.items():
            if part.startswith(("day", "the day")):
                minutes = sum(labs.BREAKS[n] if n in labs.BREAKS else labs.find(n).minutes["local"] for n in items)
                ends = int(labs.DAY_STARTS[:2]) * 60 + int(labs.DAY_STARTS[3:]) + minutes
                assert f"{ends // 60:02d}:{ends % 60:02d}" <= labs.DAY_ENDS_BY, \
                    f"{name}, {part}: ends at {ends // 60:02d}:{ends % 60:02d}; move a lab to the self-paced part"


def test_agendas_cover_every_lab_once_and_docs_match() -> None:
    for name, parts in labs.AGENDAS.items():
        listed = [n for items in parts.values() for n in items if n not in labs.BREAKS]
        assert sorted(listed) == [i.number for i in labs.LABS], f"{name}: every lab once, got {listed}"
    assert (ROOT / "docs" / "agenda.md").read_text() == labs.agenda_markdown() + "\n", \
        "docs/agenda.md differs from the catalogue: python -c 'from meshlab import labs; print(labs.agenda_markdown())' > docs/agenda.md"
    hours = round(sum(i.minutes["local"] for i in labs.LABS) / 60)
    assert f"about {hours} hours for the whole course" in README, f"README: the course takes about {hours} hours on local"
