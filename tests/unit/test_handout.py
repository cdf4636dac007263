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
