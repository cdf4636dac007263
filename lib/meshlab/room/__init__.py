"""A room of learners on one Linux VM: JupyterHub with a Unix account per learner.

The pieces, each small:

* :mod:`.learners` -- the instructor's side: create N learner accounts (group ``meshlab-learners``, a
  generated password each) and print their logins; remove them after the workshop.
* :mod:`.spawner` -- the hub's spawner: JupyterHub's ``LocalProcessSpawner`` (each server runs as its
  learner's Unix user) plus per-learner limits.
* :mod:`.singleuser` -- what runs as the learner when a server starts: the first time, a copy of the
  notebooks and filter sources into ``~/meshlab`` (the course itself stays shared and read-only), then
  ``jupyterhub-singleuser``.

``hub/jupyterhub_config.py`` puts them together; ``docs/hosting.md`` is the instructor's guide.
"""

from __future__ import annotations

from pathlib import Path

COURSE = Path(__file__).resolve().parents[3]  # the shared checkout: labs/, wasm-filters/, hub/, lib/
HUB_DIR = COURSE / "hub"
GROUP = "meshlab-learners"  # the hub admits members of this Unix group, and no one else
