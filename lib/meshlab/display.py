"""Notebook rendering that also reads well as plain text (executed notebooks and CI logs keep text)."""

from __future__ import annotations

import html
import os
import re
import time
from typing import Any

from .topology import Topology


def pods_table(pods: Any) -> "Table":
    """Pods (workloads of either backend) as the table ``lab.deploy`` shows."""
    return Table([{"POD": w.pod, "CLUSTER": w.cluster, "IP": w.ip, "VERSION": w.version} for w in pods])


class Table(list[dict[str, Any]]):
    """A list of row dicts that prints as an aligned text table and renders as HTML in Jupyter."""

    def __init__(self, rows: list[dict[str, Any]] | None = None, title: str = "") -> None:
        super().__init__(rows or [])
        self.title = title

    @property
    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for r in self:
            cols.update(dict.fromkeys(r))
        return list(cols)

    def column(self, name: str) -> list[Any]:
        return [r.get(name) for r in self]

    def __str__(self) -> str:
        cols = self.columns
        if not cols:
            return f"{self.title}\n(no rows)" if self.title else "(no rows)"
        widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in self)) for c in cols}
        lines = [self.title] if self.title else []
        lines.append("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
        lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols).rstrip() for r in self]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        """An HTML table that never wraps inside a value; a wide one scrolls sideways instead."""
        cols = self.columns
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in self)
        cap = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return (f'<div style="overflow-x:auto"><table style="white-space:nowrap">{cap}<tr>{head}</tr>{body}</table></div>')


# Edge labels get an opaque background: without one the arrow runs through the label's text and it
# reads as struck through (JupyterLab's Mermaid draws labels transparent). Put it first in any diagram.
MERMAID_INIT = '%%{init: {"themeVariables": {"edgeLabelBackground": "#ffffff"}}}%%'


def mermaid(topology: Topology) -> str:
    """The pattern as a Mermaid flowchart: networks contain clusters; arrows show who configures whom."""
    lines = [MERMAID_INIT, "flowchart LR"]
    for net in topology.networks:
        lines.append(f'  subgraph {net}["network {net}"]')
        for c in topology.clusters.values():
            if c.network == net:
                role = "istiod (primary)" if c.is_primary else f"remote of {c.remote_of}"
                mesh = topology.meshes[c.mesh]
                lines.append(
                    f'    {c.name}["{c.name}<br/>{role}<br/>mesh {mesh.name}, trust domain {mesh.trust_domain}'
                    f'<br/>root CA ‘{mesh.root_ca}’<br/>{c.region}/{c.zone}<br/>pods {c.pod_cidr}"]'
                )
        lines.append("  end")
    for c in topology.clusters.values():
        if not c.is_primary:
            lines.append(f"  {c.remote_of} -- config + certs --> {c.name}")
    nets = list(topology.networks)
    if len(nets) > 1:
        for a, b in zip(nets, nets[1:]):
            lines.append(f"  {a} <-. east-west gateways :15443 .-> {b}")
    return "\n".join(lines)


class Diagram:
    """Shows as a rendered Mermaid diagram in JupyterLab and as its source in plain text."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _repr_markdown_(self) -> str:
        return f"```mermaid\n{self.source}\n```"

    def __str__(self) -> str:
        return self.source

    __repr__ = __str__


def status_table(status: dict[str, Any]) -> str:
    """``lab.status()`` for a terminal: one line per setting, then the workloads as a table."""
    lines = []
    for key, value in status.items():
        if key == "workloads":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        lines.append(f"{key.replace('_', ' ') + ':':16} {value}")
    workloads = [{k.upper(): v for k, v in w.items()} for w in status.get("workloads") or []]  # like lab.deploy's tables
    lines += ["", str(Table(workloads)) if workloads else "no workloads deployed"]
    return "\n".join(lines)


_STEP = re.compile(r"^\[\s*(\d+)/(\d+)\]")


class Progress:
    """Progress of a long step (a kind bring-up, image pulls, filter builds, starting Prometheus).

    In a live notebook: an ipywidgets bar with the current step. Everywhere else (the CLI, CI logs):
    one printed line per step. At the end, in both: a plain-text summary, which replaces the bar, so an
    executed notebook keeps the summary (widgets do not survive headless execution)::

        with Progress("building filters", total=len(dirs)) as progress:
            for d in dirs:
                build(d)
                progress(f"{d.name} built")

    ``progress`` is a ``Callable[[str], None]``, so it can be passed where a function takes
    ``progress=print``; a line that starts with ``[n/total]`` (the kind executor's) moves the bar to n.
    """

    def __init__(self, title: str, total: int | None = None, widget: bool | None = None) -> None:
        self.title = title
        self.total = total
        self.done = 0
        self.lines: list[str] = []
        self._t0 = time.perf_counter()
        self._bar: Any = None
        self._handle: Any = None
        if widget is None:
            widget = _live_notebook()
        if widget:
            import ipywidgets
            from IPython.display import display

            self._bar = ipywidgets.IntProgress(value=0, max=max(total or 1, 1), description=title[:20],
                                               layout=ipywidgets.Layout(width="60%"))
            self._label = ipywidgets.Label("starting ...")
            self._handle = display(ipywidgets.HBox([self._bar, self._label]), display_id=True)

    def __call__(self, line: str) -> None:
        m = _STEP.match(line)
        if m:
            self.done, self.total = int(m.group(1)), int(m.group(2))
        else:
            self.done += 1
        self.lines.append(line)
        if self._bar is not None:
            self._bar.max = max(self.total or self.done, 1)
            self._bar.value = self.done
            self._label.value = line[:120]
        else:
            print(line, flush=True)

    def summary(self, failed: BaseException | None = None) -> str:
        took = f"{time.perf_counter() - self._t0:.1f}s"
        of = f"/{self.total}" if self.total else ""
        if failed is None:
            return f"{self.title}: done, {self.done}{of} steps in {took}"
        last = f"; last: {self.lines[-1]}" if self.lines else ""
        return f"{self.title}: FAILED after {self.done}{of} steps in {took} ({type(failed).__name__}){last}"

    def close(self, failed: BaseException | None = None) -> str:
        text = self.summary(failed)
        if self._handle is not None:
            self._handle.update(_Plain(text))  # the bar gives way to the summary
        else:
            print(text, flush=True)
        return text

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(exc)


class _Plain:
    """Text that renders as text everywhere (the summary that replaces a progress bar)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _live_notebook() -> bool:
    """A Jupyter kernel with ipywidgets, unless MESHLAB_PROGRESS=text (e.g. to keep logs plain)."""
    if os.environ.get("MESHLAB_PROGRESS") == "text":
        return False
    try:
        from IPython import get_ipython

        shell = get_ipython()
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
