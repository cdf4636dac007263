"""The management plane, Service Mesh Hub / Gloo Mesh style: ``lab.mesh``.

    lab.mesh.discover()                      # Mesh, Workload, Destination objects (discovery.mesh.gloo.solo.io/v1)
    lab.mesh.apply(virtual_mesh_yaml)        # VirtualMesh: shared trust (CSR flow) + federation
    lab.mesh.apply(traffic_policy_yaml)      # TrafficPolicy / AccessPolicy -> Istio objects per cluster
    lab.mesh.generated("cluster1")           # what the management plane wrote into one cluster
    lab.mesh.controller.start()              # the reconcile loop, as a recorded process
    lab.mesh.telemetry.enable()              # Prometheus per cluster + a global one (federation)
    lab.mesh.check()                         # like `meshctl check`

Modules: :mod:`.discovery`, :mod:`.virtualmesh`, :mod:`.policy`, :mod:`.translate`,
:mod:`.controller`, :mod:`.telemetry`, :mod:`.kubefed` (the Kubernetes-only contrast).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import yaml

from .. import realcluster
from ..display import Table
from ..errors import ResourceError
from ..runtime import procs
from . import controller as _controller
from . import kubefed, policy, virtualmesh
from .discovery import Discovery
from .telemetry import Telemetry
from .translate import KINDS, discover_lab, generate

if TYPE_CHECKING:
    from ..lab import Lab


def _load(x: str | dict[str, Any]) -> dict[str, Any]:
    return x if isinstance(x, dict) else dict(yaml.safe_load(x))


class Controller:
    """``lab.mesh.controller``: start/stop the reconcile loop and read what it did."""

    def __init__(self, lab: "Lab") -> None:
        self.lab = lab

    def start(self) -> str:
        """Start the reconcile loop as a recorded process (on kind it applies through kubectl)."""
        if getattr(self.lab.backend, "dry_run", False):
            raise ResourceError(
                "a dry-run kind lab has no clusters for the controller to watch",
                "lab.mesh.apply(...) still reconciles once and records the kubectl steps",
            )
        rec = _controller.start(self.lab)
        return f"mesh controller running (pid {rec['pid']}), reconciling on every registry change"

    def stop(self) -> int:
        return _controller.stop(self.lab)

    @property
    def running(self) -> bool:
        return _controller.running(self.lab)

    def events(self, last: int = 20) -> list[str]:
        return _controller.events(self._dir, last)

    @property
    def _dir(self) -> str:
        return str(self.lab.state.data.get("run_dir") or self.lab.state.dir)


class Applied:
    """The result of applying a management-plane object: the Istio objects it produced, per cluster."""

    def __init__(self, doc: dict[str, Any], produced: dict[str, list[dict[str, Any]]], trust: virtualmesh.TrustReport | None = None) -> None:
        self.doc = doc
        self.produced = produced
        self.trust = trust

    def table(self) -> Table:
        return Table(
            [{"CLUSTER": cp, "KIND": r["kind"], "NAME": f"{r['metadata'].get('namespace', '')}/{r['metadata']['name']}"}
             for cp, rs in sorted(self.produced.items()) for r in rs],
            title=f"{self.doc['kind']} {self.doc['metadata']['name']}: Istio objects per cluster",
        )  # fmt: skip

    def yaml(self, cluster: str) -> str:
        return yaml.safe_dump_all(self.produced.get(cluster, []), sort_keys=False)

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def _real(op: str, **kw: Any) -> None:
    """What this management-plane call is at work (Gloo Mesh's API on its management cluster): meshlab.realcluster."""
    realcluster.show(realcluster.command(op, **kw))


class ManagementPlane:
    def __init__(self, lab: "Lab") -> None:
        self.lab = lab
        self.controller = Controller(lab)
        self.telemetry = Telemetry(lab)

    def discover(self) -> Discovery:
        """Meshes, workloads and destinations as the clusters run them right now."""
        _real("mesh_discover")
        return discover_lab(self.lab)

    def apply(self, source: str | dict[str, Any]) -> Applied:
        """Apply a VirtualMesh, TrafficPolicy or AccessPolicy; reconcile; return what it produced per cluster."""
        docs = [d for d in yaml.safe_load_all(source) if d] if isinstance(source, str) else [source]
        if len(docs) != 1:
            raise ResourceError(f"apply one management-plane object at a time, got {len(docs)}", "split the YAML")
        doc = docs[0]
        if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
            raise ResourceError(f"kind {doc.get('kind') if isinstance(doc, dict) else doc!r} is not a management-plane object",
                                f"use one of {', '.join(KINDS)}; Istio objects go to lab.apply(..., cluster=...)")  # fmt: skip
        (virtualmesh.validate if doc["kind"] == "VirtualMesh" else policy.validate)(doc)
        _real("mesh_apply", kind=doc["kind"], name=doc["metadata"]["name"])
        disc = self.discover()
        trust = None
        if doc["kind"] == "VirtualMesh":
            virtualmesh.mesh_clusters(disc, doc)  # every mesh it names must exist
        if doc["kind"] == "VirtualMesh" and "shared" in doc["spec"].get("mtlsConfig", {}):
            # before the object is stored: the controller must not push for it while pods are bouncing
            trust = virtualmesh.shared_trust(self.lab, doc, disc)
        store = self.lab.state.data.setdefault("mesh", {}).setdefault(doc["kind"], {})
        store[doc["metadata"]["name"]] = doc
        self.lab.state.save()
        self.reconcile()
        return Applied(doc, self._produced_by(doc, generate(self.lab)), trust)

    def preview(self, source: str | dict[str, Any]) -> Applied:
        """What applying ``source`` would produce, per cluster, without storing or pushing anything."""
        doc = next(d for d in yaml.safe_load_all(source) if d) if isinstance(source, str) else source
        (virtualmesh.validate if doc.get("kind") == "VirtualMesh" else policy.validate)(doc)
        mesh = self.lab.state.data.setdefault("mesh", {})
        saved = {k: dict(v) for k, v in mesh.items()}
        try:
            mesh.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
            return Applied(doc, self._produced_by(doc, generate(self.lab)))
        finally:
            self.lab.state.data["mesh"] = saved

    @staticmethod
    def _produced_by(doc: dict[str, Any], generated: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        label = {"TrafficPolicy": "meshlab.dev/traffic-policy", "AccessPolicy": "meshlab.dev/access-policy"}.get(doc["kind"])
        if not label:
            return generated
        return {cp: mine for cp, rs in generated.items() if (mine := [r for r in rs if r["metadata"].get("labels", {}).get(label) == doc["metadata"]["name"]])}

    def delete(self, kind: str, name: str) -> list[str]:
        """Remove a management-plane object; the controller removes what it generated."""
        _real("mesh_delete", kind=kind, name=name)
        store = self.lab.state.data.get("mesh", {}).get(kind, {})
        if name not in store:
            raise ResourceError(f"no {kind} {name!r}", f"applied: {', '.join(store) or 'none'}")
        del store[name]
        self.lab.state.save()
        return self.reconcile()

    def reconcile(self) -> list[str]:
        """Recompute and push every generated object now (the controller does this on each change)."""
        return _controller.reconcile(self.lab)

    def generated(self, cluster: str | None = None) -> Table:
        """The Istio objects the management plane wrote, per control plane (like ``kubectl get`` in each)."""
        _real("mesh_generated", clusters=[cluster] if cluster else list(self.lab.topology.control_planes))
        gen = _controller.load_generated(self.lab.state.data.get("run_dir") or self.lab.state.dir)
        rows = []
        for cp, rs in sorted(gen.items()):
            if cluster and cp != self.lab.topology.cluster(cluster).control_plane:
                continue
            for r in rs:
                spec = r["spec"]
                detail = (", ".join(spec.get("hosts", [])) + (f" VIP {spec['addresses'][0]}" if spec.get("addresses") else "")
                          if r["kind"] == "ServiceEntry" else spec.get("host") or ", ".join(spec.get("hosts", [])) or "")  # fmt: skip
                rows.append({"CLUSTER": cp, "KIND": r["kind"], "NAME": f"{r['metadata'].get('namespace', '')}/{r['metadata']['name']}", "HOST": detail})
        return Table(rows, title="generated by the management plane" + (f" in {cluster}" if cluster else ""))

    # ---- the Kubernetes-only contrast (KubeFed) --------------------------------------------------
    def kubefed_place(self, deployment: str | dict[str, Any], service: str | dict[str, Any]) -> Table:
        """Realise a KubeFed FederatedDeployment + FederatedService placement: a copy per selected cluster."""
        return kubefed.place(self.lab, _load(deployment), _load(service))

    def kubefed_endpoints(self, client: str, cluster: str, service: str, namespace: str) -> Table:
        return kubefed.endpoints(self.lab, client, cluster, service, namespace)

    def kubefed_kill(self, app: str, cluster: str, namespace: str) -> str:
        return kubefed.kill(self.lab, app, cluster, namespace)

    def kubefed_remove(self, deployment: str | dict[str, Any]) -> list[str]:
        return kubefed.remove(self.lab, _load(deployment))

    # ---- waiting on and reading generated objects ----------------------------------------------
    def wait_generated(self, cluster: str, host: str, present: bool = True, timeout: float = 30.0) -> float:
        """Wait until the management plane's objects in ``cluster`` do (or no longer) mention ``host``; seconds waited."""
        t0 = time.monotonic()
        while (any(host in r["HOST"] for r in self.generated(cluster)) != present):
            if getattr(self.lab.backend, "dry_run", False) and not self.controller.running:
                self.reconcile()  # a dry run has no controller: reconcile here, as the controller would
            if time.monotonic() - t0 > timeout:
                raise ResourceError(f"{host} is {'still missing from' if present else 'still in'} {cluster} after {timeout:.0f}s",
                                    "is the controller running? lab.mesh.controller.start()")  # fmt: skip
            time.sleep(0.05)
        return time.monotonic() - t0

    def virtual_service_hosts(self, source: str | dict[str, Any], timeout: str | None = None) -> dict[str, str]:
        """For a TrafficPolicy (previewed, not applied): cluster -> the host of the VirtualService it would
        write there (only routes with ``timeout``, if given)."""
        out = {}
        for cp, rs in self.preview(source).produced.items():
            for r in rs:
                if r["kind"] == "VirtualService" and (timeout is None or any(h.get("timeout") == timeout for h in r["spec"].get("http", []))):
                    out[cp] = r["spec"]["hosts"][0]
        return out

    def restart(self, cluster: str) -> list[str]:
        """``meshctl mesh restart``: bounce the pods of a cluster so they get certificates from the current CA."""
        return self.lab.backend.bounce(cluster)

    def check(self) -> Table:
        """Like ``meshctl check``: is the management plane healthy, and is its output applied?"""
        _real("mesh_check")

        rows = []
        st = self.lab.state.data
        local = not self.lab.backend.capabilities.addon_telemetry  # the controller and Prometheus are lab processes
        disc = self.discover()
        rows.append({"CHECK": "meshes discovered", "STATUS": "ok" if disc.meshes else "FAIL", "DETAIL": ", ".join(m["metadata"]["name"] for m in disc.meshes)})
        for m in disc.meshes:
            cp = m["spec"]["istio"]["installation"]["cluster"]
            cps = st.get("control_planes", {}).get(cp, "running")
            rows.append({"CHECK": f"control plane {cp}", "STATUS": "ok" if cps == "running" else "FAIL", "DETAIL": cps})
        roots = {m["metadata"]["labels"]["meshlab.dev/root-ca"] for m in disc.meshes}
        rows.append({"CHECK": "shared root of trust", "STATUS": "ok" if len(roots) == 1 else "WARN", "DETAIL": ", ".join(sorted(roots))})
        if local:
            ctl = self.controller.running
            rows.append({"CHECK": "mesh controller", "STATUS": "ok" if ctl else "WARN", "DETAIL": "running" if ctl else "not running: lab.mesh.controller.start()"})
            stale = generate(self.lab) != _controller.load_generated(st["run_dir"])
            rows.append({"CHECK": "generated objects current", "STATUS": "FAIL" if stale else "ok", "DETAIL": "out of date: lab.mesh.reconcile()" if stale else "match the inputs"})
            proms = [p for p in st.get("processes", []) if p["name"].startswith("prometheus-")]
            if proms:
                live = sum(1 for p in proms if procs.is_alive(p))
                rows.append({"CHECK": "prometheus", "STATUS": "ok" if live == len(proms) else "FAIL", "DETAIL": f"{live}/{len(proms)} running"})
        return Table(rows, title="meshlab mesh check")

    def describe(self, kind: str, name: str) -> str:
        """One discovered or applied object as YAML (``meshctl describe``)."""
        _real("mesh_describe", kind=kind, name=name)
        disc = self.discover()
        pool = {"Mesh": disc.meshes, "Workload": disc.workloads, "Destination": disc.destinations}.get(kind)
        if pool is None:
            pool = list(self.lab.state.data.get("mesh", {}).get(kind, {}).values())
        for d in pool:
            if d["metadata"]["name"] == name:
                return yaml.safe_dump(d, sort_keys=False)
        raise ResourceError(f"no {kind} named {name!r}", f"known: {', '.join(d['metadata']['name'] for d in pool) or 'none'}")
