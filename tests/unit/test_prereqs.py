"""Prerequisite checks: run for real on this machine, plus the pure threshold logic."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from meshlab import prereqs
from meshlab.prereqs import Check


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_every_failed_check_has_a_fix() -> None:
    for c in prereqs.check_local() + prereqs.check_kind():
        assert c.backend in ("local", "kind", "both")
        if not c.ok:
            assert c.fix, f"{c.name} failed without a fix: {c.detail}"


@pytest.mark.skipif(os.geteuid() != 0, reason="netns mode needs root")
def test_local_on_this_machine_uses_netns_and_finds_envoy_140() -> None:
    checks = by_name(prereqs.check_local())
    assert prereqs.network_mode() == "netns"
    assert checks["network mode"].ok and checks["network mode"].detail.startswith("netns")
    envoy = checks["envoy"]
    assert envoy.ok, envoy.detail
    assert "Envoy 1.40." in envoy.detail
    assert all(c.ok for c in checks.values()), prereqs.report(list(checks.values()))


def test_network_check_says_loopback_loses_isolation() -> None:
    c = prereqs.network_check("loopback")
    assert c.ok and "isolation lost" in c.detail


def _docker_info_works() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_kind_reports_docker_failing_with_a_fix() -> None:
    if _docker_info_works():
        pytest.skip("a Docker engine is reachable here")
    checks = by_name(prereqs.check_kind())
    docker = checks.get("docker engine") or checks["docker cli"]
    assert not docker.ok
    assert docker.fix and ("docker" in docker.fix.lower())
    memory = checks["docker memory"]
    assert not memory.ok and memory.fix and "8 GiB" in memory.fix


def test_inotify_thresholds() -> None:
    small = prereqs.inotify_check(8192, 128)
    assert not small.ok
    assert small.fix and "fs.inotify.max_user_watches=524288" in small.fix
    assert "fs.inotify.max_user_instances=512" in small.fix
    assert not prereqs.inotify_check(524288, 128).ok
    assert not prereqs.inotify_check(8192, 512).ok
    assert not prereqs.inotify_check(None, None).ok
    big = prereqs.inotify_check(524288, 512)
    assert big.ok and big.fix is None


def test_docker_memory_thresholds() -> None:
    assert not prereqs.docker_memory_check(None).ok
    assert not prereqs.docker_memory_check(4 * prereqs.GIB).ok
    assert prereqs.docker_memory_check(8 * prereqs.GIB).ok


def test_report_lists_every_check_and_each_failed_fix() -> None:
    checks = [
        Check("alpha", True, "fine", None, "local"),
        Check("beta", False, "broken", "do the beta thing", "kind"),
        prereqs.inotify_check(1, 1),
    ]
    text = prereqs.report(checks)
    for c in checks:
        assert c.name in text
    assert "✓ alpha" in text and "✗ beta" in text
    assert "do the beta thing" in text
    assert prereqs.INOTIFY_FIX in text
    assert "2 of 3 checks failed" in text


def test_report_on_real_checks_contains_names_and_fixes() -> None:
    checks = prereqs.check_local() + prereqs.check_kind()
    text = prereqs.report(checks)
    for c in checks:
        assert c.name in text
        if not c.ok:
            assert c.fix and c.fix in text


# ---- meshlab doctor ---------------------------------------------------------------------------------

def test_doctor_lists_every_check_once() -> None:
    checks, ready = prereqs.doctor("both")
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), f"a check printed twice: {names}"
    assert by_name(checks)["python >= 3.11"].backend == "both"
    assert set(ready) == {"local", "kind"}
    assert set(prereqs.doctor("local")[1]) == {"local"}


def test_doctor_checks_the_debian_packages_the_labs_need() -> None:
    checks = by_name(prereqs.doctor("local")[0])
    for name in ("docker-registry", "wrk", "prometheus", "ip (iproute2)"):
        assert name in checks
    assert not any(name in by_name(prereqs.check_kind()) for name in ("docker-registry", "wrk", "prometheus")), \
        "the kind backend needs no Debian package (its registry is a container)"


def test_missing_package_is_a_warning_with_the_setup_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from meshlab import system_packages

    monkeypatch.setattr(system_packages, "find_command", lambda cmd: None if cmd == "wrk" else "/usr/bin/" + cmd)
    wrk = by_name(prereqs.package_checks("local"))["wrk"]
    assert not wrk.ok and not wrk.required and "labs 01 and 01b" in wrk.detail
    assert wrk.fix and "make setup" in wrk.fix and "sudo apt-get install -y -qq --no-install-recommends wrk" in wrk.fix


def _fake(monkeypatch: pytest.MonkeyPatch, local: list[Check], kind: list[Check]) -> None:
    monkeypatch.setattr(prereqs, "check_local", lambda: local)
    monkeypatch.setattr(prereqs, "check_kind", lambda: kind)


def test_doctor_exit_status_and_readiness(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from meshlab.cli import main

    py = Check("python >= 3.11", True, "3.11", None, "both")
    _fake(monkeypatch, [py, Check("envoy", True, "1.40", None, "local"), Check("wrk", False, "not found", "make setup", "local", required=False)],
          [py, Check("docker engine", False, "not reachable", "start Docker", "kind")])
    assert main(["doctor"]) == 1, "a required check failed"
    out = capsys.readouterr().out
    assert out.count("python >= 3.11") == 1
    assert "local backend: ready; warnings: wrk" in out and "kind backend: NOT READY (docker engine)" in out
    assert main(["doctor", "--backend", "local"]) == 0, "warnings alone do not fail"
    out = capsys.readouterr().out
    assert "kind backend" not in out and "docker engine" not in out


def test_docker_engine_version_and_image_store() -> None:
    assert prereqs.docker_version_check("29.1.2").ok and prereqs.docker_version_check("28.0.4").ok
    old = prereqs.docker_version_check("20.10.24+dfsg1")
    assert not old.ok and old.required and old.fix and "docker save --platform" in old.fix
    containerd = prereqs.image_store_check([["driver-type", "io.containerd.snapshotter.v1"]])
    assert containerd.ok and "containerd image store" in containerd.detail
    assert "docker save --platform" in containerd.detail and "kind load image-archive" in containerd.detail
    classic = prereqs.image_store_check([["Backing Filesystem", "extfs"], ["Supports d_type", "true"]])
    assert classic.ok and "classic" in classic.detail
    assert not prereqs.image_store_check(None).ok


def test_mode_for_applies_the_backends_rule_to_any_machine() -> None:
    """Lab 00's exercise grades against this: the override wins, then root, then user namespaces."""
    assert prereqs.mode_for(root=True, user_namespaces=False) == "netns"
    assert prereqs.mode_for(root=False, user_namespaces=True) == "userns"
    assert prereqs.mode_for(root=False, user_namespaces=False) == "loopback"
    assert prereqs.mode_for(root=True, user_namespaces=True, forced="loopback") == "loopback"
