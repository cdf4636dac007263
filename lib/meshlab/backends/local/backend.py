"""The local backend: real Envoy sidecars and sample apps in network namespaces, configured by the
translator the way istiod would configure them.

All state lives in the lab's state file, so ``meshlab up`` in one shell and ``meshlab call`` in
another (or a fresh notebook kernel) act on the same lab.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...errors import LabStateError, MeshlabError, ResourceError
from ...pki import PKI, WorkloadCert
from ...state import State, load_generated, prefix_for, read_json_lines, write_atomic
from ...topology import Topology
from ...traffic import Answer, CallResult, parse_answer, split_url
from ...xds import ProxyConfig, ecds_path, eds_path
from ...controlplane import Translator
from ...display import Table, pods_table
from .. import Capabilities
from ...controlplane.pushcontext import refuse_unmergeable, resolve_host
from ...controlplane.security import signature as security_signature
from ...controlplane.security import unmatched_selectors
from ...controlplane.gateway import ingress_target_port
from ...controlplane.telemetry import stats_config
from ...registry import GATEWAY_APP, INGRESS_APP, OUTBOUND_PORT, Workload
from ...runtime import client, net, procs
from ...runtime import envoy as E

if TYPE_CHECKING:
    from ...loadgen import LoadResult

NAMESPACE = "sample"

# What `deploy` knows how to run: service account and the ports its app serves.
APPS: dict[str, dict[str, Any]] = {
    "helloworld": {"service_account": "helloworld", "ports": [5000], "port_names": ["http"]},  # Istio's sample Service
    "curl": {"service_account": "curl", "ports": []},
    # Envoy's rate-limit service (RLS v3, gRPC) on 8081, as in Istio's samples/ratelimit; its rules: ratelimit_config()
    "ratelimit": {"service_account": "ratelimit", "ports": [8081], "port_names": ["grpc-port"], "protocol": "grpc"},
}


def _file_version(path: Path) -> str | None:
    """The ``version_info`` of an xDS file (None before it exists)."""
    try:
        return str(json.loads(path.read_text())["version_info"])
    except (OSError, ValueError, KeyError):
        return None


def _http_filter_names(lds: Path) -> Any:
    """The HTTP filters (by name, per listener) in a listener file: an EnvoyFilter that adds or removes one
    changes it, and then connections on the old filter chain must drain before the change shows."""
    try:
        return [
            [f.get("name") for fc in lis.get("filter_chains", []) for n in fc.get("filters", []) for f in n.get("typed_config", {}).get("http_filters", [])]
            for lis in json.loads(lds.read_text())["resources"]
        ]
    except (OSError, ValueError, KeyError):
        return None


def _wasm_signature(lds: Path) -> Any:
    """The Wasm and security filters and chain matches in a listener file (meshlab.controlplane.extensions.signature,
    security.signature), or None without a file: when they change, old connections must drain first."""
    from ...controlplane.extensions import signature

    try:
        listeners = json.loads(lds.read_text())["resources"]
        return signature(listeners), security_signature(listeners)
    except (OSError, ValueError, KeyError):
        return None


def _ecds_rejections(admin: E.Admin) -> dict[str, int]:
    """Per extension config, how many ECDS updates Envoy rejected so far."""
    try:
        stats = admin.stats("extension_config_discovery")
    except (OSError, ValueError):
        return {}
    prefix = "extension_config_discovery.http_filter."
    return {k[len(prefix) : -len(".update_rejected")]: v for k, v in stats.items() if k.startswith(prefix) and k.endswith(".update_rejected")}


def _ecds_versions(admin: E.Admin) -> dict[str, str]:
    """The version of each extension config Envoy runs (the full ``/config_dump``'s ECDS section)."""
    from ...controlplane.extensions import ecds_from_dump

    try:
        status, body = admin.get("/config_dump")
    except OSError:
        return {}
    return {n: c.get("version_info", "") for n, c in ecds_from_dump(json.loads(body)).items()} if status == 200 else {}


def _lds_stats(admin: E.Admin) -> dict[str, Any]:
    """Envoy's LDS counters and the version it last accepted (``listener_manager.lds.*``)."""
    out: dict[str, Any] = {"update_rejected": 0, "update_failure": 0, "version_text": None}
    try:
        status, body = admin.get("/stats?format=json&filter=^listener_manager\\.lds\\.", timeout=2.0)
    except OSError:
        return out
    if status == 200:
        for st in json.loads(body).get("stats", []):
            k = st.get("name", "").rsplit(".", 1)[-1]
            if k in out:
                out[k] = st.get("value")
    return out


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def bind_hint(envoy_words: str) -> str | None:
    """The fix for a listener Envoy could not bind, from its own words (None if it says no such thing)."""
    low = envoy_words.lower()
    if "permission denied" in low:
        return ("ports below 1024 need root (net.ipv4.ip_unprivileged_port_start): listen on a port of 1024 or more, "
                "as Istio's gateways do (the ingress gateway's Service maps 80/443 to the pod's 8080/8443)")
    if "address already in use" in low or "in use" in low:
        return "another lab or process uses that address: `meshlab down` (or stop the other lab), then try again"
    if "cannot assign requested address" in low:
        return "that address is not on this host or namespace: `meshlab down`, then `meshlab up` again"
    return None


def pod_name(cluster: str, deployment: str, replica: int) -> str:
    """Deterministic, Kubernetes-looking pod names: ``helloworld-v1-7d9c5-x8k2q``."""
    h = hashlib.sha256(f"{cluster}/{deployment}/{replica}".encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    suffix = "".join(alphabet[int(h[i : i + 2], 16) % len(alphabet)] for i in range(10, 20, 2))
    return f"{deployment}-{h[:5]}-{suffix}"


class LocalBackend:
    name = "local"
    footprint = "no namespaces, no processes"  # what `meshlab down` removes, as a Cleanup check says it
    capabilities = Capabilities(
        dry_run=False, captures_every_port=False, preserves_caller_ip=True, kill_leaves_sidecar=True,
        inbound_listener=None, routes_over_rds=False, client_san_prefix=True, addon_telemetry=False, scrape_seconds=None,
        prometheus_cluster_tag="envoy_cluster_name",  # Envoy's default tag extraction: the name up to its first dot
    )  # fmt: skip

    def __init__(self, topology: Topology, state: State) -> None:
        self.topology = topology
        self.state = state
        self.agent_events: list[tuple[str, Any]] = []  # (pod, meshlab.runtime.agent.Event) of the last syncs
        d = state.data
        self.run_dir = Path(d["run_dir"])
        self.network = net.Network(d["mode"], d["prefix"], lambda ns: state.record("namespaces", ns), d.get("holder"),
                                   d.get("loopback_block"))
        self.pki = PKI(self.run_dir / "pki")

    # ---- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, topology: Topology, state: State) -> "LocalBackend":
        """Record the plan in the state file, then build the underlay and the PKI."""
        mode, why = net.choose_mode()
        prefix = prefix_for(state.dir)
        run_dir = state.dir / "run"
        sock_probe = run_dir / "sock" / ("x" * 12)
        if len(str(sock_probe)) > 104:
            raise MeshlabError(
                f"state directory {state.dir} is too long for Envoy's admin Unix sockets",
                "set MESHLAB_HOME to a shorter path, e.g. /tmp/meshlab",
            )
        state.data.update(
            {
                "backend": "local",
                "pattern": str(topology.source.resolve()),
                "mode": mode,
                "mode_reason": why,
                "prefix": prefix,
                "run_dir": str(run_dir),
                "namespaces": [],
                "processes": [],
                "workloads": [],
                "control_planes": {cp: "running" for cp in topology.control_planes},
                # control plane -> clusters it reads through a remote secret (istioctl create-remote-secret); revocable
                "remote_secrets": {cp: topology.remote_secrets(cp) for cp in topology.control_planes},
                # each cluster's istio-system label topology.istio.io/network (Istio's guides set it before install)
                "network_labels": {name: c.network for name, c in topology.clusters.items()},
                "created": time.time(),
            }
        )
        state.record("files", str(run_dir))
        # userns: one process owns every namespace of the lab (killing it removes them all);
        # loopback: one process holds the lab's own block of 127.x addresses
        state.data.update(net.start_holder(mode, run_dir, str(state.dir), lambda p: state.record("processes", p.record())))
        state.save()
        be = cls(topology, state)
        be.network.create_underlay(topology)
        for c in topology.clusters.values():
            if c.is_primary:  # istiod's CA: the cacerts secret of the primary
                be.pki.cacerts(c.name, root=be.ca_root(c.name))
        if len(topology.networks) > 1:  # multi-network: every cluster gets an east-west gateway
            from ...federation import expose_services_gateway

            # as the kind plan does: expose-services in every primary, which configures its clusters' gateways
            doc = expose_services_gateway()
            state.data["resources"] = [
                {"control_plane": cp, "key": [doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"]], "resource": doc}
                for cp in topology.control_planes
            ]
            state.save()
            for c in topology.clusters.values():
                be._start_gateway(c.name)
        return be

    def _start_gateway(self, cluster: str, app: str = GATEWAY_APP) -> Workload:
        """A gateway of the cluster (east-west, or ingress): an Envoy in the node namespace, listening on the
        underlay. Deploying one that runs already returns it."""
        for w in self.workloads:
            if w.cluster == cluster and w.app == app:
                return w
        index = len(self.state.data["workloads"])
        pod = pod_name(cluster, app, 0)
        ip = self.network.gateway_ip(self.topology, cluster)
        node = None if self.mode == net.LOOPBACK else self.network.node_ns(cluster)
        gw = Workload(
            pod=pod, deployment=app, app=app, version="", cluster=cluster, namespace="istio-system",
            service_account=f"{app}-service-account", ip=ip, netns=node, outbound=ip, app_host=ip,
            admin=str(self.run_dir / "sock" / f"{index}.sock"), access_log=str(self.run_dir / "logs" / f"{pod}.access.log"),
        )  # fmt: skip
        self.state.data["workloads"].append(gw.record())
        self.state.save()
        self._start_proxy(gw)
        return gw

    @classmethod
    def bring_up(cls, topology: Topology, state: State, *, samples: bool = False, quiet: bool = False) -> "LocalBackend":
        """:meth:`create`, then (``samples``) what Istio's verify step needs: helloworld v1 in the first cluster,
        v2 in the second, ...; curl in each."""
        be = cls.create(topology, state)
        if samples:
            for i, c in enumerate(topology.clusters):
                be.deploy("helloworld", c, version=f"v{i + 1}")
                be.deploy("curl", c)
        return be

    def alive(self) -> bool:
        return all(procs.is_alive(p) for p in self.state.data.get("processes", []))

    def describe(self) -> str:
        return f"network mode: {self.mode} ({self.state.data['mode_reason']})"

    @staticmethod
    def parse(resources: Any) -> list[dict[str, Any]]:
        """The subset of Istio's API the translator implements; any other field is refused by name."""
        from ...resources import parse

        return parse(resources)

    @staticmethod
    def leftover_clusters(clusters: tuple[str, ...]) -> list[str]:
        return []  # no clusters outside the lab's namespaces and processes

    def gateway_addresses(self) -> dict[str, str]:
        """Each cluster's east-west gateway address (multi-network patterns only: none on one network)."""
        if len(self.topology.networks) < 2:
            return {}
        return {c: self.network.gateway_ip(self.topology, c) for c in self.topology.clusters}

    @property
    def mode(self) -> str:
        return str(self.state.data["mode"])

    @property
    def workloads(self) -> list[Workload]:
        return [Workload(**w) for w in self.state.data.get("workloads", [])]

    def status(self) -> dict[str, Any]:
        d = self.state.data
        procs_live = [p for p in d.get("processes", []) if procs.is_alive(p)]
        return {
            "pattern": self.topology.name,
            "backend": "local",
            "network_mode": d["mode"],
            "namespaces": len(d.get("namespaces", [])),
            "processes": f"{len(procs_live)}/{len(d.get('processes', []))} running",
            "control_planes": d.get("control_planes", {}),
            "gateways": {w.cluster: w.ip for w in self.workloads if w.app == GATEWAY_APP},
            "workloads": [
                {"pod": w.pod, "cluster": w.cluster, "app": w.app, "version": w.version, "ip": w.ip, **self._pod_status(w)}
                for w in self.workloads
            ],
        }

    def _pod_status(self, w: Workload) -> dict[str, Any]:
        """READY as kubectl counts it (every container: the app's process and the sidecar's Envoy) and why not."""
        apps = [p for p in self.state.data.get("processes", []) if p["name"] == f"{w.pod}/app"]
        app_up = any(procs.is_alive(p) for p in apps) if apps else True  # clients and gateways have no app process
        proxy_up = not w.sidecar or self.proxy_ready(w)
        status = "Running" if app_up and proxy_up else "app down" if not app_up else "proxy not ready"
        return {"ready": app_up and proxy_up, "status": status}

    def sidecars(self) -> list[dict[str, Any]]:
        return [{"POD": w.pod, "CLUSTER": w.cluster, "APP": w.app, "READY": self.proxy_ready(w),
                 "ENVOY STATE": E.Admin(w.admin).server_state() or "not running"} for w in self.workloads if w.sidecar]  # fmt: skip

    @staticmethod
    def proxy_ready(w: Workload) -> bool:
        """What the sidecar's readiness probe sees: Envoy initialised with its configuration (/ready 200)."""
        try:
            return E.Admin(w.admin).ready()
        except OSError:
            return False

    # ---- workloads -----------------------------------------------------------------------------
    def deploy(
        self, app: str, cluster: str, version: str = "v1", replicas: int = 1, namespace: str = NAMESPACE,
        sidecar: bool = True, service_account: str | None = None,
    ) -> list[Workload]:  # fmt: skip
        """Start ``replicas`` pods of a sample app (its sidecar included, unless ``sidecar=False``: then the
        app listens on the pod address itself and has no identity) and push the new endpoints to every proxy.

        With the control plane stopped the pods start anyway, as on Kubernetes, but nothing is pushed: the
        new sidecar gets no configuration (never ready, no listener) and no other proxy learns the new
        endpoints, until the control plane runs again."""
        if app == INGRESS_APP:  # and the "outside" it serves: an address on the underlay for outside clients
            self.network.add_external_host(self.topology)
            return [self._start_gateway(cluster, INGRESS_APP)]
        if app not in APPS:
            raise MeshlabError(f"unknown app {app!r}", f"deployable apps: {', '.join([*APPS, INGRESS_APP])}")
        c = self.topology.cluster(cluster)
        cp = c.control_plane
        spec = APPS[app]
        deployment = app if not spec["ports"] else f"{app}-{version}"
        existing = {w.pod for w in self.workloads}
        created: list[Workload] = []
        for r in range(replicas):
            pod = pod_name(cluster, deployment, r)
            while pod in existing:
                r += replicas
                pod = pod_name(cluster, deployment, r)
            existing.add(pod)
            index = len(self.state.data["workloads"]) + len(self.state.data.get("removed", []))  # lab-wide: names the admin socket
            in_cluster = self._free_pod_index(c)
            podnet = self.network.create_pod(self.topology, c, pod, in_cluster)  # 10.x.0.10, .11, ...
            w = Workload(
                pod=pod, deployment=deployment, app=app, version=version if spec["ports"] else "", cluster=cluster,
                namespace=namespace, service_account=service_account or spec["service_account"], ip=podnet.ip, netns=podnet.netns,
                outbound=podnet.outbound, app_host=podnet.app_host if sidecar else podnet.ip, ports=list(spec["ports"]),
                port_names=list(spec.get("port_names", [])),
                admin=str(self.run_dir / "sock" / f"{index}.sock") if sidecar else "",
                access_log=str(self.run_dir / "logs" / f"{pod}.access.log") if sidecar else "", sidecar=sidecar,
                protocol=spec.get("protocol", "http"),
            )  # fmt: skip
            self.state.data["workloads"].append(w.record())
            self.state.save()
            if w.ports:
                self._start_app(w)
            if sidecar:
                self._start_proxy(w)
            created.append(w)
        self.sync_registry(cluster)
        return created

    def _free_pod_index(self, c: Any) -> int:
        """The first pod address of the cluster no running pod uses (pods removed earlier free theirs)."""
        used = {w.ip for w in self.workloads if w.cluster == c.name}
        i = 0
        while self.network.pod_addresses(self.topology, c, i).ip in used:
            i += 1
        return i

    def undeploy(self, app: str, cluster: str, namespace: str = NAMESPACE) -> list[str]:
        """Remove every pod of ``app`` (or a deployment) in ``cluster``/``namespace`` -- processes, network
        namespace, registry record -- and push the change: its endpoints disappear everywhere."""
        gone = [w for w in self.workloads
                if w.cluster == cluster and w.namespace == namespace and app in (w.app, w.deployment) and w.app != GATEWAY_APP]  # fmt: skip
        if not gone:
            self.topology.cluster(cluster)
            raise LabStateError(f"no workload {app!r} in {cluster}/{namespace}", "see lab.pods() for what runs")
        d = self.state.data
        for w in gone:
            mine = [p for p in d["processes"] if str(p["name"]).startswith(f"{w.pod}/")]
            procs.terminate(mine)
            d["processes"] = [p for p in d["processes"] if p not in mine]
            if w.netns:
                self.network.delete([w.netns])
                d["namespaces"] = [n for n in d["namespaces"] if n != w.netns]
            d["workloads"] = [x for x in d["workloads"] if x["pod"] != w.pod]
            d.setdefault("removed", []).append(w.pod)  # keeps admin socket numbers unique
            d.get("cert_roots", {}).pop(w.pod, None)
            Path(w.admin).unlink(missing_ok=True)
        self.state.save()
        self.sync_registry(cluster)
        return [w.pod for w in gone]

    def _cert(self, w: Workload) -> WorkloadCert:
        """Issued by the CA of the control plane serving the pod's cluster, as istiod does. A pod keeps the
        certificate (and trust bundle) it started with until it restarts, even if its mesh's CA changed."""
        c = self.topology.clusters[w.cluster]
        root = self.state.data.get("cert_roots", {}).get(w.pod) or self.ca_root(c.control_plane)
        return self.pki.workload(
            c.control_plane, w.namespace, w.service_account, trust_domain=self.topology.meshes[c.mesh].trust_domain, root=root,
        )  # fmt: skip

    def ca_root(self, control_plane: str) -> str:
        """The root CA that ``control_plane``'s cacerts chain to (the pattern's, unless set_ca_root changed it)."""
        c = self.topology.clusters[control_plane]
        return str(self.state.data.get("ca_roots", {}).get(control_plane, self.topology.meshes[c.mesh].root_ca))

    def set_ca_root(self, cluster: str, root: str, reissue: bool = True) -> None:
        """Plug-in CA: cut ``cluster``'s cacerts from the named ``root`` (or use the ones already written for
        it, e.g. by a VirtualMesh's CSR flow). ``reissue``: its control plane re-issues every workload
        certificate (and trust bundle) at once, as istiod and the workloads do once all restarted; otherwise
        running pods keep theirs until they restart (:meth:`bounce`)."""
        c = self.topology.cluster(cluster)
        if not c.is_primary:
            raise MeshlabError(f"{cluster} runs no control plane (it is a remote of {c.remote_of})", f"use {c.remote_of!r}")
        self.pki.cacerts(cluster, root=root)
        self.state.data.setdefault("ca_roots", {})[cluster] = root
        if reissue:
            served = {x.name for x in self.topology.served_by(cluster)}
            for w in self.workloads:
                if w.cluster in served:
                    self.state.data.get("cert_roots", {}).pop(w.pod, None)
        self.state.save()
        self.sync(cluster)

    # ---- labs 01 and 01b's experiments and lab 05's management plane --------------------------------
    def use_sample_app(self, cluster: str, version: str) -> list[Workload]:
        """Nothing to do: the local backend's helloworld is meshlab's sample app already (no new pods)."""
        return []

    def deploy_rate_limit_service(self, cluster: str, rules: str) -> Table:
        """meshlab's RLS v3 service as a mesh workload, with ``rules`` (envoyproxy/ratelimit's format).

        Deployed again (a re-run cell), the same pod restarts with fresh counters, as envoyproxy/ratelimit does
        on kind with a new Redis: a second pod would split the counts between two services."""
        self.ratelimit_config().parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.ratelimit_config(), rules)
        running = [w for w in self.workloads if w.app == "ratelimit" and w.cluster == cluster]
        if not running:
            return pods_table(self.deploy("ratelimit", cluster))
        self.kill("ratelimit", cluster)
        self.restore("ratelimit", cluster)
        return pods_table(running)

    def rate_limit_rules(self) -> str:
        return self.ratelimit_config().read_text()

    def crash_replicas(self, cluster: str, replicas: int) -> list[str]:
        """New v1 pods whose app is killed: their sidecars stay and answer 503."""
        crashed = [w.pod for w in self.deploy("helloworld", cluster, version="v1", replicas=replicas)]
        for pod in crashed:
            self.kill(pod, cluster)
        return crashed

    def heal_replicas(self, crashed: list[str], cluster: str) -> None:
        for pod in crashed:
            self.restore(pod, cluster)

    def push_generated(self, old: dict[str, list[dict[str, Any]]], new: dict[str, list[dict[str, Any]]]) -> None:
        """The management plane wrote its objects where :meth:`resources_for` reads them: push to the proxies."""
        self.sync()

    def install_cacerts(self, cluster: str, root: str, cacerts: Path) -> list[tuple[str, str]]:
        """The control plane of ``cluster`` signs with the intermediate in ``cacerts`` after a restart; running
        pods keep their certificates until they restart."""
        self.set_ca_root(cluster, root, reissue=False)
        self.set_control_plane(cluster, running=False)
        self.set_control_plane(cluster, running=True)
        return [("4 write cacerts", "ca-cert, ca-key, root-cert, cert-chain"), ("5 restart istiod", "new pods get certificates under the shared root")]

    def scale_app(self, app: str, cluster: str, namespace: str, replicas: int) -> str:
        """Replicas 0 crashes the app of each of its pods (their sidecars stay); more restores them."""
        pods = [w.pod for w in self.workloads if w.cluster == cluster and w.namespace == namespace and w.app == app]
        if not pods:
            raise ResourceError(f"no {app} in {cluster}/{namespace}", "place it first: lab.mesh.kubefed_place(...)")
        return ", ".join(self.kill(p, cluster) if replicas == 0 else self.restore(p, cluster) for p in pods)

    def start_baseline(self, client: Workload, server: Workload) -> str:
        """``meshlab bench``'s hand-written Envoy pair on the same path as the mesh (:mod:`.baseline`)."""
        from . import baseline

        return baseline.start(self, client, server)

    def prometheus_text(self, workload: str, cluster: str) -> str:
        """The sidecar's stats in Prometheus text format (Envoy admin ``/stats/prometheus``)."""
        status, body = E.Admin(self.find(workload, cluster).admin).get("/stats/prometheus")
        if status != 200:
            raise KeyError(f"/stats/prometheus of {workload} ({cluster}) answered {status}")
        return body

    def ratelimit_config(self) -> Path:
        """The rate-limit service's rules (envoyproxy/ratelimit's config.yaml; Istio's sample mounts it from a
        ConfigMap): the service reads the file again whenever it changes."""
        return self.run_dir / "ratelimit" / "config.yaml"

    def bounce(self, cluster: str) -> list[str]:
        """Restart the sidecars of ``cluster``'s pods (Gloo Mesh's pod bounce): each starts again with a
        certificate from its control plane's current CA. The apps keep running."""
        bounced = []
        for w in self.workloads:
            if w.cluster != cluster or w.app == GATEWAY_APP or not w.sidecar:
                continue
            mine = [p for p in self.state.data["processes"] if p["name"] == f"{w.pod}/envoy"]
            procs.terminate(mine)
            self.state.data["processes"] = [p for p in self.state.data["processes"] if p not in mine]
            Path(w.admin).unlink(missing_ok=True)
            self._start_proxy(w)
            bounced.append(w.pod)
        return bounced

    def _start_app(self, w: Workload) -> None:
        if w.app == "ratelimit":
            from ...ratelimit import DEFAULT_CONFIG

            if not self.ratelimit_config().exists():
                write_atomic(self.ratelimit_config(), DEFAULT_CONFIG)
            app = ["meshlab.ratelimit", "--config", str(self.ratelimit_config())]
        else:
            app = ["meshlab.runtime.apps", "helloworld", "--version", w.version, "--instance", w.pod]
        argv = self.network.exec_prefix(w.netns) + [sys.executable, "-m", *app, "--listen", f"{w.app_host}:{w.ports[0]}"]
        log = self.run_dir / "logs" / f"{w.pod}.app.log"
        start = log.stat().st_size if log.exists() else 0  # a restored app appends to the same log
        p = procs.spawn(f"{w.pod}/app", argv, log)
        self.state.record("processes", p.record())

        def listening() -> bool:
            with open(log, "rb") as f:
                f.seek(start)
                return b"listening on" in f.read()

        procs.wait_until(listening, p, f"its app listens on {w.app_host}:{w.ports[0]}")

    def proxy_dir(self, w: Workload) -> Path:
        return self.run_dir / "proxies" / w.pod

    def _start_proxy(self, w: Workload) -> None:
        """A sidecar (or gateway) Envoy: bootstrap + first xDS files, started, waited for on /ready."""
        d = self.proxy_dir(w)
        xds = d / "xds"
        c = self.topology.clusters[w.cluster]
        if w.app != GATEWAY_APP:  # the certificate it starts with comes from its mesh's current CA
            self.state.data.setdefault("cert_roots", {})[w.pod] = self.ca_root(c.control_plane)
            self.state.save()
        kind = "router" if w.app in (GATEWAY_APP, INGRESS_APP) else "sidecar"
        boot = E.bootstrap(
            f"{kind}~{w.ip}~{w.pod}.{w.namespace}~{w.namespace}.svc.cluster.local",
            f"{w.deployment}.{w.namespace}", (c.region, c.zone), Path(w.admin), xds,
        )  # fmt: skip
        boot["stats_config"] = stats_config()  # Istio's labels from the stats filter's names (local/telemetry.py)
        Path(w.admin).parent.mkdir(parents=True, exist_ok=True)
        waiting = self.state.data["control_planes"].get(c.control_plane) != "running"
        if waiting:  # nothing answers the sidecar: it starts, and waits for its first configuration
            boot["static_resources"] = {"clusters": [E.xds_grpc_cluster("127.0.0.1" if w.netns else w.ip)]}
        cfg = E.waiting_config() if waiting else self.proxy_config(w)
        E.XdsWriter(xds).write(cfg)
        write_atomic(d / "bootstrap.json", json.dumps(boot, indent=1))
        logs = self.run_dir / "logs"
        argv = self.network.exec_prefix(w.netns) + E.envoy_argv(d / "bootstrap.json", logs / f"{w.pod}.envoy.log")
        p = procs.spawn(f"{w.pod}/envoy", argv, logs / f"{w.pod}.envoy.stdout")
        self.state.record("processes", p.record())
        admin = E.Admin(w.admin)
        if waiting:
            procs.wait_until(lambda: admin.server_state() == "PRE_INITIALIZING", p, "Envoy's admin API answered (waiting for configuration)")
            return
        procs.wait_until(admin.ready, p, "Envoy's /ready answered 200")
        self._wait_applied(w, cfg)

    def proxy_config(self, w: Workload) -> ProxyConfig:
        """What the proxy's Envoy gets: istiod's config for it, with the extension configs (ECDS) as its
        agent rewrote them (modules fetched to local files, or the RBAC fallback)."""
        registry = self.workloads
        gateways = {c: self.network.gateway_ip(self.topology, c) for c in self.topology.clusters}
        xds = self.proxy_dir(w) / "xds"
        labels = self.state.data.get("network_labels")
        if w.app == GATEWAY_APP:
            return Translator(self.topology, gateways, {}, network_labels=labels, remote_secrets=self.state.data.get("remote_secrets")).gateway(
                w, registry, xds, self.resources_for(w.cluster))
        certs = {x.pod: self._cert(x) for x in registry if x.app != GATEWAY_APP and x.sidecar}
        t = Translator(self.topology, gateways, certs, labels, self.state.data.get("telemetry"), secrets=self.tls_secrets(w.cluster),
                       remote_secrets=self.state.data.get("remote_secrets"), tracing=self.mesh_tracing(),
                       mesh_config=self.state.data.get("mesh_config", {}).get(self.topology.clusters[w.cluster].control_plane))
        if w.app == INGRESS_APP:
            cfg = t.ingress(w, [x for x in registry if x.app != INGRESS_APP], xds, self.resources_for(w.cluster))
        else:
            cfg = t.sidecar(w, [x for x in registry if x.app != INGRESS_APP], xds, self.resources_for(w.cluster))
        if cfg.extensions:
            cfg.extensions, events = self.agent(w).convert(self._with_pull_secrets(w, cfg.extensions))
            self.agent_events += [(w.pod, e) for e in events]
        return cfg

    def agent(self, w: Workload) -> Any:
        """The proxy's istio-agent (its Wasm part): module cache, log, metrics (meshlab.runtime.agent)."""
        from ...runtime.agent import Agent
        from ...wasm.hub import hub_home

        return Agent(self.proxy_dir(w) / "agent", self.run_dir / "logs" / f"{w.pod}.agent.log", [hub_home(), self.state.dir / "hub"])

    def _with_pull_secrets(self, w: Workload, extensions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """istiod's ECDS generator puts the content of each referenced pull secret into the config, read in
        the *proxy's* cluster; a secret missing there becomes "" (``pilot/pkg/xds/ecds.go``)."""
        from ...controlplane.extensions import SECRET_ENV

        secrets = self.state.data.get("pull_secrets", {}).get(w.cluster, {})
        out = {}
        for name, ext in extensions.items():
            env = ext["typed_config"]["config"]["vm_config"].get("environment_variables", {}).get("key_values", {})
            if SECRET_ENV in env:
                ext = json.loads(json.dumps(ext))
                kv = ext["typed_config"]["config"]["vm_config"]["environment_variables"]["key_values"]
                kv[SECRET_ENV] = secrets.get(kv[SECRET_ENV].removeprefix("kubernetes://"), "")
            out[name] = ext
        return out

    def create_pull_secret(self, name: str, cluster: str, registry: str, username: str, password: str, namespace: str = NAMESPACE) -> str:
        """A ``kubernetes.io/dockerconfigjson`` Secret in one cluster, as ``kubectl create secret docker-registry``."""
        import base64

        self.topology.cluster(cluster)
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        content = json.dumps({"auths": {registry: {"username": username, "password": password, "auth": auth}}})
        self.state.data.setdefault("pull_secrets", {}).setdefault(cluster, {})[f"{namespace}/{name}"] = content
        self.state.save()
        self.sync(self.topology.clusters[cluster].control_plane)  # istiod pushes ECDS again when a referenced Secret changes
        return f"secret/{name} created in {cluster} (namespace {namespace})"

    # ---- Istio resources and control planes ----------------------------------------------------
    def resources_for(self, cluster: str) -> list[dict[str, Any]]:
        """Resources held by the control plane that configures ``cluster``'s proxies."""
        cp = self.topology.clusters[cluster].control_plane

        return [r["resource"] for r in self.state.data.get("resources", []) if r["control_plane"] == cp] + load_generated(self.run_dir).get(cp, [])

    def apply(self, docs: list[dict[str, Any]], cluster: str) -> list[str]:
        """Store validated resources with the control plane owning ``cluster`` and push the result.

        As in Istio, a TrafficExtension or WasmPlugin is accepted without looking at its module: each
        selected proxy's agent fetches it, and what each agent did (module fetched, or the RBAC filter
        put in its place when the fetch failed) is reported in the returned lines.
        """
        from ...controlplane.extensions import check

        cp = self.topology.cluster(cluster).control_plane
        stored = self.state.data.setdefault("resources", [])
        before = json.loads(json.dumps(stored))
        names: list[str] = []
        applied: list[dict[str, Any]] = []
        self.agent_events = []
        try:
            for doc in docs:
                doc = {**doc, "metadata": {"namespace": NAMESPACE, **doc.get("metadata", {})}}
                applied.append(doc)
                key = [doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"]]
                self._refuse_overlap(doc, [r["resource"] for r in stored if r["control_plane"] == cp and r["key"] != key])
                if doc["kind"] in ("WasmPlugin", "TrafficExtension"):
                    check(doc)
                old = next((r for r in stored if r["control_plane"] == cp and r["key"] == key), None)
                unchanged = old is not None and {**old["resource"], "metadata": {**old["resource"]["metadata"], "resourceVersion": None}} == {
                    **doc, "metadata": {**doc["metadata"], "resourceVersion": None}}  # fmt: skip
                version = self.state.data.get("resource_version", 0) + (0 if unchanged else 1)
                self.state.data["resource_version"] = version
                doc["metadata"]["resourceVersion"] = old["resource"]["metadata"].get("resourceVersion") if unchanged and old else str(version)
                record = {"control_plane": cp, "key": key, "resource": doc}
                if old is not None:  # an update keeps its place: creation order decides ties between extensions
                    stored[stored.index(old)] = record
                else:
                    stored.append(record)
                names.append(f"{doc['kind'].lower()}/{doc['metadata']['name']} {'unchanged' if unchanged else 'configured'} (control plane {cp})")
            self.sync(cp)
            served = {c.name for c in self.topology.served_by(cp)}
            seen = [(w.labels, w.namespace) for w in self.workloads if w.cluster in served]
            names += [f"warning: {m}" for m in unmatched_selectors(applied, seen)]
            names += [f"warning: {m}" for m in self._tracing_warnings(applied)]
        except ResourceError as e:
            # refused as a whole: the translator refuses before any proxy is written; a proxy that
            # rejected its new config (e.g. a Wasm module failing to start) gets the previous one back
            hints = list(dict.fromkeys(ev.message for _, ev in self.agent_events if ev.level == "hint"))
            stored[:] = before
            try:
                self.sync(cp)
            except MeshlabError:
                pass
            if hints:
                raise ResourceError(e.message + "\n" + "\n".join(hints), e.hint) from None
            raise
        self.state.save()
        return names + [f"  agent of {pod}: {e.message}" for pod, e in self.agent_events]

    def agent_log(self, workload: str, cluster: str) -> list[str]:
        """The Wasm lines of the proxy's agent log (``kubectl logs <pod> -c istio-proxy | grep wasm``)."""
        try:
            return (self.run_dir / "logs" / f"{self.find(workload, cluster).pod}.agent.log").read_text().splitlines()
        except FileNotFoundError:
            return []

    @staticmethod
    def _refuse_overlap(doc: dict[str, Any], others: list[dict[str, Any]]) -> None:
        """One VirtualService per host (Istio does not merge them for sidecars); DestinationRules of one
        host merge, unless their exportTo differ (:func:`policy.refuse_unmergeable`)."""
        refuse_unmergeable(doc, others)
        if doc["kind"] != "VirtualService":
            return
        ns = doc["metadata"]["namespace"]
        mine = {resolve_host(h, ns) for h in doc["spec"].get("hosts", [])}
        for o in others:
            if o["kind"] != doc["kind"]:
                continue
            both = mine & {resolve_host(h, o["metadata"]["namespace"]) for h in o["spec"].get("hosts", [])}
            if both:
                raise ResourceError(
                    f"{doc['kind']} {doc['metadata']['name']!r}: host {sorted(both)[0]} already has {o['kind']} {o['metadata']['name']!r}",
                    f"edit that one instead (Istio does not merge two {doc['kind']}s for one host), or delete it first",
                )

    def delete(self, kind: str, name: str, cluster: str, namespace: str = NAMESPACE) -> None:
        cp = self.topology.cluster(cluster).control_plane
        stored = self.state.data.get("resources", [])
        stored[:] = [r for r in stored if not (r["control_plane"] == cp and r["key"] == [kind, namespace, name])]
        self.state.save()
        self.sync(cp)

    def set_control_plane(self, cluster: str, running: bool) -> None:
        """Stop or start the control plane of ``cluster`` (a primary). Stopped: no pushes, no new sidecars."""
        c = self.topology.cluster(cluster)
        if not c.is_primary:
            raise MeshlabError(f"{cluster} runs no control plane (it is a remote of {c.remote_of})", f"use {c.remote_of!r}")
        self.state.data["control_planes"][cluster] = "running" if running else "stopped"
        self.state.save()
        if running:
            self.sync(cluster)  # catch up on everything that changed while it was down

    def readers(self, cluster: str) -> list[str]:
        """The control planes whose registry holds ``cluster``: the one serving it and those with its remote secret."""
        secrets = self.state.data.get("remote_secrets") or {cp: self.topology.remote_secrets(cp) for cp in self.topology.control_planes}
        serving = self.topology.clusters[cluster].control_plane
        return [serving] + [cp for cp in self.state.data["control_planes"] if cp != serving and cluster in secrets.get(cp, [])]

    def sync_registry(self, cluster: str) -> None:
        """A pod of ``cluster`` came or went: every control plane reading that cluster pushes (each that runs)."""
        with _file_lock(self.run_dir / ".sync.lock"):
            self._sync(self.readers(cluster))

    def set_remote_secret(self, cluster: str, in_cluster: str, present: bool) -> None:
        """Create or revoke the remote secret that lets the istiod of ``in_cluster`` read ``cluster``'s registry:
        revoked, that control plane forgets the cluster's services and endpoints and pushes (Istio:
        ``secretcontroller.go`` ``deleteRemoteConfig`` -> ``multicluster.go`` ``kubeController.Close``)."""
        src, into = self.topology.cluster(cluster), self.topology.cluster(in_cluster)
        if not into.is_primary:
            raise MeshlabError(f"{in_cluster} runs no istiod (it is a remote of {into.remote_of}): it holds no remote secrets",
                               f"name a primary: {', '.join(self.topology.control_planes)}")
        if src.name == into.name or src.control_plane == into.name:
            raise MeshlabError(f"istiod in {in_cluster} reads {cluster} as a cluster it serves, not through a revocable secret",
                               "meshlab revokes secrets between primaries (multi-primary); a remote's secret stays with its primary")
        secrets = self.state.data.setdefault("remote_secrets", {cp: self.topology.remote_secrets(cp) for cp in self.topology.control_planes})
        held = [c for c in secrets.get(in_cluster, []) if c != cluster]
        secrets[in_cluster] = held + [cluster] if present else held
        self.state.save()
        self.sync(in_cluster)

    def remote_clusters(self, cluster: str) -> list[dict[str, str]]:
        """Like ``istioctl remote-clusters``: the clusters the istiod of ``cluster`` reads, its own (config) cluster
        first without a secret, then one row per remote secret; nothing while that istiod is stopped."""
        c = self.topology.cluster(cluster)
        if not c.is_primary:
            raise MeshlabError(f"{cluster} runs no istiod (it is a remote of {c.remote_of})", f"ask {c.remote_of!r}")
        if self.state.data["control_planes"].get(cluster) != "running":
            return []
        istiod = f"istiod-{pod_name(cluster, 'istiod', 0).split('-', 1)[1]}"
        secrets = (self.state.data.get("remote_secrets") or {}).get(cluster, self.topology.remote_secrets(cluster))
        rows = [{"NAME": cluster, "SECRET": "", "STATUS": "synced", "ISTIOD": istiod, "REVISION": ""}]
        return rows + [{"NAME": r, "SECRET": f"istio-system/istio-remote-secret-{r}", "STATUS": "synced", "ISTIOD": istiod, "REVISION": ""} for r in secrets]

    def set_mesh_config(self, cluster: str, mesh_config: dict[str, Any]) -> None:
        """Merge ``mesh_config`` into the meshConfig of ``cluster``'s control plane (top-level keys replace) and push.
        The local backend implements ``serviceSettings`` (cluster-local hosts); any other key is refused by name."""
        c = self.topology.cluster(cluster)
        unknown = sorted(set(mesh_config) - {"serviceSettings"})
        if unknown:
            raise ResourceError(f"meshConfig.{unknown[0]} is not supported by the local backend",
                                "the local backend implements meshConfig.serviceSettings; use the kind backend for the rest")
        for i, ss in enumerate(mesh_config.get("serviceSettings", [])):
            extra = sorted(set(ss) - {"settings", "hosts"}) or sorted(set(ss.get("settings") or {}) - {"clusterLocal"})
            if extra or not isinstance(ss.get("hosts"), list):
                raise ResourceError(f"meshConfig.serviceSettings[{i}]: {extra[0] if extra else 'hosts'} is not supported",
                                    "write {settings: {clusterLocal: true}, hosts: [\"*.sample.svc.cluster.local\"]}")
        self.state.data.setdefault("mesh_config", {}).setdefault(c.control_plane, {}).update(mesh_config)
        self.state.save()
        self.sync(c.control_plane)

    def set_network_label(self, cluster: str, network: str | None) -> None:
        """Set (or, with None, remove) the ``topology.istio.io/network`` label of ``cluster``'s istio-system
        namespace; the control planes recompute the network of its endpoints and push."""
        self.topology.cluster(cluster)
        self.state.data.setdefault("network_labels", {})[cluster] = network or ""
        self.state.save()
        self.sync()

    # ---- failure injection ---------------------------------------------------------------------
    def kill(self, app: str, cluster: str) -> str:
        """SIGKILL the app of a workload (its sidecar stays up and answers 503, as in a crashed container)."""
        w = self.find(app, cluster)
        for p in self.state.data["processes"]:
            if p["name"] == f"{w.pod}/app":
                procs.kill(p)
        return w.pod

    crash = kill  # the sidecar stays either way

    def wait_drained(self, workload: str, clusters: list[str], timeout: float = 10.0) -> None:
        """A removed listener drains (``--drain-time-s``, 1 s here) before its connections close: wait until
        ``workload``'s proxy in each of ``clusters`` drains none, so pooled connections no longer hide the change."""
        deadline = time.monotonic() + timeout
        stat = "listener_manager.total_listeners_draining"
        while sum(self.stats(workload, c, stat).get(stat, 0) for c in clusters):
            if time.monotonic() > deadline:
                raise MeshlabError(f"{workload} still drains a listener after {timeout:.0f}s", "run `meshlab status`")
            time.sleep(0.1)

    def restore(self, app: str, cluster: str) -> str:
        w = self.find(app, cluster)
        self.state.data["processes"] = [p for p in self.state.data["processes"] if p["name"] != f"{w.pod}/app" or procs.is_alive(p)]
        if not any(p["name"] == f"{w.pod}/app" for p in self.state.data["processes"]):
            self._start_app(w)
        return w.pod

    def sync(self, control_plane: str | None = None) -> None:
        """Recompute and write the config of every proxy a running control plane serves; wait until applied."""
        with _file_lock(self.run_dir / ".sync.lock"):  # one push at a time, also across processes (the mesh controller)
            self._sync([control_plane] if control_plane else list(self.state.data["control_planes"]))

    def _sync(self, cps: list[str]) -> None:
        configs = []  # all computed first: a resource the translator refuses changes no proxy
        for cp in cps:
            if self.state.data["control_planes"].get(cp) != "running":
                continue  # a stopped control plane pushes nothing: proxies keep their last config
            served = {c.name for c in self.topology.served_by(cp)}
            for w in self.workloads:
                if w.cluster in served and self.proxy_dir(w).joinpath("bootstrap.json").exists():
                    configs.append((w, self.proxy_config(w)))
        written = []  # every proxy's files first, then wait for each: they apply (and drain) in parallel
        for w, cfg in configs:
            lds = self.proxy_dir(w) / "xds" / "lds.json"
            version, filters = _file_version(lds), (_wasm_signature(lds), _http_filter_names(lds))
            admin = E.Admin(w.admin)
            rejected = {**_lds_stats(admin), "ecds": _ecds_rejections(admin)}
            if E.XdsWriter(self.proxy_dir(w) / "xds").write(cfg):
                new = _file_version(lds)
                # when the HTTP filters (extensions or EnvoyFilter) changed, also wait for connections on the old filter chain to drain
                changed = (_wasm_signature(lds), _http_filter_names(lds)) != filters
                written.append((w, cfg, (new, rejected, changed) if new != version else None, rejected["ecds"]))
        for w, cfg, lds_change, ecds_rejected in written:
            self._wait_applied(w, cfg, lds=lds_change, ecds_rejected=ecds_rejected)

    def _wait_applied(
        self, w: Workload, cfg: ProxyConfig, timeout: float = 15.0, lds: tuple[str | None, dict[str, Any], bool] | None = None,
        ecds_rejected: dict[str, int] | None = None,
    ) -> None:  # fmt: skip
        """Wait on Envoy's own view until it runs ``cfg``: every listener active (a listener whose
        address is taken fails here, with Envoy's words), every EDS cluster with exactly its hosts,
        and -- when ``lds`` = (the new listener file's version, LDS stats before it was written, wasm
        filters changed) -- that version accepted and no listener warming (an update Envoy rejects,
        e.g. a Wasm module whose proxy_on_configure fails, raises with Envoy's reason); after a change
        of extension filters also no old filter chain draining, so no pooled connection still runs them;
        every extension config (ECDS) at the version written, or its rejection (``ecds_rejected``: the
        rejection counts before it was written) raised with Envoy's reason."""
        want = {name: sorted(f"{e.address}:{e.port}" for e in eps) for name, eps in cfg.endpoints.items()}
        admin = E.Admin(w.admin)
        log = self.run_dir / "logs" / f"{w.pod}.envoy.log"
        deadline = time.monotonic() + timeout
        have: dict[str, list[str]] = {}
        ecds_files = {n: _file_version(ecds_path(self.proxy_dir(w) / "xds", n)) for n in cfg.extensions}

        def rejected(what: str) -> MeshlabError:
            time.sleep(0.3)  # Envoy flushes its log every 200 ms
            lines = [ln for ln in procs.log_tail(log, 300).splitlines()
                     if ("][wasm]" in ln and ("[error]" in ln or "[critical]" in ln)) or "rejected" in ln or "Unable to create" in ln
                     or "cannot bind" in ln]  # fmt: skip
            text = "\n".join(f"  {ln}" for ln in lines[-8:] or [procs.log_tail(log, 5)])
            message = f"the proxy of {w.pod} rejected its new {what} and keeps the previous one:\n" + text
            return MeshlabError(message, bind_hint(text)) if bind_hint(text) else ResourceError(
                message,
                "a Wasm module that fails to start, or whose proxy_on_configure returns false (e.g. for a bad "
                "pluginConfig), is refused: fix the resource and apply it again",
            )

        while time.monotonic() < deadline:
            if ecds_files:  # each extension config at the version written, or its rejection with Envoy's words
                now_rejected = _ecds_rejections(admin)
                bad = [n for n in ecds_files if now_rejected.get(n, 0) > (ecds_rejected or {}).get(n, 0)]
                if bad:
                    raise rejected(f"extension config {bad[0]} (ECDS)")
                running = _ecds_versions(admin)
                if any(running.get(n) != v for n, v in ecds_files.items()):
                    time.sleep(0.005)
                    continue
            if lds is not None:
                now = _lds_stats(admin)
                if now["update_rejected"] > lds[1]["update_rejected"] or now["update_failure"] > lds[1]["update_failure"]:
                    raise rejected("configuration")
                if now["version_text"] != lds[0]:
                    time.sleep(0.005)
                    continue
            stats = admin.stats("listener_manager")
            if lds is not None and (stats.get("listener_manager.total_listeners_warming", 0)
                                    or (lds[2] and stats.get("listener_manager.total_filter_chains_draining", 0))):  # fmt: skip
                # a changed filter chain is swapped in place: connections on the old one drain (--drain-time-s),
                # so until they are gone a pooled connection would still run the old filters
                time.sleep(0.01)
                continue
            if stats.get("listener_manager.listener_create_failure", 0):
                time.sleep(0.3)  # Envoy flushes its log every 200 ms
                lines = [ln for ln in procs.log_tail(log, 200).splitlines() if "listener" in ln and ("bind" in ln or "in use" in ln)]
                text = "\n".join(lines[-3:] or [procs.log_tail(log, 5)])
                raise MeshlabError(
                    f"the proxy of {w.pod} could not open a listener:\n" + text,
                    bind_hint(text) or "read Envoy's words above: `meshlab down` (or stop the other lab), then try again",
                )
            have = {}
            for cs in admin.clusters().get("cluster_statuses", []):
                if cs["name"] in want:
                    have[cs["name"]] = sorted(
                        f"{h['address']['socket_address']['address']}:{h['address']['socket_address']['port_value']}"
                        for h in cs.get("host_statuses", [])
                    )
            if have == want and stats.get("listener_manager.total_listeners_active") == len(cfg.listeners):
                return
            time.sleep(0.005)
        raise MeshlabError(
            f"the proxy of {w.pod} did not apply its new config within {timeout:.0f}s (wanted {want}, has {have})",
            f"look for 'config update failure' in {log}",
        )

    def find(self, app: str, cluster: str) -> Workload:
        """A workload of ``app`` (or a deployment or pod name) in ``cluster``; ``curl.legacy`` means the
        ``curl`` of namespace ``legacy``, as Kubernetes names it."""
        name, _, namespace = app.partition(".")
        for w in self.workloads:
            if w.cluster == cluster and name in (w.app, w.deployment, w.pod) and namespace in ("", w.namespace):
                return w
        self.topology.cluster(cluster)
        raise LabStateError(
            f"no workload {app!r} in {cluster}",
            f"deploy it first: lab.deploy({app!r}, cluster={cluster!r})",
            f"deploy it first: meshlab deploy {app} --cluster {cluster}",
        )

    # ---- traffic -------------------------------------------------------------------------------
    def _in_pod(self, w: Workload, op: str, **kw: Any) -> Any:
        return self._in_netns(w.netns, op, **kw)

    def _in_netns(self, netns: str | None, op: str, **kw: Any) -> Any:
        """Run a client operation inside a namespace: in this thread, or (userns mode) by the namespace's serving client."""
        if self.mode != net.USERNS:
            with net.in_netns(netns):
                return client.calls(**kw) if op == "calls" else client.connect(**kw)
        budget = 30 + float(kw.get("timeout", 5)) * int(kw.get("n", 1))
        return client.ask(self.network.exec_prefix(netns), {"op": op, **kw}, budget, lambda rec: self.state.record("processes", rec))

    # ---- the edges: outside clients, external services, TLS secrets -----------------------------
    def create_tls_secret(self, name: str, hosts: list[str], cluster: str) -> dict[str, str]:
        """A TLS secret for an ingress gateway's ``credentialName``: a server certificate for ``hosts``
        from meshlab's "ingress-ca" (not the mesh root), kept as files; returns cert, key and ca paths."""
        self.topology.cluster(cluster)
        cert, key, ca = self.pki.server(name, hosts, root="ingress-ca")
        secret = {"cert": str(cert), "key": str(key), "ca": str(ca)}
        self.state.data.setdefault("tls_secrets", {})[f"{cluster}/{name}"] = secret
        self.state.save()
        for w in self.workloads:
            if w.app == INGRESS_APP and w.cluster == cluster:
                self.sync(self.topology.clusters[cluster].control_plane)
        return secret

    def tls_secrets(self, cluster: str) -> dict[str, dict[str, str]]:
        return {k.split("/", 1)[1]: v for k, v in self.state.data.get("tls_secrets", {}).items() if k.split("/", 1)[0] == cluster}

    # ---- tracing: the OTLP collector ------------------------------------------------------------------
    def mesh_tracing(self) -> dict[str, Any]:
        """What istiod's tracing code reads: meshConfig.extensionProviders (the ``jaeger`` OpenTelemetry provider, as the
        kind backend installs it) and, once :meth:`enable_tracing` ran, the provider's service and its address."""
        from ...tracing import extension_provider

        return {"providers": [extension_provider()], "services": dict(self.state.data.get("tracing", {}).get("services", {}))}

    def enable_tracing(self) -> str:
        """Start meshlab's OTLP/gRPC collector (meshlab.otlp) on the underlay, outside every cluster, playing the
        provider's service ``jaeger-collector.istio-system.svc.cluster.local:4317``; record it (``meshlab down`` stops
        it) and push, so proxies a Telemetry already asks to trace get the exporter. Started once."""
        from ...otlp import OTLP_GRPC_PORT
        from ...tracing import COLLECTOR_SERVICE

        known = self.state.data.setdefault("tracing", {})
        if known.get("services"):
            return f"OTLP collector already running at {next(iter(known['services'].values()))}:{OTLP_GRPC_PORT}"
        self.network.add_external_host(self.topology)
        ip = self.network.external_ip()
        spans = self.run_dir / "tracing" / "spans.jsonl"
        log = self.run_dir / "logs" / "otlp-collector.log"
        argv = self.network.exec_prefix(self.network.external_ns()) + [
            sys.executable, "-m", "meshlab.otlp", "--listen", f"{ip}:{OTLP_GRPC_PORT}", "--out", str(spans)]
        p = procs.spawn("tracing/otlp-collector", argv, log)
        self.state.record("processes", p.record())
        procs.wait_until(lambda: b"listening on" in log.read_bytes(), p, f"the OTLP collector listens on {ip}:{OTLP_GRPC_PORT}")
        known.update({"services": {f"{COLLECTOR_SERVICE}:{OTLP_GRPC_PORT}": ip}, "spans": str(spans)})
        self.state.save()
        self.sync()
        return f"OTLP/gRPC collector at {ip}:{OTLP_GRPC_PORT}, playing {COLLECTOR_SERVICE} (provider jaeger); spans in {spans}"

    def spans(self) -> list[Any]:
        """Every span the collector received so far."""
        from ...otlp import read_spans

        path = self.state.data.get("tracing", {}).get("spans")
        if not path:
            raise LabStateError("no trace collector runs in this lab", "start one: lab.enable_tracing()")
        return read_spans(Path(path))

    def _tracing_warnings(self, docs: list[dict[str, Any]]) -> list[str]:
        """A Telemetry naming a provider meshConfig does not define, or whose service is not running, traces nothing
        (istiod logs a warning): say so."""
        mesh = self.mesh_tracing()
        names = {p["name"].lower() for p in mesh["providers"]}
        out = []
        for d in docs:
            for t in d.get("spec", {}).get("tracing", []) if d.get("kind") == "Telemetry" else []:
                for p in t.get("providers", []):
                    if p["name"].lower() not in names:
                        out.append(f"Telemetry {d['metadata']['name']!r}: provider {p['name']!r} is not in meshConfig.extensionProviders "
                                   f"({', '.join(sorted(names))}): no tracing")
                    elif not mesh["services"]:
                        out.append(f"Telemetry {d['metadata']['name']!r}: provider {p['name']!r}'s collector is not running, so no "
                                   "proxy traces yet: lab.enable_tracing()")
        return out

    def external_https(self, hostname: str) -> dict[str, Any]:
        """A real HTTPS server outside every cluster, on the underlay, with a certificate for ``hostname``
        from its own CA ("external-ca"): the target of TLS origination. Started once; returns its
        address, port, the CA file and the secret holding that CA in every cluster (for a
        DestinationRule's ``credentialName``)."""
        known = self.state.data.setdefault("external", {})
        if hostname in known:
            return dict(known[hostname])
        self.network.add_external_host(self.topology)
        ip = self.network.external_ip()
        cert, key, ca = self.pki.server(hostname.split(".")[0], [hostname, ip], root="external-ca")
        # 443 inside the lab's namespaces; the loopback mode shares the host's network, where an ordinary
        # user cannot bind a port below 1024
        port = 8443 if self.mode == net.LOOPBACK else 443
        argv = self.network.exec_prefix(self.network.external_ns()) + [
            sys.executable, "-m", "meshlab.runtime.apps", "helloworld", "--listen", f"{ip}:{port}",
            "--version", "external", "--instance", hostname, "--tls-cert", str(cert), "--tls-key", str(key),
        ]  # fmt: skip
        log = self.run_dir / "logs" / f"external-{hostname}.log"
        p = procs.spawn(f"external/{hostname}", argv, log)
        self.state.record("processes", p.record())
        procs.wait_until(lambda: b"listening on" in log.read_bytes(), p, f"the external server listens on {ip}:{port}")
        secret = f"{hostname.split('.')[0]}-ca"  # its CA as a secret in every cluster, for a DestinationRule's credentialName
        for c in self.topology.clusters:
            self.state.data.setdefault("tls_secrets", {})[f"{c}/{secret}"] = {"ca": str(ca)}
        known[hostname] = {"hostname": hostname, "address": ip, "port": port, "ca": str(ca), "secret": secret}
        self.state.save()
        return dict(known[hostname])

    def call_from_outside(
        self, url: str, cluster: str, n: int = 1, headers: dict[str, str] | None = None, ca: str | None = None, timeout: float = 5.0
    ) -> CallResult:
        """``n`` requests from a client outside the mesh (on the underlay) to ``cluster``'s ingress gateway:
        ``https://`` URLs use TLS with SNI = the URL's host, checked against ``ca``."""
        gw = next((w for w in self.workloads if w.app == INGRESS_APP and w.cluster == cluster), None)
        if gw is None:
            raise LabStateError(f"{cluster} has no ingress gateway", f"deploy it: lab.deploy({INGRESS_APP!r}, cluster={cluster!r})")
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise MeshlabError(f"cannot call {url!r} from outside", "write it like https://hello.example.com/hello")
        host, port, path = u.hostname, u.port or (443 if u.scheme == "https" else 80), (u.path or "/") + (f"?{u.query}" if u.query else "")
        tls = {"sni": host, "ca": ca} if u.scheme == "https" else None
        raw = self._in_netns(  # through the gateway's Service: 443 reaches the pod's 8443
            self.network.external_ns(), "calls", host=gw.ip, port=ingress_target_port(port), authority=host, path=path, n=n,
            headers=headers or {}, timeout=timeout, tls=tls,
        )  # fmt: skip
        where = {x.pod: x.cluster for x in self.workloads}
        result = CallResult(url, f"outside ({cluster}'s ingress gateway {gw.ip})")
        for a in raw:
            result.answers.append(parse_answer(a["status"], a["body"], a["seconds"], where, a.get("headers")) if a["status"]
                                  else Answer(0, "", error=a["error"], seconds=a["seconds"]))  # fmt: skip
        return result

    def call(self, workload: str, url: str, cluster: str, n: int = 1, timeout: float = 5.0, headers: dict[str, str] | None = None,
             method: str = "GET") -> CallResult:
        """Send ``n`` requests from inside the workload's pod through its sidecar (like ``kubectl exec curl``)."""
        w = self.find(workload, cluster)
        host, port, path = split_url(url)
        where = {x.pod: x.cluster for x in self.workloads}
        target, target_port = (w.outbound, OUTBOUND_PORT) if w.sidecar else (self._service_pod(host, port, w), port)
        raw = self._in_pod(
            w, "calls", host=target, port=target_port, authority=f"{host}:{port}", path=path, n=n,
            headers=headers or {}, timeout=timeout, method=method,
        )  # fmt: skip
        result = CallResult(url, f"{w.pod} ({cluster})")
        for a in raw:
            if a["status"]:
                result.answers.append(parse_answer(a["status"], a["body"], a["seconds"], where, a.get("headers")))
            else:
                result.answers.append(Answer(0, "", error=a["error"], seconds=a["seconds"]))
        return result

    def load(
        self, workload: str, url: str, cluster: str, connections: int = 16, seconds: float = 3.0,
        headers: dict[str, str] | None = None, label: str = "",
    ) -> "LoadResult":
        """Drive ``url`` with wrk from inside the workload's pod through its sidecar (recorded while it runs)."""
        from ...loadgen import wrk

        w = self.find(workload, cluster)
        host, port, path = split_url(url)

        def forget(rec: dict[str, object]) -> None:
            self.state.data["processes"] = [p for p in self.state.data.get("processes", []) if p != rec]
            self.state.save()

        return wrk(
            f"http://{w.outbound}:{OUTBOUND_PORT}{path}", host=f"{host}:{port}", headers=headers, connections=connections,
            seconds=seconds, label=label or f"{url} from {w.pod}", exec_prefix=self.network.exec_prefix(w.netns),
            record=lambda rec: self.state.record("processes", rec), forget=forget, workdir=self.run_dir / "load",
        )  # fmt: skip

    def _service_pod(self, host: str, port: int, client: Workload) -> str:
        """Without a sidecar a client has only Kubernetes: the Service of its own cluster, whose kube-proxy
        sends one keep-alive connection to one of its pods (here the first), in plaintext."""
        # the pod's DNS search path (<ns>.svc.cluster.local, svc.cluster.local, cluster.local) completes the name
        fqdn = host if host.count(".") >= 2 else f"{host}.{client.namespace}.svc.cluster.local" if "." not in host else f"{host}.svc.cluster.local"
        pods = [x for x in self.workloads if x.fqdn == fqdn and port in x.ports and x.cluster == client.cluster]
        if not pods:
            raise LabStateError(
                f"{client.pod} has no sidecar, so it only reaches Services of its own cluster: {fqdn}:{port} has no pod in {client.cluster}",
                "deploy the service in that cluster, or call from a workload with a sidecar",
            )
        return pods[0].ip

    def connect(self, workload: str, cluster: str, address: str, port: int, timeout: float = 1.0) -> str:
        """Open a plain TCP connection from the pod (no sidecar): shows what the network allows."""
        return str(self._in_pod(self.find(workload, cluster), "connect", address=address, port=port, timeout=timeout))

    # ---- introspection -------------------------------------------------------------------------
    def endpoints(self, workload: str, cluster: str, service: str | None = None) -> list[dict[str, str]]:
        """Like ``istioctl proxy-config endpoints``: what this sidecar's Envoy has, from its admin API."""
        w = self.find(workload, cluster)
        rows = []
        for cs in E.Admin(w.admin).clusters().get("cluster_statuses", []):
            name = cs["name"]
            # sidecars: outbound|5000|subset|fqdn; gateways: outbound_.5000_.subset_.fqdn
            if not name.startswith(("outbound|", "outbound_.")) or (service and f"|{service}." not in name and f"_.{service}." not in name):
                continue
            for h in cs.get("host_statuses", []):
                sa = h["address"]["socket_address"]
                hs = h.get("health_status", {})
                outlier = "FAILED" if hs.get("failed_outlier_check") else "OK"
                healthy = hs.get("eds_health_status", "HEALTHY")
                loc = h.get("locality", {})
                rows.append(
                    {
                        "ENDPOINT": f"{sa['address']}:{sa['port_value']}",
                        "STATUS": healthy,
                        "OUTLIER CHECK": outlier,
                        "CLUSTER": name,
                        "LOCALITY": f"{loc.get('region', '')}/{loc.get('zone', '')}",
                        "PRIORITY": str(h.get("priority", 0)),
                        "WEIGHT": str(h.get("weight", 1)),
                    }
                )
        return rows

    def proxy_status(self) -> list[dict[str, str]]:
        """Like ``istioctl proxy-status``: per proxy, whether Envoy runs what its control plane last wrote
        (SYNCED), has not taken it (yet, or rejected it: STALE), or was never sent any (NOT SENT)."""
        rows = []
        for w in self.workloads:
            xds = self.proxy_dir(w) / "xds"
            admin = E.Admin(w.admin)
            try:
                _, body = admin.get("/stats?format=json&filter=^(cluster_manager\\.cds|listener_manager\\.lds)\\.version_text$", timeout=2.0)
                acked = {st["name"].split(".")[1]: str(st.get("value")) for st in json.loads(body).get("stats", [])}
                hosts = {cs["name"]: sorted(f"{h['address']['socket_address']['address']}:{h['address']['socket_address']['port_value']}"
                                            for h in cs.get("host_statuses", [])) for cs in admin.clusters().get("cluster_statuses", [])}
            except (OSError, ValueError, MeshlabError):
                acked, hosts = {}, None  # the proxy does not answer: it has acknowledged nothing
            row = {"NAME": f"{w.pod}.{w.namespace}", "CLUSTER": w.cluster}
            for t in ("cds", "lds"):
                sent = _file_version(xds / f"{t}.json")
                row[t.upper()] = "NOT SENT" if sent is None else "SYNCED" if acked.get(t) == sent else "STALE"
            try:
                names = {r["name"] for r in json.loads((xds / "cds.json").read_text())["resources"] if r.get("type") == "EDS"}
            except (OSError, ValueError):
                names = set()
            eds = {}
            for name in sorted(names):
                la = json.loads(eds_path(xds, name).read_text())["resources"][0]
                eds[name] = sorted(f"{e['endpoint']['address']['socket_address']['address']}:"
                                                 f"{e['endpoint']['address']['socket_address']['port_value']}"
                                                 for loc in la.get("endpoints", []) for e in loc.get("lb_endpoints", []))
            row["EDS"] = "NOT SENT" if not eds else "SYNCED" if hosts is not None and all(hosts.get(k) == v for k, v in eds.items()) else "STALE"
            row["ECDS"] = self._ecds_status(w, xds)
            cp = self.topology.clusters[w.cluster].control_plane
            row["ISTIOD"] = f"{cp} ({self.state.data['control_planes'].get(cp, '?')})"
            rows.append(row)
        return rows

    def _ecds_status(self, w: Workload, xds: Path) -> str:
        """ECDS of one proxy: every extension config its listeners discover, at the version written for it."""
        from ...controlplane.extensions import ecds_from_dump, referenced

        try:
            names = referenced(json.loads((xds / "lds.json").read_text())["resources"])
        except (OSError, ValueError, KeyError):
            names = set()
        if not names:
            return "NOT SENT"
        try:
            have = ecds_from_dump(E.Admin(w.admin).config_dump())
        except (OSError, MeshlabError):
            return "STALE"
        synced = all(_file_version(ecds_path(xds, n)) == str(have.get(n, {}).get("version_info")) for n in names)
        return "SYNCED" if synced else "STALE"

    def access_log(self, workload: str, cluster: str, last: int = 20) -> list[dict[str, Any]]:
        """The sidecar's parsed access log (JSON lines), newest last. Raises when the proxy writes none: like
        Istio, meshlab's proxies log only once the Telemetry API turns logging on."""
        w = self.find(workload, cluster)
        lds = self.proxy_dir(w) / "xds" / "lds.json"
        if lds.exists() and "envoy.access_loggers.file" not in lds.read_text() and not Path(w.access_log).exists():
            raise MeshlabError(
                f"{w.app} in {cluster} writes no access log: Istio's default profile has access logging off",
                "turn it on as on a real mesh: apply a Telemetry with accessLogging providers [{name: envoy}] in istio-system "
                "to the cluster's control plane (meshlab.dataplane.ACCESS_LOGGING is one)",
            )
        time.sleep(0.25)  # Envoy flushes access logs every 200 ms (--file-flush-interval-msec)
        return read_json_lines(Path(w.access_log), last)

    def stats(self, workload: str, cluster: str, contains: str = "") -> dict[str, int]:
        """The sidecar's non-zero Envoy counters and gauges whose name contains ``contains``."""
        st = E.Admin(self.find(workload, cluster).admin).stats()
        return {k: v for k, v in sorted(st.items()) if v and contains in k}

    def envoy_config(self, workload: str, cluster: str, resource: str | None = None) -> dict[str, Any]:
        return E.Admin(self.find(workload, cluster).admin).config_dump(resource)

    def validate(self) -> int:
        """``envoy --mode validate`` on every proxy's full config (bootstrap + all xDS inlined)."""
        count = 0
        for w in self.workloads:
            if not w.sidecar:
                continue  # a pod without a sidecar runs no Envoy
            boot = json.loads((self.proxy_dir(w) / "bootstrap.json").read_text())
            E.validate(E.static_equivalent(boot, self.proxy_config(w)), self.run_dir)
            count += 1
        return count

    # ---- teardown ------------------------------------------------------------------------------
    @staticmethod
    def destroy(state: State, progress: Any = None) -> dict[str, int]:
        """Stop every recorded process, delete every recorded (and prefixed) namespace, remove files."""
        d = state.data
        stopped = procs.terminate(d.get("processes", []))
        names = list(dict.fromkeys(d.get("namespaces", []) + (net.existing_namespaces(d["prefix"]) if d.get("prefix") else [])))
        net.delete_namespaces(names)
        for f in d.get("files", []):
            shutil.rmtree(f, ignore_errors=True)
        return {"processes": stopped, "namespaces": len(names)}
