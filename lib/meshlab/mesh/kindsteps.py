"""The management plane on the kind backend: the same inputs, the same generated objects, applied to
real clusters through the kind executor (recorded, in a dry run, as the plan a workshop would run).

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
from typing import TYPE_CHECKING, Any

import yaml

from ..backends.kind import tools
from ..backends.kind.clusters import kubectl
from ..backends.kind.plan import Plan
from ..state import write_atomic
from .controller import diff, generated_path, load_generated

if TYPE_CHECKING:
    from ..lab import Lab
    from .virtualmesh import TrustReport

SAMPLE_NAMESPACE = "sample"


def _run_dir(lab: "Lab") -> Path:
    return Path(lab.state.data.get("run_dir") or lab.state.dir / "kind")


def reconcile(lab: "Lab") -> list[str]:
    from .translate import generate

    be = lab.backend
    new = generate(lab)
    old = load_generated(_run_dir(lab))
    changes = diff(old, new)
    for cp, docs in new.items():
        if docs and docs != old.get(cp):
            be.apply(docs, cp)
    for cp, docs in old.items():
        keep = {(d["kind"], d["metadata"]["name"]) for d in new.get(cp, [])}
        for d in docs:
            if (d["kind"], d["metadata"]["name"]) not in keep:
                be.delete(d["kind"], d["metadata"]["name"], cp, d["metadata"].get("namespace", SAMPLE_NAMESPACE))
    write_atomic(generated_path(_run_dir(lab)), json.dumps(new, indent=1, sort_keys=True))
    return changes


def _pki(lab: "Lab") -> Any:
    from ..pki import PKI

    return PKI(_run_dir(lab) / "pki")


def shared_trust(lab: "Lab", root: str, members: dict[str, str], ttl: int, restart_pods: bool, rep: "TrustReport") -> None:
    ex = lab.backend.executor  # type: ignore[union-attr]
    pki = _pki(lab)
    rep.root_cert = str(pki.root_cert(root))
    rep.steps.append({"STEP": "1 generate root", "WHERE": "management plane", "RESULT": f"{root}/root-cert.pem"})
    for cp in members.values():
        csr = pki.agent_csr(cp, root)
        rep.csrs[cp] = csr.read_bytes()
        rep.steps.append({"STEP": "2 agent: key + CSR", "WHERE": cp, "RESULT": "CertificateRequest"})
        d = pki.install_issued(cp, root, pki.sign_csr(rep.csrs[cp], root, ttl_days=ttl))
        rep.chains[cp] = (d / "cert-chain.pem").read_bytes()
        rep.steps.append({"STEP": "3 sign CSR", "WHERE": "management plane", "RESULT": f"IssuedCertificate for {cp}"})
        ex.run(kubectl(cp, "-n", "istio-system", "delete", "secret", "cacerts", "--ignore-not-found"), cluster=cp,
               title="remove the old cacerts secret")
        ex.run(kubectl(cp, "create", "secret", "generic", "cacerts", "-n", "istio-system",
                       *(f"--from-file={d / f}" for f in ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"))),
               cluster=cp, title=f"write cacerts: intermediate signed by {root}", tags=("cacerts",))  # fmt: skip
        rep.steps.append({"STEP": "4 write cacerts", "WHERE": cp, "RESULT": "secret istio-system/cacerts"})
        ex.run(kubectl(cp, "-n", "istio-system", "rollout", "restart", "deployment/istiod"), cluster=cp, title="restart istiod")
        ex.run(kubectl(cp, "-n", "istio-system", "rollout", "status", "deployment/istiod", "--timeout=300s"), cluster=cp,
               timeout=330, title="wait for istiod")
        rep.steps.append({"STEP": "5 restart istiod", "WHERE": cp, "RESULT": "signs with the new intermediate"})
        lab.state.data.setdefault("ca_roots", {})[cp] = root
    if restart_pods:
        for cp in members.values():
            for c in lab.topology.served_by(cp):
                rep.bounced[c.name] = bounce(lab, c.name)
                rep.steps.append({"STEP": "6 pod bounce", "WHERE": c.name, "RESULT": "rollout restart of the samples and the gateway"})


def bounce(lab: "Lab", cluster: str) -> list[str]:
    """``autoRestartPods``: every sample deployment and the gateways restarted, each rollout waited for, then the push."""
    return lab.backend.restart_workloads(cluster, "new pods get certificates from the new intermediate")  # type: ignore[union-attr]


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


def global_prometheus(targets: dict[str, str]) -> list[dict[str, Any]]:
    from .telemetry import global_config

    cfg = global_config({c: f"{ip}:9090" for c, ip in targets.items()})
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


def enable_telemetry(lab: "Lab") -> dict[str, str]:
    """Addon per cluster (Istio's ``samples/addons/prometheus.yaml`` at the release tag, checksum-verified),
    exposed on a LoadBalancer address once MetalLB has assigned one; then the global Prometheus in the first
    cluster. Returns cluster -> address (placeholders in a dry run)."""
    ex = lab.backend.executor  # type: ignore[union-attr]
    clusters = list(lab.topology.clusters)
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
    plan.run("the global Prometheus, federating every cluster's /federate", kubectl(clusters[0], "apply", "--validate=strict", "-f", "-"),
             manifests=global_prometheus({c: "${%s}" % prometheus_var(c) for c in clusters}), cluster=clusters[0], tags=("prometheus",))
    plan.run("wait for the global Prometheus", kubectl(clusters[0], "-n", "istio-system", "rollout", "status", "deployment/prometheus-global",
                                                       "--timeout=300s"), cluster=clusters[0], timeout=330, tags=("prometheus", "wait"))
    ex.execute(plan)
    return {c: ex.variables.get(prometheus_var(c), "${%s}" % prometheus_var(c)) for c in clusters}


def query(lab: "Lab", path: str, params: dict[str, str]) -> dict[str, Any] | None:
    """A Prometheus API call on the global Prometheus (``kubectl exec ... wget``); None in a dry run."""
    first = next(iter(lab.topology.clusters))
    url = f"http://localhost:9090{path}?{urllib.parse.urlencode(params)}"
    out = lab.backend.executor.run(  # type: ignore[union-attr]
        kubectl(first, "-n", "istio-system", "exec", "deploy/prometheus-global", "-c", "prometheus", "--", "wget", "-qO-", url),
        cluster=first, title=f"query the global Prometheus: {params.get('query', '')[:60]}")  # fmt: skip
    return None if out is None else dict(json.loads(out))
