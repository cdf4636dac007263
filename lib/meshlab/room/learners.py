"""Learner accounts for a room: ``meshlab room add N`` creates them and prints their logins.

Each learner is an ordinary Unix user (home directory, login shell, no sudo) in the group
:data:`~meshlab.room.GROUP`, which is what the hub admits. Passwords are generated and printed once;
the hub checks them through PAM, like any login on the machine.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import secrets
from dataclasses import dataclass

from ..display import Table
from ..errors import MeshlabError
from ..exec import run, which
from . import GROUP

NAME = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or copied from a slide


@dataclass(frozen=True)
class Login:
    user: str
    password: str
    uid: int


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise MeshlabError(f"{what} needs root (it creates or deletes Unix accounts)", f"run it with sudo: sudo .venv/bin/meshlab room ...")


def members(group: str = GROUP) -> list[str]:
    """The learners: members of ``group`` (as a supplementary group), sorted."""
    try:
        return sorted(grp.getgrnam(group).gr_mem)
    except KeyError:
        return []


def _password() -> str:
    return "-".join("".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(4)) for _ in range(3))


def add(count: int, prefix: str = "learner", group: str = GROUP) -> list[Login]:
    """Create ``count`` new learners ``<prefix>01``, ``<prefix>02``, ... (numbers after the highest taken)."""
    _require_root("adding learners")
    if count < 1:
        raise MeshlabError(f"cannot add {count} learners", "give a number of learners of at least 1")
    if not NAME.match(f"{prefix}00"):
        raise MeshlabError(f"{prefix!r} does not make valid user names", "use lowercase letters, digits and '-', starting with a letter")
    try:
        grp.getgrnam(group)
    except KeyError:
        run([which("groupadd"), group])
    taken = {p.pw_name for p in pwd.getpwall()}
    numbers = [int(n[len(prefix):]) for n in taken if n.startswith(prefix) and n[len(prefix):].isdigit()]
    start = max(numbers, default=0) + 1
    logins = []
    for i in range(start, start + count):
        user = f"{prefix}{i:02d}"
        run([which("useradd"), "--create-home", "--shell", "/bin/bash", "--groups", group,
             "--comment", "meshlab learner", user])
        password = _password()
        run([which("chpasswd")], input=f"{user}:{password}\n")
        logins.append(Login(user, password, pwd.getpwnam(user).pw_uid))
    return logins


def remove(users: list[str] | None = None, group: str = GROUP) -> list[str]:
    """Delete learners (default: every member of ``group``) with their home directories and processes.

    Only members of ``group`` are ever deleted: the instructor's and the system's accounts are safe.
    """
    _require_root("removing learners")
    learners = members(group)
    names = learners if users is None else users
    strangers = [u for u in names if u not in learners]
    if strangers:
        raise MeshlabError(f"not learners (not in group {group}): {', '.join(strangers)}", "`meshlab room list` shows the learners")
    for user in names:
        run([which("pkill"), "-KILL", "-u", user], check=False)  # a server the hub did not stop; exit 1 = none
        run([which("userdel"), "--remove", user], check=False)  # 12 = could not remove the mail spool: fine
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        raise MeshlabError(f"could not delete user {user}", f"`userdel --remove {user}` says why")
    if users is None:
        try:
            grp.getgrnam(group)
            run([which("groupdel"), group], check=False)
        except KeyError:
            pass
    return names


def logins_table(logins: list[Login], url: str) -> Table:
    return Table([{"USER": l.user, "PASSWORD": l.password, "URL": url} for l in logins],
                 title=f"{len(logins)} learners: log in at the URL with this user and password")
