"""An interrupted `meshlab bench` leaves nothing behind: Ctrl-C cleans up on the way out, and after a
SIGKILL `meshlab down` finds the bench's scratch labs (they live under the state directory)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshlab.runtime import net, procs

MESHLAB = [sys.executable, "-m", "meshlab.cli"]


def _running_bench_lab(home: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> dict[str, object]:
    """Wait until the bench has a scratch lab with running processes; return its state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"meshlab bench exited early: {proc.communicate()}"
        for f in (home / "scratch").glob("bench-*/state.json"):
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue  # being written or removed right now
            if data.get("processes") and any(procs.is_alive(p) for p in data["processes"]):
                return data
        time.sleep(0.02)
    raise AssertionError("meshlab bench started no lab within a minute")


def _assert_nothing_left(home: Path, lab: dict[str, object]) -> None:
    assert not any((home / "scratch").glob("*")), f"scratch dirs left: {list((home / 'scratch').glob('*'))}"
    assert not [p for p in lab["processes"] if procs.is_alive(p)], "bench processes still running"  # type: ignore[union-attr]
    assert not net.existing_namespaces(str(lab["prefix"])), "bench namespaces left behind"


@pytest.mark.skipif(net.choose_mode()[0] == net.USERNS, reason="meshlab bench refuses userns mode")
@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_interrupted_bench_leaves_nothing(how: str, lab_home: Path) -> None:
    home = lab_home  # short: Envoy's admin sockets live below it
    env = {**os.environ, "MESHLAB_HOME": str(home)}
    proc = subprocess.Popen([*MESHLAB, "bench", "--requests", "50"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lab = _running_bench_lab(home, proc)
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 130, err.decode()
            assert b"interrupted" in err
        else:
            proc.kill()
            proc.wait(timeout=10)
            assert any((home / "scratch").glob("bench-*")), "the killed bench should have left its scratch lab"
            out = subprocess.run([*MESHLAB, "down"], env=env, capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            assert "removed 1 scratch directory (an interrupted meshlab bench's labs" in out.stdout, out.stdout
        _assert_nothing_left(home, lab)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([*MESHLAB, "down"], env=env, capture_output=True, timeout=120)
