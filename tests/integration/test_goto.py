"""`meshlab goto N` builds the state lab N starts from, and the lab's own Lab.up adopts it while it is untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshlab import labs
from meshlab.lab import Lab


@pytest.fixture
def home(lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MESHLAB_HOME", str(lab_home))  # goto and reset act on the default state directory
    return lab_home


def test_goto_then_lab_up_adopts(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labs.goto("06", quiet=True)
    prepared = Lab.attach()
    assert prepared.topology.name == "separate-networks"
    pids = [p["pid"] for p in prepared.state.data["processes"]]

    lab = Lab.up("separate-networks", backend="local", keep=True)  # what lab 06's first cell does
    assert "meshlab goto 06" in capsys.readouterr().out
    assert [p["pid"] for p in lab.state.data["processes"]] == pids, "the prepared lab was rebuilt, not adopted"
    lab.deploy("curl", "cluster1")
    assert lab.call("curl", "http://helloworld.sample:5000/hello", cluster="cluster1").errors == 1  # no helloworld yet

    # adopted once: a second Lab.up (e.g. the learner re-runs the cell) builds afresh
    again = Lab.up("separate-networks", backend="local", keep=True, quiet=True)
    assert not again.backend.workloads or all(w.app != "curl" for w in again.backend.workloads)
    again.down(quiet=True)


def test_changed_lab_is_not_adopted(home: Path) -> None:
    labs.goto("06", quiet=True)
    Lab.attach().deploy("helloworld", "cluster1")  # no longer what lab 06 starts from
    lab = Lab.up("separate-networks", backend="local", keep=True, quiet=True)
    assert not [w for w in lab.backend.workloads if w.app == "helloworld"], "a changed lab must not be adopted"
    assert Lab.up("flat-network", keep=True, quiet=True).topology.name == "flat-network"  # another pattern: fresh
    labs.reset(quiet=True)
    assert not Lab.down_all(quiet=True)["processes"]
