"""Raw Envoy: a standalone Envoy configured by hand, for the data-plane features Istio has no API for
(request hedging, zone-aware routing, degraded endpoints, aggregate clusters, overprovisioning).

It is the wasm lab's harness (:class:`meshlab.wasm.standalone.WasmEnvoy`: processes recorded under
``$MESHLAB_HOME/wasm`` and stopped by ``close()``, at exit, or by ``meshlab down``; listener updates
from a file; admin on a Unix socket) with several upstream apps and the clusters, routes and HTTP
filters given by the caller:

    with RawEnvoy({"a": "v1", "b": "v2"}, lambda addr: RawConfig(
            clusters=[static_cluster("hello", [addr("a"), addr("b")])],
            routes=[{"match": {"prefix": "/"}, "route": {"cluster": "hello"}}])) as e:
        e.request("/hello")

Nothing here goes through meshlab's Istio translator: what a lab shows from it is labelled raw Envoy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import xds as E
from .runtime import procs
from .errors import MeshlabError
from .loadgen import LoadResult, wrk
from .wasm.standalone import LISTENER, WasmEnvoy, free_port

ROUTE_NAME = "raw"


@dataclass
class RawConfig:
    """What the caller writes: clusters, the routes of one virtual host, HTTP filters before the router."""

    clusters: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    http_filters: list[dict[str, Any]] = field(default_factory=list)
    node: dict[str, Any] = field(default_factory=dict)  # e.g. {"locality": {"zone": "a"}}
    cluster_manager: dict[str, Any] = field(default_factory=dict)  # e.g. {"local_cluster_name": ...}


def endpoint(address: tuple[str, int], health: str = "HEALTHY", weight: int = 1) -> dict[str, Any]:
    return {"endpoint": {"address": E.sock(*address)}, "health_status": health, "load_balancing_weight": weight}


def static_cluster(
    name: str, groups: list[dict[str, Any]], lb_policy: str = "ROUND_ROBIN", **extra: Any
) -> dict[str, Any]:
    """A STATIC cluster whose load assignment is ``groups`` (LocalityLbEndpoints: priority, locality, lb_endpoints)."""
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "lb_policy": lb_policy,
            "load_assignment": {"cluster_name": name, "endpoints": groups}, **extra}  # fmt: skip


class RawEnvoy(WasmEnvoy):
    """A standalone Envoy in front of several helloworld apps (``{name: version}``), configured by ``build``.

    ``build(addr)`` gets a function from an app's name to its (host, port) and returns the RawConfig.
    """

    def __init__(self, apps: dict[str, str], build: Callable[[Callable[[str], tuple[str, int]]], RawConfig], log_level: str = "warning") -> None:
        if not apps:
            raise MeshlabError("a raw Envoy needs at least one upstream app", "pass apps={'a': 'v1'}")
        self.apps = dict(apps)
        self.ports = {name: free_port() for name in apps}
        self.raw = build(lambda name: ("127.0.0.1", self.ports[name]))
        super().__init__(log_headers=(), log_level=log_level)

    # the wasm harness's extension points: several upstreams, the caller's clusters and routes
    def _start_upstream(self) -> None:
        for name, version in self.apps.items():
            self._start_app(name, version)

    def _start_app(self, name: str, version: str) -> None:
        port = self.ports[name]
        argv = [sys.executable, "-m", "meshlab.runtime.apps", "helloworld",
                "--listen", f"127.0.0.1:{port}", "--version", version, "--instance", name]  # fmt: skip
        p = procs.spawn(f"raw/{name}", argv, self.dir / f"{name}.log")
        self._record(p)
        log = self.dir / f"{name}.log"
        procs.wait_until(lambda: b"listening on" in log.read_bytes(), p, f"{name} listens on 127.0.0.1:{port}")

    def _bootstrap(self) -> dict[str, Any]:
        boot = super()._bootstrap()
        boot["node"].update(self.raw.node)
        boot["static_resources"]["clusters"] = self.raw.clusters
        if self.raw.cluster_manager:
            boot["cluster_manager"] = self.raw.cluster_manager
        return boot

    def _listener(self, loaded: Any) -> dict[str, Any]:
        listener = super()._listener(None)
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["route_config"] = {"name": ROUTE_NAME, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": self.raw.routes}]}
        hcm["http_filters"] = [*self.raw.http_filters, *hcm["http_filters"]]
        return listener

    # ---- experiments -----------------------------------------------------------------------------
    def kill_app(self, name: str) -> None:
        """SIGKILL one upstream app (a crash: its port refuses connections)."""
        for rec in self.state.data.get("processes", []):
            if rec["name"] == f"raw/{name}":
                procs.kill(rec)

    def tally(self, path: str, n: int) -> dict[str, int]:
        """``n`` requests; how many each app answered (failures under their status code)."""
        import http.client

        counts: dict[str, int] = {}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            for _ in range(n):
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                who = body.rsplit("instance: ", 1)[-1].strip() if resp.status == 200 else str(resp.status)
                counts[who] = counts.get(who, 0) + 1
        finally:
            conn.close()
        return counts

    def load(self, path: str = "/hello", connections: int = 8, seconds: float = 2.0, label: str = "") -> LoadResult:
        """wrk through this Envoy, recorded with its processes."""

        def forget(rec: dict[str, object]) -> None:
            self.state.data["processes"] = [p for p in self.state.data.get("processes", []) if p != rec]
            self.state.save()

        return wrk(f"http://127.0.0.1:{self.port}{path}", connections=connections, seconds=seconds, label=label or path,
                   record=lambda rec: self._record_dict(rec), forget=forget, workdir=self.dir / "load")  # fmt: skip

    def _record_dict(self, rec: dict[str, object]) -> None:
        self.state.record("processes", rec)

    def route_config(self) -> dict[str, Any]:
        """The route configuration Envoy runs now (from /config_dump): what the lab shows as 'the Envoy config'."""
        dump = self.admin.config_dump("dynamic_listeners")
        for cfg in dump.get("configs", []):
            if cfg.get("name") == LISTENER:
                hcm = cfg["active_state"]["listener"]["filter_chains"][0]["filters"][0]["typed_config"]
                return dict(hcm["route_config"])
        return {}

    def __repr__(self) -> str:
        return f"<RawEnvoy pid={self.pid} listener=127.0.0.1:{self.port} apps={self.apps}>"
