"""`meshlab bench`: what the mesh costs, measured with a real load generator (wrk) as ratios against
baselines from the same run.

- bring-up and teardown time of each pattern (samples included), median of 3;
- throughput (16 connections) and latency (p50/p99 on one connection) for four paths, in rounds
  (each round measures every path once, so a busy moment hits all of them), median and spread:
  the app called directly inside its pod (no mesh); curl's sidecar -> helloworld's sidecar (mTLS,
  HTTP/1.1 as Istio on an ``http`` port, no access log on either side: Istio's defaults) -> app; sidecar -> east-west gateway (SNI passthrough) -> sidecar -> app across networks;
  and the same cross-network path built from a hand-written static Envoy config
  (``backends/local/envoy-path.yaml``). meshlab's cross-network throughput is reported as a ratio to the
  hand-written one (the goal: >= 0.9x), and the generator's headroom as the direct path's rate over
  the mesh's (wrk must drive far more than the mesh can take, or it would be measuring itself);
- failover: client-visible errors and time from killing the local instance to the first answer
  from the other cluster (locality failover with outlier detection), median of 3.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

from .errors import MeshlabError
from .lab import Lab
from .loadgen import LoadResult, Repeated, wrk
from .resources import parse
from .runtime import net
from .topology import builtin_patterns


@dataclass
class PathResult:
    """One path measured with wrk: latency on one connection, throughput on one and on 16."""

    path: str
    requests: int
    p50_ms: float
    p99_ms: float
    rps_sequential: float
    rps_concurrent: float


def measure(
    label: str, host: str, port: int, authority: str, seconds: float = 2.0,
    headers: dict[str, str] | None = None, exec_prefix: list[str] | None = None,
) -> PathResult:
    """wrk on one connection (latency, sequential rate), then on 16 (throughput), ``seconds`` each."""
    kw: dict[str, Any] = {"host": authority, "headers": headers, "seconds": seconds, "label": label, "exec_prefix": exec_prefix or []}
    one = wrk(f"http://{host}:{port}/hello", connections=1, **kw)
    many = wrk(f"http://{host}:{port}/hello", connections=16, **kw)
    for r in (one, many):
        if r.non_2xx or r.socket_errors:
            raise MeshlabError(f"{label}: {r}", "a benchmark path must answer 200: turn access logging on (meshlab.dataplane.ACCESS_LOGGING) and look at the proxies' access logs")
    return PathResult(label, one.requests + many.requests, one.p50_ms, one.p99_ms, one.rps, many.rps)


# local subset v1 by default, the remote one (through both gateways' network) when asked by header
ROUTING = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld, namespace: sample}
spec:
  host: helloworld
  subsets: [{name: local, labels: {version: v1}}, {name: remote, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: helloworld, namespace: sample}
spec:
  hosts: [helloworld]
  http:
  - match: [{headers: {x-bench-path: {exact: remote}}}]
    route: [{destination: {host: helloworld, subset: remote}}]
  - route: [{destination: {host: helloworld, subset: local}}]
"""

FAILOVER = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld, namespace: sample}
spec:
  host: helloworld
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
"""


def bring_up_times(home: str, runs: int = 3) -> dict[str, dict[str, float]]:
    out = {}
    for pattern in builtin_patterns():
        ups, downs = [], []
        for _ in range(runs):
            t = time.perf_counter()
            lab = Lab.up(pattern, samples=True, home_dir=home, quiet=True, keep=True)
            ups.append(time.perf_counter() - t)
            t = time.perf_counter()
            lab.down(quiet=True)
            downs.append(time.perf_counter() - t)
        out[pattern] = {"up_s": statistics.median(ups), "down_s": statistics.median(downs)}
    return out


def failover(home: str, runs: int = 3) -> dict[str, float]:
    """Kill the local helloworld; count client errors and time until the other cluster answers."""
    errors, times = [], []
    for _ in range(runs):  # a fresh topology each time: outlier ejections back off across runs
        lab = Lab.up("separate-networks", samples=True, home_dir=home, quiet=True)
        try:
            lab.backend.apply(parse(FAILOVER), "cluster1")
            url = "http://helloworld.sample:5000/hello"
            lab.call("curl", url, cluster="cluster1", n=5)
            lab.kill("helloworld", "cluster1")
            t0, n_err = time.perf_counter(), 0
            while time.perf_counter() - t0 < 10:
                a = lab.call("curl", url, cluster="cluster1", n=1).answers[0]
                if a.cluster == "cluster2":
                    times.append(time.perf_counter() - t0)
                    break
                n_err += not a.ok
            errors.append(n_err)
        finally:
            lab.down(quiet=True)
    return {"errors_median": statistics.median(errors), "first_remote_answer_ms_median": statistics.median(times) * 1e3 if times else float("nan")}


PATHS = ("direct", "sidecar", "gateway", "hand-written")
LABELS = {
    "direct": "direct: client -> app (no mesh)",
    "sidecar": "sidecar -> sidecar (mTLS, HTTP/1.1) -> app",
    "gateway": "sidecar -> e/w gateway -> sidecar -> app",
    "hand-written": "same path, hand-written static Envoy config",
}


def paths(runs: int, seconds: float, home: str) -> dict[str, Any]:
    """Every path once per round (throughput at 16 connections, latency at 1), ``runs`` rounds."""
    lab = Lab.up("separate-networks", home_dir=home, quiet=True)
    try:
        be = lab.backend
        (hw,) = be.deploy("helloworld", "cluster1", version="v1")
        (hw2,) = be.deploy("helloworld", "cluster2", version="v2")
        (curl,) = be.deploy("curl", "cluster1")
        be.apply(parse(ROUTING), "cluster1")
        hand = be.start_baseline(curl, hw2)  # type: ignore[attr-defined]  # a local-backend tool
        url = "http://helloworld.sample:5000/hello"
        remote = {"x-bench-path": "remote"}
        curl_ns = be.network.exec_prefix(curl.netns)

        def one(name: str, connections: int) -> LoadResult:
            kw: dict[str, Any] = {"connections": connections, "seconds": seconds, "label": LABELS[name]}
            if name == "direct":
                return wrk(f"http://{hw.app_host}:5000/hello", host="helloworld", exec_prefix=be.network.exec_prefix(hw.netns), **kw)
            if name == "hand-written":
                return wrk(hand, host="helloworld.sample:5000", exec_prefix=curl_ns, **kw)
            return be.load("curl", url, "cluster1", headers=remote if name == "gateway" else None, **kw)

        thr = {p: Repeated(LABELS[p]) for p in PATHS}
        lat = {p: Repeated(LABELS[p]) for p in PATHS}
        for _ in range(runs):
            for p in PATHS:
                for store, conns in ((thr, 16), (lat, 1)):
                    r = one(p, conns)
                    if r.non_2xx or r.socket_errors:
                        raise MeshlabError(f"{r}", "a benchmark path must answer 200: turn access logging on (meshlab.dataplane.ACCESS_LOGGING) and look at the proxies' access logs")
                    store[p].runs.append(r)
    finally:
        lab.down(quiet=True)

    def per_round(a: str, b: str, store: dict[str, Repeated] = thr, metric: str = "rps") -> dict[str, float]:
        v = [x / y for x, y in zip(store[a].values(metric), store[b].values(metric))]
        return {"median": statistics.median(v), "min": min(v), "max": max(v)}

    return {
        "paths": {
            p: {
                "label": LABELS[p],
                "rps_c16": {"median": thr[p].median("rps"), "spread": thr[p].spread("rps"), "runs": thr[p].values("rps")},
                "p50_ms_c1": {"median": lat[p].median("p50_ms"), "spread": lat[p].spread("p50_ms")},
                "p99_ms_c1": {"median": lat[p].median("p99_ms"), "spread": lat[p].spread("p99_ms")},
                "p99_ms_c16": {"median": thr[p].median("p99_ms"), "spread": thr[p].spread("p99_ms")},
            }
            for p in PATHS
        },
        "ratios": {
            "meshlab_over_hand_written_rps": per_round("gateway", "hand-written"),
            "sidecar_over_direct_rps": per_round("sidecar", "direct"),
            "gateway_over_sidecar_rps": per_round("gateway", "sidecar"),
            "generator_headroom": per_round("direct", "gateway"),
            "sidecar_over_direct_p50": per_round("sidecar", "direct", lat, "p50_ms"),
        },
        "runs": runs,
        "seconds": seconds,
    }


def run(runs: int = 5, seconds: float = 2.0, only_paths: bool = False) -> dict[str, Any]:
    if net.choose_mode()[0] == net.USERNS:
        raise MeshlabError("the benchmark's client enters pod namespaces from this process", "run it as root, or with MESHLAB_NET_MODE=loopback")

    out: dict[str, Any] = {"network_mode": net.choose_mode()[0]}
    with Lab.scratch("bench") as scratch:  # `meshlab down` finds its labs even after Ctrl-C or a kill
        home = str(scratch)
        if not only_paths:
            out["bring_up"] = bring_up_times(home)
        out.update(paths(runs, seconds, home))
        if not only_paths:
            out["failover"] = failover(home)
    return out


def main(runs: int = 5, seconds: float = 2.0, as_json: bool = False, only_paths: bool = False) -> int:
    r = run(runs, seconds, only_paths)
    if as_json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"network mode: {r['network_mode']}; load generator: wrk, {r['runs']} rounds of {r['seconds']:g}s per path and mode\n")
    if "bring_up" in r:
        print("bring-up with samples (median of 3):")
        for pattern, t in r["bring_up"].items():
            print(f"  {pattern:26} up {t['up_s']:.2f}s   down {t['down_s']:.2f}s")
        print()
    print(f"{'path':46} {'req/s, 16 conns (spread)':>26} {'p50 ms, 1 conn':>16} {'p99 ms, 1 conn':>16}")
    for p in r["paths"].values():
        t, l50, l99 = p["rps_c16"], p["p50_ms_c1"], p["p99_ms_c1"]
        print(f"{p['label']:46} {t['median']:>16,.0f} ({t['spread']:4.0%}) {l50['median']:9.3f} ({l50['spread']:3.0%}) {l99['median']:9.3f} ({l99['spread']:3.0%})")
    print("\nratios, per round (median, min-max):")
    for name, q in r["ratios"].items():
        print(f"  {name:32} {q['median']:6.2f}x  ({q['min']:.2f}-{q['max']:.2f})")
    m = r["ratios"]["meshlab_over_hand_written_rps"]["median"]
    print(f"\nmeshlab's cross-network path runs at {m:.2f}x the hand-written Envoy config's throughput "
          f"({'meets' if m >= 0.9 else 'misses'} the 0.9x goal)")
    if "failover" in r:
        f = r["failover"]
        print(f"failover to the other network: {f['errors_median']:.0f} client errors, first remote answer after {f['first_remote_answer_ms_median']:.1f} ms (median of 3)")
    return 0
