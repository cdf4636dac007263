"""Requests from a workload, and what came back: answers tallied by cluster and version."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import MeshlabError

HELLO = re.compile(r"Hello version: (?P<version>\S+), instance: (?P<instance>\S+)")


@dataclass(frozen=True)
class Answer:
    status: int  # HTTP status, or 0 when the request failed before any response
    body: str
    version: str = ""
    instance: str = ""
    cluster: str = ""  # where the answering instance runs (from the lab's registry)
    error: str = ""
    seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict, compare=False)  # response headers (lower-case names), when known

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class CallResult:
    """The answers to ``n`` calls, in order, plus convenience views for notebooks and checks."""

    url: str
    source: str
    answers: list[Answer] = field(default_factory=list)

    @property
    def tally(self) -> dict[tuple[str, str], int]:
        """``{(cluster, version): count}`` over successful answers; failures count under ``("error", code)``."""
        c: Counter[tuple[str, str]] = Counter()
        for a in self.answers:
            c[(a.cluster or "?", a.version or "?") if a.ok else ("error", str(a.status or a.error))] += 1
        return dict(sorted(c.items()))

    @property
    def clusters(self) -> set[str]:
        return {a.cluster for a in self.answers if a.ok}

    @property
    def versions(self) -> set[str]:
        return {a.version for a in self.answers if a.ok}

    @property
    def errors(self) -> int:
        return sum(1 for a in self.answers if not a.ok)

    def __str__(self) -> str:
        lines = [f"{len(self.answers)} calls to {self.url} from {self.source}:"]
        width = max([len(k[0]) for k in self.tally] + [7])
        lines.append(f"  {'CLUSTER'.ljust(width)}  VERSION  COUNT")
        for (cluster, version), n in self.tally.items():
            lines.append(f"  {cluster.ljust(width)}  {version.ljust(7)}  {n}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{c}</td><td>{v}</td><td>{n}</td></tr>" for (c, v), n in self.tally.items())
        return (
            f"<p>{len(self.answers)} calls to <code>{self.url}</code> from <code>{self.source}</code></p>"
            f"<table><tr><th>cluster</th><th>version</th><th>count</th></tr>{rows}</table>"
        )


def split_url(url: str) -> tuple[str, int, str]:
    """``http://helloworld.sample:5000/hello`` -> (host, port, path); only plain http inside the mesh."""
    u = urlsplit(url)
    try:
        port = u.port or 80
    except ValueError:
        port = 0
    if u.scheme != "http" or not u.hostname or not 0 < port < 65536:
        raise MeshlabError(
            f"cannot call {url!r}: only http://host[:port]/path URLs (port 1-65535) are sent through the sidecar",
            "write it like http://helloworld.sample:5000/hello (the sidecar adds mTLS)",
        )
    return u.hostname, port, (u.path or "/") + (f"?{u.query}" if u.query else "")


def parse_answer(status: int, body: str, seconds: float, where: dict[str, str], headers: dict[str, str] | None = None) -> Answer:
    m = HELLO.search(body)
    if not m:
        return Answer(status, body, seconds=seconds, headers=dict(headers or {}))
    return Answer(status, body, m["version"], m["instance"], where.get(m["instance"], ""), seconds=seconds, headers=dict(headers or {}))
