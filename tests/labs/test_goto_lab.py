"""`meshlab goto 06`, then lab 06 from its first cell: the lab runs green on the lab goto prepared."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from run_labs import LABS, kernel_manager  # tests/labs/run_labs.py

from meshlab.lab import Lab


@pytest.mark.notebook
def test_goto_then_run_lab_06(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import papermill

    home = Path(tempfile.mkdtemp(prefix="mlg"))  # short: Envoy's admin sockets live below it
    monkeypatch.setenv("MESHLAB_HOME", str(home))  # the CLI and the notebook's kernel share it
    try:
        goto = subprocess.run([sys.executable, "-m", "meshlab.cli", "goto", "06"], capture_output=True, text=True, timeout=120)
        assert goto.returncode == 0, goto.stderr
        assert "ready for lab 06" in goto.stdout
        out = tmp_path / "06.ipynb"
        papermill.execute_notebook(str(LABS / "06-locality-failover.ipynb"), str(out), parameters={"backend": "local", "solutions": True},
                                   kernel_name="python3", kernel_manager_class=kernel_manager(), cwd=str(LABS),
                                   execution_timeout=600, progress_bar=False)  # fmt: skip
        text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs)
        assert "using the lab `meshlab goto 06` prepared" in text, "lab 06's Lab.up rebuilt the lab instead of adopting it"
    finally:
        Lab.down_all(home, quiet=True)
        shutil.rmtree(home, ignore_errors=True)
