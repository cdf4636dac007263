"""``meshlab wasm ...``: build filter folders and inspect modules from a shell.

    meshlab wasm build wasm-filters/add-header       # -> wasm-filters/add-header/build/filter.wasm
    meshlab wasm build-all [wasm-filters]            # every folder with a filter.json (`make filters`)
    meshlab wasm inspect FILE [--json]               # ABI version, callbacks, host functions, sha256
    meshlab wasm down                                # stop standalone Envoys left by a crashed kernel

Also runnable without the main CLI: ``python -m meshlab.wasm.cli build-all``.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..display import Table
from ..errors import MeshlabError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshlab wasm", description="Build and inspect proxy-wasm filters for Envoy.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    s = sub.add_parser("build", help="build one filter folder into DIR/build/filter.wasm")
    s.add_argument("dir")
    s.add_argument("--clean", action="store_true", help="remove build/ and node_modules/ first (a cold build)")
    s = sub.add_parser("build-all", help="build every filter folder (with a filter.json)")
    s.add_argument("root", nargs="?", help="the filters folder (default: the repository's wasm-filters/)")
    s.add_argument("--clean", action="store_true")
    s = sub.add_parser("inspect", help="the proxy-wasm ABI of a .wasm module (or of a filter folder's build)")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("down", help="stop every standalone Envoy meshlab.wasm.envoy() left running")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except MeshlabError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  fix: {e.hint}", file=sys.stderr)
        return 1


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
