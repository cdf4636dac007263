"""The lab's state file: the single record of everything meshlab created.

It is written *before* anything is created (a namespace name is recorded, then the namespace is
added), so a crash at any point leaves a record that ``meshlab down`` can act on. Every later
command (``meshlab call`` in another shell, a new kernel) reads the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def home() -> Path:
    """meshlab's state directory: $MESHLAB_HOME, else $XDG_STATE_HOME/meshlab, else ~/.local/state/meshlab."""
    env = os.environ.get("MESHLAB_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "meshlab"


def prefix_for(directory: Path) -> str:
    """A short name prefix unique to one state directory, so two labs never share a namespace name."""
    return "ml" + hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:4]


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write via a temp file in the same directory, fsync, rename: readers (and Envoy) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json_lines(path: Path, last: int | None = None) -> list[Any]:
    """The complete JSON lines (the ``last`` ones) of a log another process appends to: an Envoy access log, the
    trace collector's spans. A line without its newline is still being written: it is left for the next read
    (parsing it would fail on half a record). [] before the file exists."""
    try:
        lines = path.read_text().split("\n")[:-1]  # what follows the last newline is incomplete, or nothing
    except FileNotFoundError:
        return []
    lines = [line for line in lines if line.strip()]
    return [json.loads(line) for line in (lines[-last:] if last else lines)]


class State:
    """A JSON document on disk, saved atomically after every change."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or home()
        self.path = self.dir / "state.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True))

    def record(self, kind: str, item: Any) -> None:
        """Append ``item`` to the list ``kind`` (e.g. ``namespaces``) and save at once."""
        self.data.setdefault(kind, [])
        if item not in self.data[kind]:
            self.data[kind].append(item)
        self.save()

    def forget(self) -> None:
        self.data = {}
        if self.path.exists():
            self.path.unlink()


# ---- the management plane's output, which each control plane reads with the resources applied to it
def mesh_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "mesh"


def generated_path(run_dir: str | Path) -> Path:
    return mesh_dir(run_dir) / "generated.json"


def load_generated(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Control plane -> the resources the management plane generated for it (empty before any)."""
    try:
        return dict(json.loads(generated_path(run_dir).read_text()))
    except (OSError, ValueError):
        return {}
