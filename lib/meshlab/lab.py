"""The facade the notebooks and the CLI use: one ``Lab`` whatever the backend.

    lab = Lab.up("flat-network", backend="local")
    lab.deploy("helloworld", cluster="cluster2", version="v2")
    lab.call("curl", "http://helloworld.sample:5000/hello", cluster="cluster1", n=20)
    lab.endpoints("curl", cluster="cluster1", service="helloworld")
    lab.down()

A lab is recorded in a state file (``$MESHLAB_HOME/state.json``) from its first step, so
``Lab.attach()`` (or the ``meshlab`` command in another shell) finds it again, and ``Lab.down_all()``
(``meshlab down``) removes everything it created even after a crashed or killed kernel.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import realcluster
from .backends import Backend, backend_class
from .controlplane.extensions import ecds_from_dump
from .display import Diagram, Table, mermaid, pods_table
from .errors import LabDownError, LabStateError, MeshlabError
from .federation import discover, virtual_mesh
from .mesh import ManagementPlane  # lab.mesh: the management plane on the facade (it works through the facade)
from .runtime import procs
from .state import State
from .topology import Topology, load_topology
from .tracing import traces
from .traffic import CallResult

if TYPE_CHECKING:
    from .backends.kind import Plan
    from .federation import VirtualMesh
    from .loadgen import LoadResult


class Lab:
    def __init__(self, topology: Topology, backend: Backend, state: State) -> None:
        self.topology = topology
        self._backend = backend
        self.state = state

    @property
    def backend(self) -> Backend:
        """The backend of a lab that is up. After the lab's Cleanup (``lab.down()``) or ``meshlab down``
        in a shell, every use of the lab says so (:class:`LabDownError`) instead of failing deep inside."""
        if not self.state.data or not self.state.exists:
            raise LabDownError()
        return self._backend

    # ---- bring-up / attach / teardown ----------------------------------------------------------
    @classmethod
    def up(
        cls,
        pattern: str | os.PathLike[str],
        backend: str = "local",
        *,
        samples: bool = False,
        keep: bool = False,
        home_dir: str | os.PathLike[str] | None = None,
        quiet: bool = False,
        dry_run: bool = False,
        prepared_for: str | None = None,
    ) -> "Lab | Plan":
        """Bring up ``pattern`` (a built-in name or a YAML path) on ``backend``.

        An earlier lab recorded in the same state directory is removed first, so ``up`` can always be
        re-run. ``samples=True`` also deploys what Istio's verify step needs: helloworld v1, v2, ...
        one version per cluster, and ``curl`` in every cluster. Unless ``keep`` is set, the lab is
        torn down when this Python process exits (the CLI keeps it until ``meshlab down``).

        ``backend="kind", dry_run=True`` runs nothing and returns the :class:`Plan`: every command and
        manifest the kind backend would run, in order (``print(plan)`` shows it).

        A lab that ``meshlab goto N`` prepared (``prepared_for``) for the same pattern, backend and
        samples is adopted instead of rebuilt, as long as nothing changed it since and it still runs.
        """
        topology = load_topology(pattern)
        backend_cls = backend_class(backend)
        if dry_run:
            if not backend_cls.capabilities.dry_run:
                raise MeshlabError(f"dry_run is for the kind backend, not {backend}", "the local backend starts in well under a second: run it")
            preview = State(Path(home_dir) if home_dir else None)
            preview.data = {}  # never saved: a dry run records no lab and leaves the current one alone
            return backend_cls.preview(topology, preview, samples=samples)  # type: ignore[no-any-return]
        state = State(Path(home_dir) if home_dir else None)
        adopted = cls._adopt(state, topology, backend, samples) if state.exists and not prepared_for else None
        if adopted:
            if not keep:
                adopted._cleanup_at_exit()
            if not quiet:
                print(f"{topology.name} is up on the {backend} backend: using the lab `meshlab goto "
                      f"{state.data.get('prepared_for')}` prepared (nothing deployed or applied since)")
            state.data.pop("prepared", None)
            state.data.pop("prepared_for", None)
            state.save()
            return adopted
        if state.exists:
            removed = cls.down_all(state.dir, quiet=True)
            if not quiet and any(removed.values()):
                print(f"removed the previous lab ({removed['processes']} processes, {removed['namespaces']} namespaces)")
        t0 = time.perf_counter()
        try:
            lab = cls(topology, backend_cls.bring_up(topology, state, samples=samples, quiet=quiet), state)
        except BaseException:
            cls.down_all(state.dir, quiet=True)  # a half-built lab is never left behind
            raise
        if prepared_for:
            state.data["prepared_for"] = prepared_for
            state.data["prepared"] = _fingerprint(state.data, backend, samples)
            state.save()
        if not keep:
            lab._cleanup_at_exit()
        if not quiet:
            print(
                f"{topology.name} is up on the {backend} backend in {time.perf_counter() - t0:.2f}s: "
                f"{len(topology.clusters)} clusters, control planes in {', '.join(topology.control_planes)}\n{lab.backend.describe()}"
            )
        return lab

    @classmethod
    def _adopt(cls, state: State, topology: Topology, backend: str, samples: bool) -> "Lab | None":
        """The lab ``goto`` prepared, if it is exactly what ``up`` would build and still runs; else None."""
        mark = state.data.get("prepared")
        if not mark or state.data.get("pattern") not in (str(topology.source.resolve()), topology.name):
            return None
        if mark != _fingerprint(state.data, backend, samples):
            return None  # something was deployed, applied, stopped ... since: build afresh
        lab = cls.attach(state.dir)
        return lab if lab.backend.alive() else None

    @classmethod
    def attach(cls, home_dir: str | os.PathLike[str] | None = None) -> "Lab":
        """The lab recorded in the state directory (e.g. one started by ``meshlab up`` in a shell)."""
        state = State(Path(home_dir) if home_dir else None)
        if not state.exists or "pattern" not in state.data:
            raise LabStateError(f"no lab is running (no state in {state.dir})", "start one: Lab.up('flat-network')", "start one: meshlab up flat-network")
        topology = load_topology(state.data["pattern"])
        return cls(topology, backend_class(state.data.get("backend", "local"))(topology, state), state)

    def down(self, quiet: bool = False) -> dict[str, int]:
        """Remove every process, namespace and file of this lab. Safe to call twice."""
        removed = self.down_all(self.state.dir, quiet=quiet)
        self.state.data = {}
        return removed

    @staticmethod
    def down_all(home_dir: str | os.PathLike[str] | None = None, quiet: bool = False) -> dict[str, int]:
        """Tear down whatever the state directory records (also after a killed kernel); idempotent."""
        state = State(Path(home_dir) if home_dir else None)
        if not state.exists:
            if not quiet:
                print("nothing to remove: no lab recorded in", state.dir)
            return {"processes": 0, "namespaces": 0}
        t0 = time.perf_counter()
        removed = backend_class(state.data.get("backend", "local")).destroy(state, progress=None if quiet else print)
        state.forget()
        if not quiet:
            print(
                f"lab removed in {time.perf_counter() - t0:.2f}s: "
                + (f"{removed['clusters']} kind clusters deleted" if "clusters" in removed else
                   f"{removed['processes']} processes stopped, {removed['namespaces']} namespaces deleted")
            )
        return removed

    @staticmethod
    def workdir(purpose: str) -> Path:
        """A new directory for files a notebook writes (a pattern's copy, a filter's changed source).

        It lives under ``$MESHLAB_HOME/scratch/``, so ``meshlab down`` removes it even when the cell that
        would have (the lab's cleanup) never ran: an interrupted run or a killed kernel leaves nothing in /tmp.
        """
        base = State().dir / "scratch"
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=base))

    @staticmethod
    @contextmanager
    def scratch(purpose: str) -> Iterator[Path]:
        """A throwaway state directory for labs a tool builds and removes itself (``meshlab bench``).

        It lives under ``$MESHLAB_HOME/scratch/``, where ``meshlab down`` looks too, so an interrupted
        or killed run leaves nothing it cannot remove; on exit (Ctrl-C included) its labs are torn
        down and the directory is deleted.
        """
        d = Lab.workdir(purpose)
        try:
            yield d
        finally:
            _remove_scratch(d)

    @staticmethod
    def down_scratch(home_dir: str | os.PathLike[str] | None = None) -> int:
        """Tear down every scratch lab under the state directory (``meshlab down``); returns how many."""
        base = State(Path(home_dir) if home_dir else None).dir / "scratch"
        dirs = sorted(p for p in base.glob("*") if p.is_dir()) if base.is_dir() else []
        for d in dirs:
            _remove_scratch(d)
        return len(dirs)

    def _cleanup_at_exit(self) -> None:
        created = self.state.data.get("created")

        def cleanup() -> None:
            # only if the state still describes the lab this process created
            if State(self.state.dir).data.get("created") == created:
                self.down_all(self.state.dir, quiet=True)

        atexit.register(cleanup)
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

                def on_term(signum: int, frame: Any) -> None:
                    cleanup()
                    raise SystemExit(128 + signum)

                signal.signal(signal.SIGTERM, on_term)
        except ValueError:
            pass  # not in the main thread: atexit still covers a normal exit

    # ---- workloads and traffic -----------------------------------------------------------------
    def deploy(
        self, app: str, cluster: str, version: str = "v1", replicas: int = 1, namespace: str = "sample",
        sidecar: bool = True, service_account: str | None = None,
    ) -> Table:  # fmt: skip
        """Run a sample app (``helloworld`` or ``curl``) with its sidecar in ``cluster``; ``sidecar=False``
        runs it without one (plaintext, no identity), ``service_account`` overrides the app's own."""
        self._real("deploy", cluster, app=app, version=version, replicas=replicas, namespace=namespace)
        return pods_table(self.backend.deploy(app, cluster, version=version, replicas=replicas, namespace=namespace, sidecar=sidecar,
                                              service_account=service_account))

    def undeploy(self, app: str, cluster: str, namespace: str = "sample") -> list[str]:
        """Remove a deployed app's pods from ``cluster``: its endpoints disappear from every proxy."""
        self._real("undeploy", cluster, app=app, namespace=namespace)
        return self.backend.undeploy(app, cluster, namespace=namespace)

    def call(self, workload: str, url: str, cluster: str, n: int = 1, headers: dict[str, str] | None = None,
             method: str = "GET") -> CallResult:
        """Send ``n`` HTTP requests (``method``, no body) from ``workload``'s pod in ``cluster`` through its sidecar."""
        self._real("call", cluster, workload, url=url, n=n, headers=headers, method=method)
        return self.backend.call(workload, url, cluster=cluster, n=n, headers=headers, method=method)

    def call_from_outside(self, url: str, cluster: str, n: int = 1, headers: dict[str, str] | None = None, ca: str | None = None) -> CallResult:
        """Send ``n`` requests from outside the mesh to ``cluster``'s ingress gateway (``https://`` with SNI =
        the URL's host, verified against ``ca``), like ``curl --resolve host:443:<gateway IP> --cacert ca``."""
        self._real("call_from_outside", cluster, url=url, host=url.split("/")[2].split(":")[0])
        return self.backend.call_from_outside(url, cluster, n=n, headers=headers, ca=ca)

    def create_tls_secret(self, name: str, hosts: list[str], cluster: str) -> dict[str, str]:
        """A TLS secret (server certificate for ``hosts``, from an "ingress-ca") for a Gateway's
        ``credentialName`` in ``cluster``; returns its files: cert, key and the ca to verify it."""
        self._real("create_tls_secret", cluster, name=name)
        return self.backend.create_tls_secret(name, hosts, cluster)

    def external_https(self, hostname: str = "external.meshlab.test") -> dict[str, Any]:
        """Start (once) a real HTTPS server outside the mesh, named ``hostname``; returns its address,
        port and CA file (for a ServiceEntry and a DestinationRule that originates TLS to it)."""
        return self.backend.external_https(hostname)

    def load(
        self, workload: str, url: str, cluster: str, connections: int = 16, seconds: float = 3.0, headers: dict[str, str] | None = None
    ) -> "LoadResult":
        """Drive ``url`` from ``workload``'s pod for ``seconds`` with ``connections`` concurrent callers, through its
        sidecar: throughput, p50/p90/p99 and how many answers were not 2xx. Local: wrk in the pod's network
        namespace; kind: concurrent curl loops inside the pod (the sample image has no wrk)."""
        self._real("load", cluster, workload, url=url, connections=connections, seconds=seconds)
        return self.backend.load(workload, url, cluster, connections=connections, seconds=seconds, headers=headers)

    def connect(self, workload: str, cluster: str, address: str, port: int) -> str:
        """A raw TCP connect from the pod, bypassing its sidecar: ``connected`` or ``refused: ...``."""
        self._real("connect", cluster, workload, address=address, port=port)
        return self.backend.connect(workload, cluster, address, port)

    def endpoints(self, workload: str, cluster: str, service: str | None = None) -> Table:
        """The endpoints ``workload``'s sidecar knows, like ``istioctl proxy-config endpoints``."""
        self._real("endpoints", cluster, workload, service=service)
        return Table(self.backend.endpoints(workload, cluster, service), title=f"endpoints of {workload} in {cluster}")

    def proxy_status(self) -> Table:
        """Like ``istioctl proxy-status``: per proxy, is each xDS type SYNCED with its control plane, STALE
        (sent, not acknowledged: pending or rejected) or NOT SENT; and which control plane serves it."""
        self._real("proxy_status", primaries=list(self.topology.control_planes))
        return Table(self.backend.proxy_status(), title=f"proxy status of {self.topology.name}")

    def access_log(self, workload: str, cluster: str, last: int = 20) -> Table:
        """The sidecar's access log entries (JSON), newest last: shows the peer's SPIFFE identity.

        A list of dicts that shows as an HTML table in a notebook (wide values scroll, never wrap)."""
        self._real("access_log", cluster, workload, last=last)
        return Table(self.backend.access_log(workload, cluster, last), title=f"access log of {workload} in {cluster}")

    def stats(self, workload: str, cluster: str, contains: str = "") -> dict[str, int]:
        """Envoy's non-zero stats of ``workload``'s sidecar, e.g. ``contains="ssl.fail_verify_error"``."""
        self._real("stats", cluster, workload, contains=contains)
        return self.backend.stats(workload, cluster, contains)

    def envoy_config(self, workload: str, cluster: str, resource: str | None = None) -> dict[str, Any]:
        """The sidecar's live Envoy config (``/config_dump``), optionally one resource type."""
        self._real("envoy_config", cluster, workload, resource=resource)
        return self.backend.envoy_config(workload, cluster, resource)

    def validate(self) -> int:
        """Run ``envoy --mode validate`` on every proxy's complete config; returns how many passed."""
        return self.backend.validate()

    # ---- Istio resources, control planes, failures ---------------------------------------------
    def apply(self, resources: str | dict[str, Any] | list[dict[str, Any]], cluster: str) -> list[str]:
        """Apply Istio resources (YAML text, a dict or a list) to ``cluster``.

        They reach the proxies configured by that cluster's control plane — and only those. A field
        the local backend does not implement is refused with its name, never ignored. On kind, every
        Istio kind is accepted, checked strictly against Istio's CRD schemas, and applied to the cluster.
        """
        docs = self.backend.parse(resources)
        self._real("apply", cluster, kinds=[f"{d.get('kind')} {(d.get('metadata') or {}).get('name')}" for d in docs if isinstance(d, dict)])
        out = self.backend.apply(docs, cluster)
        for line in out:
            print(line)
        return out

    def delete(self, kind: str, name: str, cluster: str, namespace: str = "sample") -> None:
        """Remove a resource applied earlier; proxies fall back to their defaults."""
        self._real("delete", cluster, kind=kind, name=name, namespace=namespace)
        self.backend.delete(kind, name, cluster, namespace)

    # ---- Wasm delivery: pull secrets and the proxies' agents -------------------------------------
    def create_pull_secret(self, name: str, cluster: str, registry: str, username: str, password: str, namespace: str = "sample") -> str:
        """A docker-registry Secret in ``cluster`` for an extension's ``imagePullSecret``. Istio reads it in
        the cluster of each *proxy* that pulls, so a mesh spanning clusters needs it in each of them."""
        self._real("create_pull_secret", cluster, name=name, registry=registry, username=username, namespace=namespace)
        out = str(self.backend.create_pull_secret(name, cluster, registry, username, password, namespace))
        print(out)
        return out

    def extension_configs(self, workload: str, cluster: str) -> dict[str, dict[str, Any]]:
        """The extension configs the sidecar's Envoy got over ECDS (``istioctl proxy-config ecds``): name ->
        ``{"version_info", "ecds_filter"}``; Lua extensions are inline in the listener, not here."""
        self._real("extension_configs", cluster, workload)

        return ecds_from_dump(self.backend.envoy_config(workload, cluster))

    def agent_log(self, workload: str, cluster: str) -> list[str]:
        """The Wasm lines of the sidecar's istio-agent log: module fetches, failures and their fallback."""
        self._real("agent_log", cluster, workload)
        return list(self.backend.agent_log(workload, cluster))

    @property
    def mesh(self) -> "ManagementPlane":
        """The management plane (Service Mesh Hub / Gloo Mesh style): discovery, VirtualMesh, policies, telemetry."""
        return ManagementPlane(self)

    def discover(self) -> Table:
        """Meshes, clusters and the services each runs (Service Mesh Hub's discovery)."""
        return discover(self.topology, self.backend.workloads)

    def federate(self, meshes: list[str] | None = None, apply: bool = True) -> "VirtualMesh":
        """Form a VirtualMesh: generate ServiceEntries + DestinationRules per client mesh and apply them."""
        vm = virtual_mesh(self.topology, self.backend.workloads, self.backend.gateway_addresses(), meshes)
        if not vm.shared_root:
            print("warning: these meshes do not share a root CA: cross-mesh mTLS handshakes will fail")
        if apply:
            for cluster, docs in vm.resources.items():
                if docs:
                    self.apply(docs, cluster)
        return vm

    def stop_control_plane(self, cluster: str) -> None:
        """Stop the control plane running in ``cluster``: proxies keep their last config, new ones get none."""
        self._real("stop_control_plane", cluster)
        self.backend.set_control_plane(cluster, running=False)

    def start_control_plane(self, cluster: str) -> None:
        """Start it again; it pushes everything that changed meanwhile."""
        self._real("start_control_plane", cluster)
        self.backend.set_control_plane(cluster, running=True)

    # ---- multi-primary: remote secrets ---------------------------------------------------------
    def remote_clusters(self, cluster: str) -> Table:
        """``istioctl remote-clusters --context <cluster>``: the clusters the istiod of ``cluster`` reads -- its own,
        then one per remote secret, with the secret's name and sync status."""
        self._real("remote_clusters", cluster)
        return Table(self.backend.remote_clusters(cluster), title=f"clusters istiod in {cluster} reads")

    def delete_remote_secret(self, cluster: str, in_cluster: str) -> None:
        """Revoke ``cluster``'s remote secret held in ``in_cluster`` (``istioctl create-remote-secret --name <cluster>
        | kubectl delete -f -``): that istiod forgets ``cluster``'s services and endpoints."""
        self._real("delete_remote_secret", in_cluster, of=cluster)
        self.backend.set_remote_secret(cluster, in_cluster, present=False)

    def create_remote_secret(self, cluster: str, in_cluster: str) -> None:
        """Give the istiod of ``in_cluster`` read access to ``cluster``'s API server (``istioctl create-remote-secret
        --name <cluster> | kubectl apply -f -``): it discovers that cluster's services and endpoints."""
        self._real("create_remote_secret", in_cluster, of=cluster)
        self.backend.set_remote_secret(cluster, in_cluster, present=True)

    def set_mesh_config(self, cluster: str, mesh_config: dict[str, Any]) -> None:
        """Change the meshConfig of the control plane serving ``cluster`` (its top-level keys replace the current
        ones), e.g. ``{"serviceSettings": [{"settings": {"clusterLocal": True}, "hosts": ["*.sample.svc.cluster.local"]}]}``.
        On kind: ``istioctl install`` again with the primary's IstioOperator and this meshConfig."""
        self._real("set_mesh_config", cluster, keys=list(mesh_config))
        self.backend.set_mesh_config(cluster, mesh_config)

    # ---- tracing ---------------------------------------------------------------------------------
    def enable_tracing(self) -> str:
        """Somewhere for spans to go: on kind Istio's Jaeger addon in each primary; on the local backend meshlab's
        OTLP/gRPC collector, outside the clusters. A ``Telemetry`` (:func:`meshlab.tracing.telemetry`) applied to
        each control plane then turns tracing on."""
        self._real("enable_tracing", primaries=list(self.topology.control_planes))
        return str(self.backend.enable_tracing())

    def traces(self, expect: int = 1, trace_id: str | None = None, since: float = 0.0, timeout: float = 15.0) -> "dict[str, list[Any]]":
        """The spans received so far (of traces started after ``since``, a ``time.time()``), as traces: trace id ->
        spans, parents first. Waits (up to ``timeout``) until ``expect`` traces -- or the trace ``trace_id`` -- have
        both a CLIENT and a SERVER span: proxies export spans after the response, in batches."""
        self._real("traces")
        import time


        deadline = time.monotonic() + timeout
        while True:
            got = {t: ss for t, ss in traces(self.backend.spans()).items() if min(s.start_ns for s in ss) >= since * 1e9}
            # each sidecar exports in batches (up to 5 s): a trace is in once both its client and server spans are
            done = {t: ss for t, ss in got.items() if {"CLIENT", "SERVER"} <= {s.kind for s in ss}}
            if (trace_id in done) if trace_id else len(done) >= expect:
                return got
            if time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    def kill(self, workload: str, cluster: str) -> str:
        """Crash a workload's app (local: SIGKILL, its sidecar stays and answers 503 for it;
        kind: the Deployment is scaled to zero, since Kubernetes would restart a killed container)."""
        self._real("kill", cluster, workload)
        return self.backend.kill(workload, cluster)

    def crash(self, workload: str, cluster: str) -> str:
        """Crash a workload's app and keep its sidecar, on both backends: the endpoint stays in EDS and its
        sidecar answers 503 (``UF``) until outlier detection ejects it (kind: the pods are replaced by ones
        whose app never listens). ``restore`` brings the app back."""
        self._real("crash", cluster, workload)
        return self.backend.crash(workload, cluster)

    def restore(self, workload: str, cluster: str) -> str:
        """Restart a killed (or crashed) workload's app."""
        self._real("restore", cluster, workload)
        return self.backend.restore(workload, cluster)

    # ---- views ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self.backend.status()

    def pods(self) -> Table:
        self._real("pods", clusters=list(self.topology.clusters))
        return Table(self.backend.status()["workloads"], title=f"pods of {self.topology.name}")

    def sidecars(self) -> Table:
        """Every sidecar and gateway and whether it is READY: configured by its control plane (local: Envoy's
        own /ready; kind: the pod's readiness, with a row for each pod the injection webhook refused)."""
        self._real("sidecars", clusters=list(self.topology.clusters))
        return Table(self.backend.sidecars(), title=f"sidecars of {self.topology.name}")

    def _real(self, op: str, cluster: str | None = None, workload: str | None = None, **kw: Any) -> None:
        """Show what ``lab.<op>(...)`` is on a real cluster under the running notebook cell (meshlab.realcluster)."""
        realcluster.show(realcluster.command(op, cluster=cluster, workload=workload,
                                             deployment=self._deployment_of(workload, cluster), **kw))

    def _deployment_of(self, workload: str | None, cluster: str | None) -> str | None:
        """The Deployment behind a workload name (``helloworld`` -> ``helloworld-v1``), when the lab knows one."""
        if not workload or not cluster or not self.state.data:
            return None
        name, _, ns = workload.partition(".")
        found = {w.deployment for w in self.backend.workloads
                 if w.cluster == cluster and (ns or "sample") == w.namespace and name in (w.pod, w.app, w.deployment)}
        return found.pop() if len(found) == 1 else None

    def diagram(self) -> Diagram:
        return Diagram(mermaid(self.topology))

    def __repr__(self) -> str:
        if not self.state.data or not self.state.exists:
            return f"<Lab {self.topology.name}, down (was at {self.state.dir})>"
        return f"<Lab {self.topology.name} backend={self._backend.name} mode={self._backend.mode} at {self.state.dir}>"


def _remove_scratch(d: Path) -> None:
    """A scratch directory's lab, then whatever else recorded processes below it (e.g. a hub), then the files."""
    Lab.down_all(d, quiet=True)
    for f in sorted(d.rglob("state.json")):
        procs.terminate(State(f.parent).data.get("processes", []))
    shutil.rmtree(d, ignore_errors=True)


def _fingerprint(data: dict[str, Any], backend: str, samples: bool) -> str:
    """What a lab looked like when ``goto`` prepared it: any later change (a deploy, an apply) alters it."""
    rest = {k: v for k, v in data.items() if k not in ("prepared", "prepared_for")}
    blob = json.dumps([backend, samples, rest], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def dry_run_lab(pattern: str | os.PathLike[str], home_dir: str | os.PathLike[str], samples: bool = True, backend: str = "kind") -> Lab:
    """A :class:`Lab` that runs nothing: bring-up is recorded in ``home_dir``'s state, and every later call
    (``deploy``, ``apply``, a lab's own kind steps) lands in ``lab.backend.recorded``. This is how a lab's kind
    branch is tested here, without Docker (see ``lib/meshlab/backends/kind/README.md``)."""
    state = State(Path(home_dir))
    backend_class(backend).preview(load_topology(pattern), state, samples=samples)
    state.save()  # a dry run records the lab (never anything created), so Lab.attach finds it
    return Lab.attach(home_dir)
