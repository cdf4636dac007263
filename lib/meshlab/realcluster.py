"""Back to real Istio: the command a learner would type on a real cluster for each ``lab.*`` view and action.

Every lab calls ``lab.endpoints(...)``, ``lab.apply(...)``, ``lab.call(...)`` ...; at work there is no ``lab``, there
are ``kubectl`` and ``istioctl``. In a notebook, each such call shows its equivalent right under the cell (once per
cell and command, so a loop of calls shows one line), the same way everywhere::

    on a real cluster: istioctl proxy-config endpoints deploy/curl.sample --context="${CTX_CLUSTER1}" | grep helloworld

The commands follow Istio's multicluster guides: one kubeconfig context per cluster, in ``CTX_CLUSTER1``,
``CTX_CLUSTER2`` ..., Istio's samples (``samples/helloworld``, ``samples/curl``) in namespace ``sample``.
``command(op, ...)`` is the table; ``docs/at-work/`` has the same commands, pattern by pattern.
"""

from __future__ import annotations

import html
import os
from typing import Any

GATEWAYS = ("istio-eastwestgateway", "istio-ingressgateway", "istio-egressgateway")
SAMPLES = {"helloworld": "samples/helloworld/helloworld.yaml", "curl": "samples/curl/curl.yaml"}


def ctx(cluster: str) -> str:
    """``--context="${CTX_CLUSTER1}"``: the kubeconfig context of a cluster, as Istio's guides name it."""
    return f'--context="${{CTX_{cluster.upper().replace("-", "_")}}}"'


def split(workload: str, namespace: str = "sample") -> tuple[str, str]:
    """``curl.legacy`` -> (``curl``, ``legacy``): meshlab names a workload in another namespace with a suffix."""
    name, _, ns = workload.partition(".")
    if name in GATEWAYS:  # Istio's gateways live in istio-system
        return name, ns or "istio-system"
    return name, ns or namespace


def command(op: str, *, cluster: str | None = None, workload: str | None = None, deployment: str | None = None,
            **kw: Any) -> list[str]:
    """The shell command(s) for ``lab.<op>(...)`` on a real cluster; ``[]`` when there is none.

    ``deployment`` is the Deployment behind ``workload`` (``helloworld-v1`` for ``helloworld``), when known.
    """
    c = ctx(cluster) if cluster else ""
    name, ns = split(workload or "", kw.get("namespace") or "sample")
    deploy = f"deploy/{deployment or name}"
    pod = f"{deploy}.{ns}"  # istioctl's [<type>/]<name>[.<namespace>]
    if op == "deploy":
        app, version = kw["app"], kw.get("version") or ""
        where = f"-n {kw.get('namespace') or 'sample'} {c}"
        if app in SAMPLES:
            label = f" -l version={version}" if app == "helloworld" and version else ""
            extra = [f"kubectl apply {where} -f {SAMPLES[app]} -l service=helloworld"] if app == "helloworld" else []
            cmds = extra + [f"kubectl apply {where} -f {SAMPLES[app]}{label}"]
        else:
            cmds = [f"kubectl apply {where} -f {app}.yaml"]
        if (kw.get("replicas") or 1) > 1:
            cmds.append(f"kubectl scale {where} deploy/{app}{'-' + version if version else ''} --replicas={kw['replicas']}")
        return cmds
    if op == "undeploy":
        return [f"kubectl delete -n {kw.get('namespace') or 'sample'} {c} deploy -l app={kw['app']}"]
    if op == "call":
        url = str(kw["url"]).removeprefix("http://")
        headers = "".join(f" -H '{k}: {v}'" for k, v in (kw.get("headers") or {}).items())
        if (kw.get("method") or "GET") != "GET":
            headers = f" -X {kw['method']}{headers}"
        one = f"kubectl exec -n {ns} {c} {deploy} -c {name} -- curl -sS{headers} {url}"
        n = int(kw.get("n") or 1)
        return [one if n == 1 else f"for i in $(seq {n}); do {one}; done"]
    if op == "load":
        return [f"kubectl exec -n {ns} {c} deploy/fortio -c fortio -- fortio load -c {kw.get('connections', 1)} "
                f"-t {kw.get('seconds', 1):g}s -qps 0 {kw['url']}"]
    if op == "endpoints":
        service = kw.get("service")
        return [f"istioctl proxy-config endpoints {pod} {c}" + (f" | grep {service}" if service else "")]
    if op == "proxy_status":
        return [f"istioctl proxy-status {ctx(p)}" for p in kw.get("primaries") or ["cluster1"]]
    if op == "access_log":
        return [f"kubectl logs -n {ns} {c} {deploy} -c istio-proxy --tail={kw.get('last', 20)}"]
    if op == "stats":
        grep = f" | grep '{kw['contains']}'" if kw.get("contains") else ""
        return [f"kubectl exec -n {ns} {c} {deploy} -c istio-proxy -- pilot-agent request GET stats{grep}"]
    if op == "envoy_config":
        res = f"?resource={kw['resource']}" if kw.get("resource") else ""
        return [f"kubectl exec -n {ns} {c} {deploy} -c istio-proxy -- pilot-agent request GET 'config_dump{res}'"]
    if op == "extension_configs":
        return [f"istioctl proxy-config ecds {pod} {c}"]
    if op == "agent_log":
        return [f"kubectl logs -n {ns} {c} {deploy} -c istio-proxy | grep -i wasm"]
    if op == "connect":
        return [f"kubectl exec -n {ns} {c} {deploy} -c istio-proxy -- bash -c 'exec 3<>/dev/tcp/{kw['address']}/{kw['port']}' && echo connected"]
    if op == "apply":
        kinds = ", ".join(kw.get("kinds") or []) or "the resources"
        return [f"kubectl apply {c} -f resources.yaml   # {kinds}"]
    if op == "delete":
        return [f"kubectl delete -n {kw.get('namespace') or 'sample'} {c} {str(kw['kind']).lower()} {kw['name']}"]
    if op == "create_pull_secret":
        return [f"kubectl create secret docker-registry {kw['name']} -n {kw.get('namespace') or 'sample'} {c} "
                f"--docker-server={kw['registry']} --docker-username={kw['username']} --docker-password=..."]
    if op == "create_tls_secret":
        return [f"kubectl create -n istio-system {c} secret tls {kw['name']} --key={kw['name']}.key --cert={kw['name']}.crt"]
    if op == "crash":
        patch = '[{"op": "add", "path": "/spec/template/spec/containers/0/command", "value": ["sleep", "infinity"]}]'
        return [f"kubectl patch -n {ns} {c} {deploy} --type=json -p '{patch}'   # the app never listens, the sidecar stays "
                f"(undo: kubectl rollout undo -n {ns} {c} {deploy})"]
    if op in ("kill", "restore"):
        return [f"kubectl scale -n {ns} {c} {deploy} --replicas={0 if op == 'kill' else 1}"]
    if op in ("stop_control_plane", "start_control_plane"):
        return [f"kubectl scale -n istio-system {c} deploy/istiod --replicas={0 if op.startswith('stop') else 1}"]
    if op in ("pods", "sidecars"):
        return [f"kubectl get pods -n sample -o wide {ctx(x)}" for x in kw.get("clusters") or ["cluster1"]]
    if op == "remote_clusters":
        return [f"istioctl remote-clusters {c}"]
    if op in ("create_remote_secret", "delete_remote_secret"):
        verb = "apply" if op.startswith("create") else "delete"
        return [f"istioctl create-remote-secret {ctx(kw['of'])} --name={kw['of']} | kubectl {verb} -f - {c}"]
    if op == "set_mesh_config":
        keys = ",".join(sorted(kw.get("keys") or [])) or "..."
        return [f"istioctl install {c} -f primary.yaml   # the primary's IstioOperator with spec.meshConfig: {keys}"]
    if op == "enable_tracing":
        return [f"kubectl apply {ctx(x)} -f samples/addons/jaeger.yaml" for x in kw.get("primaries") or ["cluster1"]]
    if op == "traces":
        return ['istioctl dashboard jaeger --context="${CTX_CLUSTER1}"   # or query your tracing backend']
    mgmt = '--context="${MGMT_CONTEXT}"'  # the management cluster (Gloo Mesh's name for where its API lives)
    if op == "mesh_discover":
        return [f"kubectl get meshes.discovery.mesh.gloo.solo.io,workloads.discovery.mesh.gloo.solo.io,"
                f"destinations.discovery.mesh.gloo.solo.io -n gloo-mesh {mgmt}"]
    if op == "mesh_apply":
        return [f"kubectl apply {mgmt} -f {str(kw.get('kind', 'policy')).lower()}.yaml   # {kw.get('kind')} {kw.get('name')}"]
    if op == "mesh_delete":
        return [f"kubectl delete -n gloo-mesh {mgmt} {str(kw['kind']).lower()} {kw['name']}"]
    if op == "mesh_describe":
        return [f"kubectl get -n gloo-mesh {mgmt} {str(kw['kind']).lower()} {kw['name']} -o yaml"]
    if op == "mesh_generated":
        return [f"kubectl get serviceentries,destinationrules,virtualservices,authorizationpolicies -A {ctx(x)}"
                for x in kw.get("clusters") or ["cluster1"]]
    if op == "mesh_check":
        return ["meshctl check"]
    if op == "call_from_outside":
        return [f"curl -sS --cacert ca.crt --resolve {kw['host']}:443:$INGRESS_HOST {kw['url']}"]
    return []


class OnRealCluster:
    """The commands, rendered the same way in every lab: a quiet box in Jupyter, prefixed lines in text."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands

    def __str__(self) -> str:
        return "\n".join(f"on a real cluster: {c}" for c in self.commands)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(f"<div><code>{html.escape(c)}</code></div>" for c in self.commands)
        return ('<div style="border-left:3px solid #466bb0;padding:2px 8px;margin:2px 0;color:#444;font-size:90%">'
                f'<span style="font-variant:small-caps">on a real cluster</span>{rows}</div>')


_shown: dict[int, set[str]] = {}  # execution count -> commands shown in that cell


def show(commands: list[str]) -> None:
    """Display ``commands`` under the running cell of a live notebook, each once per cell; nothing elsewhere.

    ``MESHLAB_REAL_COMMANDS=0`` turns it off (a lab author comparing outputs, say).
    """
    if not commands or os.environ.get("MESHLAB_REAL_COMMANDS", "1") in ("0", "false", "no"):
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return
    seen = _shown.setdefault(shell.execution_count, set())
    new = [c for c in commands if c not in seen]
    if not new:
        return
    seen.update(new)
    if len(_shown) > 64:  # forget old cells
        for k in sorted(_shown)[:-8]:
            del _shown[k]
    from IPython.display import display

    display(OnRealCluster(new))
