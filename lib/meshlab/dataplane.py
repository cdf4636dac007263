"""Helpers of labs 01 and 01b (Envoy's data plane): read a sidecar's counters for one service, and tally what the
access log says, so each check cell reads as the sentence it teaches.

The same helpers work on both backends (``lab.stats`` and ``lab.access_log`` are backend-neutral).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from .display import pods_table
from .ratelimit import DEFAULT_CONFIG

if TYPE_CHECKING:
    from .lab import Lab
    from .display import Table


# Istio writes no access log by default. This is how a mesh turns it on (istio.io, "Envoy Access Logs": the Telemetry
# API with the built-in ``envoy`` provider), mesh-wide from the control plane's root namespace.
ACCESS_LOGGING = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
  namespace: istio-system
spec:
  accessLogging:
  - providers:
    - name: envoy
"""


def access_logs_on(lab: "Lab") -> "Lab":
    """Apply :data:`ACCESS_LOGGING` to every control plane of the lab (the tests' shortcut; the labs show the YAML)."""
    for cp in lab.topology.control_planes:
        lab.apply(ACCESS_LOGGING, cluster=cp)
    return lab


def outbound_cluster(service: str = "helloworld", port: int = 5000, namespace: str = "sample", subset: str = "") -> str:
    """Istio's name for the client-side Envoy cluster of a service (``outbound|5000||helloworld.sample.svc.cluster.local``)."""
    return f"outbound|{port}|{subset}|{service}.{namespace}.svc.cluster.local"


class Counters:
    """A sidecar's counters for one upstream cluster, by their short names (``upstream_rq_retry``, ...).

    ``c = Counters(lab, "curl", "cluster1")`` takes a snapshot; ``c.since()`` returns what grew since.
    """

    def __init__(self, lab: "Lab", workload: str, cluster: str, upstream: str | None = None) -> None:
        self.lab, self.workload, self.cluster = lab, workload, cluster
        self.prefix = f"cluster.{upstream or outbound_cluster()}."
        self.start = self.read()

    def read(self) -> dict[str, int]:
        stats = self.lab.stats(self.workload, self.cluster, contains=self.prefix)
        return {k[len(self.prefix) :]: v for k, v in stats.items() if k.startswith(self.prefix)}

    def since(self) -> Counter[str]:
        now = self.read()
        return Counter({k: v - self.start.get(k, 0) for k, v in now.items() if v - self.start.get(k, 0)})


def downstream_requests(lab: "Lab", workload: str, cluster: str) -> int:
    """Requests the sidecar accepted from its app (the outbound listener's HTTP connection manager)."""
    return sum(v for k, v in lab.stats(workload, cluster, contains="downstream_rq_total").items() if k.startswith("http.outbound_"))


def flags(lab: "Lab", workload: str, cluster: str, last: int = 50) -> Counter[str]:
    """Envoy's response flags in the last ``last`` access-log entries (``UT`` timeout, ``UO`` overflow, ...)."""
    return Counter(str(e.get("flags", "-")) for e in lab.access_log(workload, cluster, last=last))


def share(tally: dict[Any, int], keys: set[Any]) -> float:
    """The fraction of a tally (e.g. answers per instance) that falls on ``keys``."""
    total = sum(tally.values())
    return sum(v for k, v in tally.items() if k in keys) / total if total else 0.0


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def route(lab: "Lab", workload: str, cluster: str, host: str = "helloworld.sample.svc.cluster.local:5000") -> dict[str, Any]:
    """The first route of the sidecar's virtual host for ``host``, from its live config (inline or RDS)."""
    dump = lab.envoy_config(workload, cluster)
    for d in _walk(dump):
        if isinstance(d.get("virtual_hosts"), list):
            for vh in d["virtual_hosts"]:
                if vh.get("name") == host and vh.get("routes"):
                    return dict(vh["routes"][0])
    raise KeyError(f"no virtual host {host} in the config of {workload} ({cluster})")


def envoy_cluster(lab: "Lab", workload: str, cluster: str, name: str | None = None, fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """The sidecar's live Envoy cluster ``name`` (default: helloworld's), optionally only some fields."""
    name = name or outbound_cluster()
    dump = lab.envoy_config(workload, cluster, "dynamic_active_clusters")
    for d in _walk(dump):
        c = d.get("cluster")
        if isinstance(c, dict) and c.get("name") == name:
            return {k: c[k] for k in fields if k in c} if fields else dict(c)
    raise KeyError(f"no cluster {name} in the config of {workload} ({cluster})")


def prometheus(lab: "Lab", workload: str, cluster: str) -> str:
    """The sidecar's stats in Prometheus text format (Envoy admin ``/stats/prometheus``), what a scraper reads."""
    return lab.backend.prometheus_text(workload, cluster)


def prometheus_cluster_label(lab: "Lab", name: str | None = None) -> str:
    """The Prometheus label that names Envoy cluster ``name`` (default: helloworld's) in ``/stats/prometheus``.
    Local: Envoy's default tag ``envoy.cluster_name``, cut at the name's first dot; kind: Istio's bootstrap tag
    ``cluster_name``, up to the ``;`` istiod appends (pkg/bootstrap/testdata/*_golden.json), the whole name."""
    name = name or outbound_cluster()
    tag = lab.backend.capabilities.prometheus_cluster_tag
    return f'{tag}="{name}"' if tag == "cluster_name" else f'{tag}="{name.split(".", 1)[0]}"'


def inbound_http_filters(lab: "Lab", workload: str, cluster: str) -> list[dict[str, Any]]:
    """The HTTP filters of the sidecar's inbound HTTP connection manager, in order (EnvoyFilter patches included)."""
    for d in _walk(lab.envoy_config(workload, cluster, "dynamic_listeners")):
        if str(d.get("stat_prefix", "")).startswith("inbound") and isinstance(d.get("http_filters"), list):
            return list(d["http_filters"])
    raise KeyError(f"no inbound HTTP connection manager in the config of {workload} ({cluster})")


def deploy_helloworld(lab: "Lab", cluster: str, version: str = "v1") -> "Table":
    """helloworld ``version`` in ``cluster``, answering the lab's ``?sleep=``, ``?fail=``, ``?only=``, ``?tail=``
    on both backends: local, ``lab.deploy`` (its helloworld is meshlab's sample app); kind, ``lab.deploy``, then
    the Deployment runs that same sample app instead of Istio's Flask app, which ignores the query
    (:func:`meshlab.backends.kind.dataplane.run_sample_app`)."""
    deployed = lab.deploy("helloworld", cluster=cluster, version=version)
    pods = lab.backend.use_sample_app(cluster, version)
    return pods_table(pods) if pods else deployed


def deploy_rate_limit_service(lab: "Lab", cluster: str) -> Any:
    """The RLS v3 rate-limit service (``ratelimit``, gRPC on 8081) in ``cluster``, reachable from every cluster
    of the mesh: local, meshlab's own service as a mesh workload; kind, Istio's recipe (envoyproxy/ratelimit
    with Redis, the lab's rules as its ConfigMap: :mod:`meshlab.backends.kind.dataplane`)."""
    return lab.backend.deploy_rate_limit_service(cluster, DEFAULT_CONFIG)


def rate_limit_rules(lab: "Lab") -> str:
    """The rate-limit service's rules (envoyproxy/ratelimit's config.yaml format)."""
    return lab.backend.rate_limit_rules()


def crash_replicas(lab: "Lab", cluster: str, replicas: int = 3) -> list[str]:
    """``replicas`` more helloworld pods whose app has crashed while their sidecars answer 503, next to the
    healthy ones (the outlier-detection experiment). Local: new v1 pods whose app is killed; kind: a
    Deployment ``helloworld-broken`` under the same Service (``lab.kill`` on kind removes whole pods)."""
    return lab.backend.crash_replicas(cluster, replicas)


def heal_replicas(lab: "Lab", crashed: list[str], cluster: str) -> None:
    """Undo :func:`crash_replicas` (local: restart the apps; kind: delete the broken Deployment)."""
    lab.backend.heal_replicas(crashed, cluster)
