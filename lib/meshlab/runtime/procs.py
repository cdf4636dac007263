"""Process supervision for the local backend: start in a new session, wait for readiness, stop for sure.

Every process is recorded (pid + kernel start time, so a recycled pid is never killed) in the state
file the moment it exists. Processes outlive the Python process that started them on purpose —
``meshlab up`` returns and ``meshlab call`` runs later — so cleanup is ``down()``'s job, driven by
that record, and it works the same after a killed kernel.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProcessExitedError
from ..exec import child_env

_children: dict[int, subprocess.Popen[bytes]] = {}  # started by this Python process, reaped by _reap()


@dataclass
class Proc:
    name: str
    pid: int
    start_time: int
    log: str
    popen: subprocess.Popen[bytes] | None = None
    own_log: str = ""  # the log the program writes itself (Envoy's --log-path): where a crash's cause is

    def record(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "start_time": self.start_time, "log": self.log}


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_alive(rec: dict[str, object]) -> bool:
    """True if the recorded process still runs (same pid *and* same start time) and is not a zombie."""
    pid = int(rec["pid"])  # type: ignore[arg-type]
    if start_time(pid) != rec.get("start_time"):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def spawn(name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start ``argv`` in its own session (so a notebook interrupt does not hit it), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        p = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env(env),
        )
    _children[p.pid] = p
    st = start_time(p.pid) or 0
    args = [str(a) for a in argv]
    own = args[args.index("--log-path") + 1] if "--log-path" in args[:-1] else ""
    return Proc(name, p.pid, st, str(log), p, own)


def log_tail(path: str | Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])


INOTIFY_FIX = (
    "this user's inotify instances are used up (fs.inotify.max_user_instances; every Envoy watches its config "
    "files with a few): stop labs you no longer need (`meshlab down` with their MESHLAB_HOME), or raise the limit: "
    "`sudo sysctl -w fs.inotify.max_user_instances=1024`"
)


def exit_hint(log: str) -> str:
    """The fix for a process that exited early, from what its logs say."""
    low = log.lower()
    if "address already in use" in low:
        return "another lab or process uses that address: `meshlab down` (or stop the other lab), then try again"
    if "inotify" in low:
        return INOTIFY_FIX
    return "read the log above; for Envoy, a config error names the offending field"


def wait_until(
    ready: Callable[[], bool],
    proc: Proc,
    what: str,
    timeout: float = 10.0,
    interval: float = 0.005,
) -> None:
    """Poll ``ready`` until it is true; fail at once (with the log tail) if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.popen is not None and proc.popen.poll() is not None:
            tail = log_tail(proc.log)
            if proc.own_log:
                tail += f"\nlast lines of {proc.own_log}:\n" + log_tail(proc.own_log)
            raise ProcessExitedError(
                f"{proc.name} exited with code {proc.popen.returncode} before {what}; last lines of {proc.log}:\n" + tail, exit_hint(tail))
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ProcessExitedError(
                f"{proc.name} did not become ready ({what}) within {timeout:.0f}s; last lines of {proc.log}:\n"
                + log_tail(proc.log),
                "check the log above; run `meshlab down` and try again",
            )
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)


def terminate(records: Sequence[dict[str, object]], grace: float = 5.0) -> int:
    """SIGTERM every live recorded process (and its session), SIGKILL what is left after ``grace``.

    Returns how many processes were still running.
    """
    live = [r for r in records if is_alive(r)]
    for r in live:
        _signal(int(r["pid"]), signal.SIGTERM)  # type: ignore[arg-type]
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_alive(r) for r in live):
        _reap()
        time.sleep(0.02)
    for r in live:
        if is_alive(r):
            _signal(int(r["pid"]), signal.SIGKILL)  # type: ignore[arg-type]
    _reap()
    return len(live)


def kill(rec: dict[str, object]) -> None:
    """SIGKILL a recorded process at once, as a crash would (no graceful shutdown)."""
    if is_alive(rec):
        _signal(int(rec["pid"]), signal.SIGKILL)  # type: ignore[arg-type]
        deadline = time.monotonic() + 2
        while is_alive(rec) and time.monotonic() < deadline:
            _reap()
            time.sleep(0.005)


def _signal(pid: int, sig: signal.Signals) -> None:
    for send in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            send()
        except (ProcessLookupError, PermissionError):
            pass


def _reap() -> None:
    """Collect our exited children so they do not linger as zombies (only the ones spawn() started)."""
    for pid, p in list(_children.items()):
        if p.poll() is not None:
            del _children[pid]
