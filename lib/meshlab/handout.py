"""A workshop handout: executed lab notebooks rendered to HTML (nbconvert), with an index page.

``make labs`` leaves executed notebooks (every output, plots included) in ``build/labs``;
``meshlab export`` turns them into self-contained HTML pages plus ``index.html`` listing each lab with
its time estimates, so a room can read the course without running it.

**Diagrams offline.** nbconvert's page draws Mermaid diagrams in the reader's browser with a script from a
CDN: offline, the diagram is an empty box. Here every diagram is drawn at export, by Mermaid itself
(``mermaid.min.js`` from its npm package, pinned in :mod:`meshlab.versions`) in headless Chromium (Debian's
``chromium``), and the SVG goes into the page; the CDN script is removed. Both come with
``make handout-deps``. Without them, each diagram shows its source and says why it is not drawn.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from .errors import MeshlabError
from .exec import run
from .labs import LABS, ROOT
from .versions import MERMAID_INTEGRITY, MERMAID_VERSION

MERMAID_JS = ROOT / ".venv" / "share" / "meshlab" / f"mermaid-{MERMAID_VERSION}.min.js"
_BLOCK = re.compile(r'<div class="jp-Mermaid"><pre class="mermaid">(.*?)</pre>\s*</div>', re.S)
_CDN_SCRIPT = re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*?</script>', re.S)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


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
    lines, pages, bodies = [], [], []
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if code and all(c.get("execution_count") is None for c in code):
            lines.append(f"warning: {p.name} was never executed (no outputs): run it first (make labs)")
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": p.stem}})
        bodies.append(body)
    sources = [html.unescape(m.group(1)).strip() for body in bodies for m in _BLOCK.finditer(body)]
    svgs, why_not = draw(sources)
    if why_not:
        lines.append(f"warning: {len(sources)} diagrams not drawn, their source is shown instead: {why_not}")
    drawn = iter(svgs)
    for p, body in zip(paths, bodies):
        body = _BLOCK.sub(lambda m: _figure(html.unescape(m.group(1)).strip(), next(drawn), why_not), body)
        body = _CDN_SCRIPT.sub("", body)  # nothing left for it to draw, and nothing fetched when the page opens
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


def _figure(source: str, svg: str | None, why_not: str | None) -> str:
    if svg is not None:
        return f'<div class="jp-Mermaid jp-RenderedMermaid"><figure>{svg}</figure></div>'
    reason = why_not or "Mermaid could not draw it"
    return (f'<div class="meshlab-diagram-source" style="border:1px dashed #b00;padding:0.5em">'
            f"<p><b>diagram not drawn</b> ({html.escape(reason)}); its Mermaid source:</p>"
            f"<pre>{html.escape(source)}</pre></div>")


def browser() -> str | None:
    """The headless browser that runs Mermaid (Debian's ``chromium``)."""
    return next((path for b in BROWSERS if (path := shutil.which(b))), None)


def draw(sources: list[str], mermaid_js: Path | None = None) -> tuple[list[str | None], str | None]:
    """Draw Mermaid ``sources`` as SVG, offline, in one headless-browser run: (one SVG or None per source,
    why none could be drawn or None)."""
    if not sources:
        return [], None
    mermaid_js = mermaid_js or MERMAID_JS
    chromium = browser()
    if chromium is None or not mermaid_js.is_file():
        missing = [what for what, ok in (("chromium", chromium), (f"Mermaid {MERMAID_VERSION}", mermaid_js.is_file())) if not ok]
        return [None] * len(sources), f"{' and '.join(missing)} not installed: run `make handout-deps`"
    with tempfile.TemporaryDirectory(prefix="meshlab-diagrams-") as tmp:
        page = Path(tmp) / "draw.html"
        page.write_text(_DRAW_PAGE.replace("MERMAID_JS", mermaid_js.resolve().as_uri())
                        .replace("SOURCES", json.dumps(sources).replace("</", "<\\/")))
        # --no-sandbox: the page is our own file, with no network; Chromium's sandbox needs privileges a learner's
        # account or a container may not have
        dom = run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp}/profile",
                   "--virtual-time-budget=60000", "--dump-dom", page.as_uri()], timeout=300,
                  hint="check that `chromium --headless --dump-dom about:blank` runs on this machine").stdout
    found = re.search(r'<div id="result" data-svgs="([^"]*)"', dom)
    if not found:
        return [None] * len(sources), "the browser finished without drawing (no result in its page)"
    results = json.loads(html.unescape(found.group(1)))
    return [r if isinstance(r, str) and r.startswith("<svg") else None for r in results], None


# Renders every source with Mermaid's own API; each SVG's id is unique in the handout (Mermaid scopes its CSS by it).
_DRAW_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><script src="MERMAID_JS"></script></head>
<body><div id="result"></div><script>
mermaid.initialize({startOnLoad: false, securityLevel: "strict", theme: "default"});
(async () => {
  const out = [];
  const sources = SOURCES;
  for (let i = 0; i < sources.length; i++) {
    try { out.push((await mermaid.render("meshlab-diagram-" + i, sources[i])).svg); }
    catch (e) { out.push("error: " + e); }
  }
  document.getElementById("result").setAttribute("data-svgs", JSON.stringify(out));
})();
</script></body></html>
"""


def install_mermaid(dest: Path = MERMAID_JS) -> Path:
    """Fetch Mermaid's npm tarball (``npm pack``, at setup time), check it against the pinned integrity and
    keep its ``dist/mermaid.min.js`` as ``dest``. Nothing to do when ``dest`` is there."""
    if dest.is_file():
        return dest
    npm = shutil.which("npm", path=str(ROOT / ".venv" / "bin")) or shutil.which("npm")
    if npm is None:
        raise MeshlabError("npm not found", "run `make setup` first (it installs Node.js and npm into .venv)")
    with tempfile.TemporaryDirectory(prefix="meshlab-mermaid-") as tmp:
        packed = json.loads(run([npm, "pack", f"mermaid@{MERMAID_VERSION}", "--json", "--loglevel=error",
                                 "--pack-destination", tmp], timeout=600).stdout)[0]
        tarball = Path(tmp) / packed["filename"]
        digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if digest != MERMAID_INTEGRITY:
            raise MeshlabError(f"mermaid {MERMAID_VERSION}'s tarball has integrity {digest}, not the pinned {MERMAID_INTEGRITY}",
                               "check meshlab/versions.py: a changed package must not be used unnoticed")
        with tarfile.open(tarball) as tar:
            member = tar.extractfile("package/dist/mermaid.min.js")
            if member is None:
                raise MeshlabError(f"mermaid {MERMAID_VERSION} has no dist/mermaid.min.js", "pin a version that ships it")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(member.read())
    return dest
