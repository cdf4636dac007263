"""The headless runner's own rules: kernels that cannot answer each other's messages, a retry only for a kernel
that never started, the longest lab first."""

from __future__ import annotations

import os
from pathlib import Path

from run_labs import kernel_did_not_start, kernel_manager, ordered  # tests/labs/run_labs.py


class _CellError(Exception):
    """What papermill raises for a failing cell: it carries the cell's exception name."""

    ename = "AssertionError"


def test_every_kernel_gets_private_ipc_sockets(tmp_path: Path) -> None:
    """jupyter_client's default (``kernel-ipc-N`` in the working directory, N picked by looking for free files)
    let two runs in one checkout bind the same sockets: "Invalid Signature", "Kernel didn't respond"."""
    a, b = kernel_manager()(), kernel_manager()()
    try:
        assert os.path.isabs(a.ip) and os.path.isabs(b.ip)
        assert os.path.dirname(a.ip) != os.path.dirname(b.ip)
        assert len(a.ip) + 4 < 100  # a Unix socket path has at most 107 bytes
    finally:
        for km in (a, b):
            os.rmdir(os.path.dirname(km.ip))
    assert kernel_manager(str(tmp_path))().ip == str(tmp_path / "kernel")


def test_only_a_kernel_that_did_not_start_is_tried_again() -> None:
    assert kernel_did_not_start(RuntimeError("Kernel didn't respond in 60 seconds"))
    assert kernel_did_not_start(RuntimeError("Kernel died before replying to kernel_info"))
    failing_cell = _CellError("Kernel didn't respond")  # a cell's own error is never retried, whatever it says
    assert not kernel_did_not_start(failing_cell)
    assert not kernel_did_not_start(RuntimeError("assert 1 == 2"))


def test_the_longest_lab_starts_first() -> None:
    labs = [Path(f"{n}.ipynb") for n in ("00", "01", "07", "09")]
    got = ordered(labs, {"00.ipynb": 5, "01.ipynb": 120, "07.ipynb": 150})
    assert [p.stem for p in got] == ["09", "07", "01", "00"]  # unknown first (could be the longest), then by time
