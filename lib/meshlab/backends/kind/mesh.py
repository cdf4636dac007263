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

from . import tools
from .clusters import kubectl
from .plan import Plan

if TYPE_CHECKING:
    from .backend import KindBackend

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
    """``autoRestartPods``: every sample deployment and the gateways restarted, each rollout waited for, then the push."""
    return be.restart_workloads(cluster, "new pods get certificates from the new intermediate")


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
             "containers": [{"name": "prometheus", "image": tools.PROMETHEUS_IMAGE,
                             "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.retention.time=6h"],
                             "ports": [{"containerPort": 9090}],
                             "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"}]}],
             "volumes": [{"name": "config", "configMap": {"name": "prometheus-global"}}]}}}},
    ]  # fmt: skip


def enable_telemetry(be: "KindBackend", global_config: Callable[[dict[str, str]], dict[str, Any]]) -> dict[str, str]:
    """Addon per cluster (Istio's ``samples/addons/prometheus.yaml`` at the release tag, checksum-verified),
    rolled out and exposed on a LoadBalancer address once MetalLB has assigned one; then the global Prometheus
    in the first cluster (configured by ``global_config`` from each cluster's ``host:port``). Returns
    cluster -> address (placeholders in a dry run)."""
    ex = be.executor
    clusters = list(be.topology.clusters)
    addon = tools.ARTIFACTS["prometheus-addon"]()
    plan = Plan("telemetry: Istio's Prometheus addon per cluster, a global Prometheus federating them")
    plan.meshlab(f"get {addon.name} {addon.version} into the tools folder, checksum-verified (skipped if already there)", "tool",
                 f"download {addon.url} -> {addon.program}; verify its sha256 against {addon.checksum_source}",
                 args={"name": "prometheus-addon"}, tags=("tools", "prometheus"))
    for c in clusters:
        plan.run(f"Istio's Prometheus addon (samples/addons/prometheus.yaml of Istio {addon.version})", kubectl(c, "apply", "-f", str(addon.program)),
                 cluster=c, tags=("prometheus",))
        plan.run("wait until it is rolled out", kubectl(c, "-n", "istio-system", "rollout", "status", "deployment/prometheus", "--timeout=300s"),
                 cluster=c, timeout=330, tags=("prometheus", "wait"),
                 hint=f"`kubectl --context kind-{c} -n istio-system get pods -l app.kubernetes.io/name=prometheus`: are the images loaded?")
        plan.run("expose it for federation (LoadBalancer)", kubectl(c, "apply", "--validate=strict", "-f", "-"), manifests=[federation_service()],
                 cluster=c, tags=("prometheus",))
        plan.run("wait until MetalLB assigns it an address (EXTERNAL-IP no longer <pending>); remember it",
                 kubectl(c, "-n", "istio-system", "get", "svc", "prometheus-federation", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"),
                 capture=prometheus_var(c), poll=True, timeout=180, cluster=c, tags=("prometheus", "wait"),
                 hint=f"`kubectl --context kind-{c} -n metallb-system get pods,ipaddresspools`: is MetalLB running?")
    placeholders = {c: "${%s}" % prometheus_var(c) for c in clusters}
    plan.run("the global Prometheus, federating every cluster's /federate", kubectl(clusters[0], "apply", "--validate=strict", "-f", "-"),
             manifests=global_prometheus(global_config({c: f"{ip}:9090" for c, ip in placeholders.items()})), cluster=clusters[0],
             tags=("prometheus",))
    plan.run("wait for the global Prometheus", kubectl(clusters[0], "-n", "istio-system", "rollout", "status", "deployment/prometheus-global",
                                                       "--timeout=300s"), cluster=clusters[0], timeout=330, tags=("prometheus", "wait"))
    ex.execute(plan)
    return {c: ex.variables.get(prometheus_var(c), p) for c, p in placeholders.items()}


def query(be: "KindBackend", path: str, params: dict[str, str]) -> dict[str, Any] | None:
    """A Prometheus API call on the global Prometheus (``kubectl exec ... wget``); None in a dry run."""
    first = next(iter(be.topology.clusters))
    url = f"http://localhost:9090{path}?{urllib.parse.urlencode(params)}"
    out = be.executor.run(
        kubectl(first, "-n", "istio-system", "exec", "deploy/prometheus-global", "-c", "prometheus", "--", "wget", "-qO-", url),
        cluster=first, title=f"query the global Prometheus: {params.get('query', '')[:60]}")  # fmt: skip
    return None if out is None else dict(json.loads(out))
