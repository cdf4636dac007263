"""``meshlab wasm ...``: build filter folders and inspect modules from a shell.

    meshlab wasm build wasm-filters/add-header       # -> wasm-filters/add-header/build/filter.wasm
    meshlab wasm build-all [wasm-filters]            # every folder with a filter.json (`make filters`)
    meshlab wasm inspect FILE [--json]               # ABI version, callbacks, host functions, sha256
    meshlab wasm down                                # stop standalone Envoys left by a crashed kernel

The hub (an OCI registry with user accounts, see meshlab.wasm.hub):

    meshlab wasm hub up [--port N]                   # start it (127.0.0.1, TLS, htpasswd); `hub down` stops it
    meshlab wasm hub users add alice [--password P]  # a user (password generated and printed if not given)
    meshlab wasm login alice                         # the default user for push/pull/list/tag
    meshlab wasm push wasm-filters/add-header wasm/add-header:v1 [--variant oci|compat] [--user alice]
    meshlab wasm list                                # repositories, tags, digests, layout, ABI, root ids
    meshlab wasm pull wasm/add-header:v1 -o add-header.wasm    # every digest verified
    meshlab wasm tag wasm/add-header:v1 stable

Also runnable without the main CLI: ``python -m meshlab.wasm.cli build-all``.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..display import Table
from ..errors import MeshlabError, report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshlab wasm", description="Build and inspect proxy-wasm filters for Envoy.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="`meshlab wasm COMMAND -h` explains one")
    s = sub.add_parser("build", help="build one filter folder into DIR/build/filter.wasm")
    s.add_argument("dir", help="a filter folder with a filter.json, e.g. wasm-filters/add-header")
    s.add_argument("--clean", action="store_true", help="remove build/ and node_modules/ first (a cold build)")
    s = sub.add_parser("build-all", help="build every filter folder (with a filter.json)")
    s.add_argument("root", nargs="?", help="the filters folder (default: the repository's wasm-filters/)")
    s.add_argument("--clean", action="store_true", help="remove build/ and node_modules/ first (cold builds)")
    s = sub.add_parser("inspect", help="the proxy-wasm ABI of a .wasm module (or of a filter folder's build)")
    s.add_argument("file", help="a .wasm file, or a filter folder (its build/filter.wasm)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("down", help="stop every standalone Envoy meshlab.wasm.envoy() left running")

    hub = sub.add_parser("hub", help="the module hub: an OCI registry with user accounts (up, down, status, users)")
    hsub = hub.add_subparsers(dest="hub_cmd", required=True, metavar="ACTION", help="up, down, status or users")
    s = hsub.add_parser("up", help="start the hub (a no-op if it runs)")
    s.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT (default: a free port)")
    hsub.add_parser("down", help="stop the hub and remove its modules, users and certificates")
    hsub.add_parser("status", help="address, CA certificate, users, current login")
    users = hsub.add_parser("users", help="user accounts (htpasswd)")
    usub = users.add_subparsers(dest="users_cmd", required=True, metavar="ACTION", help="add or list")
    s = usub.add_parser("add", help="add a user, or set a new password")
    s.add_argument("name", help="the user name (lowercase letters, digits, . _ -)")
    s.add_argument("--password", help="default: a generated one, printed once (and kept in the hub's state, mode 0600)")
    usub.add_parser("list", help="the hub's users")

    def who(s: argparse.ArgumentParser) -> None:
        s.add_argument("--user", "-u", help="log in as this user (default: `meshlab wasm login`'s user)")
        s.add_argument("--password", help="default: the password the hub keeps for the user")

    s = sub.add_parser("login", help="check a user's credentials and make it the default for push/pull/list/tag")
    s.add_argument("user", help="a hub user (`meshlab wasm hub users add NAME` creates one)")
    s.add_argument("--password", help="default: the password the hub keeps for the user")
    sub.add_parser("logout", help="forget the default user (later requests are anonymous: the hub refuses them)")
    s = sub.add_parser("push", help="package a module as an OCI image and push it to the hub")
    s.add_argument("file", help="a .wasm file or a filter folder (its build/filter.wasm)")
    s.add_argument("ref", help="REPOSITORY:TAG in the hub (e.g. wasm/add-header:v1), or HOST:PORT/REPOSITORY:TAG")
    s.add_argument("--variant", choices=["oci", "compat"], default="oci",
                   help="oci: wasm-image-spec media types (default); compat: plugin.wasm in a tar+gzip layer")
    s.add_argument("--root-id", action="append", dest="root_ids", help="root id(s) for the image config (default: from filter.json)")
    who(s)
    s = sub.add_parser("pull", help="pull a module from the hub (every digest verified)")
    s.add_argument("ref", help="REPOSITORY:TAG in the hub, e.g. wasm/add-header:v1")
    s.add_argument("-o", "--output", help="write the module here (default: <repository name>.wasm)")
    s.add_argument("--manifest", action="store_true", help="also print the manifest and runtime config")
    who(s)
    s = sub.add_parser("list", help="repositories and tags in the hub")
    s.add_argument("repository", nargs="?", help="only this repository, e.g. wasm/add-header (default: all)")
    who(s)
    s = sub.add_parser("tag", help="give an image in the hub another tag (same digest)")
    s.add_argument("ref", help="the image to tag: REPOSITORY:TAG, e.g. wasm/add-header:v1")
    s.add_argument("tag", help="the new tag, e.g. stable")
    who(s)
    s = sub.add_parser("secret", help="the running lab: a docker-registry pull secret from a hub user, in one cluster")
    s.add_argument("name", help="the secret's name, as imagePullSecret names it (default user: the same name)")
    s.add_argument("--cluster", required=True, help="Istio reads the secret in the cluster of each proxy that pulls")
    s.add_argument("--user", help="the hub user whose credentials it holds (default: NAME)")
    s.add_argument("--namespace", default="sample", help="the extension's namespace (default: sample)")
    s = sub.add_parser("ecds", help="the running lab: extension configs a sidecar got over ECDS (like istioctl proxy-config ecds)")
    s.add_argument("workload", help="an app, deployment or pod name, e.g. helloworld-v1")
    s.add_argument("--cluster", required=True, help="the cluster the workload runs in")
    s = sub.add_parser("agent-log", help="the running lab: a sidecar agent's Wasm lines (fetches, failures, RBAC fallback)")
    s.add_argument("workload", help="an app, deployment or pod name, e.g. helloworld-v1")
    s.add_argument("--cluster", required=True, help="the cluster the workload runs in")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except MeshlabError as e:
        return report(e)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .build import build_filter, filters
    from .inspect import inspect

    if args.cmd == "build":
        r = build_filter(args.dir, clean=args.clean)
        print(f"built {r.wasm}: {r.size} bytes, sha256 {r.sha256}, {r.seconds:.1f}s ({'; '.join(r.steps)})")
    elif args.cmd == "build-all":
        rows = []
        for f in filters(args.root):
            print(f"building {f.name} ({f.language}) ...", flush=True)
            r = build_filter(f.dir, clean=args.clean)
            rep = inspect(r.wasm)
            rows.append({
                "FILTER": f.name, "LANGUAGE": f.language, "ROOT ID": f.root_id, "ABI": rep.abi_version,
                "SIZE": r.size, "SHA256": r.sha256[:16], "SECONDS": f"{r.seconds:.1f}", "OUTPUT": str(r.wasm),
            })  # fmt: skip
        print(Table(rows, title=f"{len(rows)} filters built"))
    elif args.cmd == "inspect":
        path = Path(args.file)
        if path.is_dir() and (path / "build" / "filter.wasm").exists():
            path = path / "build" / "filter.wasm"
        rep = inspect(path)
        print(json.dumps(rep.to_dict(), indent=1) if args.json else rep)
        return 0 if rep.ok else 1
    elif args.cmd == "down":
        from .standalone import down_all

        print(f"stopped {down_all()} processes of standalone Envoys")
    elif args.cmd in ("hub", "login", "logout", "push", "pull", "list", "tag"):
        return _hub(args)
    elif args.cmd in ("secret", "ecds", "agent-log"):
        return _mesh(args)
    return 0


def _mesh(args: argparse.Namespace) -> int:
    """The lab side of Wasm delivery: pull secrets per cluster, and what each sidecar's agent and Envoy got."""
    from ..lab import Lab

    lab = Lab.attach()
    if args.cmd == "secret":
        from .hub import Hub

        hub = Hub.running()
        if hub is None:
            raise MeshlabError("no wasm hub is running to take the credentials from", "start it: meshlab wasm hub up")
        user, password = hub.secret(args.user or args.name)
        lab.create_pull_secret(args.name, args.cluster, hub.address, user, password, args.namespace)
    elif args.cmd == "ecds":
        for name, c in lab.extension_configs(args.workload, args.cluster).items():
            tc = c["ecds_filter"].get("typed_config", {})
            print(f"{name}  version {c.get('version_info')}  {tc.get('@type', '').rsplit('.', 1)[-1]}")
            print(json.dumps(tc, indent=1))
    else:
        for line in lab.agent_log(args.workload, args.cluster):
            print(line)
    return 0


def _hub(args: argparse.Namespace) -> int:
    from .hub import Hub

    if args.cmd == "hub" and args.hub_cmd == "up":
        hub = Hub.up(port=args.port, keep=True)
        print(f"wasm hub: https://{hub.address}  (CA certificate: {hub.ca_file})")
        print(f"  users: {', '.join(hub.users) or 'none yet: meshlab wasm hub users add NAME'}")
        return 0
    if args.cmd == "hub" and args.hub_cmd == "down":
        print(f"wasm hub stopped ({Hub.down_all()} processes)")
        return 0
    hub = Hub.attach()
    user = getattr(args, "user", None)
    password = getattr(args, "password", None)
    if args.cmd == "hub" and args.hub_cmd == "status":
        print(json.dumps(hub.status(), indent=1))
    elif args.cmd == "hub" and args.users_cmd == "add":
        pw = hub.add_user(args.name, args.password)
        print(f"user {args.name} added to the hub" + ("" if args.password else f"; password: {pw}"))
    elif args.cmd == "hub" and args.users_cmd == "list":
        print("\n".join(hub.users) or "(no users)")
    elif args.cmd == "login":
        hub.login(args.user, args.password)
        print(f"logged in to {hub.address} as {args.user}")
    elif args.cmd == "logout":
        hub.logout()
        print("logged out: requests are anonymous now")
    elif args.cmd == "push":
        print(hub.push(args.file, args.ref, user, password=password, variant=args.variant, root_ids=args.root_ids))
    elif args.cmd == "pull":
        from . import oci

        ref = oci.parse_ref(args.ref, hub.address)
        out = args.output or f"{ref.repository.rsplit('/', 1)[-1]}.wasm"
        p = hub.pull(args.ref, user, password=password, out=out)
        print(f"pulled {p.ref} ({p.variant}, digest {p.digest}) -> {out}: {len(p.wasm)} bytes, module {p.wasm_sha256} (every digest verified)")
        if args.manifest:
            print(json.dumps({"manifest": p.manifest, "runtime_config": p.runtime_config}, indent=1))
    elif args.cmd == "list":
        print(hub.list(user, password=password, repository=args.repository))
    elif args.cmd == "tag":
        print(f"tagged {hub.ref(args.ref)} as {args.tag}: {hub.tag(args.ref, args.tag, user, password=password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
