"""The management plane's networking controller: a reconcile loop, not a one-shot.

Gloo Mesh's mesh-networking watched discovery output and its own CRDs and rewrote the Istio objects
in every managed cluster whenever any input changed. This controller does the same for a lab:

    inputs  = the clusters' workload registries + VirtualMeshes + TrafficPolicies + AccessPolicies
    outputs = per control plane: ServiceEntries, DestinationRules, VirtualServices, AuthorizationPolicies
              (plus the Prometheus target lists when telemetry is on)

:func:`reconcile` computes the outputs from the inputs and pushes only what changed. It runs
synchronously when the facade applies a management-plane resource, and continuously in the
controller process (``python -m meshlab.mesh.worker <state dir>``, :mod:`.worker`), which watches the lab's state
file (the registry: every deploy/undeploy rewrites it) and reconciles within ~0.2 s of a change.

The process only *reads* the state file; what it generates lives in ``run/mesh/generated.json``,
which the local backend adds to each control plane's resources (``LocalBackend.resources_for``).
Reconciles (here or in the notebook's process) and xDS pushes are serialized by file locks, so the
last push always reflects the latest inputs. The process is recorded in the lab state:
``meshlab down`` stops it.
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runtime import procs
from ..state import generated_path, load_generated, mesh_dir, write_atomic
from .telemetry import Telemetry
from .translate import generate

if TYPE_CHECKING:
    from ..lab import Lab

POLL_SECONDS = 0.1


@contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """One reconcile at a time across processes (the notebook's and the controller's)."""
    d = mesh_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _key(r: dict[str, Any]) -> str:
    return f"{r['kind']} {r['metadata'].get('namespace', '')}/{r['metadata']['name']}"


def diff(old: dict[str, list[dict[str, Any]]], new: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What a reconcile changed, one line per object: ``cluster1: created ServiceEntry sample/...``."""
    lines = []
    for cp in sorted(set(old) | set(new)):
        before = {_key(r): r for r in old.get(cp, [])}
        after = {_key(r): r for r in new.get(cp, [])}
        for k in sorted(after.keys() - before.keys()):
            lines.append(f"{cp}: created {k}")
        for k in sorted(before.keys() & after.keys()):
            if before[k] != after[k]:
                lines.append(f"{cp}: updated {k}")
        for k in sorted(before.keys() - after.keys()):
            lines.append(f"{cp}: deleted {k}")
    return lines


def reconcile(lab: "Lab", who: str = "facade") -> list[str]:
    """Compute every generated resource from the current inputs; write and push what changed."""
    run_dir = lab.state.data["run_dir"]
    with locked(run_dir):
        new = generate(lab)
        old = load_generated(run_dir)
        changes = diff(old, new)
        if changes:
            write_atomic(generated_path(run_dir), json.dumps(new, indent=1, sort_keys=True))
            _log(run_dir, who, changes)
            lab.backend.push_generated(old, new)
        if lab.state.data.get("telemetry"):
            if Telemetry(lab).write_targets():
                _log(run_dir, who, ["prometheus: targets rewritten"])
        return changes


def _log(run_dir: str | Path, who: str, lines: list[str]) -> None:
    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    with open(mesh_dir(run_dir) / "events.log", "a") as f:
        for line in lines:
            f.write(f"{stamp} [{who}] {line}\n")


def events(run_dir: str | Path, last: int = 50) -> list[str]:
    try:
        return (mesh_dir(run_dir) / "events.log").read_text().splitlines()[-last:]
    except OSError:
        return []


# ---- the controller process ----------------------------------------------------------------------
def start(lab: "Lab") -> dict[str, Any]:
    """Start the controller process for this lab (once); it is recorded, so ``meshlab down`` stops it."""
    for p in lab.state.data.get("processes", []):
        if p["name"] == "mesh-controller" and procs.is_alive(p):
            return dict(p)
    run_dir = Path(lab.state.data["run_dir"])
    ready = mesh_dir(run_dir) / "controller.ready"
    ready.unlink(missing_ok=True)
    p = procs.spawn("mesh-controller", [sys.executable, "-m", "meshlab.mesh.worker", str(lab.state.dir)], run_dir / "logs" / "mesh-controller.log")
    lab.state.record("processes", p.record())
    procs.wait_until(ready.exists, p, "the controller finished its first reconcile", timeout=30)
    return p.record()


def stop(lab: "Lab") -> int:
    mine = [p for p in lab.state.data.get("processes", []) if p["name"] == "mesh-controller"]
    stopped = procs.terminate(mine)
    lab.state.data["processes"] = [p for p in lab.state.data.get("processes", []) if p["name"] != "mesh-controller"]
    lab.state.save()
    return stopped


def running(lab: "Lab") -> bool:
    return any(p["name"] == "mesh-controller" and procs.is_alive(p) for p in lab.state.data.get("processes", []))


def _inputs(state_path: Path) -> Any:
    """The part of the state file the controller reacts to (the registry and management-plane objects)."""
    data = json.loads(state_path.read_text())
    registry = [(w["cluster"], w["namespace"], w["app"], w["deployment"], w["pod"], w["ip"], tuple(w.get("ports", []))) for w in data.get("workloads", [])]
    return registry, data.get("mesh", {}), data.get("telemetry"), data.get("control_planes")
