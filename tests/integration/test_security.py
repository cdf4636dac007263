"""Security resources on a running lab: warnings and refusals (parity is in tests/parity/test_security.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshlab.errors import ResourceError
from meshlab.lab import Lab

pytestmark = pytest.mark.integration


def ap(name: str, spec: dict) -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": name}, "spec": spec}


def test_selector_matching_nothing_warns(flat_lab: Lab) -> None:
    out = flat_lab.apply(ap("nobody", {"selector": {"matchLabels": {"app": "nope"}}, "rules": [{}]}), "cluster1")
    try:
        assert any(line.startswith("warning:") and "matches no workload" in line for line in out), out
    finally:
        flat_lab.delete("AuthorizationPolicy", "nobody", "cluster1")


def test_refused_policy_changes_nothing(flat_lab: Lab) -> None:
    lds = Path(flat_lab.backend.proxy_dir(flat_lab.backend.find("helloworld", "cluster1"))) / "xds" / "lds.json"
    before = json.loads(lds.read_text())["version_info"]
    with pytest.raises(ResourceError):
        flat_lab.apply({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "bad"},
                   "spec": {"rules": [{"when": [{"key": "source.planet", "values": ["x"]}]}]}}, "cluster1")  # fmt: skip
    assert json.loads(lds.read_text())["version_info"] == before
    assert not any(r["key"][0] == "AuthorizationPolicy" for r in flat_lab.state.data.get("resources", []))
