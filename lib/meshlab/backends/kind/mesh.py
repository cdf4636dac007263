"""The management plane's steps on the kind backend: the objects meshlab.mesh generates, applied to real
clusters through the kind executor (recorded, in a dry run, as the plan a workshop would run).

- reconcile: ``kubectl apply`` of each control plane's generated objects, ``kubectl delete`` of the
  ones no longer generated (Gloo Mesh's networking pod did this from the management cluster);
- shared trust: the CSR flow runs in meshlab (real keys and certificates), then per cluster the
  ``cacerts`` secret is replaced, istiod restarted and -- ``autoRestartPods`` -- every sample
  deployment and the east-west gateway restarted (``kubectl rollout restart``);
- telemetry: Istio's Prometheus addon in every cluster, each exposed on a LoadBalancer address for
  the global Prometheus in the first cluster, which federates them.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml

from ...versions import ISTIO_VERSION
from .clusters import kubectl

if TYPE_CHECKING:
    from .backend import KindBackend

ADDON = f"https://raw.githubusercontent.com/istio/istio/release-{'.'.join(ISTIO_VERSION.split('.')[:2])}/samples/addons/prometheus.yaml"
PROMETHEUS_IMAGE = "docker.io/prom/prometheus:v3.10.0"  # the image Istio 1.31's addon runs
SAMPLE_NAMESPACE = "sample"


def push_generated(be: "KindBackend", old: dict[str, list[dict[str, Any]]], new: dict[str, list[dict[str, Any]]]) -> None:
    """Apply each control plane's changed objects, delete the ones no longer generated."""
    for cp, docs in new.items():
        if docs and docs != old.get(cp):
            be.apply(docs, cp)
    for cp, docs in old.items():
        keep = {(d["kind"], d["metadata"]["name"]) for d in new.get(cp, [])}
        for d in docs:
            if (d["kind"], d["metadata"]["name"]) not in keep:
                be.delete(d["kind"], d["metadata"]["name"], cp, d["metadata"].get("namespace", SAMPLE_NAMESPACE))


def install_cacerts(be: "KindBackend", cp: str, root: str, d: Path) -> list[tuple[str, str]]:
    """Replace ``cacerts`` in ``cp`` with the intermediate in ``d``, restart istiod; the steps, as (step, result)."""
    ex = be.executor
    ex.run(kubectl(cp, "-n", "istio-system", "delete", "secret", "cacerts", "--ignore-not-found"), cluster=cp,
           title="remove the old cacerts secret")
    ex.run(kubectl(cp, "create", "secret", "generic", "cacerts", "-n", "istio-system",
                   *(f"--from-file={d / f}" for f in ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"))),
           cluster=cp, title=f"write cacerts: intermediate signed by {root}", tags=("cacerts",))  # fmt: skip
    ex.run(kubectl(cp, "-n", "istio-system", "rollout", "restart", "deployment/istiod"), cluster=cp, title="restart istiod")
    ex.run(kubectl(cp, "-n", "istio-system", "rollout", "status", "deployment/istiod", "--timeout=300s"), cluster=cp,
           timeout=330, title="wait for istiod")
    be.state.data.setdefault("ca_roots", {})[cp] = root
    return [("4 write cacerts", "secret istio-system/cacerts"), ("5 restart istiod", "signs with the new intermediate")]


def bounce(be: "KindBackend", cluster: str) -> list[str]:
    ex = be.executor
    out = []
    for ns, target in ((SAMPLE_NAMESPACE, "deployment"), ("istio-system", "deployment/istio-eastwestgateway")):
        ex.run(kubectl(cluster, "-n", ns, "rollout", "restart", target), cluster=cluster, title=f"restart {target} in {ns}")
        out.append(f"{ns}/{target}")
    ex.run(kubectl(cluster, "-n", SAMPLE_NAMESPACE, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=300s"),
           cluster=cluster, timeout=330, title="wait for the restarted samples")
    return out


# ---- telemetry -------------------------------------------------------------------------------------
def prometheus_var(cluster: str) -> str:
    return f"PROMETHEUS_{cluster.upper().replace('-', '_')}_IP"


def federation_service() -> dict[str, Any]:
    """The addon's Prometheus on a LoadBalancer address, so the global one can reach it across clusters."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "prometheus-federation", "namespace": "istio-system"},
        "spec": {"type": "LoadBalancer", "selector": {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"},
                 "ports": [{"name": "http", "port": 9090, "targetPort": 9090}]},
    }  # fmt: skip


def global_prometheus(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The global Prometheus (``cfg``: its configuration, federating every cluster) as a ConfigMap and Deployment."""
    cfg = dict(cfg)
    cfg["global"] = {"scrape_interval": "15s"}
    labels = {"app": "prometheus-global"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus-global", "namespace": "istio-system"},
         "data": {"prometheus.yml": yaml.safe_dump(cfg, sort_keys=False)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "prometheus-global", "namespace": "istio-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
             "containers": [{"name": "prometheus", "image": PROMETHEUS_IMAGE,
                             "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.retention.time=6h"],
                             "ports": [{"containerPort": 9090}],
                             "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"}]}],
             "volumes": [{"name": "config", "configMap": {"name": "prometheus-global"}}]}}}},
    ]  # fmt: skip


def enable_telemetry(be: "KindBackend", global_config: Callable[[dict[str, str]], dict[str, Any]]) -> dict[str, str]:
    """Addon per cluster, exposed; then the global Prometheus in the first cluster (configured by ``global_config``
    from each cluster's ``host:port``). Returns cluster -> address."""
    ex = be.executor
    clusters = list(be.topology.clusters)
    targets = {}
    for c in clusters:
        ex.run(kubectl(c, "apply", "-f", ADDON), cluster=c, title="Istio's Prometheus addon (samples/addons/prometheus.yaml)", tags=("prometheus",))
        ex.run(kubectl(c, "apply", "--validate=strict", "-f", "-"), manifests=[federation_service()], cluster=c,
               title="expose it for federation (LoadBalancer)", tags=("prometheus",))
        ip = ex.run(kubectl(c, "-n", "istio-system", "get", "svc", "prometheus-federation", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"),
                    cluster=c, title="its address")  # fmt: skip
        targets[c] = ip or "${%s}" % prometheus_var(c)
    ex.run(kubectl(clusters[0], "apply", "--validate=strict", "-f", "-"), manifests=global_prometheus(global_config({c: f"{ip}:9090" for c, ip in targets.items()})), cluster=clusters[0],
           title="the global Prometheus, federating every cluster's /federate", tags=("prometheus",))
    ex.run(kubectl(clusters[0], "-n", "istio-system", "rollout", "status", "deployment/prometheus-global", "--timeout=300s"),
           cluster=clusters[0], timeout=330, title="wait for the global Prometheus")
    return targets


def query(be: "KindBackend", path: str, params: dict[str, str]) -> dict[str, Any] | None:
    """A Prometheus API call on the global Prometheus (``kubectl exec ... wget``); None in a dry run."""
    first = next(iter(be.topology.clusters))
    url = f"http://localhost:9090{path}?{urllib.parse.urlencode(params)}"
    out = be.executor.run(
        kubectl(first, "-n", "istio-system", "exec", "deploy/prometheus-global", "-c", "prometheus", "--", "wget", "-qO-", url),
        cluster=first, title=f"query the global Prometheus: {params.get('query', '')[:60]}")  # fmt: skip
    return None if out is None else dict(json.loads(out))
