"""The mesh controller's process: ``python -m meshlab.mesh.worker <state dir>`` (started by
:func:`meshlab.mesh.controller.start`, recorded, stopped by ``meshlab down``). It sits above the facade: it
attaches the lab and reconciles through it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..lab import Lab
from .controller import POLL_SECONDS, _inputs, mesh_dir, reconcile


def main(state_dir: str) -> int:
    """Watch the state file; reconcile when the registry or the management-plane objects change.

    A reconcile that fails (e.g. an object the translator refuses) is reported in the log and retried
    on the next change; the loop ends when the lab's state file is gone (``meshlab down``)."""
    state_path = Path(state_dir) / "state.json"
    last: Any = None
    ready: Path | None = None
    while state_path.exists():
        try:
            inputs = _inputs(state_path)
        except (OSError, ValueError):
            time.sleep(POLL_SECONDS)  # removed or replaced between exists() and read: look again
            continue
        if inputs != last:
            last = inputs
            try:
                lab = Lab.attach(state_dir)
                reconcile(lab, who="controller")
            except Exception as e:
                print(f"mesh controller: reconcile failed: {type(e).__name__}: {e}", flush=True)
            if ready is None:
                ready = mesh_dir(json.loads(state_path.read_text())["run_dir"]) / "controller.ready"
                ready.touch()
                print(f"mesh controller: watching {state_path} (pid {os.getpid()})", flush=True)
        time.sleep(POLL_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
