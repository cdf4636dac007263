"""A lab as a learner meets it after the fact: a pod whose app was killed, a lab used after its Cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshlab import Lab
from meshlab.errors import LabDownError

URL = "http://helloworld.sample:5000/hello"


def test_status_tells_the_truth_about_a_killed_app_and_a_lab_after_its_cleanup(lab_home: Path) -> None:
    lab = Lab.up("flat-network", samples=True, home_dir=lab_home, quiet=True)
    lab.kill("helloworld", "cluster1")
    rows = {(w["cluster"], w["app"]): w for w in lab.status()["workloads"]}
    assert (rows["cluster1", "helloworld"]["ready"], rows["cluster1", "helloworld"]["status"]) == (False, "app down")
    assert (rows["cluster2", "helloworld"]["ready"], rows["cluster2", "helloworld"]["status"]) == (True, "Running")
    assert rows["cluster1", "curl"]["ready"] is True, "a client pod has no app process to be down"
    lab.restore("helloworld", "cluster1")
    assert all(w["ready"] and w["status"] == "Running" for w in lab.status()["workloads"])

    lab.down(quiet=True)  # the lab's Cleanup cell
    for use in (lab.pods, lab.status, lambda: lab.call("curl", URL, cluster="cluster1"),
                lambda: lab.endpoints("curl", cluster="cluster1", service="helloworld")):
        with pytest.raises(LabDownError, match="this lab is down — run it again from the top") as e:
            use()
        assert e.value._render_traceback_()[0] == "⏹ this lab is down — run it again from the top"


def test_a_lab_removed_by_meshlab_down_in_a_shell_says_so_in_the_notebook(lab_home: Path) -> None:
    lab = Lab.up("flat-network", home_dir=lab_home, quiet=True)
    Lab.down_all(lab_home, quiet=True)  # what `meshlab down` in a terminal does
    with pytest.raises(LabDownError):
        lab.deploy("curl", cluster="cluster1")


def test_a_notebooks_workdir_is_removed_by_meshlab_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Lab.workdir is where a notebook writes files (a pattern's copy): after a killed kernel, `meshlab down` finds them."""
    from meshlab.cli import main

    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path))
    d = Lab.workdir("two-roots")
    (d / "two-roots.yaml").write_text("name: two-roots\n")
    assert d.is_relative_to(tmp_path) and d.name.startswith("two-roots-")
    assert main(["down"]) == 0
    assert not d.exists() and "removed 1 scratch directory" in capsys.readouterr().out
