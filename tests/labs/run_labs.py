#!/usr/bin/env python3
"""Run the lab notebooks headless with papermill and print a table: lab, status, duration.

    python tests/labs/run_labs.py --backend local --out build/labs [--jobs N] [-p key=value ...] [NOTEBOOK ...]

Without NOTEBOOK arguments it runs every ``labs/[0-9]*.ipynb``, with ``solutions=True`` (every
exercise's hidden solution runs and is checked; ``-p solutions=False`` runs them as a learner finds them).
Each executed notebook is written to the out dir (on failure too: papermill marks the failing cell). A
failure does not stop the run; the exit status is 1 if any notebook failed.

``--jobs N`` runs N notebooks at once, each in a process of its own, the longest first (each lab's time
in the last run is kept in ``build/lab-durations.json``). Every notebook gets a state directory of its own (``MESHLAB_HOME``;
below it if the caller set one) and its kernel IPC sockets in a private directory: a lab you are running,
another notebook of this run, or another run on the same machine is never seen or torn down by this one.
A kernel that does not start (a loaded machine) is given ``--start-timeout`` seconds and one more try.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "labs"
DURATIONS = ROOT / "build" / "lab-durations.json"  # each lab's last headless time: the next run starts the longest first


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


def kernel_manager(ipc_dir: str | None = None) -> type:
    """Kernels on IPC sockets: over TCP ipykernel warns, for every notebook, that it runs unencrypted.

    The sockets go to ``ipc_dir`` (a fresh private directory by default). jupyter_client's default is
    ``kernel-ipc-N`` relative to the working directory, picked by looking for free N: two runs in one
    checkout race for the same files, and their kernels answer each other ("Invalid Signature", "Kernel
    didn't respond")."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw: Any) -> None:
            self._own_ipc = None if ipc_dir else tempfile.mkdtemp(prefix="mlk")  # short: a socket path has <= 107 bytes
            super().__init__(transport="ipc", ip=os.path.join(ipc_dir or self._own_ipc, "kernel"), **kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:  # what shutdown calls
            await super()._async_cleanup_resources(restart=restart)
            if self._own_ipc and not restart:
                shutil.rmtree(self._own_ipc, ignore_errors=True)

    return IPCKernelManager


KERNEL_START_ERRORS = ("Kernel didn't respond", "Kernel died before replying", "kernel_info", "Invalid Signature")


def kernel_did_not_start(exc: BaseException) -> bool:
    """A failure before the notebook's first cell ran: the kernel never came up (worth one more try)."""
    return not getattr(exc, "ename", None) and any(m in str(exc) for m in KERNEL_START_ERRORS)


def run_one(nb: Path, out_dir: Path, parameters: dict[str, Any], timeout: int, start_timeout: int = 180,
            attempts: int = 2) -> tuple[bool, str, str, float]:
    """Run one notebook in a state directory of its own: (ok, status, the failure's whole reason or "", seconds)."""
    import papermill

    start = time.monotonic()
    parent = os.environ.get("MESHLAB_HOME")
    home = tempfile.mkdtemp(prefix="mll", dir=parent)  # short: Envoy's admin sockets live below it
    ipc = tempfile.mkdtemp(prefix="mlk")
    os.environ["MESHLAB_HOME"] = home  # the kernel inherits it
    try:
        for attempt in range(1, attempts + 1):
            try:
                papermill.execute_notebook(
                    str(nb),
                    str(out_dir / nb.name),
                    parameters=parameters,
                    kernel_name="python3",
                    kernel_manager_class=kernel_manager(ipc),
                    cwd=str(LABS),
                    execution_timeout=timeout,
                    start_timeout=start_timeout,
                    log_output=False,
                    progress_bar=False,
                )
                return True, "ok" if attempt == 1 else f"ok (kernel started on try {attempt})", "", time.monotonic() - start
            except Exception as e:  # keep going: one broken lab must not hide the others
                if attempt < attempts and kernel_did_not_start(e):
                    print(f"{nb.name}: the kernel did not start ({str(e).strip().splitlines()[-1][:120]}); trying again", flush=True)
                    continue
                status, reason = failure(e)
                return False, status, reason, time.monotonic() - start
        raise AssertionError("unreachable")
    finally:
        # whatever the notebook left running (it failed before its cleanup cell) goes with its state directory
        subprocess.run([sys.executable, "-m", "meshlab.cli", "down"], env={**os.environ, "MESHLAB_HOME": home},
                       capture_output=True, timeout=300)
        if parent is None:
            os.environ.pop("MESHLAB_HOME", None)
        else:
            os.environ["MESHLAB_HOME"] = parent
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(ipc, ignore_errors=True)


INOTIFY_PER_LAB = 64  # a lab runs up to ~15 Envoys, each watching its config files with 3-5 inotify instances


def default_jobs() -> int:
    """How many labs at once: what this machine's cores, memory (measured: a lab peaks near 0.5 GiB) and this
    user's inotify instances (``fs.inotify.max_user_instances``, 128 by default) allow."""
    cores = os.cpu_count() or 1
    try:
        avail = int(next(ln for ln in open("/proc/meminfo") if ln.startswith("MemAvailable")).split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        avail = 2 << 30
    try:
        inotify = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        inotify = 128
    return max(1, min(2 * cores, avail // (1 << 30), inotify // INOTIFY_PER_LAB))


def ordered(notebooks: list[Path], durations: dict[str, float]) -> list[Path]:
    """Longest first (by the last run's durations; unknown ones first, in name order): the run ends sooner."""
    return sorted(notebooks, key=lambda nb: (-durations.get(nb.name, float("inf")), nb.name))


def run_all(notebooks: list[Path], out_dir: Path, parameters: dict[str, Any], timeout: int, jobs: int,
            start_timeout: int = 180) -> dict[Path, tuple[bool, str, str, float]]:
    """Run ``notebooks`` with ``jobs`` at a time (each in a process of its own: papermill changes the working
    directory of the process); results by notebook."""
    memo = DURATIONS
    try:
        durations = json.loads(memo.read_text())
    except (OSError, ValueError):
        durations = {}
    results: dict[Path, tuple[bool, str, str, float]] = {}
    if jobs <= 1:
        for nb in notebooks:
            print(f"running {nb.name} ...", flush=True)
            results[nb] = run_one(nb, out_dir, parameters, timeout, start_timeout)
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_one, nb, out_dir, parameters, timeout, start_timeout): nb
                       for nb in ordered(notebooks, durations)}
            for f in as_completed(futures):
                nb = futures[f]
                results[nb] = f.result()
                print(f"{nb.name}: {results[nb][1]} ({results[nb][3]:.0f}s)", flush=True)
    durations.update({nb.name: r[3] for nb, r in results.items() if r[0]})
    try:  # atomically: several runs may finish at once; a read-only checkout just keeps no memo
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps(durations, indent=1, sort_keys=True))
        tmp.replace(memo)
    except OSError:
        pass
    return {nb: results[nb] for nb in notebooks}


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
    ap.add_argument("--start-timeout", type=int, default=180, help="seconds a kernel may take to start (then one retry)")
    ap.add_argument("-j", "--jobs", type=int, default=0,
                    help="notebooks at once (default 0: as many as this machine's cores and memory allow)")
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
    jobs = min(args.jobs or default_jobs(), len(notebooks))
    print(f"running {len(notebooks)} notebook(s), {jobs} at a time (backend={args.backend}) ...", flush=True)

    t0 = time.monotonic()
    results = run_all(notebooks, out_dir, parameters, args.timeout, jobs, args.start_timeout)
    rows = [(nb.stem, status, f"{seconds:.1f}") for nb, (_, status, _, seconds) in results.items()]
    reasons = [f"{nb.stem} {status.removeprefix('FAILED ')}:\n{reason}" for nb, (ok, status, reason, _) in results.items() if not ok]
    failed = len(reasons)

    print()
    print(table(rows))
    if reasons:
        print("\nwhy:\n" + "\n\n".join(reasons))
    print(f"\n{len(rows) - failed}/{len(rows)} labs ok in {time.monotonic() - t0:.0f}s ({jobs} at a time); executed notebooks in {out_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
