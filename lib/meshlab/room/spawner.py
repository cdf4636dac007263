"""The hub's spawner: each learner's server is a process of that learner's Unix user, with limits.

JupyterHub's ``LocalProcessSpawner`` switches to the learner's uid before it starts the server; this
subclass also sets resource limits in that same step (before the uid switch, so a learner cannot raise
them again), and they hold for everything the learner starts: kernels, Envoys, sample apps.

* ``max_processes`` -- RLIMIT_NPROC: the processes and threads of the learner's uid (a fork bomb, or a
  runaway loop of ``Lab.up``, stops there instead of taking the VM);
* ``max_open_files`` -- RLIMIT_NOFILE: Envoy wants more than the default 1024 (at most the hub's own hard
  limit: a container without CAP_SYS_RESOURCE cannot raise it);
* memory and CPU: ``Spawner.mem_limit``/``cpu_limit`` are passed to the server (``MEM_LIMIT``,
  ``CPU_LIMIT``), which a local process cannot enforce by itself: see docs/hosting.md (per-user systemd
  slices) for hard caps.
"""

from __future__ import annotations

import resource
from collections.abc import Callable

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Integer


class RoomSpawner(LocalProcessSpawner):
    max_processes = Integer(4096, help="RLIMIT_NPROC of each learner (processes + threads of the uid)").tag(config=True)
    max_open_files = Integer(65536, help="RLIMIT_NOFILE of each learner's server and its children").tag(config=True)

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        switch_user = super().make_preexec_fn(name)
        limits = [(which, _within_hard(which, value)) for which, value in
                  ((resource.RLIMIT_NPROC, self.max_processes), (resource.RLIMIT_NOFILE, self.max_open_files))]

        def preexec() -> None:  # in the child, still root: the learner cannot raise a hard limit afterwards
            for which, value in limits:
                resource.setrlimit(which, (value, value))
            switch_user()

        return preexec


def _within_hard(which: int, value: int) -> int:
    """``value``, or the hub's own hard limit if that is lower (raising it needs a privilege we may not have)."""
    hard = resource.getrlimit(which)[1]
    return value if hard == resource.RLIM_INFINITY else min(value, hard)
