"""Load from a real generator: ``wrk`` (Debian package ``wrk``), so the client is never the bottleneck.

A Python client costs more CPU per request than the Envoys it measures, which made earlier numbers
swing several-fold between runs. wrk is an event-loop C client: on this 2-core machine it drives the
app directly at many times the mesh's rate (``meshlab bench`` prints that headroom), so what it
measures is the path, not itself.

    r = wrk("http://10.10.0.10:15001/hello", host="helloworld.sample:5000", connections=16, seconds=3)
    r.rps, r.p50_ms, r.p99_ms, r.non_2xx
    rr = repeat(lambda: wrk(...), runs=5)        # median and spread over repeated runs
    rr.median("rps"), rr.spread("rps")

wrk runs as a recorded process (``record`` puts it in the lab's state), so ``meshlab down`` stops a
run interrupted by a killed kernel. A Lua ``done`` hook prints the summary as one JSON line.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .runtime import procs
from .errors import MeshlabError
from .exec import which
from .state import home

WRK_HINT = "install it: `make setup` (Debian package wrk), or `sudo apt-get install -y wrk`"
MARK = "MESHLAB-WRK "

# wrk's Lua API: done(summary, latency, requests) runs once at the end; latency in microseconds.
_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('%s{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,'
    .. '"write_errors":%d,"non_2xx":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    "MARK", summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
""".replace("MARK", MARK)


@dataclass
class LoadResult:
    """One wrk run: throughput, latency percentiles, and what went wrong (non-2xx answers, socket errors)."""

    label: str
    connections: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int  # connect/read/write errors and timeouts

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.label}: {self.rps:,.0f} req/s over {self.connections} connections, p50 {self.p50_ms:.2f} ms, "
            f"p99 {self.p99_ms:.2f} ms, {self.non_2xx} non-2xx, {self.socket_errors} socket errors"
        )


def _script(directory: Path) -> Path:
    path = directory / "meshlab-done.lua"
    if not path.exists():
        path.write_text(_DONE)
    return path


def parse(output: str, label: str, connections: int) -> LoadResult:
    """The JSON line of the Lua hook in wrk's output."""
    line = next((ln for ln in output.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise MeshlabError(f"wrk printed no summary; its output was:\n{output[-1500:]}", "run the same wrk command by hand to see why")
    d = json.loads(line[len(MARK) :])
    secs = d["duration_us"] / 1e6
    return LoadResult(
        label, connections, d["requests"], secs, d["requests"] / secs if secs else 0.0,
        d["p50_us"] / 1e3, d["p90_us"] / 1e3, d["p99_us"] / 1e3, d["max_us"] / 1e3, d["non_2xx"],
        d["connect_errors"] + d["read_errors"] + d["write_errors"] + d["timeouts"],
    )  # fmt: skip


def wrk(
    url: str,
    *,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    connections: int = 16,
    threads: int = 1,
    seconds: float = 3.0,
    timeout: float = 5.0,
    label: str = "",
    exec_prefix: Sequence[str] = (),
    record: Callable[[dict[str, object]], None] | None = None,
    forget: Callable[[dict[str, object]], None] | None = None,
    workdir: Path | None = None,
) -> LoadResult:
    """Run wrk against ``url`` for ``seconds`` (whole seconds: wrk's unit) with ``connections`` keep-alive connections.

    ``host`` sets the Host header (the mesh routes on it); ``exec_prefix`` runs wrk inside a pod's
    network namespace (``ip netns exec ...``); ``record``/``forget`` add the process to a lab's
    state while it runs.
    """
    binary = which("wrk", WRK_HINT)
    if connections < threads:
        threads = connections
    work = workdir or home() / "load"  # the caller's own: never a path other users share (/tmp)
    work.mkdir(parents=True, exist_ok=True)
    argv = [*exec_prefix, binary, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
            "--timeout", f"{timeout:g}s", "-s", str(_script(work))]  # fmt: skip
    for k, v in {**({"Host": host} if host else {}), **(headers or {})}.items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(url)
    log = work / f"wrk-{time.monotonic_ns()}.log"
    p = procs.spawn("wrk", argv, log)
    rec = p.record()
    if record:
        record(rec)
    try:
        assert p.popen is not None
        try:
            p.popen.wait(timeout=seconds + timeout + 30)
        except Exception as e:
            procs.terminate([rec], grace=1)
            raise MeshlabError(f"wrk did not finish: {' '.join(argv)}", "is the machine overloaded? try fewer connections") from e
        out = log.read_text(errors="replace")
        if p.popen.returncode != 0:
            raise MeshlabError(f"wrk failed (exit {p.popen.returncode}): {' '.join(argv)}\n{out[-1500:]}", "run the command above by hand to see why")
        return parse(out, label or url, connections)
    finally:
        if forget:
            forget(rec)
        log.unlink(missing_ok=True)


LOAD_MARK = "MESHLAB-LOAD "


def parse_curl_loops(output: str, label: str, connections: int, seconds: float) -> LoadResult:
    """Concurrent curl loops (the kind backend's load: ``<mark><http_code> <time_total>`` per request) as a run."""
    rows = [ln[len(LOAD_MARK) :].split() for ln in output.splitlines() if ln.startswith(LOAD_MARK)]
    if not rows:
        raise MeshlabError(f"the curl loops printed no result; their output was:\n{output[-1500:]}", "run the recorded command by hand to see why")
    times = sorted(float(t) * 1e3 for _, t in rows)
    codes = [c for c, _ in rows]

    def pct(q: float) -> float:
        return times[min(len(times) - 1, int(len(times) * q))]

    return LoadResult(
        label, connections, len(rows), seconds, len(rows) / seconds, pct(0.5), pct(0.9), pct(0.99), times[-1],
        sum(1 for c in codes if c != "000" and not c.startswith("2")), codes.count("000"),
    )  # fmt: skip


@dataclass
class Repeated:
    """Repeated runs of one measurement: report the median and the spread, never a single run."""

    label: str
    runs: list[LoadResult] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [float(getattr(r, metric)) for r in self.runs]

    def median(self, metric: str) -> float:
        return statistics.median(self.values(metric))

    def spread(self, metric: str) -> float:
        """(max - min) / median: 0.1 means the runs were within 10 % of each other."""
        v = self.values(metric)
        m = statistics.median(v)
        return (max(v) - min(v)) / m if m else 0.0

    def summary(self, metric: str = "rps") -> str:
        v = self.values(metric)
        return f"{self.median(metric):,.1f} (min {min(v):,.1f}, max {max(v):,.1f}, spread {self.spread(metric):.0%}, n={len(v)})"


def repeat(measure: Callable[[], LoadResult], runs: int = 5, label: str = "") -> Repeated:
    rr = Repeated(label)
    for _ in range(runs):
        rr.runs.append(measure())
    rr.label = label or rr.runs[0].label
    return rr
