"""No network after set-up (issue 17 item 7): `make setup` installed every npm dependency and built every
filter, so building the filters as labs 07 and 08 do never reaches a registry -- shown with npm pointed at
an address where nothing listens. A filter whose dependencies are missing is named by the lab before it
starts, and its build fails with a message that says it wanted the registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from meshlab import labs
from meshlab.errors import MeshlabError
from meshlab.wasm.build import build_filter, filters, npm_installed

UNREACHABLE = {"npm_config_registry": "http://127.0.0.1:9/", "npm_config_fetch_retries": "0"}


@pytest.fixture
def no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in UNREACHABLE.items():
        monkeypatch.setenv(k, v)


def test_after_setup_the_labs_need_no_network(no_registry: None) -> None:
    missing = [f.name for f in filters() if not npm_installed(f)]
    assert not missing, f"`make setup` left npm dependencies uninstalled: {missing}"
    for lab in ("07", "08"):
        assert labs.network_needs(lab) == [], labs.say_network_needs(lab)
    for f in filters():  # what the labs run: every filter builds with the registry out of reach
        result = build_filter(f.dir)
        assert result.wasm.read_bytes()[:4] == b"\0asm"
        if f.language == "assemblyscript":
            assert "npm ci: skipped (node_modules matches package-lock.json)" in result.steps


def test_a_missing_dependency_is_said_before_and_named_when_it_fails(no_registry: None, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    src = next(f for f in filters() if f.language == "assemblyscript").dir
    copy = tmp_path / "wasm-filters" / src.name
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("node_modules", "build"))
    monkeypatch.setenv("MESHLAB_FILTERS", str(copy.parent))  # as a learner's own copy on the hub
    said = labs.say_network_needs("07")
    assert "will use the network" in said and str(copy) in said and "make setup" in said, said
    with pytest.raises(MeshlabError) as e:
        build_filter(copy)
    assert "registry" in str(e.value) and "make setup" in str(e.value), str(e.value)
