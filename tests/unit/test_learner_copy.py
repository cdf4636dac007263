"""The learner's copy of the labs: `make lab` opens my-labs/, so saving a notebook never touches the tracked
labs/ (git status stays clean); `meshlab reset` offers to put the course's version back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from meshlab import labs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def course(tmp_path: Path) -> Path:
    src = tmp_path / "labs"
    src.mkdir()
    for nb in sorted((ROOT / "labs").glob("0[0-2]-*.ipynb")):
        shutil.copyfile(nb, src / nb.name)
    return src


def test_a_learner_edits_and_saves_their_copy_and_the_course_stays_pristine(course: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "my-labs"
    pristine = {p.name: p.read_bytes() for p in course.glob("*.ipynb")}
    assert labs.learner_copy(mine, course) == sorted(pristine)
    name = sorted(pristine)[0]
    nb = nbformat.read(mine / name, as_version=4)
    nb.cells[0].source += "\n# my notes"  # what JupyterLab's save does to the copy
    nbformat.write(nb, mine / name)
    assert {p.name: p.read_bytes() for p in course.glob("*.ipynb")} == pristine
    assert labs.learner_copy(mine, course) == [], "a second `make lab` keeps the learner's copies"
    assert labs.edited_copies(mine, course) == [name]

    assert labs.restore_copies(None, mine, course) == [name]
    assert (mine / name).read_bytes() == pristine[name] and labs.edited_copies(mine, course) == []


def test_reset_offers_to_restore_edited_copies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "my-labs"
    labs.learner_copy(mine)
    first = sorted(mine.glob("*.ipynb"))[0]
    first.write_text(first.read_text().replace('"cells": [', '"cells": [ ', 1))
    assert labs.offer_restore(None, mine) == []
    assert "meshlab reset --notebooks" in capsys.readouterr().out
    assert labs.offer_restore(lambda prompt: "n", mine) == [] and labs.edited_copies(mine) == [first.name]
    asked: list[str] = []
    assert labs.offer_restore(lambda prompt: asked.append(prompt) or "y", mine) == [first.name]
    assert first.name in asked[0] and "lost" in asked[0]
    assert labs.edited_copies(mine) == []


def test_the_working_copy_is_ignored_by_git_and_is_what_make_lab_opens() -> None:
    probe = ROOT / "my-labs" / "00-setup.ipynb"
    assert subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(probe)]).returncode == 0, \
        "my-labs/ must be git-ignored, or a learner's saves show in git status"
    plan = subprocess.run(["make", "-n", "-C", str(ROOT), "lab"], capture_output=True, text=True, check=True).stdout
    assert "meshlab my-labs" in plan and "--notebook-dir=my-labs" in plan and "--notebook-dir=labs " not in plan
    assert labs.MY_LABS == ROOT / "my-labs" and labs.COURSE_LABS == ROOT / "labs"


def test_reset_finds_the_copy_a_room_or_make_lab_points_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHLAB_LABS", raising=False)
    assert labs.learner_labs() == labs.MY_LABS
    monkeypatch.setenv("MESHLAB_LABS", str(labs.COURSE_LABS))
    assert labs.learner_labs() == labs.MY_LABS, "the course's own labs/ are never the learner's copy"
    monkeypatch.setenv("MESHLAB_LABS", str(tmp_path / "meshlab" / "labs"))  # a room's server
    assert labs.learner_labs() == tmp_path / "meshlab" / "labs"
