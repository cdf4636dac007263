#!/usr/bin/env python3
"""Run the lab notebooks headless with papermill and print a table: lab, status, duration.

    python tests/labs/run_labs.py --backend local --out build/labs [-p key=value ...] [NOTEBOOK ...]

Without NOTEBOOK arguments it runs every ``labs/[0-9]*.ipynb`` in order, with ``solutions=True`` (every
exercise's hidden solution runs and is checked; ``-p solutions=False`` runs them as a learner finds them). Each executed notebook is
written to the out dir (on failure too: papermill marks the failing cell). A failure does not stop
the run; the exit status is 1 if any notebook failed. Notebooks clean up after themselves, in a state
directory of their own (``MESHLAB_HOME``, unless set): a lab you are running, or another run on the same
machine, is never torn down by this one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "labs"


def lab_notebooks() -> list[Path]:
    return sorted(LABS.glob("[0-9]*.ipynb"))


def parse_value(raw: str) -> Any:
    """Like papermill's ``-p``: ints, floats, booleans and None are typed; anything else is a string."""
    if raw in ("True", "true"):
        return True
    if raw in ("False", "false"):
        return False
    if raw in ("None", "none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


MAX_REASON_LINES = 25


def failure(exc: BaseException) -> tuple[str, str]:
    """(short status for the table, the whole reason): an assertion's message is the lesson, keep it."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    text = str(evalue) if ename else str(exc)
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > MAX_REASON_LINES:
        lines = lines[:MAX_REASON_LINES] + [f"... ({len(lines) - MAX_REASON_LINES} more lines in the executed notebook)"]
    cell = getattr(exc, "exec_count", None)
    name = ename or type(exc).__name__
    where = f" in cell [{cell}]" if cell is not None else ""
    return f"FAILED {name}{where}", "\n".join(["  " + line for line in lines] or ["  (no message)"])


def kernel_manager() -> type:
    """Kernels on IPC sockets: over TCP ipykernel warns, for every notebook, that it runs unencrypted."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw: Any) -> None:
            super().__init__(transport="ipc", **kw)

    return IPCKernelManager


def run_one(nb: Path, out_dir: Path, parameters: dict[str, Any], timeout: int) -> tuple[bool, str, str, float]:
    """Run one notebook: (ok, status, the failure's whole reason or "", seconds)."""
    import papermill

    start = time.monotonic()
    try:
        papermill.execute_notebook(
            str(nb),
            str(out_dir / nb.name),
            parameters=parameters,
            kernel_name="python3",
            kernel_manager_class=kernel_manager(),
            cwd=str(LABS),
            execution_timeout=timeout,
            log_output=False,
            progress_bar=False,
        )
        return True, "ok", "", time.monotonic() - start
    except Exception as e:  # keep going: one broken lab must not hide the others
        status, reason = failure(e)
        return False, status, reason, time.monotonic() - start


def table(rows: list[tuple[str, str, str]]) -> str:
    header = ("lab", "status", "duration (s)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    fmt = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:>{widths[2]}}}"
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    return "\n".join(lines + [fmt.format(*r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: labs/[0-9]*.ipynb)")
    ap.add_argument("--backend", choices=("local", "kind"), default="local")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "labs", help="where executed notebooks go")
    ap.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                    help="extra notebook parameter (repeatable)")
    ap.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    args = ap.parse_args(argv)

    parameters: dict[str, Any] = {"backend": args.backend, "solutions": True}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            ap.error(f"-p expects KEY=VALUE with KEY a Python identifier, got {item!r}")
        parameters[key] = parse_value(value)

    notebooks = [nb.resolve() for nb in args.notebooks] or lab_notebooks()
    missing = [str(nb) for nb in notebooks if not nb.is_file()]
    if missing:
        ap.error(f"no such notebook: {', '.join(missing)}")
    if not notebooks:
        print(f"no notebooks found in {LABS}", file=sys.stderr)
        return 1
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    own_home = "MESHLAB_HOME" not in os.environ
    if own_home:  # short: Envoy's admin sockets live below it; the kernels inherit it
        os.environ["MESHLAB_HOME"] = tempfile.mkdtemp(prefix="mll")

    rows: list[tuple[str, str, str]] = []
    reasons: list[str] = []
    for nb in notebooks:
        print(f"running {nb.name} (backend={args.backend}) ...", flush=True)
        ok, status, reason, seconds = run_one(nb, out_dir, parameters, args.timeout)
        if not ok:
            reasons.append(f"{nb.stem} {status.removeprefix('FAILED ')}:\n{reason}")
        rows.append((nb.stem, status, f"{seconds:.1f}"))
    failed = len(reasons)

    if own_home:
        shutil.rmtree(os.environ.pop("MESHLAB_HOME"), ignore_errors=True)
    print()
    print(table(rows))
    if reasons:
        print("\nwhy:\n" + "\n\n".join(reasons))
    print(f"\n{len(rows) - failed}/{len(rows)} labs ok; executed notebooks in {out_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
