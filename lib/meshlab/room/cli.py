"""``meshlab room ...``: the instructor's commands for a room on one VM (run them as root).

    meshlab room add 30 [--prefix learner] [--url https://room.example.org]   # accounts + logins table
    meshlab room list                                                          # the learners
    meshlab room check [--as USER]          # ready? the learners' Python, the course, doctor -- probed as a learner
    meshlab room up [JUPYTERHUB ARGS]      # the hub in the foreground: jupyterhub -f hub/jupyterhub_config.py
    meshlab room remove [USER ...] [--all]                                     # after the workshop
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import MeshlabError, report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshlab room", description="JupyterHub for a room of learners on one Linux VM (docs/hosting.md).")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    s = sub.add_parser("add", help="create N learner accounts and print their logins")
    s.add_argument("count", type=int, help="how many learners")
    s.add_argument("--prefix", default="learner", help="user names are PREFIX01, PREFIX02, ... (default learner)")
    s.add_argument("--url", default="http://<this VM>:8000", help="the hub's address, printed with each login")
    sub.add_parser("list", help="the learners (members of the group meshlab-learners)")
    s = sub.add_parser("check", help="is this VM ready? probes as a learner: their Python, the course, doctor; exit 1 if not")
    s.add_argument("--as", dest="user", help="the learner to probe as (default: the first learner)")
    s = sub.add_parser("up", help="run the hub in the foreground (Ctrl-C stops it and every learner's server)")
    s.add_argument("args", nargs=argparse.REMAINDER, help="more jupyterhub options, e.g. --JupyterHub.bind_url=http://:80")
    s = sub.add_parser("remove", help="delete learner accounts with their homes (only members of meshlab-learners)")
    s.add_argument("users", nargs="*", help="these learners")
    s.add_argument("--all", action="store_true", help="every learner, and the group")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from . import HUB_DIR, learners

    try:
        if args.cmd == "add":
            print(learners.logins_table(learners.add(args.count, prefix=args.prefix), args.url))
        elif args.cmd == "check":
            from ..prereqs import report
            from .check import checks

            found = checks(args.user)
            print(report(found))
            return 0 if all(c.ok for c in found) else 1
        elif args.cmd == "list":
            print("\n".join(learners.members()) or "no learners yet: `meshlab room add N`")
        elif args.cmd == "remove":
            if not args.users and not args.all:
                raise MeshlabError("which learners?", "name them, or pass --all")
            removed = learners.remove(None if args.all else args.users)
            print(f"removed {len(removed)} learners: {' '.join(removed)}")
        elif args.cmd == "up":
            hub = os.path.join(os.path.dirname(sys.executable), "jupyterhub")
            if not os.path.exists(hub):
                raise MeshlabError("JupyterHub is not installed in this environment", "run `make setup` (lib/pyproject.toml's hub extra)")
            os.execv(hub, [hub, "-f", str(HUB_DIR / "jupyterhub_config.py"), *args.args])
    except MeshlabError as e:
        return report(e)
    return 0
