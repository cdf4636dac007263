"""The global rate limit of lab 01b on real Envoys: one counter for two clusters, and a re-run that starts afresh."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import yaml

from meshlab import Lab
from meshlab import dataplane as dp

LAB = Path(__file__).resolve().parents[2] / "labs" / "01b-envoy-traffic-control.ipynb"
URL = "http://helloworld.sample:5000/hello"


def lab_envoyfilter(name: str) -> dict:
    """The EnvoyFilter the lab applies, read from the notebook (so the test follows the lab's recipe)."""
    for c in nbformat.read(LAB, as_version=4).cells:
        for node in ast.walk(ast.parse(c.source)) if c.cell_type == "code" else ():
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and f"name: {name}," in node.value:
                return yaml.safe_load(node.value)
    raise AssertionError(f"lab 01b applies no EnvoyFilter {name}")


def test_one_limit_for_both_clusters_and_a_redeploy_starts_it_afresh(lab_home: Path) -> None:
    lab = Lab.up("flat-network", samples=True, home_dir=lab_home, quiet=True)
    dp.deploy_rate_limit_service(lab, cluster="cluster1")
    lab.apply(lab_envoyfilter("helloworld-ratelimit"), cluster="cluster1")

    def statuses() -> list[int]:
        return [a.status for c in ("cluster1", "cluster2") for a in lab.call("curl", URL, cluster=c, n=11).answers]

    first = statuses()
    assert first.count(200) == 20 and first.count(429) == 2, f"20 an hour for /hello, across both clusters: {first}"
    dp.deploy_rate_limit_service(lab, cluster="cluster1")  # the lab's cell, run again
    assert len([w for w in lab.status()["workloads"] if w["app"] == "ratelimit"]) == 1, "one service: a second would split the counts"
    again = statuses()
    assert again.count(200) == 20 and again.count(429) == 2, f"a re-run starts from zero again: {again}"
    lab.down(quiet=True)
