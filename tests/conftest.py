"""Shared fixtures: every lab in the tests lives in its own short state directory and is always torn down."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab.runtime import net
from meshlab.dataplane import access_logs_on
from meshlab.lab import Lab
from meshlab.state import prefix_for
from meshlab.wasm.hub import Hub


_SESSION_HOME: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # a learner's own lab (default state dir) must never be touched by the tests
    if "MESHLAB_HOME" not in os.environ:
        _SESSION_HOME.append(tempfile.mkdtemp(prefix="mlt"))
        os.environ["MESHLAB_HOME"] = _SESSION_HOME[0]


def pytest_unconfigure(config: pytest.Config) -> None:
    for d in _SESSION_HOME:
        Lab.down_all(d, quiet=True)
        Hub.down_all(Path(d) / "hub")  # a hub published to in the session's home (lab 10's wasm-digest fault), as `meshlab down` does
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lab_home() -> Iterator[Path]:
    """A fresh state directory (short: Envoy's admin sockets live below it); cleaned up, and checked, after the test."""
    home = Path(tempfile.mkdtemp(prefix="mlt"))
    yield home
    Lab.down_all(home, quiet=True)
    left = net.existing_namespaces(prefix_for(home))
    shutil.rmtree(home, ignore_errors=True)
    assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def flat_lab(lab_home: Path) -> Iterator[Lab]:
    lab = access_logs_on(Lab.up("flat-network", samples=True, home_dir=lab_home, quiet=True))
    yield lab
    lab.down(quiet=True)


@pytest.fixture(scope="module")
def module_home() -> Iterator[Path]:
    """A state directory shared by one test module (its lab, and a wasm hub beside it); everything removed and checked after."""
    d = Path(tempfile.mkdtemp(prefix="mlm"))
    yield d
    Lab.down_all(d, quiet=True)
    Hub.down_all(d / "hub")
    assert not net.existing_namespaces(prefix_for(d)), "namespaces left behind"
    shutil.rmtree(d, ignore_errors=True)
