"""A workshop handout: executed lab notebooks rendered to HTML (nbconvert), with an index page.

``make labs`` leaves executed notebooks (every output, plots included) in ``build/labs``;
``meshlab export`` turns them into self-contained HTML pages plus ``index.html`` listing each lab with
its time estimates, so a room can read the course without running it.
"""

from __future__ import annotations

import html
from pathlib import Path

from .errors import MeshlabError
from .labs import LABS


def export(notebooks: list[Path], source: Path = Path("build/labs"), out: Path = Path("build/handout")) -> list[str]:
    """Render ``notebooks`` (default: every ``NN-*.ipynb`` in ``source``) to ``out``; returns one line per page."""
    import nbformat
    from nbconvert import HTMLExporter

    paths = list(notebooks) or sorted(source.glob("[0-9]*.ipynb"))
    if not paths:
        raise MeshlabError(f"no executed notebooks in {source}",
                           "run the labs first: make labs (they land in build/labs), or name notebooks to export")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MeshlabError(f"no such notebook: {', '.join(missing)}", "check the path (executed notebooks are in build/labs)")
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    lines, pages = [], []
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if code and all(c.get("execution_count") is None for c in code):
            lines.append(f"warning: {p.name} was never executed (no outputs): run it first (make labs)")
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": p.stem}})
        target = out / f"{p.stem}.html"
        target.write_text(body)
        pages.append(p.stem)
        lines.append(f"{target} ({target.stat().st_size // 1024} KiB)")
    index = out / "index.html"
    index.write_text(_index(pages))
    lines.append(f"{index}: open it in a browser")
    return lines


def _index(pages: list[str]) -> str:
    by_file = {i.notebook.removesuffix(".ipynb"): i for i in LABS}
    rows = []
    for page in pages:
        info = by_file.get(page)
        teaches = html.escape(info.teaches) if info else ""
        times = f"{info.minutes['local']} min local, {info.minutes['kind']} min kind" if info else ""
        rows.append(f'<tr><td><a href="{html.escape(page)}.html">{html.escape(page)}</a></td><td>{teaches}</td><td>{times}</td></tr>')
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>meshlab handout</title></head><body>"
            "<h1>meshlab: the labs</h1><table><tr><th>lab</th><th>what it teaches</th><th>time</th></tr>"
            + "".join(rows) + "</table></body></html>\n")
