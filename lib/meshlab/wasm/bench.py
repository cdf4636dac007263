"""What a Wasm filter costs: latency and throughput through Envoy with each filter against without,
and the build time of each filter.

- **Traffic** -- one standalone Envoy (``meshlab.wasm.envoy``) in front of helloworld. The same run
  measures the app directly (no Envoy), then in rounds: Envoy without a filter, and Envoy with each
  filter of ``wasm-filters/`` loaded with its example configuration (``filter.json``), hot-swapped in
  turn. Each ratio is taken against the no-filter run of its own round; medians over the rounds.
  Sequential latency (p50/p99, one keep-alive connection) and throughput (16 connections), both from wrk.
- **Builds** -- each filter built from a clean copy of ``wasm-filters/`` (no build/, no
  node_modules/: ``npm ci`` runs, from npm's cache when warm) and then again (incremental), and the
  copy's sha256 compared with the in-tree build: reproducible builds give the same bytes.
- **Hub and rollout** -- each filter packaged, pushed to the hub (TLS, a bcrypt-checked user on every
  request), pushed again (the registry has the blobs: only the manifest moves) and pulled with every
  digest verified; then, in the local mesh (pattern separate-networks), how long ``lab.apply`` of a
  WasmPlugin takes until every selected sidecar runs it: first deployment (fetch from the hub), a new
  configuration (module from the cache), a new tag (fetch again).

The load generator is wrk (``meshlab.loadgen``); compare runs on one machine.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..bench import PathResult
from ..bench import measure as bench_measure
from ..lab import Lab
from .build import build_filter, filters, repo_filters_dir
from .hub import Hub
from .oci import package
from .standalone import envoy


def measure(label: str, port: int, headers: dict[str, str], requests: int) -> PathResult:
    """wrk for about ``requests`` / 2000 seconds per phase (one connection, then 16)."""
    return bench_measure(label, "127.0.0.1", port, "helloworld", seconds=max(1.0, requests / 2000), headers=headers)


def _bench_headers(name: str, config: Any) -> dict[str, str]:
    """Headers that make each filter take its normal (successful) path."""
    cfg = config if isinstance(config, dict) else {}
    if name == "api-key":
        return {cfg.get("header", "x-api-key"): cfg["keys"][0]}
    if name == "header-metric":
        return {cfg.get("header", "x-user"): "alice"}
    return {}


def build_times(root: Path | None = None) -> list[dict[str, Any]]:
    """Cold and warm build of every filter in a clean copy; sha256 compared with the in-tree build."""
    src = root or repo_filters_dir()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlwasm-build") as tmp:
        copy = Path(tmp) / "wasm-filters"
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("build", "node_modules"))
        for f in filters(copy):
            cold = build_filter(f.dir)
            warm = build_filter(f.dir)
            in_tree = build_filter(src / f.dir.name)
            rows.append({
                "filter": f.name, "language": f.language, "size": cold.size,
                "cold_s": cold.seconds, "cold_steps": cold.steps, "warm_s": warm.seconds,
                "sha256": cold.sha256, "reproducible": cold.sha256 == warm.sha256 == in_tree.sha256,
            })  # fmt: skip
    return rows


def _median_result(label: str, rs: list[PathResult]) -> PathResult:
    return PathResult(
        label, sum(r.requests for r in rs),
        statistics.median(r.p50_ms for r in rs), statistics.median(r.p99_ms for r in rs),
        statistics.median(r.rps_sequential for r in rs), statistics.median(r.rps_concurrent for r in rs),
    )  # fmt: skip


def hub_and_rollout() -> dict[str, Any]:
    """Push/pull times per filter through a real hub, and WasmPlugin rollout times in the local mesh."""
    rows: list[dict[str, Any]] = []
    rollout: list[dict[str, Any]] = []
    with Lab.scratch("wasm-bench") as tmp:  # `meshlab down` finds its lab and hub even after Ctrl-C or a kill
        hub = Hub.up(Path(tmp) / "hub")
        try:
            hub.add_user("bench", "bench-pw")
            for f in filters():
                wasm = build_filter(f.dir).wasm
                t = time.perf_counter()

                package(wasm)
                pkg = time.perf_counter() - t
                cold = hub.push(wasm, f"bench/{f.name}:v1", user="bench")
                warm = hub.push(wasm, f"bench/{f.name}:v1", user="bench")
                t = time.perf_counter()
                hub.pull(f"bench/{f.name}:v1", user="bench")
                rows.append({"filter": f.name, "bytes": cold.size, "package_s": pkg, "push_s": cold.seconds,
                             "push_again_s": warm.seconds, "pull_s": time.perf_counter() - t})  # fmt: skip
            info = next(f for f in filters() if f.name == "add-header")
            v2 = hub.push(info.wasm, "bench/add-header:v2", user="bench", variant="compat")
            lab = Lab.up("separate-networks", samples=True, home_dir=Path(tmp), quiet=True)
            try:
                for cluster in lab.topology.clusters:  # Istio reads the pull secret in each proxy's own cluster
                    lab.create_pull_secret("bench", cluster, **hub.pull_secret("bench"))
                def plugin(url: str, value: str) -> dict[str, Any]:
                    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": "bench", "namespace": "sample"},
                            "spec": {"url": url, "imagePullSecret": "bench", "pluginName": info.root_id,
                                     "selector": {"matchLabels": {"app": "helloworld"}}, "pluginConfig": {"name": "x-bench", "value": value}}}  # fmt: skip

                for what, doc in (("first deployment (fetch from the hub)", plugin(hub.url("bench/add-header:v1"), "1")),
                                  ("new pluginConfig (module cached)", plugin(hub.url("bench/add-header:v1"), "2")),
                                  ("new tag (fetch again)", plugin(v2.url, "3"))):  # fmt: skip
                    t = time.perf_counter()
                    lab.backend.apply([doc], "cluster1")
                    rollout.append({"change": what, "apply_s": time.perf_counter() - t})
                answers = lab.call("curl", "http://helloworld.sample:5000/hello", cluster="cluster2", n=10).answers
                if any(a.headers.get("x-bench") != "3" for a in answers):
                    raise RuntimeError("the last rollout did not reach every answer")
            finally:
                lab.down(quiet=True)
        finally:
            hub.down()
    return {"hub": rows, "rollout": rollout}


def run(requests: int = 2000, builds: bool = True, rounds: int = 3, hub: bool = True) -> dict[str, Any]:
    """Measure in ``rounds`` rounds; each round measures no filter, then each filter, ``requests/rounds`` each.

    A ratio is taken within its round (against that round's no-filter run), and the median over rounds
    is reported: drift on a busy machine then hits both sides of a ratio alike.
    """
    infos = filters()
    build_rows = build_times() if builds else []
    modules = {f.name: build_filter(f.dir).wasm for f in infos}
    per_round = max(200, requests // rounds)
    results: dict[str, list[PathResult]] = {"none": []}
    round_ratios: dict[str, list[dict[str, float]]] = {f.name: [] for f in infos}
    with envoy(log_headers=()) as e:
        direct = measure("direct: client -> helloworld (no Envoy)", e.upstream_port, {}, per_round)
        for _ in range(rounds):
            e.unload()
            base = measure("Envoy, no filter", e.port, {}, per_round)
            results["none"].append(base)
            for f in infos:
                e.load(modules[f.name], f.config, root_id=f.root_id)
                headers = _bench_headers(f.name, f.config)
                r = e.request("/hello", headers)
                if r.status != 200:
                    raise RuntimeError(f"{f.name} answered {r.status} with the bench headers {headers}: {r.body!r}")
                m = measure(f"Envoy + {f.name} ({f.language})", e.port, headers, per_round)
                results.setdefault(f.name, []).append(m)
                round_ratios[f.name].append({
                    "p50_latency_over_no_filter": m.p50_ms / base.p50_ms,
                    "p99_latency_over_no_filter": m.p99_ms / base.p99_ms,
                    "rps_sequential_over_no_filter": m.rps_sequential / base.rps_sequential,
                    "rps_concurrent_over_no_filter": m.rps_concurrent / base.rps_concurrent,
                })  # fmt: skip
    paths = [direct, _median_result("Envoy, no filter", results["none"])]
    paths += [_median_result(results[f.name][0].path, results[f.name]) for f in infos]
    ratios = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in round_ratios.items()}
    return {
        "requests_per_measurement": per_round,
        "rounds": rounds,
        "paths": [asdict(p) for p in paths],
        "ratios": ratios,
        "builds": build_rows,
        **(hub_and_rollout() if hub else {"hub": [], "rollout": []}),
    }


def main(requests: int = 2000, as_json: bool = False, builds: bool = True, rounds: int = 3, hub: bool = True) -> int:
    r = run(requests, builds=builds, rounds=rounds, hub=hub)
    if as_json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"{'path':44} {'p50 ms':>8} {'p99 ms':>8} {'rps seq':>9} {'rps c16':>9}")
    for p in r["paths"]:
        print(f"{p['path']:44} {p['p50_ms']:8.3f} {p['p99_ms']:8.3f} {p['rps_sequential']:9.0f} {p['rps_concurrent']:9.0f}")
    print(f"\n(medians over {r['rounds']} rounds of {r['requests_per_measurement']} requests per path)")
    print("ratios, with filter / without (within each round, median over rounds):")
    print(f"  {'filter':16} {'p50':>7} {'p99':>7} {'rps seq':>8} {'rps c16':>8}")
    for name, q in r["ratios"].items():
        print(
            f"  {name:16} {q['p50_latency_over_no_filter']:6.2f}x {q['p99_latency_over_no_filter']:6.2f}x "
            f"{q['rps_sequential_over_no_filter']:7.2f}x {q['rps_concurrent_over_no_filter']:7.2f}x"
        )
    if r["builds"]:
        print("\nbuilds (clean copy of wasm-filters/; cold = no build/ and no node_modules/):")
        print(f"  {'filter':16} {'language':15} {'bytes':>7} {'cold s':>7} {'warm s':>7}  reproducible")
        for b in r["builds"]:
            print(f"  {b['filter']:16} {b['language']:15} {b['size']:7d} {b['cold_s']:7.2f} {b['warm_s']:7.2f}  {'yes' if b['reproducible'] else 'NO'}")
    if r["hub"]:
        print("\nhub (TLS + htpasswd user; push again = blobs already there; pull verifies every digest):")
        print(f"  {'filter':16} {'bytes':>7} {'package s':>10} {'push s':>7} {'again s':>8} {'pull s':>7}")
        for h in r["hub"]:
            print(f"  {h['filter']:16} {h['bytes']:7d} {h['package_s']:10.3f} {h['push_s']:7.3f} {h['push_again_s']:8.3f} {h['pull_s']:7.3f}")
        print("WasmPlugin rollout in the local mesh (lab.apply until every selected sidecar runs it, incl. draining the old chain):")
        for x in r["rollout"]:
            print(f"  {x['change']:40} {x['apply_s']:6.2f} s")
    return 0


if __name__ == "__main__":
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m meshlab.wasm.bench")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-builds", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-hub", action="store_true", help="skip the hub push/pull and mesh rollout measurements")
    a = ap.parse_args()
    sys.exit(main(a.requests, a.json, builds=not a.no_builds, rounds=a.rounds, hub=not a.no_hub))
