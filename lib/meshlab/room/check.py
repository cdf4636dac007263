"""``meshlab room check``: is this VM ready for a room? Every check runs the way the hub will, as a learner.

The classic failure is invisible to root: a ``.venv`` built from a Python under root's home (pyenv), or a
checkout inside a private directory, works for the instructor and makes every learner's server fail with
"Permission denied". So the probes run as a learner: their Python, their view of the course, and
``meshlab doctor`` in the network mode their labs will get.
"""

from __future__ import annotations

import pwd
import subprocess
import sys
from pathlib import Path

from ..errors import MeshlabError
from ..exec import run, which
from ..prereqs import Check
from . import COURSE, HUB_DIR
from .learners import members

REBUILD = "rebuild .venv from a Python every user can read: `sudo rm -rf .venv && sudo make setup` (it uses /usr/bin/python3)"


def as_learner(user: str, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``argv`` as ``user`` with a login's environment (their HOME, a PATH without the sbin folders)."""
    home = pwd.getpwnam(user).pw_dir
    return run([which("runuser"), "-u", user, "--", "env", "-i", f"HOME={home}", f"USER={user}",
                "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", *argv], check=False, timeout=timeout)


def checks(user: str | None = None) -> list[Check]:
    if user is None:
        learners = members()
        if not learners:
            raise MeshlabError("no learner to check as", "add learners first (`meshlab room add N`), or pass --as USER")
        user = learners[0]
    python = sys.executable  # what the hub runs for every learner (hub/jupyterhub_config.py)
    chp = HUB_DIR / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy"
    hub = Path(python).parent / "jupyterhub"
    out = [
        Check("jupyterhub", hub.exists(), str(hub) if hub.exists() else "not installed", "run `make setup` (lib/pyproject.toml's hub extra)", "local"),
        Check("configurable-http-proxy", chp.exists(), str(chp) if chp.exists() else "not installed", "run `make setup` (npm ci in hub/)", "local"),
    ]
    readable = as_learner(user, ["test", "-r", str(COURSE / "labs" / "00-setup.ipynb")]).returncode == 0
    out.append(Check("the course, as a learner", readable, f"{COURSE} is {'readable' if readable else 'NOT readable'} by {user}",
                     f"make {COURSE} and every folder above it readable by all (chmod a+rX), or clone the course to /opt/meshlab", "local"))
    p = as_learner(user, [python, "-c", "import meshlab.room, jupyterhub"])
    runs = p.returncode == 0
    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [""]
    out.append(Check("the course's Python, as a learner", runs, f"{python} as {user}: " + ("runs" if runs else tail[0]), REBUILD, "local"))
    from .. import labs

    needs = sorted({n for lab in labs.LABS for n in labs.network_needs(lab.number)})
    out.append(Check("no network while labs run", not needs, "; ".join(needs) or "every npm dependency installed, every filter built",
                     "run `make setup`", "local"))
    if runs:
        p = as_learner(user, [python, "-c", "import sys; from meshlab.cli import main; sys.exit(main(['doctor', '--backend', 'local']))"])
        lines = (p.stdout + p.stderr).strip().splitlines()
        mode = next((line.split("]", 1)[-1].strip() for line in lines if "network mode" in line), "")
        out.append(Check("meshlab doctor, as a learner", p.returncode == 0, (lines[-1] if lines else "no output") + (f" ({mode})" if mode else ""),
                         f"run `meshlab doctor --backend local` as {user} and follow its fixes", "local"))
    return out
