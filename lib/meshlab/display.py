"""Notebook rendering that also reads well as plain text (executed notebooks and CI logs keep text)."""

from __future__ import annotations

import html
from typing import Any

from .topology import Topology


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
        cols = self.columns
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in self)
        cap = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{cap}<tr>{head}</tr>{body}</table>"


def mermaid(topology: Topology) -> str:
    """The pattern as a Mermaid flowchart: networks contain clusters; arrows show who configures whom."""
    lines = ["flowchart LR"]
    for net in topology.networks:
        lines.append(f'  subgraph {net}["network {net}"]')
        for c in topology.clusters.values():
            if c.network == net:
                role = "istiod (primary)" if c.is_primary else f"remote of {c.remote_of}"
                mesh = topology.meshes[c.mesh]
                lines.append(
                    f'    {c.name}["{c.name}<br/>{role}<br/>mesh {mesh.name}, root CA {mesh.root_ca}'
                    f'<br/>{c.region}/{c.zone}<br/>pods {c.pod_cidr}"]'
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
