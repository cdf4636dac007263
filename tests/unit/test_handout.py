"""`meshlab export`: executed notebooks become HTML pages and an index for the room."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from meshlab import labs
from meshlab.errors import MeshlabError
from meshlab.handout import export


def _executed(path: Path, text: str) -> Path:
    cell = new_code_cell("print('hi')", execution_count=1, outputs=[new_output("stream", name="stdout", text=text)])
    nbformat.write(new_notebook(cells=[new_markdown_cell("# 06 · Locality failover"), cell]), path)
    return path


def test_export_writes_pages_and_an_index(tmp_path: Path) -> None:
    src = tmp_path / "labs"
    src.mkdir()
    _executed(src / "06-locality-failover.ipynb", "failover after 14 ms")
    lines = export([], source=src, out=tmp_path / "handout")
    page = (tmp_path / "handout" / "06-locality-failover.html").read_text()
    assert "failover after 14 ms" in page and "Locality failover" in page
    index = (tmp_path / "handout" / "index.html").read_text()
    assert 'href="06-locality-failover.html"' in index
    assert f"{labs.find('06').minutes['local']} min local" in index  # times come from the labs catalogue
    assert lines[-1].endswith("open it in a browser")


def test_export_without_executed_notebooks(tmp_path: Path) -> None:
    with pytest.raises(MeshlabError) as e:
        export([], source=tmp_path, out=tmp_path / "out")
    assert "make labs" in (e.value.hint or "")


FLOW = 'flowchart LR\n  c1["cluster1"] -->|"config + certs"| c2["cluster2 <b>remote</b>"]'
SEQ = "sequenceDiagram\n  Envoy->>Module: proxy_on_request_headers\n  Module-->>Envoy: Continue"


def _with_diagrams(path: Path) -> Path:
    """An executed lab with a diagram in a markdown cell, a sequence diagram, and one a code cell displayed."""
    shown = new_output("execute_result", data={"text/markdown": f"```mermaid\n{FLOW.replace('cluster', 'net')}\n```",
                                               "text/plain": "diagram"}, execution_count=1)
    nbformat.write(new_notebook(cells=[
        new_markdown_cell(f"# 03 · Networks\n\n```mermaid\n{FLOW}\n```"),
        new_markdown_cell(f"```mermaid\n{SEQ}\n```"),
        new_code_cell("lab.diagram()", execution_count=1, outputs=[shown]),
    ]), path)
    return path


def _offline(argv: list[str]) -> list[str]:
    """``argv`` in a new network namespace: no network at all, loopback only."""
    import os

    return (["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]) + argv


def test_export_draws_every_diagram_offline_as_svg(tmp_path: Path) -> None:
    import subprocess
    import sys

    from meshlab.handout import MERMAID_JS, browser

    assert browser() and MERMAID_JS.is_file(), "`make handout-deps` installs Chromium and Mermaid (`make test` runs it)"
    src = tmp_path / "labs"
    src.mkdir()
    _with_diagrams(src / "03-shared-control-plane-separate-networks.ipynb")
    code = (f"from pathlib import Path; from meshlab.handout import export; "
            f"print(export([], source=Path({str(src)!r}), out=Path({str(tmp_path / 'out')!r})))")
    done = subprocess.run(_offline([sys.executable, "-c", code]), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "out" / "03-shared-control-plane-separate-networks.html").read_text()
    assert page.count("<svg") >= 3 and 'class="mermaid"' not in page and "not drawn" not in page
    assert "mermaid.esm.min.mjs" not in page, "no script from a CDN is left to draw diagrams"
    svgs = page[page.index("<svg"):]
    assert "cluster1" in svgs and "proxy_on_request_headers" in svgs  # the diagrams' labels are drawn text


def test_without_the_renderer_a_diagram_shows_its_source_and_why(tmp_path: Path) -> None:
    from meshlab import handout

    src = tmp_path / "labs"
    src.mkdir()
    _with_diagrams(src / "03-shared-control-plane-separate-networks.ipynb")
    svgs, why = handout.draw([FLOW], mermaid_js=tmp_path / "absent.js")
    assert svgs == [None] and "make handout-deps" in (why or "")
    original = handout.MERMAID_JS
    try:
        handout.MERMAID_JS = tmp_path / "absent.js"
        lines = export([], source=src, out=tmp_path / "out")
    finally:
        handout.MERMAID_JS = original
    page = (tmp_path / "out" / "03-shared-control-plane-separate-networks.html").read_text()
    assert page.count("diagram not drawn") == 3 and "flowchart LR" in page and "make handout-deps" in page
    assert any("3 diagrams not drawn" in line for line in lines)
