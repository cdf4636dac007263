"""Ubuntu's restriction of unprivileged user namespaces, and the AppArmor profile that lifts it for meshlab only.

Since Ubuntu 23.10 (on by default in 24.04 LTS), ``kernel.apparmor_restrict_unprivileged_userns=1``: an
unconfined program that creates a user namespace is moved into the ``unprivileged_userns`` profile, which
denies every capability inside it, so ``ip netns add`` fails there and meshlab falls back to the loopback
mode. Ubuntu's documented remedy is not to turn the restriction off but to give the one program that needs
user namespaces a profile with the ``userns`` permission.

That program is meshlab's namespace holder (``meshlab.runtime.net``: ``unshare --user --map-root-user
--net --mount``). A profile for ``/usr/bin/unshare`` itself would lift the restriction for every user of
``unshare``, so ``install`` copies it to a path of meshlab's own (:data:`HOLDER`), optionally executable by
one group only (the learners), and attaches the profile there; meshlab uses that copy when it exists.
Run it once per machine, as root: ``sudo .venv/bin/meshlab admin apparmor install [--group learners]``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import MeshlabError
from .exec import run, which

PROFILE_NAME = "meshlab-userns"
HOLDER = Path("/usr/local/libexec/meshlab/unshare")  # meshlab's copy of util-linux's unshare
PROFILE = Path("/etc/apparmor.d") / PROFILE_NAME
RESTRICT_KNOB = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
APPARMOR_FS = Path("/sys/kernel/security/apparmor")


def profile_text(holder: Path = HOLDER) -> str:
    """The profile: unconfined (it confines nothing else), plus the ``userns`` permission, attached to ``holder``.

    ``abi <abi/4.0>`` is the AppArmor 4 policy ABI (Ubuntu 24.04) that knows the ``userns`` rule."""
    return f"""# meshlab: lets meshlab's namespace holder ({holder}) create user namespaces although
# kernel.apparmor_restrict_unprivileged_userns=1. Installed by `meshlab admin apparmor install`;
# removed by `meshlab admin apparmor remove`. Nothing else on the system changes.
abi <abi/4.0>,
include <tunables/global>

profile {PROFILE_NAME} {holder} flags=(unconfined) {{
  userns,

  # site-specific additions and overrides
  include if exists <local/{PROFILE_NAME}>
}}
"""


def restricted(knob: Path = RESTRICT_KNOB) -> bool:
    """True where AppArmor restricts unprivileged user namespaces (the sysctl exists and is 1)."""
    try:
        return knob.read_text().strip() == "1"
    except OSError:
        return False


def installed_holder(holder: Path = HOLDER, profile: Path = PROFILE) -> str | None:
    """meshlab's holder program, if an administrator installed it and its profile (else None)."""
    return str(holder) if holder.is_file() and os.access(holder, os.X_OK) and profile.is_file() else None


def install(group: str | None = None, root: Path = Path("/"), load: bool = True) -> list[str]:
    """Copy ``unshare`` to :data:`HOLDER`, write the profile and load it (``apparmor_parser -r``).

    ``group``: only its members may run the holder (mode 0750), e.g. the learners of a room; without it,
    every user may (0755). ``root`` and ``load=False`` install into another tree (images, tests)."""
    holder, profile = root / HOLDER.relative_to("/"), root / PROFILE.relative_to("/")
    if root == Path("/") and os.geteuid() != 0:
        raise MeshlabError("installing meshlab's AppArmor profile needs root",
                           "ask an administrator to run: sudo .venv/bin/meshlab admin apparmor install")
    done = []
    holder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(which("unshare", "install util-linux (Debian/Ubuntu package util-linux)"), holder)
    if group:
        import grp

        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise MeshlabError(f"no group {group!r} on this machine", f"create it first: sudo groupadd {group}") from None
        os.chown(holder, 0 if root == Path("/") else -1, gid)
        holder.chmod(0o750)
        done.append(f"installed {holder} (mode 0750, group {group}: only its members may create namespaces through it)")
    else:
        holder.chmod(0o755)
        done.append(f"installed {holder} (a copy of {which('unshare')}, mode 0755)")
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.write_text(profile_text(HOLDER))
    done.append(f"wrote the AppArmor profile {profile} (grants `userns` to {HOLDER} only)")
    if load and not APPARMOR_FS.exists():
        done.append(f"not loaded: AppArmor is not active on this machine ({APPARMOR_FS} is absent); it loads at boot where it is")
    elif load:
        parser = which("apparmor_parser", "install AppArmor's tools (Debian/Ubuntu package apparmor)")
        run([parser, "-r", str(profile)], hint="this AppArmor may be older than 4.0 (Ubuntu 24.04), which knows the userns rule")
        done.append(f"loaded it: apparmor_parser -r {profile}")
    return done


def remove(root: Path = Path("/"), load: bool = True) -> list[str]:
    """Undo :func:`install`: unload the profile, delete it and the holder."""
    holder, profile = root / HOLDER.relative_to("/"), root / PROFILE.relative_to("/")
    done = []
    if profile.exists():
        if load and APPARMOR_FS.exists():
            run([which("apparmor_parser"), "-R", str(profile)], check=False)
        profile.unlink()
        done.append(f"removed the AppArmor profile {profile}")
    if holder.exists():
        holder.unlink()
        done.append(f"removed {holder}")
    return done or ["nothing to remove: meshlab's AppArmor profile is not installed"]


def status() -> str:
    """One paragraph: whether the restriction is on here, and whether meshlab's profile lifts it."""
    if not restricted():
        return ("AppArmor does not restrict unprivileged user namespaces on this machine "
                f"({RESTRICT_KNOB} is absent or 0): meshlab needs no profile here")
    if installed_holder():
        return (f"AppArmor restricts unprivileged user namespaces; meshlab's profile {PROFILE} grants `userns` to "
                f"{HOLDER}, which meshlab uses: the userns mode works")
    return ("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1) and "
            "meshlab's profile is not installed: ordinary users get the loopback mode (no isolation). "
            "Fix, once, as root: sudo .venv/bin/meshlab admin apparmor install [--group GROUP]")
