"""Federated telemetry with a real Prometheus, as istio.io's "Monitoring Multicluster Istio with
Prometheus" describes: one Prometheus per cluster scrapes that cluster's proxies, and a global
Prometheus federates them over ``/federate`` (https://istio.io/latest/docs/ops/configuration/telemetry/monitoring-multicluster-prometheus/).

Local backend: Debian's ``prometheus`` binary, one process per cluster in the cluster's node
namespace (it reaches that cluster's pods, like an in-cluster Prometheus), listening on the node's
underlay address; the global one runs in the first cluster's node namespace (the management
cluster) and scrapes each cluster's ``/federate``. Targets are the sidecars' ``:15090/stats/prometheus``
(file-based discovery, rewritten by the mesh controller as pods come and go). The metrics come from
the ``istio-stats`` Wasm filter (:mod:`meshlab.controlplane.telemetry`). Every process is recorded
in the lab state, so ``meshlab down`` stops it.

Kind backend: Istio's Prometheus addon (``samples/addons/prometheus.yaml``) in every cluster, and a
global Prometheus in the first cluster federating them (:mod:`meshlab.backends.kind.mesh`).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from ..controlplane.telemetry import STATS_PORT
from ..display import Diagram, Table
from ..errors import MeshlabError
from ..exec import which
from ..registry import GATEWAY_APP, INGRESS_APP
from ..runtime import client, net, procs
from ..state import write_atomic
from ..topology import kube_context
from ..wasm.build import build_once, repo_filters_dir

if TYPE_CHECKING:
    from ..lab import Lab

PORT = 9090  # each cluster's Prometheus (Istio's addon Service port)
GLOBAL_PORT = 9091  # the global Prometheus, beside the management cluster's own
SCRAPE_INTERVAL = "1s"  # a lab wants answers in seconds; Istio's addon scrapes every 15s
JOB = "kubernetes-pods"  # the addon's job for pods: the global Prometheus federates exactly this job
FEDERATE_MATCH = '{job="kubernetes-pods"}'


def prometheus_binary() -> str:
    return which("prometheus", "Prometheus is not installed (Debian package prometheus): run `make setup` "
                 "(it installs it), or `apt-get install prometheus`")


@dataclass
class Instance:
    name: str  # prometheus-cluster1, prometheus-global
    cluster: str  # where it runs
    address: str
    port: int
    netns: str | None


def cluster_config(cluster: str, targets_file: Path) -> dict[str, Any]:
    """A cluster's Prometheus: scrape the sidecars listed in ``targets_file`` as the addon's pod job would."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,
                "metrics_path": "/stats/prometheus",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": SCRAPE_INTERVAL}],
            }
        ],
    }


def global_config(clusters: dict[str, str]) -> dict[str, Any]:
    """The global Prometheus: one federation job per cluster (``cluster -> host:port``), as in istio.io's guide."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": f"federate-{cluster}",
                "honor_labels": True,
                "metrics_path": "/federate",
                "params": {"match[]": [FEDERATE_MATCH]},
                "static_configs": [{"targets": [target], "labels": {"cluster": cluster}}],
            }
            for cluster, target in clusters.items()
        ],
    }


def targets(workloads: list[Any], cluster: str, stats_port: int) -> list[dict[str, Any]]:
    """File-based discovery for one cluster: every sidecar (not the gateways, not pods without a sidecar),
    with the labels the addon's relabeling gives."""
    return [
        {
            "targets": [f"{w.ip}:{stats_port}"],
            "labels": {"namespace": w.namespace, "pod": w.pod, "app": w.app, **({"version": w.version} if w.version else {})},
        }
        for w in workloads
        if w.cluster == cluster and w.app not in (GATEWAY_APP, INGRESS_APP) and getattr(w, "sidecar", True)
    ]


class Telemetry:
    """``lab.mesh.telemetry``: start the Prometheus tier, query the global view, draw what it says."""

    def __init__(self, lab: "Lab") -> None:
        self.lab = lab

    @property
    def scrape_seconds(self) -> float:
        """How often each tier scrapes: 1 s here, Istio's addon default (15 s) on kind. Waits and windows scale with it."""
        return self.lab.backend.capabilities.scrape_seconds or float(SCRAPE_INTERVAL.rstrip("s"))

    # ---- layout --------------------------------------------------------------------------------
    @property
    def _dir(self) -> Path:
        return Path(self.lab.state.data["run_dir"]) / "prometheus"

    def instances(self) -> list[Instance]:
        be = self.lab.backend
        net = be.network  # type: ignore[union-attr]
        out = []
        clusters = list(self.lab.topology.clusters)
        for i, c in enumerate(clusters):
            addr = net.node_service_ip(self.lab.topology, c)
            out.append(Instance(f"prometheus-{c}", c, addr, PORT, None if be.mode == "loopback" else net.node_ns(c)))
        mgmt = out[0]
        out.append(Instance("prometheus-global", mgmt.cluster, mgmt.address, GLOBAL_PORT, mgmt.netns))
        return out

    # ---- bring-up ------------------------------------------------------------------------------
    def enable(self) -> Table:
        """Load the stats filter into every sidecar, then start one Prometheus per cluster and the global one."""
        if self.lab.backend.capabilities.addon_telemetry:
            return self._enable_addon()
        binary = prometheus_binary()
        state = self.lab.state
        if not state.data.get("telemetry"):
            built = build_once(repo_filters_dir() / "istio-stats")
            # a private copy: a later rebuild of the folder never changes a module Envoy runs
            module = self._dir / f"istio-stats-{built.sha256[:12]}.wasm"
            module.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built.wasm, module)
            state.data["telemetry"] = {"path": str(module), "sha256": built.sha256}
            state.save()
            self.lab.backend.sync()  # type: ignore[union-attr]
        self.write_targets()
        running = {p["name"] for p in state.data.get("processes", []) if procs.is_alive(p)}
        instances = self.instances()
        t0 = time.perf_counter()
        for inst in instances:
            if inst.name in running:
                continue
            d = self._dir / inst.name
            d.mkdir(parents=True, exist_ok=True)
            if inst.name == "prometheus-global":
                cfg = global_config({i.cluster: f"{i.address}:{i.port}" for i in instances[:-1]})
            else:
                cfg = cluster_config(inst.cluster, self._dir / f"targets-{inst.cluster}.json")
            (d / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            argv = self.lab.backend.network.exec_prefix(inst.netns) + [  # type: ignore[union-attr]
                binary, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address={inst.address}:{inst.port}", "--storage.tsdb.retention.time=2h",
                "--log.level=warn", "--web.enable-lifecycle",
            ]  # fmt: skip
            p = procs.spawn(inst.name, argv, d / "prometheus.log")
            state.record("processes", p.record())
            procs.wait_until(lambda inst=inst: self._get(inst, "/-/ready")[0] == 200, p, f"{inst.name} answers /-/ready", timeout=30)
        print(f"telemetry on: istio-stats filter in every sidecar; {len(instances)} Prometheus ready in {time.perf_counter() - t0:.1f}s")
        return self.table()

    def table(self) -> Table:
        return Table(
            [{"PROMETHEUS": i.name, "RUNS IN": f"{i.cluster} (node)", "LISTENS": f"{i.address}:{i.port}",
              "SCRAPES": "/federate of every cluster" if i.name.endswith("global") else f"sidecars of {i.cluster} on :15090"}
             for i in self.instances()],
            title="Prometheus instances",
        )  # fmt: skip

    def write_targets(self) -> bool:
        """(Re)write each cluster's file-based discovery; Prometheus picks changes up by itself. True if any changed."""
        changed = False
        for c in self.lab.topology.clusters:
            path = self._dir / f"targets-{c}.json"
            text = json.dumps(targets(self.lab.backend.workloads, c, STATS_PORT), indent=1)
            if not path.exists() or path.read_text() != text:
                write_atomic(path, text)
                changed = True
        return changed

    def _enable_addon(self) -> Table:
        """Istio's Prometheus addon in every cluster, the global one in the first (the backend installs them)."""
        targets = self.lab.backend.enable_telemetry(global_config)
        first = next(iter(self.lab.topology.clusters))
        rows = [{"PROMETHEUS": f"prometheus-{c}", "RUNS IN": f"{kube_context(c)} (Istio addon)", "LISTENS": f"{ip}:9090", "SCRAPES": "pods of " + c}
                for c, ip in targets.items()]
        rows.append({"PROMETHEUS": "prometheus-global", "RUNS IN": kube_context(first), "LISTENS": "ClusterIP", "SCRAPES": "/federate of every cluster"})
        return Table(rows, title="Prometheus instances")

    # ---- queries -------------------------------------------------------------------------------
    def _get(self, inst: Instance, path: str, timeout: float = 10.0) -> tuple[int, str]:
        """HTTP GET to a Prometheus from inside the namespace it runs in."""
        kw = {"host": inst.address, "port": inst.port, "authority": f"{inst.address}:{inst.port}", "path": path, "n": 1, "headers": {}, "timeout": timeout}
        if self.lab.backend.mode == net.USERNS:
            raw = client.ask(self.lab.backend.network.exec_prefix(inst.netns), {"op": "calls", **kw}, timeout + 5,  # type: ignore[union-attr]
                             lambda rec: self.lab.state.record("processes", rec))
        else:
            with net.in_netns(inst.netns):
                raw = client.calls(**kw)
        a = raw[0]
        if not a["status"]:
            raise OSError(a.get("error", "no answer"))
        return a["status"], a["body"]

    def _api(self, path: str, params: dict[str, str], instance: str = "global") -> list[dict[str, Any]]:
        """A Prometheus HTTP API call; returns ``data.result`` (empty in a kind dry run)."""
        if self.lab.backend.capabilities.addon_telemetry:
            doc = self.lab.backend.prometheus_query(path, params)
            return [] if doc is None else list(doc["data"]["result"])
        inst = next(i for i in self.instances() if i.name == f"prometheus-{instance}")
        status, body = self._get(inst, f"{path}?" + urllib.parse.urlencode(params))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise MeshlabError(f"PromQL query {params.get('query')!r} failed ({status}): {doc.get('error', body[:200])}", "check the query syntax")
        return list(doc["data"]["result"])

    def query(self, promql: str, instance: str = "global", at: float | None = None) -> list[dict[str, Any]]:
        """An instant PromQL query (now, or at unix time ``at``); returns ``[{"metric": {labels}, "value": float}, ...]``."""
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in self._api("/api/v1/query", params, instance)]

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        """A range query; returns ``[{"metric": {labels}, "values": [(t, v), ...]}, ...]``."""
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        return [{"metric": r["metric"], "values": [(float(t), float(v)) for t, v in r["values"]]} for r in self._api("/api/v1/query_range", params)]

    def total(self, promql: str, instance: str = "global", at: float | None = None) -> float:
        """The sum of an instant query's values (0 when no series matches yet)."""
        return sum(r["value"] for r in self.query(promql, instance, at))

    def wait_for(self, promql: str, done: Callable[[float], bool], timeout: float | None = None, instance: str = "global") -> float:
        """Poll ``promql`` (summed) until ``done(value)``: a scrape, then a federation round (default: 30 of them)."""
        timeout = timeout if timeout is not None else 30 * self.scrape_seconds
        deadline = time.monotonic() + timeout
        value = self.total(promql, instance)
        while not done(value):
            if time.monotonic() > deadline:
                raise MeshlabError(f"{promql} stayed at {value} for {timeout:.0f}s", "is telemetry enabled, and did the requests reach a sidecar?")
            time.sleep(min(0.5, self.scrape_seconds))
            value = self.total(promql, instance)
        return value

    # ---- views ---------------------------------------------------------------------------------
    def requests_by_cluster(self, reporter: str = "source") -> Table:
        rows = self.query(f'sum by (source_cluster, destination_cluster, response_code) (istio_requests_total{{reporter="{reporter}"}})')
        return Table(
            [{"SOURCE CLUSTER": r["metric"].get("source_cluster"), "DESTINATION CLUSTER": r["metric"].get("destination_cluster"),
              "CODE": r["metric"].get("response_code"), "REQUESTS": int(r["value"])}
             for r in sorted(rows, key=lambda r: sorted(r["metric"].items()))],
            title=f"istio_requests_total (reporter={reporter}) in the global Prometheus",
        )  # fmt: skip

    def error_rate(self, window: str = "1m") -> Table:
        """Share of 5xx answers per destination cluster, as the servers' sidecars report them."""
        q = (f'sum by (destination_cluster) (increase(istio_requests_total{{reporter="destination",response_code=~"5.."}}[{window}]))'
             f' / sum by (destination_cluster) (increase(istio_requests_total{{reporter="destination"}}[{window}]))')  # fmt: skip
        return Table(
            [{"DESTINATION CLUSTER": r["metric"].get("destination_cluster"), "ERROR RATE": round(r["value"], 3)}
             for r in sorted(self.query(q), key=lambda r: r["metric"].get("destination_cluster", ""))],
            title=f"5xx share per cluster over the last {window}",
        )  # fmt: skip

    def service_graph(self) -> Diagram:
        """A cluster-aware service graph: one node per workload@cluster, one edge per observed pair."""
        rows = self.query(
            'sum by (source_workload, source_cluster, destination_workload, destination_cluster) (istio_requests_total{reporter="source"})'
        )
        lines = ["flowchart LR"]
        ids: dict[str, str] = {}

        def node(workload: str, cluster: str) -> str:
            key = f"{workload}@{cluster}"
            if key not in ids:
                ids[key] = f"n{len(ids)}"
                lines.append(f'  {ids[key]}["{workload}<br/>{cluster}"]')
            return ids[key]

        for r in sorted(rows, key=lambda r: sorted(r["metric"].items())):
            m = r["metric"]
            a = node(m.get("source_workload", "unknown"), m.get("source_cluster", "unknown"))
            b = node(m.get("destination_workload", "unknown"), m.get("destination_cluster", "unknown"))
            lines.append(f"  {a} -- {int(r['value'])} req --> {b}")
        return Diagram("\n".join(lines))


