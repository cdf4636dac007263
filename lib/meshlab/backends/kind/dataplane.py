"""Labs 01 and 01b's kind steps: Istio's global rate-limit service (01b), and crashed replicas behind a live sidecar.

**Global rate limit**, as Istio's task *Enabling Rate Limits using Envoy*
(https://istio.io/latest/docs/tasks/policy-enforcement/rate-limit/) sets it up: envoyproxy/ratelimit
(gRPC RLS v3 on 8081) with Redis for its counters, its rules in the ConfigMap ``ratelimit-config``
(key ``config.yaml``, read from ``/data/ratelimit/config``). meshlab generates these manifests
(equivalent to ``samples/ratelimit/rate-limit-service.yaml`` at release-1.31, images pinned, in the
lab's ``sample`` namespace, so the service has a sidecar and is reached over mTLS). It runs in one
cluster; the other cluster's sidecars reach it through the shared control plane: istiod reads the
Services of every cluster it serves, so ``outbound|8081||ratelimit.sample.svc.cluster.local`` exists in
every sidecar, with the pod's address (flat network) or its cluster's east-west gateway (separate
networks) as endpoint. No ServiceEntry is needed, and none would be right: it would duplicate a
Service the mesh already knows.

**Crashed replicas.** On Kubernetes a killed container restarts within seconds, and ``lab.kill`` scales
a whole Deployment to zero. For "three of four pods crashed" the failing pods run as a second
Deployment under helloworld's Service (same ``app``, ``version: broken``): the helloworld image whose
app never starts listening, so their sidecars answer 503 (upstream connection refused, flag ``UF``) —
what the local backend's killed app behind a live sidecar does. No extra image to pull.

**meshlab's sample app.** The lab makes helloworld slow or flaky with query parameters (``?sleep=``,
``?fail=``, ``?only=``, ``?tail=``) that only meshlab's sample app understands
(:mod:`meshlab.runtime.apps`); Istio's helloworld image (a Flask app) ignores them. So on kind the
helloworld Deployments run that same file, shipped as the ConfigMap ``meshlab-sample-app`` and started
with the image's own Python (stdlib only): same names, labels, port and version, so the Service, the
subsets and every Istio resource stay as they are. No extra image to pull.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import LabStateError, MeshlabError
from ...runtime import apps
from . import clusters as K
from . import samples as S
from . import tools

if TYPE_CHECKING:
    from .backend import KindBackend, Pod

DEAD_APP = ("python", "-c", "import signal; signal.pause()")  # an app that never listens (the helloworld image's Python)

RATELIMIT_GRPC_PORT = 8081
SAMPLE_APP = "meshlab-sample-app"  # the ConfigMap that carries apps.py
SAMPLE_APP_DIR = "/meshlab"  # where the pods mount it
BROKEN = "broken"  # the version label of the crashed replicas


def _deployment(name: str, labels: dict[str, str], container: dict[str, Any], ns: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
            "spec": {"replicas": 1, "selector": {"matchLabels": dict(labels)}, **spec,
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"imagePullPolicy": "IfNotPresent", **container}]}}}}  # fmt: skip


def _service(name: str, ports: list[tuple[str, int]], ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"ports": [{"name": n, "port": p, "targetPort": p, "protocol": "TCP"} for n, p in ports],
                     "selector": {"app": name}}}  # fmt: skip


def rate_limit_manifests(config: str, ns: str = S.NAMESPACE) -> list[dict[str, Any]]:
    """The rules' ConfigMap, Redis, then envoyproxy/ratelimit (Service port names as in Istio's sample:
    ``grpc-port`` makes Istio treat 8081 as gRPC)."""
    env = {"LOG_LEVEL": "debug", "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "redis:6379", "USE_STATSD": "false",
           "RUNTIME_ROOT": "/data", "RUNTIME_SUBDIRECTORY": "ratelimit", "RUNTIME_WATCH_ROOT": "false",
           "RUNTIME_IGNOREDOTFILES": "true", "HOST": "::", "GRPC_HOST": "::"}  # fmt: skip
    ratelimit = {"name": "ratelimit", "image": tools.RATELIMIT_IMAGE, "command": ["/bin/ratelimit"],
                 "env": [{"name": k, "value": v} for k, v in env.items()],
                 "ports": [{"containerPort": p} for p in (8080, RATELIMIT_GRPC_PORT, 6070)],
                 "volumeMounts": [{"name": "config-volume", "mountPath": "/data/ratelimit/config"}]}  # fmt: skip
    rl = _deployment("ratelimit", {"app": "ratelimit"}, ratelimit, ns, strategy={"type": "Recreate"})
    rl["spec"]["template"]["spec"]["volumes"] = [{"name": "config-volume", "configMap": {"name": "ratelimit-config"}}]
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ratelimit-config", "namespace": ns},
         "data": {"config.yaml": config}},
        _service("redis", [("redis", 6379)], ns),
        _deployment("redis", {"app": "redis"}, {"name": "redis", "image": tools.REDIS_IMAGE,
                                                "ports": [{"name": "redis", "containerPort": 6379}]}, ns),
        _service("ratelimit", [("http-port", 8080), ("grpc-port", RATELIMIT_GRPC_PORT), ("http-debug", 6070)], ns),
        rl,
    ]  # fmt: skip


def deploy_rate_limit_service(backend: "KindBackend", cluster: str, config: str, fresh_counters: bool = False) -> str:
    """Apply the rate-limit service in ``cluster`` and wait until it serves and istiod pushed its endpoints.

    ``fresh_counters``: it was deployed before (a re-run cell); restart Redis, which keeps the counters in memory
    only (Istio's sample has no persistence), so the experiment starts from zero again."""
    t = backend.topology
    cp = t.cluster(cluster).control_plane
    others = [c for c in t.clusters if t.cluster(c).control_plane != cp]
    if others:
        raise MeshlabError(f"{', '.join(others)} have another control plane than {cluster}: their sidecars cannot see the "
                           "rate-limit service", "use a pattern with one control plane (flat-network, separate-networks)")
    out = backend.apply_manifests(
        cluster, [S.namespace(), *rate_limit_manifests(config)],
        title=f"deploy the global rate-limit service in {cluster} (envoyproxy/ratelimit + Redis, rules in ConfigMap ratelimit-config)",
        tags=("ratelimit",), hint=f"`kubectl --context {K.context(cluster)} -n {S.NAMESPACE} get pods -l 'app in (ratelimit,redis)'`")
    if fresh_counters:
        backend.executor.run(K.kubectl(cluster, "-n", S.NAMESPACE, "rollout", "restart", "deployment/redis"), cluster=cluster,
                             title="restart Redis: the rate-limit counters start from zero", tags=("ratelimit",))
    for name in ("redis", "ratelimit"):
        backend.executor.run(K.kubectl(cluster, "-n", S.NAMESPACE, "rollout", "status", f"deployment/{name}", "--timeout=300s"),
                             cluster=cluster, timeout=330, title=f"wait for {name}", tags=("ratelimit", "rollout"),
                             hint=f"`kubectl --context {K.context(cluster)} -n {S.NAMESPACE} describe deployment {name}`")
    backend._wait_synced("the rate-limit service's endpoints")
    return out or f"ratelimit and redis in {cluster}/{S.NAMESPACE}: dry run (recorded)"


def crashed_helloworld(replicas: int, ns: str = S.NAMESPACE) -> dict[str, Any]:
    """helloworld pods under the same Service whose app never listens: their sidecars answer 503."""
    d = S.helloworld_deployment(BROKEN, replicas, ns)
    pod = d["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 0  # the paused PID 1 ignores SIGTERM
    pod["containers"][0]["command"] = list(DEAD_APP)
    return d


def crash_replicas(backend: "KindBackend", cluster: str, replicas: int) -> list[str]:
    """Run ``replicas`` crashed helloworld pods in ``cluster``; their names (none in a dry run)."""
    backend.apply_manifests(
        cluster, [crashed_helloworld(replicas)], tags=("outlier", "crashed"),
        title=f"{replicas} helloworld pods (version: {BROKEN}) whose app never starts: their sidecars answer 503",
        hint=f"`kubectl --context {K.context(cluster)} -n {S.NAMESPACE} get pods -l version={BROKEN}`")
    backend.executor.run(K.kubectl(cluster, "-n", S.NAMESPACE, "rollout", "status", f"deployment/helloworld-{BROKEN}", "--timeout=300s"),
                         cluster=cluster, timeout=330, title=f"wait for helloworld-{BROKEN}", tags=("outlier", "rollout"))
    backend._wait_synced("the crashed pods' endpoints")
    return [] if backend.dry_run else [p.pod for p in backend.pods("helloworld", cluster, BROKEN)]


def heal_replicas(backend: "KindBackend", cluster: str) -> None:
    """Remove the crashed pods (their Deployment) and wait until their endpoints are gone."""
    if not backend.dry_run and not backend.pods("helloworld", cluster, BROKEN):
        raise LabStateError(f"no crashed helloworld pods in {cluster}", "crash some first: dp.crash_replicas(lab, cluster)")
    backend.executor.run(K.kubectl(cluster, "-n", S.NAMESPACE, "delete", "deployment", f"helloworld-{BROKEN}", "--wait=true"),
                         cluster=cluster, title=f"delete helloworld-{BROKEN} (the crashed pods)", tags=("outlier", "heal"))
    backend._wait_synced("the removal of the crashed pods")


def sample_app_manifests(version: str, replicas: int = 1, ns: str = S.NAMESPACE, sidecar: bool = True,
                         service_account: str = "helloworld") -> list[dict[str, Any]]:
    """The ConfigMap with meshlab's ``apps.py``, then helloworld ``version``'s Deployment running it with the
    image's Python: the sample's Deployment with only the container's command, a volume and ``POD_NAME`` added
    (the instance name in each answer is the pod's, as with Istio's app, so ``lab.call`` finds the pod)."""
    d = S.helloworld_deployment(version, replicas, ns, sidecar, service_account)
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    c["command"] = ["python", f"{SAMPLE_APP_DIR}/apps.py", "helloworld", "--listen", ":5000",  # every address, v4 and v6
                    "--version", version, "--instance", "$(POD_NAME)"]
    c["env"] = [*c["env"], {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    c["volumeMounts"] = [{"name": "app", "mountPath": SAMPLE_APP_DIR, "readOnly": True}]
    pod["volumes"] = [{"name": "app", "configMap": {"name": SAMPLE_APP}}]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SAMPLE_APP, "namespace": ns},
          "data": {"apps.py": Path(apps.__file__).read_text()}}
    return [cm, d]


def run_sample_app(backend: "KindBackend", cluster: str, version: str, namespace: str = S.NAMESPACE) -> list["Pod"]:
    """Redeploy helloworld ``version`` in ``cluster`` (deployed before, as ``lab.deploy`` records it) running
    meshlab's sample app, wait for the rollout and for istiod's push; the new pods (none in a dry run)."""
    deployed = [x for x in backend.deployments if x["cluster"] == cluster and x["app"] == "helloworld"
                and x["version"] == version and x["namespace"] == namespace]  # fmt: skip
    if not deployed:
        raise LabStateError(f"no helloworld {version} in {cluster}/{namespace}",
                            f'deploy it first: lab.deploy("helloworld", cluster="{cluster}", version="{version}")')
    [d] = deployed
    name = f"helloworld-{version}"
    backend.apply_manifests(
        cluster, sample_app_manifests(version, int(d.get("replicas", 1)), namespace, d.get("sidecar", True),
                                      d.get("service_account") or S.APPS["helloworld"]["service_account"]),
        title=f"run meshlab's sample app in {name} (apps.py from ConfigMap {SAMPLE_APP}, the image's Python): "
              "it understands ?sleep=, ?fail=, ?only=, ?tail=",
        tags=("sample-app",), hint=f"`kubectl --context {K.context(cluster)} -n {namespace} logs deployment/{name}`")
    backend.executor.run(K.kubectl(cluster, "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=300s"),
                         cluster=cluster, timeout=330, title=f"wait for {name} with meshlab's sample app", tags=("sample-app", "rollout"))
    # remembered, so that deploying this version again (a scale-up re-applies it) keeps meshlab's app
    backend.state.data["deployments"] = [{**x, "sample_app": True} if x is d else x for x in backend.deployments]
    if not backend.dry_run:
        backend.state.save()
    backend._wait_synced(f"the new {name} endpoints")
    return [] if backend.dry_run else backend.pods("helloworld", cluster, version, namespace)
