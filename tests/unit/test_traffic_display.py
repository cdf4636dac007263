"""Small pure pieces: URL splitting, answer parsing and tallies, tables, Mermaid, atomic writes, EDS grouping."""

from __future__ import annotations

import json
import re
import os
import stat
from pathlib import Path

import pytest

from meshlab import xds as E
from meshlab.runtime.envoy import XdsWriter
from meshlab.display import MERMAID_INIT, Diagram, Table, mermaid
from meshlab.errors import MeshlabError
from meshlab.state import State, write_atomic
from meshlab.topology import load_topology
from meshlab.traffic import Answer, CallResult, parse_answer, split_url


# ---- split_url -------------------------------------------------------------------------------------
def test_split_url_http() -> None:
    assert split_url("http://helloworld.sample:5000/hello") == ("helloworld.sample", 5000, "/hello")


def test_split_url_defaults_and_query() -> None:
    assert split_url("http://helloworld.sample") == ("helloworld.sample", 80, "/")
    assert split_url("http://h:5000/a?b=1") == ("h", 5000, "/a?b=1")


@pytest.mark.parametrize("url", ["https://helloworld.sample:5000/hello", "ftp://helloworld.sample/x", "helloworld.sample:5000/hello", "http:///hello"])
def test_split_url_refuses(url: str) -> None:
    with pytest.raises(MeshlabError) as info:
        split_url(url)
    assert url in info.value.message
    assert "http://helloworld.sample:5000/hello" in (info.value.hint or "")


@pytest.mark.parametrize("url", ["http://helloworld.sample:99999/hello", "http://helloworld.sample:abc/hello"])
def test_split_url_bad_port_is_meshlab_error(url: str) -> None:
    with pytest.raises(MeshlabError):
        split_url(url)


# ---- parse_answer / CallResult -----------------------------------------------------------------------
WHERE = {"helloworld-v1-abc": "cluster1", "helloworld-v2-xyz": "cluster2"}


def test_parse_answer() -> None:
    a = parse_answer(200, "Hello version: v1, instance: helloworld-v1-abc\n", 0.25, WHERE)
    assert (a.status, a.version, a.instance, a.cluster, a.seconds) == (200, "v1", "helloworld-v1-abc", "cluster1", 0.25)
    assert a.ok and a.error == ""


def test_parse_answer_unknown_instance_and_no_match() -> None:
    a = parse_answer(200, "Hello version: v3, instance: pod-9", 0.1, WHERE)
    assert (a.version, a.instance, a.cluster) == ("v3", "pod-9", "")
    b = parse_answer(503, "upstream connect error", 0.1, WHERE)
    assert (b.status, b.body, b.version, b.instance, b.cluster) == (503, "upstream connect error", "", "", "")
    assert not b.ok


def test_tally_counts_by_cluster_version_and_errors() -> None:
    body = "Hello version: {v}, instance: {i}"
    answers = [
        parse_answer(200, body.format(v="v1", i="helloworld-v1-abc"), 0.0, WHERE),
        parse_answer(200, body.format(v="v2", i="helloworld-v2-xyz"), 0.0, WHERE),
        parse_answer(200, body.format(v="v1", i="helloworld-v1-abc"), 0.0, WHERE),
        parse_answer(503, "no healthy upstream", 0.0, WHERE),
        Answer(0, "", error="timeout"),
        Answer(0, "", error="timeout"),
    ]
    r = CallResult("http://helloworld.sample:5000/hello", "curl", answers)
    assert r.tally == {("cluster1", "v1"): 2, ("cluster2", "v2"): 1, ("error", "503"): 1, ("error", "timeout"): 2}
    assert list(r.tally) == sorted(r.tally)
    assert r.errors == 3
    assert r.clusters == {"cluster1", "cluster2"}
    assert r.versions == {"v1", "v2"}
    text = str(r)
    assert text.splitlines()[0] == "6 calls to http://helloworld.sample:5000/hello from curl:"
    assert "cluster1  v1       2" in text
    html = r._repr_html_()
    assert "<td>cluster2</td><td>v2</td><td>1</td>" in html


def test_tally_unknown_cluster() -> None:
    r = CallResult("u", "s", [Answer(200, "x")])
    assert r.tally == {("?", "?"): 1}
    assert r.errors == 0


# ---- Table -------------------------------------------------------------------------------------------
def test_table_text_aligned() -> None:
    t = Table([{"pod": "helloworld-v1-0", "cluster": "cluster1"}, {"pod": "curl", "cluster": "cluster2", "ip": "10.20.0.9"}], title="pods")
    assert t.columns == ["pod", "cluster", "ip"]
    assert t.column("ip") == [None, "10.20.0.9"]
    lines = str(t).splitlines()
    assert lines == [
        "pods",
        "pod              cluster   ip",
        "helloworld-v1-0  cluster1",
        "curl             cluster2  10.20.0.9",
    ]
    # every column starts at the same offset on every line that has it
    assert lines[1].index("cluster") == lines[2].index("cluster1") == lines[3].index("cluster2")
    assert lines[1].index("ip") == lines[3].index("10.20.0.9")
    assert repr(t) == str(t)


def test_table_empty() -> None:
    assert str(Table()) == "(no rows)"
    assert str(Table(title="t")) == "t\n(no rows)"


def test_table_html_escapes() -> None:
    t = Table([{"a": "<b>", "b": 1}], title="x&y")
    assert t._repr_html_() == (
        '<div style="overflow-x:auto"><table style="white-space:nowrap"><caption>x&amp;y</caption>'
        "<tr><th>a</th><th>b</th></tr><tr><td>&lt;b&gt;</td><td>1</td></tr></table></div>"
    )


# ---- mermaid -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["flat-network", "separate-networks", "separate-control-planes"])
def test_mermaid_mentions_everything(pattern: str) -> None:
    t = load_topology(pattern)
    src = mermaid(t)
    assert src.splitlines()[:2] == [MERMAID_INIT, "flowchart LR"]  # edge labels on an opaque background
    assert "root CA root" not in src
    for net in t.networks:
        assert f'subgraph {net}["network {net}"]' in src
    for c in t.clusters.values():
        assert f'    {c.name}["{c.name}<br/>' in src
        assert str(c.pod_cidr) in src
    assert src.count("  end") == len(t.networks)


def test_mermaid_edges() -> None:
    flat = mermaid(load_topology("flat-network"))
    assert "cluster1 -- config + certs --> cluster2" in flat
    assert "east-west" not in flat
    sep = mermaid(load_topology("separate-networks"))
    assert "network1 <-. east-west gateways :15443 .-> network2" in sep
    assert "remote of cluster1" in sep
    scp = mermaid(load_topology("separate-control-planes"))
    assert "config + certs" not in scp
    assert scp.count("istiod (primary)") == 2


def test_diagram() -> None:
    d = Diagram("flowchart LR")
    assert d._repr_markdown_() == "```mermaid\nflowchart LR\n```"
    assert str(d) == repr(d) == "flowchart LR"


# ---- state.write_atomic ------------------------------------------------------------------------------
def test_write_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "file.json"
    write_atomic(path, "hello", mode=0o600)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomic(path, b"\x00bytes", mode=0o640)
    assert path.read_bytes() == b"\x00bytes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(path.parent) == ["file.json"]


def test_write_atomic_default_mode_and_cleanup_on_error(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_atomic(path, "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(TypeError):
        write_atomic(path, 123)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == ["f"]  # the temp file was removed
    assert path.read_text() == "x"  # the old content is intact


def test_state_record_and_forget(tmp_path: Path) -> None:
    s = State(tmp_path)
    assert not s.exists
    s.record("namespaces", "ml1234-a")
    s.record("namespaces", "ml1234-a")
    assert State(tmp_path).data == {"namespaces": ["ml1234-a"]}
    s.forget()
    assert not s.exists and s.data == {}
    assert os.listdir(tmp_path) == []


# ---- load_assignment ---------------------------------------------------------------------------------
def test_load_assignment_groups_by_locality_and_priority() -> None:
    eps = [
        E.Endpoint("10.10.0.10", 5000, "region1", "zone1", labels={"version": "v1"}),
        E.Endpoint("10.20.0.10", 5000, "region2", "zone2"),
        E.Endpoint("10.10.0.11", 5000, "region1", "zone1"),
        E.Endpoint("10.250.0.2", 15443, "region2", "zone2", weight=3),
        E.Endpoint("10.10.0.12", 5000, "region1", "zone1", priority=1),
    ]
    la = E.load_assignment("c", eps)
    assert la["@type"] == "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    assert la["cluster_name"] == "c"
    groups = [
        (g["locality"]["region"], g["locality"]["zone"], g["priority"], g["load_balancing_weight"],
         [(x["endpoint"]["address"]["socket_address"]["address"], x["endpoint"]["address"]["socket_address"]["port_value"], x["load_balancing_weight"]) for x in g["lb_endpoints"]])
        for g in la["endpoints"]
    ]  # fmt: skip
    assert groups == [
        ("region1", "zone1", 0, 2, [("10.10.0.10", 5000, 1), ("10.10.0.11", 5000, 1)]),
        ("region2", "zone2", 0, 4, [("10.20.0.10", 5000, 1), ("10.250.0.2", 15443, 3)]),
        ("region1", "zone1", 1, 1, [("10.10.0.12", 5000, 1)]),
    ]
    first = la["endpoints"][0]["lb_endpoints"]
    assert first[0]["metadata"] == {"filter_metadata": {"istio": {"version": "v1"}}}
    assert first[1]["metadata"] == {}


def test_load_assignment_empty() -> None:
    assert E.load_assignment("c", [])["endpoints"] == []


def test_xds_writer_rewrites_only_what_changed_with_rising_versions(tmp_path: Path) -> None:
    cfg = E.ProxyConfig([], [E.static_cluster("c", "127.0.0.1", 1)], {"outbound|1||x": [E.Endpoint("10.0.0.1", 1, "r", "z")]})
    w = XdsWriter(tmp_path)
    assert w.write(cfg) == 3  # eds, cds, lds
    assert XdsWriter(tmp_path).write(cfg) == 0  # another writer (another process) sees nothing new
    cfg.endpoints["outbound|1||x"].append(E.Endpoint("10.0.0.2", 1, "r", "z"))
    assert w.write(cfg) == 1
    doc = json.loads(E.eds_path(tmp_path, "outbound|1||x").read_text())
    assert doc["version_info"] == "2" and len(doc["resources"][0]["endpoints"][0]["lb_endpoints"]) == 2


# ---- Progress ----------------------------------------------------------------------------------------
def test_progress_prints_lines_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    from meshlab.display import Progress

    with Progress("building filters", total=2, widget=False) as progress:
        progress("add-header built")
        progress("abi-tour built")
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["add-header built", "abi-tour built"]
    assert re.fullmatch(r"building filters: done, 2/2 steps in \d+\.\ds", out[2])


def test_progress_follows_the_kind_executors_step_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    from meshlab.display import Progress

    p = Progress("kind bring-up", widget=False)
    p("[ 3/62] cluster1: create the kind cluster ... ok (41.0s)")
    assert (p.done, p.total) == (3, 62)
    assert p.close(RuntimeError("boom")).startswith("kind bring-up: FAILED after 3/62 steps")
    assert "create the kind cluster" in capsys.readouterr().out.splitlines()[-1]


def test_progress_widget_gives_way_to_the_summary() -> None:
    from meshlab.display import Progress

    p = Progress("pulling images", total=2, widget=True)  # outside Jupyter display() prints; the bar still works
    p("image 1 pulled")
    assert (p._bar.value, p._bar.max) == (1, 2)
    assert p.close().startswith("pulling images: done, 1/2 steps")


def test_status_table() -> None:
    from meshlab.display import status_table

    text = status_table({"pattern": "flat-network", "network_mode": "netns", "control_planes": {"cluster1": "running"},
                         "gateways": {}, "workloads": [{"pod": "curl-1", "cluster": "cluster1", "ip": "10.10.0.10"}]})
    assert text.splitlines()[:4] == ["pattern:         flat-network", "network mode:    netns",
                                     "control planes:  cluster1 running", "gateways:        -"]
    assert "POD     CLUSTER   IP" in text and "curl-1  cluster1  10.10.0.10" in text
    assert status_table({"pattern": "p", "workloads": []}).endswith("no workloads deployed")
