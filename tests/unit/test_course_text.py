"""The course's text, read as an instructor would: statements found wrong must not come back, a heading is
not repeated, and a prediction is asked for before the experiment that answers it (issue 20).

Each wrong statement is listed with what is true instead, so a failure says what to write."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

LABS = sorted((Path(__file__).resolve().parents[2] / "labs").glob("[0-9]*.ipynb"))

# (a phrase that was wrong, what is true) -- looked for in every notebook's text outside its quiz
WRONG = [
    ("retries twice on connect failures and 503", "since Istio 1.24 the default retry policy retries no 503"),
    ("speak HTTP/2 to each other", "Istio's sidecars talk HTTP/1.1 by default; http2MaxRequests applies to HTTP/1.1 too"),
    ("without back-off", "hedges are retries: they wait out the retry back-off (upstream_rq_retry_backoff_exponential)"),
    ("naming convention", "proxy_on_http_request_headers / proxy_get_map come from the unimplemented 2020 draft of the spec"),
    ("it checks the toolchains", "lab 00 does not check the Wasm toolchains; make setup installs them"),
    ("an error fails the request", "a Lua script error is logged and counted (lua.errors); the request goes on"),
]


def text_cells(path: Path) -> list[str]:
    """Every cell's source except the quiz cells (their text belongs to the quiz's own checks)."""
    nb = nbformat.read(path, 4)
    return [c.source for c in nb.cells if "ex.quiz(" not in c.source]


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_no_statement_found_wrong_comes_back(path: Path) -> None:
    text = re.sub(r"\s+", " ", "\n".join(text_cells(path)))
    found = [(phrase, truth) for phrase, truth in WRONG if phrase.lower() in text.lower()]
    assert not found, f"{path.name} says again what was found wrong: " + "; ".join(f"{p!r} -- instead: {t}" for p, t in found)


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_no_heading_twice(path: Path) -> None:
    nb = nbformat.read(path, 4)
    headings = [line.strip() for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if re.match(r"#{1,3} ", line)]
    # the sections every lab repeats by design ("### Check: ...", "## Quiz", ...) are not the kind meant here
    headings = [h for h in headings if not re.match(r"#+ (Check|Quiz|Cleanup|Exercises|What just happened)\b", h)]
    twice = sorted({h for h in headings if headings.count(h) > 1})
    assert not twice, f"{path.name} repeats a heading: {twice}"


ANSWER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\.\.\.", re.M)


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_a_prediction_comes_before_its_experiment(path: Path) -> None:
    """After a markdown cell that asks to predict, the first code cell is the answer; the experiment, and the
    check that grades the prediction (often in the same cell), come after it."""
    cells = nbformat.read(path, 4).cells
    for i, c in enumerate(cells):
        if c.cell_type != "markdown" or not re.search(r"predict", c.source, re.I) or not re.search(r"\b\d\d[a-z]?\.\d\b", c.source):
            continue
        code = [x for x in cells[i + 1:] if x.cell_type == "code"]
        first = code[0] if code else None
        assert first is not None and ANSWER.search(first.source), (
            f"{path.name}: the prediction asked for in {c.source.splitlines()[0]!r} must be answered in the next code "
            f"cell, before any experiment runs; the next code cell is:\n{first.source if first else None}")
        name = ANSWER.search(first.source).group(1)
        graded = next((j for j, x in enumerate(code) if "ex.check(" in x.source and re.search(rf"\b{name}\b", x.source)), None)
        assert graded is not None and graded >= 1, (
            f"{path.name}: {name} should be graded by a check cell after the experiment it predicts")
        between = [x for x in code[1:graded] if "solution" not in x.metadata.get("tags", [])]
        runs_it = re.search(r"\b(lab|e|raw|hub)\.\w+\(", code[graded].source)  # the experiment inside the check cell
        assert between or runs_it, (
            f"{path.name}: {name} is graded right after it is written, against a result already shown above: "
            "put the prediction before the experiment")
