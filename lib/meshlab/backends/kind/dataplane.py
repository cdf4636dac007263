"""Lab 01's kind steps: Istio's global rate-limit service, and crashed replicas behind a live sidecar.

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import LabStateError, MeshlabError
from . import clusters as K
from . import samples as S
from . import tools

if TYPE_CHECKING:
    from .backend import KindBackend

RATELIMIT_GRPC_PORT = 8081
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


def deploy_rate_limit_service(backend: "KindBackend", cluster: str, config: str) -> str:
    """Apply the rate-limit service in ``cluster`` and wait until it serves and istiod pushed its endpoints."""
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
    pod["containers"][0]["command"] = ["python", "-c", "import signal; signal.pause()"]
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
    return [] if backend.dry_run else [p.name for p in backend.pods("helloworld", cluster, BROKEN)]


def heal_replicas(backend: "KindBackend", cluster: str) -> None:
    """Remove the crashed pods (their Deployment) and wait until their endpoints are gone."""
    if not backend.dry_run and not backend.pods("helloworld", cluster, BROKEN):
        raise LabStateError(f"no crashed helloworld pods in {cluster}", "crash some first: dp.crash_replicas(lab, cluster)")
    backend.executor.run(K.kubectl(cluster, "-n", S.NAMESPACE, "delete", "deployment", f"helloworld-{BROKEN}", "--wait=true"),
                         cluster=cluster, title=f"delete helloworld-{BROKEN} (the crashed pods)", tags=("outlier", "heal"))
    backend._wait_synced("the removal of the crashed pods")
