"""`meshlab bench`: what the mesh costs, measured as ratios against a baseline from the same run.

- bring-up and teardown time of each pattern (samples included), median of 3;
- latency (p50/p99, one keep-alive connection, sequential) and throughput (4 client threads) for:
  the app called directly inside its pod (baseline); curl's sidecar -> helloworld's sidecar (mTLS,
  HTTP/2) -> app in the same cluster; and the same across networks: sidecar -> east-west gateway
  (SNI passthrough) -> sidecar -> app;
- failover: client-visible errors and time from killing the local instance to the first answer
  from the other cluster (locality failover with outlier detection), median of 3.

The load generator is Python, so absolute numbers are modest and the ratios understate the
sidecars' cost; comparing runs on one machine is what they are for.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from .backends.local import net
from .errors import MeshlabError
from .backends.local.translate import OUTBOUND_PORT


@dataclass
class PathResult:
    path: str
    requests: int
    p50_ms: float
    p99_ms: float
    rps_sequential: float
    rps_concurrent: float


class _Client:
    """A minimal HTTP/1.1 keep-alive client: the less the client costs, the more we see of the path."""

    def __init__(self, netns: str | None, host: str, port: int, authority: str, headers: dict[str, str] | None = None) -> None:
        with net.in_netns(netns):
            self.s = socket.create_connection((host, port), timeout=5)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.req = f"GET /hello HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n".encode()
        self.buf = b""

    def get(self) -> None:
        self.s.sendall(self.req)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected answer: {head[:60]!r}")
        length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += self._recv()
        self.buf = rest[length:]

    def _recv(self) -> bytes:
        data = self.s.recv(65536)
        if not data:
            raise ConnectionError("connection closed")
        return data

    def close(self) -> None:
        self.s.close()


def measure(
    label: str, netns: str | None, host: str, port: int, authority: str, requests: int, headers: dict[str, str] | None = None
) -> PathResult:
    """Sequential latency on one keep-alive connection, then throughput with 4 client threads."""
    c = _Client(netns, host, port, authority, headers)
    for _ in range(min(200, requests)):  # warm up connections and Envoy's pools
        c.get()
    lat = []
    t0 = time.perf_counter()
    for _ in range(requests):
        t = time.perf_counter()
        c.get()
        lat.append(time.perf_counter() - t)
    seq = requests / (time.perf_counter() - t0)
    c.close()

    threads, per = 4, max(1, requests // 4)
    clients = [_Client(netns, host, port, authority, headers) for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(cl: _Client) -> None:
        start.wait()
        try:
            for _ in range(per):
                cl.get()
        except BaseException as e:  # re-raised below: a failed request must not look like a fast one
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(cl,)) for cl in clients]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    conc = threads * per / (time.perf_counter() - t0)
    for cl in clients:
        cl.close()
    if errors:
        raise errors[0]
    lat.sort()
    return PathResult(label, requests, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, seq, conc)


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
    from .lab import Lab
    from .topology import builtin_patterns

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
    from .lab import Lab
    from .resources import parse

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


def run(requests: int = 2000) -> dict[str, Any]:
    from .lab import Lab
    from .resources import parse

    if net.choose_mode()[0] == net.USERNS:
        raise MeshlabError("the benchmark's client enters pod namespaces from this process", "run it as root, or with MESHLAB_NET_MODE=loopback")
    with Lab.scratch("bench") as scratch:  # `meshlab down` finds its labs even after Ctrl-C or a kill
        return _run(str(scratch), requests)


def _run(home: str, requests: int) -> dict[str, Any]:
    from .lab import Lab
    from .resources import parse

    ups = bring_up_times(home)
    lab = Lab.up("separate-networks", home_dir=home, quiet=True)
    try:
        be = lab.backend
        (hw,) = be.deploy("helloworld", "cluster1", version="v1")
        be.deploy("helloworld", "cluster2", version="v2")
        (curl,) = be.deploy("curl", "cluster1")
        be.apply(parse(ROUTING), "cluster1")
        authority = "helloworld.sample:5000"
        paths = [
            measure("direct: client -> app (no mesh)", hw.netns, hw.app_host, 5000, "helloworld", requests),
            measure("sidecar -> sidecar (mTLS, h2) -> app", curl.netns, curl.outbound, OUTBOUND_PORT, authority, requests),
            measure(
                "sidecar -> e/w gateway -> sidecar -> app", curl.netns, curl.outbound, OUTBOUND_PORT, authority, requests,
                headers={"x-bench-path": "remote"},
            ),  # fmt: skip
        ]
    finally:
        lab.down(quiet=True)
    direct, local, remote = paths

    def ratios(a: PathResult, b: PathResult) -> dict[str, float]:
        return {
            "p50_latency": a.p50_ms / b.p50_ms,
            "p99_latency": a.p99_ms / b.p99_ms,
            "rps_sequential": a.rps_sequential / b.rps_sequential,
            "rps_concurrent": a.rps_concurrent / b.rps_concurrent,
        }

    return {
        "network_mode": net.choose_mode()[0],
        "bring_up": ups,
        "paths": [asdict(p) for p in paths],
        "ratios": {
            "sidecar_over_direct": ratios(local, direct),
            "gateway_over_sidecar": ratios(remote, local),
            "gateway_over_direct": ratios(remote, direct),
        },
        "failover": failover(home),
    }


def main(requests: int = 2000, as_json: bool = False) -> int:
    r = run(requests)
    if as_json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"network mode: {r['network_mode']}\n")
    print("bring-up with samples (median of 3):")
    for pattern, t in r["bring_up"].items():
        print(f"  {pattern:26} up {t['up_s']:.2f}s   down {t['down_s']:.2f}s")
    print(f"\n{'path':44} {'p50 ms':>8} {'p99 ms':>8} {'rps seq':>9} {'rps x4':>9}")
    for p in r["paths"]:
        print(f"{p['path']:44} {p['p50_ms']:8.3f} {p['p99_ms']:8.3f} {p['rps_sequential']:9.0f} {p['rps_concurrent']:9.0f}")
    print("\nratios (same run):")
    for name, rs in r["ratios"].items():
        print(f"  {name:22} " + "  ".join(f"{k} {v:5.2f}x" for k, v in rs.items()))
    f = r["failover"]
    print(f"\nfailover to the other network: {f['errors_median']:.0f} client errors, first remote answer after {f['first_remote_answer_ms_median']:.1f} ms (median of 3)")
    return 0
