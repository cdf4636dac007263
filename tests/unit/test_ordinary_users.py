"""Ordinary users are first-class: tools found outside their PATH, kernel settings that block user namespaces
named with their fix, meshlab's AppArmor profile, a 127.x block per loopback lab, and a doctor that probes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from meshlab import apparmor, exec as mexec, prereqs
from meshlab.runtime import net, procs
from meshlab.errors import MeshlabError
from meshlab.topology import load_topology


# ---- tools wherever the distribution puts them ---------------------------------------------------
def _tool(folder: Path, name: str, body: str = "echo found-me") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_a_tool_outside_path_is_found_in_the_sbin_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's ordinary user has no /usr/sbin on PATH, where ``ip`` and ``sysctl`` live."""
    sbin = tmp_path / "sbin"
    _tool(sbin, "ml-sbin-tool")
    monkeypatch.setattr(mexec, "SBIN_DIRS", (str(sbin),))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert mexec.which("ml-sbin-tool") == str(sbin / "ml-sbin-tool")
    assert mexec.run(["ml-sbin-tool"]).stdout.strip() == "found-me"
    # and a command that runs another one by name (as `ip netns exec NS sysctl` does) finds it too
    assert mexec.run(["sh", "-c", "ml-sbin-tool"]).stdout.strip() == "found-me"
    assert str(sbin) in procs.child_env()["PATH"].split(os.pathsep)


def test_a_missing_tool_names_where_it_was_looked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MeshlabError, match=r"(?s)not found.*/usr/sbin.*fix: install it"):
        mexec.which("ml-no-such-tool", "install it")


# ---- what blocks unprivileged user namespaces ------------------------------------------------------
def _proc_sys(tmp_path: Path, **knobs: int) -> Path:
    for key, value in knobs.items():
        path = tmp_path / key.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    return tmp_path


def test_no_blockers_when_the_kernel_allows_user_namespaces(tmp_path: Path) -> None:
    assert net.userns_blockers(_proc_sys(tmp_path, user__max_user_namespaces=15000)) == []


def test_each_kernel_setting_that_blocks_user_namespaces_is_named_with_its_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apparmor, "installed_holder", lambda *a: None)
    root = _proc_sys(tmp_path, user__max_user_namespaces=0, kernel__unprivileged_userns_clone=0,
                     kernel__apparmor_restrict_unprivileged_userns=1)
    blockers = {b.knob: b for b in net.userns_blockers(root)}
    assert set(blockers) == {"user.max_user_namespaces", "kernel.unprivileged_userns_clone",
                             "kernel.apparmor_restrict_unprivileged_userns"}
    aa = blockers["kernel.apparmor_restrict_unprivileged_userns"]
    assert "Ubuntu 24.04" in aa.meaning and "meshlab admin apparmor install" in aa.fix
    assert "never turn the restriction off" in aa.fix  # the fix is for meshlab only, not system-wide
    assert "sysctl -w user.max_user_namespaces" in blockers["user.max_user_namespaces"].fix


def test_the_apparmor_restriction_is_no_blocker_once_meshlabs_profile_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apparmor, "installed_holder", lambda *a: "/usr/local/libexec/meshlab/unshare")
    assert net.userns_blockers(_proc_sys(tmp_path, kernel__apparmor_restrict_unprivileged_userns=1)) == []
    assert net.unshare_program() == "/usr/local/libexec/meshlab/unshare"


def test_the_loopback_fallback_says_which_setting_and_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHLAB_NET_MODE", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(net, "userns_blockers", lambda *a: [net.Blocker("kernel.apparmor_restrict_unprivileged_userns", 1, "AppArmor restricts", net.APPARMOR_FIX)])
    mode, why = net.choose_mode()
    assert mode == net.LOOPBACK
    assert "AppArmor restricts" in why and "meshlab admin apparmor install" in why and "isolation is lost" in why


# ---- meshlab's AppArmor profile ----------------------------------------------------------------
def test_the_profile_grants_userns_to_meshlabs_holder_only() -> None:
    text = apparmor.profile_text()
    assert "abi <abi/4.0>," in text
    assert f"profile {apparmor.PROFILE_NAME} {apparmor.HOLDER} flags=(unconfined) {{" in text
    assert "\n  userns,\n" in text
    assert "/usr/bin/unshare" not in text  # never every user of the system's unshare


def test_install_and_remove_in_a_tree(tmp_path: Path) -> None:
    done = apparmor.install(root=tmp_path, load=False)
    holder = tmp_path / str(apparmor.HOLDER).lstrip("/")
    profile = tmp_path / str(apparmor.PROFILE).lstrip("/")
    assert os.access(holder, os.X_OK) and profile.read_text() == apparmor.profile_text()
    assert apparmor.installed_holder(holder, profile) == str(holder)
    assert any("userns" in line for line in done)
    apparmor.remove(root=tmp_path, load=False)
    assert not holder.exists() and not profile.exists()
    assert apparmor.installed_holder(holder, profile) is None


def test_installing_for_the_system_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(MeshlabError, match="needs root"):
        apparmor.install()


# ---- loopback: a block of 127.0.0.0/8 per lab ----------------------------------------------------
def test_two_loopback_labs_get_disjoint_addresses() -> None:
    topo = load_topology("separate-networks")
    addresses = []
    for block in (1, 2):
        n = net.Network(net.LOOPBACK, "mlx", lambda ns: None, block=block)
        mine = {n.gateway_ip(topo, c) for c in topo.clusters} | {n.node_service_ip(topo, c) for c in topo.clusters}
        mine |= {n.external_ip()}
        for c in topo.clusters.values():
            for i in range(3):
                a = n.pod_addresses(topo, c, i)
                mine |= {a.ip, a.app_host}
        assert all(x.startswith("127.") and x != "127.0.0.1" for x in mine)
        addresses.append(mine)
    assert not addresses[0] & addresses[1]


def test_two_labs_that_prefer_one_block_get_two(tmp_path: Path) -> None:
    """The claim is an abstract Unix socket held by a process: host-wide, and gone with the process."""
    held: list[procs.Proc] = []
    try:
        a = net.start_holder(net.LOOPBACK, tmp_path / "a", "same-seed", held.append)["loopback_block"]
        b = net.start_holder(net.LOOPBACK, tmp_path / "b", "same-seed", held.append)["loopback_block"]
        assert a != b and net.block_in_use(a) and net.block_in_use(b)
    finally:
        procs.terminate([p.record() for p in held], grace=2)
    assert not net.block_in_use(a) and not net.block_in_use(b)


# ---- doctor: "ready" means `up` works ------------------------------------------------------------
def test_doctor_probes_the_network_mode_for_real() -> None:
    checks = {c.name: c for c in prereqs.check_local()}
    probe = checks["network probe"]
    assert probe.ok and probe.required, probe
    assert "8443" in probe.detail  # a gateway's port bound as this user


def test_a_failing_probe_makes_the_local_backend_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(mode: str, work_dir: Path) -> str:
        raise MeshlabError("command failed (exit 1): ip netns add mlprobe-wan\n  | mount --make-shared /run/netns failed: Permission denied",
                           "the namespace is not usable")

    monkeypatch.setattr(net, "probe", broken)
    checks, ready = prereqs.doctor("local")
    assert ready == {"local": False}
    probe = next(c for c in checks if c.name == "network probe")
    assert "Permission denied" in probe.detail and probe.fix == "the namespace is not usable"


# ---- what a learner misses in the loopback mode ----------------------------------------------------
class _Lab:
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def status(self) -> dict[str, str]:
        return {"network_mode": self.mode}


def test_an_isolation_check_says_what_the_loopback_mode_cannot_show() -> None:
    from meshlab import checks

    for mode in ("netns", "userns", "kind"):
        assert checks.isolation_missing(_Lab(mode), "a pod refused") is None  # type: ignore[arg-type]
    said = checks.isolation_missing(_Lab("loopback"), "a cluster1 pod refused by a cluster2 pod")  # type: ignore[arg-type]
    assert said and "a cluster1 pod refused by a cluster2 pod" in said
    assert "127.x" in said and "meshlab doctor" in said and "userns" in said


def test_a_listener_that_cannot_bind_gets_the_real_cause() -> None:
    """Lab 09's ingress on 443 as an ordinary user once got a hint about Wasm modules."""
    from meshlab.backends.local.backend import bind_hint

    said = bind_hint("[warning][config] listener '0.0.0.0_443' failed to listen on address '127.1.0.1:443': cannot bind '127.1.0.1:443': Permission denied")
    assert said and "below 1024" in said and "8443" in said
    assert "meshlab down" in (bind_hint("cannot bind '10.10.0.10:15001': Address already in use") or "")
    assert bind_hint("wasm log: proxy_on_configure returned false") is None
