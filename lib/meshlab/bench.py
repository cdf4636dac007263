"""`meshlab bench`: what the mesh costs, measured as ratios against a baseline from the same run.

- bring-up and teardown time of the flat-network pattern (samples included), median of 3;
- latency (p50/p99, one keep-alive connection, sequential) and throughput (4 client threads) for
  the app called directly inside its pod (baseline) and for curl's sidecar -> helloworld's sidecar
  (mTLS, HTTP/2) -> app.

The load generator is Python, so absolute numbers are modest and the ratios understate the
sidecars' cost; comparing runs on one machine is what they are for.
"""

from __future__ import annotations

import json
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from .backends.local import net
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

    def __init__(self, netns: str | None, host: str, port: int, authority: str) -> None:
        with net.in_netns(netns):
            self.s = socket.create_connection((host, port), timeout=5)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.req = f"GET /hello HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
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


def measure(label: str, netns: str | None, host: str, port: int, authority: str, requests: int) -> PathResult:
    c = _Client(netns, host, port, authority)
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
    clients = [_Client(netns, host, port, authority) for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def worker(cl: _Client) -> None:
        start.wait()
        for _ in range(per):
            cl.get()

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
    lat.sort()
    return PathResult(label, requests, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, seq, conc)


def run(requests: int = 2000) -> dict[str, Any]:
    from .lab import Lab

    home = tempfile.mkdtemp(prefix="mlbench")
    ups, downs = [], []
    for _ in range(3):
        t = time.perf_counter()
        lab = Lab.up("flat-network", samples=True, home_dir=home, quiet=True, keep=True)
        ups.append(time.perf_counter() - t)
        t = time.perf_counter()
        lab.down(quiet=True)
        downs.append(time.perf_counter() - t)

    lab = Lab.up("flat-network", home_dir=home, quiet=True)
    try:
        be = lab.backend
        (hw,) = be.deploy("helloworld", "cluster1")  # one backend, so both paths end at the same app
        (curl,) = be.deploy("curl", "cluster1")
        direct = measure("direct: client -> app (no mesh)", hw.netns, hw.app_host, 5000, "helloworld", requests)
        mesh = measure(
            "mesh: curl sidecar -> helloworld sidecar (mTLS, h2) -> app",
            curl.netns, curl.outbound, OUTBOUND_PORT, "helloworld.sample:5000", requests,
        )  # fmt: skip
    finally:
        lab.down(quiet=True)
    return {
        "bring_up_s": statistics.median(ups),
        "teardown_s": statistics.median(downs),
        "network_mode": net.choose_mode()[0],
        "paths": [asdict(direct), asdict(mesh)],
        "ratios": {
            "p50_latency_mesh_over_direct": mesh.p50_ms / direct.p50_ms,
            "p99_latency_mesh_over_direct": mesh.p99_ms / direct.p99_ms,
            "rps_sequential_mesh_over_direct": mesh.rps_sequential / direct.rps_sequential,
            "rps_concurrent_mesh_over_direct": mesh.rps_concurrent / direct.rps_concurrent,
        },
    }


def main(requests: int = 2000, as_json: bool = False) -> int:
    r = run(requests)
    if as_json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"flat-network bring-up (2 clusters, 4 pods, samples): {r['bring_up_s']:.2f}s median of 3; teardown {r['teardown_s']:.2f}s")
    print(f"network mode: {r['network_mode']}\n")
    print(f"{'path':62} {'p50 ms':>8} {'p99 ms':>8} {'rps seq':>9} {'rps x4':>9}")
    for p in r["paths"]:
        print(f"{p['path']:62} {p['p50_ms']:8.3f} {p['p99_ms']:8.3f} {p['rps_sequential']:9.0f} {p['rps_concurrent']:9.0f}")
    print("\nratios, mesh / direct (same run):")
    for k, v in r["ratios"].items():
        print(f"  {k:36} {v:6.2f}x")
    return 0
