"""`make setup`'s Debian step (lib/meshlab/system_packages.py): root runs apt-get, a user gets `sudo -n`,
a user without sudo gets the exact command and a stop, a system without apt-get gets a clear note.

Stand-ins for `apt-get` and `sudo` on PATH record their argv; nothing is installed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from meshlab import system_packages as sp

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "lib" / "meshlab" / "system_packages.py"


def stand_in(bin_dir: Path, name: str, log: Path, body: str = "") -> None:
    f = bin_dir / name
    f.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n{body}\n')
    f.chmod(f.stat().st_mode | stat.S_IXUSR)


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A PATH with only stand-ins, and one package whose command does not exist yet."""
    bin_dir, log = tmp_path / "bin", tmp_path / "argv.log"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(sp, "SBIN", ())
    monkeypatch.setattr(sp, "PACKAGES", (sp.Package("wrk", "wrk", ("local",), "load generator"),
                                         sp.Package("meshlab-nothing", "nothing", ("kind",), "test")))
    monkeypatch.setattr(sys, "platform", "linux")
    return bin_dir, log


def test_the_one_list_has_what_the_labs_need() -> None:
    names = {p.name: p for p in sp.PACKAGES}
    assert {"iproute2", "docker-registry", "wrk", "prometheus"} <= set(names)
    assert names["iproute2"].command == "ip" and names["docker-registry"].command == "docker-registry"
    assert not [p.name for p in sp.PACKAGES if "kind" in p.backends], "the kind backend needs no Debian package"
    assert sp.needed("kind") == []


def test_root_runs_apt_get_directly(world: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    bin_dir, log = world
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    # apt-get "installs": the stand-in creates the commands
    stand_in(bin_dir, "apt-get", log, f'case "$1" in install) for c in wrk nothing; do printf "#!/bin/sh\\n" > {bin_dir}/$c; /bin/chmod +x {bin_dir}/$c; done;; esac')
    assert sp.ensure() == 0
    assert log.read_text().splitlines() == [
        "apt-get update -qq", "apt-get install -y -qq --no-install-recommends wrk meshlab-nothing"]
    assert "installing Debian packages wrk meshlab-nothing" in capsys.readouterr().out
    log.unlink()
    assert sp.ensure() == 0 and not log.exists(), "nothing missing: nothing runs (fast and idempotent)"


def test_user_with_sudo_installs_non_interactively(world: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, log = world
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    stand_in(bin_dir, "sudo", log, 'shift; [ "$1" = true ] && exit 0; exec "$@"')  # `sudo -n CMD...` runs CMD
    stand_in(bin_dir, "apt-get", log, f'[ "$1" = install ] && printf "#!/bin/sh\\n" > {bin_dir}/wrk && /bin/chmod +x {bin_dir}/wrk; true')
    assert sp.ensure("local") == 0
    lines = log.read_text().splitlines()
    assert lines[0] == "sudo -n true", "probe first: sudo must not prompt"
    assert "sudo -n apt-get install -y -qq --no-install-recommends wrk" in lines
    assert all(not line.startswith("sudo ") or line.startswith("sudo -n ") for line in lines)


def test_user_without_sudo_gets_the_exact_command_and_a_stop(world: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    bin_dir, log = world
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    stand_in(bin_dir, "sudo", log, "exit 1")  # sudo would need a password
    stand_in(bin_dir, "apt-get", log)
    assert sp.ensure("all") == 2
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1, "one clear line"
    assert ("`sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends wrk meshlab-nothing`" in out
            and "make setup BACKEND=kind" in out)
    assert "apt-get" not in log.read_text(), "nothing was run without root"


def test_kind_backend_never_needs_a_debian_package(world: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sp, "PACKAGES", tuple(p for p in sp.PACKAGES if p.name == "wrk"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert sp.ensure("kind") == 0 and not world[1].exists()


def test_without_apt_get_it_says_what_is_missing_and_goes_on(world: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert sp.ensure() == 0
    out = capsys.readouterr().out
    assert "no apt-get here" in out and "wrk (wrk)" in out and "kind bring-up needs none" in out


def test_script_runs_with_a_plain_python_before_the_venv_exists() -> None:
    """`make setup` runs the file by path with the system Python: no meshlab imports, usage on bad input."""
    p = subprocess.run([sys.executable, "-I", str(SCRIPT), "bogus"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "usage:" in p.stderr
    p = subprocess.run([sys.executable, "-I", str(SCRIPT), "kind"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout == ""
    assert "import meshlab" not in SCRIPT.read_text() and "from ." not in SCRIPT.read_text()


def test_make_setup_goes_through_this_step() -> None:
    """The Makefile never runs apt-get itself (it did, as whatever user ran make)."""
    makefile = (ROOT / "Makefile").read_text()
    assert not [line for line in makefile.splitlines() if line.startswith("\t") and "apt-get" in line]
    assert "lib/meshlab/system_packages.py $(BACKEND)" in makefile
    assert "setup: system-packages $(STAMP)" in makefile
