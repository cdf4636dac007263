#!/usr/bin/env python3
"""The figure an instructor sizes a machine with: the whole course for N learners at once.

    python tests/labs/course_bench.py [--learners 1,2,4] [--labs 02,09] [--out build/course-bench]

For each N, N learners start together; each one works through the labs one after another (as a learner
does: ``run_labs.py --jobs 1``) in a state directory of its own. Printed per N: the wall time of the
slowest learner, the labs that passed, and memory -- the peak proportional set size (PSS: shared pages
split between their users) of each learner's processes (its kernels, Envoys, apps, Prometheus ...,
found by the ``MESHLAB_HOME`` they inherit) and the host's peak memory in use above the idle baseline,
per learner. Ratios against N = 1 in the same run say how the machine scales.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABS = HERE.parents[1] / "labs"
MIB = 1024 * 1024


def host_used() -> int:
    """Bytes in use on the host (MemTotal - MemAvailable)."""
    info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in open("/proc/meminfo")}
    return info["MemTotal"] - info["MemAvailable"]


def pss_by_home(homes: list[str]) -> dict[str, int]:
    """Sum of PSS of every process whose MESHLAB_HOME lies in one of ``homes`` (root reads everyone's)."""
    out = dict.fromkeys(homes, 0)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            home = next((e[len(b"MESHLAB_HOME="):].decode() for e in env if e.startswith(b"MESHLAB_HOME=")), None)
            if home is None:
                continue
            owner = next((h for h in homes if home == h or home.startswith(h + "/")), None)
            if owner is None:
                continue
            for ln in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if ln.startswith("Pss:"):
                    out[owner] += int(ln.split()[1]) * 1024
                    break
        except (OSError, UnicodeDecodeError):
            continue  # gone meanwhile, or not ours to read
    return out


@dataclass
class Round:
    learners: int
    wall: float = 0.0
    ok: list[str] = field(default_factory=list)  # "11/11" per learner
    peak_pss: dict[str, int] = field(default_factory=dict)
    peak_host: int = 0


def run_round(n: int, labs: list[str], out: Path, baseline: int) -> Round:
    r = Round(n)
    homes = [tempfile.mkdtemp(prefix=f"mlb{i}") for i in range(n)]
    r.peak_pss = dict.fromkeys(homes, 0)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for h, v in pss_by_home(homes).items():
                r.peak_pss[h] = max(r.peak_pss[h], v)
            r.peak_host = max(r.peak_host, host_used() - baseline)
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    procs = []
    for i, home in enumerate(homes):
        argv = [sys.executable, str(HERE / "run_labs.py"), "--jobs", "1", "--out", str(out / f"n{n}-learner{i + 1}"),
                *[str(p) for p in labs]]
        log = open(out / f"n{n}-learner{i + 1}.log", "w")
        procs.append((subprocess.Popen(argv, env={**os.environ, "MESHLAB_HOME": home}, stdout=log, stderr=subprocess.STDOUT), log))
    for p, log in procs:
        p.wait()
        log.close()
    r.wall = time.monotonic() - t0
    stop.set()
    sampler.join()
    for i in range(n):
        tail = (out / f"n{n}-learner{i + 1}.log").read_text().strip().splitlines()
        last = next((ln for ln in reversed(tail) if "labs ok" in ln), "?")
        r.ok.append(last.split(" labs ok")[0])
    for h in homes:
        shutil.rmtree(h, ignore_errors=True)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--learners", default="1,2,4", help="comma-separated numbers of learners at once (default 1,2,4)")
    ap.add_argument("--labs", default="", help="comma-separated lab numbers (default: the whole course)")
    ap.add_argument("--out", type=Path, default=HERE.parents[1] / "build" / "course-bench")
    args = ap.parse_args(argv)
    wanted = [x.strip().zfill(2) for x in args.labs.split(",") if x.strip()]
    labs = sorted(p for p in LABS.glob("[0-9]*.ipynb") if not wanted or p.name.split("-", 1)[0] in wanted)  # "01" is not "01b"
    args.out.mkdir(parents=True, exist_ok=True)
    rounds = []
    for n in [int(x) for x in args.learners.split(",")]:
        time.sleep(2)
        baseline = host_used()
        print(f"{n} learner(s), {len(labs)} labs each ...", flush=True)
        rounds.append(run_round(n, labs, args.out, baseline))
    one = next((r for r in rounds if r.learners == 1), rounds[0])
    print(f"\ncourse for N learners at once ({os.cpu_count()} cores, {len(labs)} labs per learner)\n")
    head = f"{'N':>3}  {'wall (s)':>9}  {'x N=1':>6}  {'labs ok per learner':<22}  {'peak PSS/learner (MiB)':>22}  {'host peak/learner (MiB)':>23}"
    print(head)
    print("-" * len(head))
    for r in rounds:
        pss = max(r.peak_pss.values()) / MIB if r.peak_pss else 0
        print(f"{r.learners:>3}  {r.wall:>9.0f}  {r.wall / one.wall:>6.2f}  {', '.join(r.ok):<22}  {pss:>22.0f}  {r.peak_host / r.learners / MIB:>23.0f}")
    return 0 if all("/" in ok and ok.split("/")[0] == ok.split("/")[1] for r in rounds for ok in r.ok) else 1


if __name__ == "__main__":
    sys.exit(main())
