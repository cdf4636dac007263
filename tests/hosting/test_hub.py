"""The room's JupyterHub for real (issue 17 item 4): hub/jupyterhub_config.py as an instructor starts it.

Three learners created by ``meshlab room add`` log in through the hub's REST API with their printed
passwords, their servers spawn as their own Unix users (with the room's limits and their own copy of the
notebooks), lab 00 runs in the three servers at the same time through the Jupyter server API and passes,
then each brings up a mesh of their own at the same time and calls through it; stopping the hub leaves
no process behind; the accounts are deleted at the end.

Root only (it creates Unix accounts and the hub switches users): CI runs as root.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_api import Learner
from meshlab.exec import run, which
from meshlab.room import COURSE, GROUP, HUB_DIR, learners

pytestmark = [
    pytest.mark.hosting,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates Unix accounts and switches users: run as root (CI does)"),
]

LAB = "labs/00-setup.ipynb"  # quick, starts nothing; it checks this machine as the learner sees it
# then each learner brings up a mesh of their own at the same time as the others, and calls through it
MESH = """
from meshlab import prereqs
from meshlab.lab import Lab

lab = Lab.up("flat-network", samples=True, quiet=True)
try:
    answers = lab.call("curl", "http://helloworld.sample:5000/hello", cluster="cluster1", n=4)
    assert answers.errors == 0, answers
finally:
    lab.down(quiet=True)
print("MODE", prereqs.network_mode())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(user: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return run([which("runuser"), "-u", user, "--", *argv], check=False, timeout=60)


def learner_course(user: str, tmp: Path) -> Path:
    """This checkout as the learners reach it: itself, or -- when it sits in a directory other users cannot
    enter (a clone in root's home or in a private temp dir) -- a bind mount of it under ``tmp``."""
    if as_user(user, ["test", "-r", str(COURSE / "lib" / "meshlab" / "__init__.py")]).returncode == 0:
        return COURSE
    mount = tmp / "course"
    mount.mkdir()
    run([which("mount"), "--bind", str(COURSE), str(mount)])
    return mount


def learner_python(user: str, tmp: Path, course: Path) -> str:
    """The Python the learners' servers run: this checkout's .venv when a learner can run it (as on a VM set up
    with `make setup`, whose .venv comes from /usr/bin/python3). A .venv made from a Python under root's home
    (pyenv on the development machines), or one learners reach only through ``course``, is stood in for by a
    venv of /usr/bin/python3 that imports meshlab and the .venv's packages from ``course``."""
    venv_python = str(COURSE / ".venv" / "bin" / "python")
    if course == COURSE and as_user(user, [venv_python, "-c", "import meshlab.room, jupyterhub"]).returncode == 0:
        return venv_python
    overlay = tmp / "learner-venv"
    run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(overlay)])
    site_packages = Path(run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    site_packages = course / site_packages.relative_to(COURSE)
    (overlay / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages" / "course.pth").write_text(
        f"import sys; sys.path.insert(0, {str(course / 'lib')!r}); import site; site.addsitedir({str(site_packages)!r})\n")
    for d in [tmp, *overlay.rglob("*")]:
        os.chmod(d, 0o755 if d.is_dir() else os.stat(d).st_mode | 0o444)
    probe = as_user(user, [str(overlay / "bin" / "python"), "-c", "import meshlab.room, jupyterhub; print(meshlab.room.COURSE)"])
    assert probe.returncode == 0, f"a learner cannot import meshlab from {course}: {probe.stderr}"
    assert probe.stdout.strip() == str(course), probe.stdout
    return str(overlay / "bin" / "python")


def processes_of(uids: set[int]) -> list[str]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid in uids:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append(f"{pid} {cmd[:160]}")
        except OSError:
            pass
    return out


def pss_mib(uid: int) -> float:
    """Memory of every process of ``uid``, shared pages split between their users (PSS), in MiB."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                total += sum(int(line.split()[1]) for line in open(f"/proc/{pid}/smaps_rollup") if line.startswith("Pss:"))
        except OSError:
            pass
    return total / 1024


def server_pid(user: str) -> int:
    """The learner's Jupyter server: the process whose environment names the learner as JUPYTERHUB_USER."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"JUPYTERHUB_USER={user}".encode() in env and b"jupyterhub.singleuser" in cmd:
            return int(pid)
    raise AssertionError(f"no server process for {user}")


@pytest.fixture(scope="module")
def room() -> Iterator[dict]:
    """Three learners, then the hub; after the tests: the hub stopped, nothing left, the accounts deleted."""
    group_existed = bool(learners.members()) or GROUP in Path("/etc/group").read_text()
    tmp = Path(tempfile.mkdtemp(prefix="mlroom"))
    logins = learners.add(3, prefix=f"mlt{os.getpid() % 10000:04d}x")
    hub = None
    course = COURSE
    try:
        os.chmod(tmp, 0o755)
        course = learner_course(logins[0].user, tmp)
        python = learner_python(logins[0].user, tmp, course)
        state = tmp / "hub-state"
        port = free_port()
        env = {**os.environ, "MESHLAB_ROOM_STATE": str(state), "MESHLAB_ROOM_PYTHON": python}
        log = open(tmp / "hub.log", "w")
        started = time.monotonic()
        hub = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(HUB_DIR / "jupyterhub_config.py"),
             f"--JupyterHub.bind_url=http://127.0.0.1:{port}", f"--JupyterHub.hub_port={free_port()}",
             f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{free_port()}"],
            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        asyncio.run(wait_for_hub(base, hub, tmp / "hub.log"))
        yield {"base": base, "logins": logins, "hub": hub, "log": tmp / "hub.log", "state": state,
               "python": python, "course": course, "started": started}
    finally:
        if hub is not None and hub.poll() is None:  # a test failed before the hub was stopped
            hub.terminate()
            try:
                hub.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
        learners.remove([l.user for l in logins])
        if not group_existed:
            run([which("groupdel"), GROUP], check=False)
        if course != COURSE:
            run([which("umount"), str(course)])
        run(["rm", "-rf", "--one-file-system", str(tmp)])


async def wait_for_hub(base: str, hub: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    probe = Learner(base, "-")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert hub.poll() is None, f"the hub exited ({hub.returncode}):\n{log.read_text()[-3000:]}"
        try:
            code, _ = await probe.api("GET", "/hub/api/")
            if code == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"the hub did not answer in {timeout}s:\n{log.read_text()[-3000:]}")


def test_three_learners_run_a_lab_at_once(room: dict) -> None:
    async def scenario() -> list[Learner]:
        people = [Learner(room["base"], l.user) for l in room["logins"]]
        assert await Learner(room["base"], people[0].name).login("not-the-password") == 403, "a wrong password got in"
        for p, login in zip(people, room["logins"]):
            assert await p.login(login.password) == 201, f"{p.name} could not log in with the printed password"
        await asyncio.gather(*(p.start_server() for p in people))
        await asyncio.gather(*(p.run_notebook(LAB, 'backend = "local"\nsolutions = True\n') for p in people))
        await asyncio.gather(*(p.run_cells([(-1, MESH)]) for p in people))
        return people

    t = time.monotonic()
    try:
        people = asyncio.run(scenario())
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- the hub's log:\n{room['log'].read_text()[-4000:]}") from None
    modes = {r.stdout.split("MODE", 1)[1].strip() for p in people for r in p.results if "MODE" in r.stdout}
    idle = max(pss_mib(login.uid) for login in room["logins"])
    print(f"hub up in {t - room['started']:.1f}s; 3 logins, 3 servers, lab 00 and a mesh each, three at once, "
          f"in {time.monotonic() - t:.1f}s (network mode {', '.join(sorted(modes))}; course {room['course']}, Python {room['python']}); "
          f"a learner's idle server: {idle:.0f} MiB PSS")
    for p, login in zip(people, room["logins"]):
        failed = [r for r in p.results if r.status != "ok"]
        assert not failed, f"{p.name}: cell {failed[0].index} failed: {failed[0].error}\n{failed[0].stdout[-2000:]}"
        assert len(p.results) > 10 and "MODE" in p.results[-1].stdout, f"{p.name}: only {len(p.results)} cells ran"
        # the server (and so every kernel and lab it starts) runs as the learner, with the room's limits
        pid = server_pid(p.name)
        assert os.stat(f"/proc/{pid}").st_uid == login.uid, f"{p.name}'s server runs as uid {os.stat(f'/proc/{pid}').st_uid}"
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert any(line.startswith("Max processes") and line.split()[2:4] == ["4096", "4096"] for line in limits.splitlines()), limits
        # their own copy of the notebooks, linked to the shared (read-only) npm dependencies
        home = Path(pwd.getpwnam(p.name).pw_dir)
        copy = home / "meshlab" / LAB
        assert copy.is_file() and copy.stat().st_uid == login.uid, f"{p.name} has no own {LAB}"
        modules = home / "meshlab" / "wasm-filters" / "add-header" / "node_modules"
        assert modules.is_symlink() and modules.readlink() == room["course"] / "wasm-filters" / "add-header" / "node_modules"


def test_idle_culler_runs_as_a_service(room: dict) -> None:
    culler = [line for line in processes_of({0}) if "jupyterhub_idle_culler" in line]
    assert culler, "the idle culler is not running"
    assert "--timeout=3600" in culler[0]


def test_room_check_probes_as_a_learner(room: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """`meshlab room check` says ready exactly when the learners can run the course's own .venv (here they can
    when the test did not need its stand-in Python), and names the fix otherwise."""
    from meshlab.room.cli import main as room_main

    status = room_main(["check", "--as", room["logins"][0].user])
    out = capsys.readouterr().out
    if room["python"] == str(COURSE / ".venv" / "bin" / "python"):
        assert status == 0, out
        assert "meshlab doctor, as a learner" in out and "local backend: ready" in out, out
    else:
        assert status == 1 and "✗ the course" in out and "make setup" in out, out


def test_stopping_the_hub_leaves_nothing(room: dict) -> None:
    hub: subprocess.Popen = room["hub"]
    proxy_pid = int((room["state"] / "proxy.pid").read_text())
    os.kill(hub.pid, signal.SIGTERM)  # as the instructor's Ctrl-C: the hub stops every server, the proxy, the culler
    assert hub.wait(60) == 0, room["log"].read_text()[-3000:]
    uids = {l.uid for l in room["logins"]}
    deadline = time.monotonic() + 20
    while processes_of(uids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_of(uids), f"learners' processes left after the hub stopped: {processes_of(uids)}"
    assert not Path(f"/proc/{proxy_pid}").exists(), "configurable-http-proxy still runs"
    assert not [line for line in processes_of({0}) if "jupyterhub_idle_culler" in line], "the culler still runs"


def test_remove_deletes_only_learners() -> None:
    from meshlab.errors import MeshlabError

    with pytest.raises(MeshlabError) as e:
        learners.remove(["root", "nobody"])
    assert "not learners" in e.value.message
    assert pwd.getpwnam("root") and pwd.getpwnam("nobody")
