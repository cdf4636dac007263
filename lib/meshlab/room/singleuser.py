"""What a learner's server runs, as the learner: their own copy of the course, then the Jupyter server.

The course (this checkout, with its ``.venv``, built filters and npm dependencies) is shared read-only.
On a learner's first start the notebooks and the filter sources are copied into ``~/meshlab`` -- theirs
to edit, run and break; later starts keep whatever is there. A filter's ``node_modules`` is not copied
but linked to the shared one (installed by ``make setup``; nothing is fetched while the labs run), and
its prebuilt ``build/filter.wasm`` comes along.

    python -m meshlab.room.singleuser [jupyterhub-singleuser arguments]     # a hub's server (VM or Kubernetes)
    python -m meshlab.room.singleuser --lab [jupyter lab arguments]        # the course image on a laptop
    python -m meshlab.room.singleuser --exec COMMAND [ARGS]                # anything else, in ~/meshlab
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from . import COURSE


def learner_copy(home: Path, course: Path = COURSE) -> Path:
    """``home/meshlab`` with ``labs/`` and ``wasm-filters/`` of the course; existing files are left alone."""
    dest = home / "meshlab"
    labs = dest / "labs"
    if not labs.exists():
        shutil.copytree(course / "labs", labs, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    filters = dest / "wasm-filters"
    if not filters.exists():
        shutil.copytree(course / "wasm-filters", filters, ignore=shutil.ignore_patterns("node_modules", ".lock"))
        for modules in (course / "wasm-filters").glob("*/node_modules"):
            (filters / modules.parent.name / "node_modules").symlink_to(modules, target_is_directory=True)
    return dest


def main(argv: list[str]) -> None:
    dest = learner_copy(Path.home())
    os.environ["MESHLAB_LABS"] = str(dest / "labs")  # meshlab labs / goto use the learner's notebooks
    os.environ["MESHLAB_FILTERS"] = str(dest / "wasm-filters")  # and the learner's filter sources
    bindir = os.path.dirname(sys.executable)  # meshlab, node, npm, envoy in the terminal and in notebooks
    os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "/usr/bin:/bin")])
    os.chdir(dest)
    if argv[:1] == ["--exec"] and argv[1:]:
        os.execvp(argv[1], argv[1:])
    server = "jupyterhub.singleuser"
    if argv[:1] == ["--lab"]:
        server, argv = "jupyterlab", argv[1:]
    os.execv(sys.executable, [sys.executable, "-m", server, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
