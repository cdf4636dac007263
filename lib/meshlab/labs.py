"""The course catalogue: one table of labs (what each teaches, how long it takes, where it starts).

It is the single source for ``meshlab labs``, ``meshlab goto N`` and the README's lab table
(``tests/unit/test_labs_catalogue.py`` checks that the README agrees and that every notebook in
``labs/`` is listed). A lab's owner edits its entry here.

**Starting state.** ``start`` says what the environment must hold when the lab's first cell runs:
a pattern that is up (``pattern``, with Istio's sample apps if ``samples``) and named prerequisites
(``prepare``: e.g. the Wasm filters built, the module hub running). ``meshlab goto N`` resets the
machine and builds that state. A notebook that calls ``Lab.up(pattern, backend=...)`` itself does not
need to change: ``Lab.up`` *adopts* a lab that ``goto`` prepared for exactly that pattern, backend and
samples, while it is still untouched (nothing deployed, applied or stopped since) -- on kind that
saves the minutes a bring-up takes; anything else is torn down and built afresh, as always.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .display import Progress, Table
from .errors import MeshlabError
from .lab import Lab
from .state import home
from .wasm.build import build_filter, filters, npm_installed
from .wasm.hub import Hub, hub_home
from .wasm.standalone import down_all as standalone_down

ROOT = Path(__file__).resolve().parents[2]


def labs_dir() -> Path:
    """The notebooks: ``labs/`` in the repository (or $MESHLAB_LABS: ``make lab`` points it at the learner's copy)."""
    return Path(os.environ.get("MESHLAB_LABS") or ROOT / "labs")


COURSE_LABS = ROOT / "labs"  # the tracked notebooks: pristine, what `make labs`, CI and the handout run
MY_LABS = ROOT / "my-labs"  # the learner's working copy (git-ignored): what `make lab` opens and saves into


def learner_labs() -> Path:
    """Where this learner's copies are: $MESHLAB_LABS when it points at a copy (``make lab``, a room's server
    sets it to the learner's own), else ``my-labs/``."""
    d = labs_dir()
    return d if d.resolve() != COURSE_LABS.resolve() else MY_LABS


def learner_copy(dest: Path = MY_LABS, source: Path = COURSE_LABS) -> list[str]:
    """Copy every course notebook missing from ``dest`` (the learner's answers in existing copies stay);
    returns the names copied. JupyterLab opens ``dest``, so saving never touches the tracked ``labs/``."""
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for nb in sorted(source.glob("*.ipynb")):
        if not (dest / nb.name).exists():
            shutil.copyfile(nb, dest / nb.name)
            copied.append(nb.name)
    return copied


def edited_copies(dest: Path = MY_LABS, source: Path = COURSE_LABS) -> list[str]:
    """The learner's copies that differ from the course's notebooks (answers written, outputs saved)."""
    return [nb.name for nb in sorted(source.glob("*.ipynb"))
            if (dest / nb.name).exists() and (dest / nb.name).read_bytes() != nb.read_bytes()]


def restore_copies(names: list[str] | None = None, dest: Path = MY_LABS, source: Path = COURSE_LABS) -> list[str]:
    """Put the course's version back over the learner's copies (``names``, default: every edited one)."""
    restored = []
    for name in edited_copies(dest, source) if names is None else names:
        if not (source / name).is_file():
            raise MeshlabError(f"no course notebook {name}", f"the course's notebooks are in {source}")
        shutil.copyfile(source / name, dest / name)
        restored.append(name)
    return restored


@dataclass(frozen=True)
class Start:
    """What the environment holds when a lab's first cell runs."""

    pattern: str | None = None  # brought up with Lab.up; None: no mesh (the lab starts from nothing)
    samples: bool = False  # helloworld v1, v2, ... and curl in every cluster (Lab.up(samples=True))
    prepare: tuple[str, ...] = ()  # names in PREREQUISITES, run in order after the pattern is up

    def describe(self) -> str:
        parts = []
        if self.pattern:
            parts.append(f"{self.pattern} up" + (" with the sample apps" if self.samples else ""))
        parts += [PREREQUISITES[p][0] for p in self.prepare]
        return "; ".join(parts) or "nothing running"


@dataclass(frozen=True)
class Minutes:
    """A learner's time in a lab: what it takes to read and do it, not how long the cells run headless.

    ``reading``: the text, the code and its output, at a learner's pace (``tests/unit/test_labs_catalogue.py``
    keeps it within range of the notebook's length); ``exercises``: the exercises and the quiz (about five minutes
    each); ``running``: the time the cells themselves take, per backend (kind: with its bring-up).
    """

    reading: int
    exercises: int
    running: dict[str, int]

    def total(self, backend: str) -> int:
        return self.reading + self.exercises + self.running[backend]


@dataclass(frozen=True)
class LabInfo:
    number: str  # "06"
    notebook: str  # file name in labs/
    teaches: str  # one line, for the README and `meshlab labs`
    time: Minutes
    start: Start = field(default_factory=Start)
    needs: tuple[str, ...] = ()  # labs to do first (their numbers)
    you_will: tuple[str, ...] = ()  # what the learner does, for the "you will" box of the lab's header

    @property
    def path(self) -> Path:
        return labs_dir() / self.notebook

    @property
    def minutes(self) -> dict[str, int]:
        """The whole time per backend: reading, exercises and running."""
        return {b: self.time.total(b) for b in self.time.running}

    @property
    def backends(self) -> list[str]:
        return list(self.time.running)


def _m(reading: int, exercises: int, local: int, kind: int) -> Minutes:
    return Minutes(reading, exercises, {"local": local, "kind": kind})


LABS: list[LabInfo] = [
    LabInfo("00", "00-setup.ipynb",
            "can this machine run the labs? prerequisite checks for both backends, with fixes",
            _m(10, 15, 1, 5),
            you_will=('predict which network mode a machine gets, then run the checks', 'predict whether the kind backend can run here', "read every failed check's fix",)),
    LabInfo("01", "01-envoy-resilience.ipynb",
            "Envoy's resilience features, measured on a real Envoy with a load generator: timeouts, retries, retry "
            "budgets, circuit breaking, outlier detection, and the access-log flags and stats that show them",
            _m(30, 18, 2, 12), Start("flat-network"), needs=("00",),
            you_will=('measure timeouts, retries, retry budgets and circuit breakers with a real load generator', 'predict amplification and ejections before the experiments run', 'write a DestinationRule whose breaker admits 2 callers and refuses 8',)),
    LabInfo("01b", "01b-envoy-traffic-control.ipynb",
            "traffic control in Envoy: shadowing a new version, request hedging (raw Envoy), local rate limits and "
            "one global rate limit for two clusters (Envoy's RLS v3 API)",
            _m(28, 15, 2, 15), Start("flat-network"), needs=("01",),
            you_will=("shadow traffic to a new version that no caller waits for, then write a VirtualService that copies half of it",
                      "cut a long tail with hedged requests on a raw Envoy",
                      "predict how one global rate limit splits between two clusters, then measure it")),
    LabInfo("02", "02-shared-control-plane-flat-network.ipynb",
            "pattern 1: one control plane, two clusters on one flat network; endpoints, mTLS identity, "
            "the shared failure domain",
            _m(50, 15, 1, 15), Start("flat-network"), needs=("00",),
            you_will=('build one control plane for two clusters on one network', 'read the endpoints and identities a sidecar really has', 'stop the control plane and see what still works',)),
    LabInfo("03", "03-shared-control-plane-separate-networks.ipynb",
            "pattern 2: east-west gateways (SNI passthrough on 15443), split-horizon EDS, real network isolation",
            _m(45, 15, 1, 15), Start("separate-networks"), needs=("02",),
            you_will=('split two clusters onto separate networks joined by east-west gateways', "predict the gateway's weight and SNI, then read them from Envoy", 'see why requests follow connections behind a gateway',)),
    LabInfo("03b", "03b-multi-primary.ipynb",
            "multi-primary on different networks: an istiod per cluster reading both registries through remote "
            "secrets (revocable), its failure domain measured, what to keep in step, a controlled east-west gateway, "
            "and one trace across clusters (OpenTelemetry, OTLP)",
            _m(50, 20, 2, 20), Start("multi-primary"), needs=("03",),  # four exercises and a quiz
            you_will=("run an istiod in each cluster that reads both registries", "measure the failure domain of one control plane",
                      "follow one trace across clusters")),
    LabInfo("04", "04-separate-control-planes.ipynb",
            "pattern 3: two control planes, federation (Service Mesh Hub style VirtualMesh → ServiceEntry + "
            "DestinationRule), the lesson of a shared root of trust",
            _m(45, 15, 1, 15), Start("separate-control-planes"), needs=("03",),
            you_will=('run two control planes and federate them with ServiceEntries', 'write the ServiceEntry yourself (its port name matters)', 'break the shared root of trust and watch retries hide it',)),
    LabInfo("05", "05-management-plane.ipynb",
            "the management plane: discovery, a VirtualMesh from two roots to one (CSR flow), a reconciling "
            "controller, one policy for many meshes, federated telemetry (a Prometheus per cluster, one global view)",
            _m(40, 20, 2, 20), Start("separate-roots"), needs=("04", "06"),
            you_will=('discover two meshes and give them one root with the CSR flow', 'write a TrafficPolicy and a PromQL query', 'follow a failover in a global Prometheus',)),
    LabInfo("06", "06-locality-failover.ipynb",
            "locality load balancing, outlier detection, failover across networks and fail-back, plotted over time",
            _m(60, 15, 1, 15), Start("separate-networks"), needs=("03",),
            you_will=('make a sidecar prefer its own locality and fail over across networks', 'predict the client-visible errors of a crash, then measure them', 'write the retries that hide the crash',)),
    LabInfo("06b", "06b-advanced-load-balancing.ipynb",
            "advanced load balancing on a raw Envoy: priority levels and the overprovisioning factor, degraded hosts, "
            "zone-aware routing versus Istio's locality priorities, aggregate clusters",
            _m(18, 15, 1, 1), Start(), needs=("06",),  # standalone Envoys only: no mesh, the same on both backends
            you_will=("predict how much traffic a priority keeps as it loses hosts, then measure the 1.4 curve",
                      "predict what Envoy's zone-aware routing keeps local, and compare it with Istio's locality priorities",
                      "fail over from one cluster to another with an aggregate cluster")),
    LabInfo("07", "07-wasm-abi-and-first-filter.ipynb",
            "WebAssembly in Envoy: the proxy-wasm ABI of real modules, filters in C and AssemblyScript, hot "
            "loading, fail open/closed, what a filter costs",
            _m(50, 20, 2, 2), Start(prepare=("filters",)), needs=("00",),
            you_will=('build Wasm filters in C and AssemblyScript and read their ABI', 'hot-swap filters under traffic and measure what one costs', 'predict what Envoy does with a broken or misnamed module',)),
    LabInfo("08", "08-wasm-hub-and-mesh-deploy.ipynb",
            "modules as OCI images in a hub with user accounts, declarative deployment over ECDS with Istio's `TrafficExtension` (Wasm and Lua) and its predecessor `WasmPlugin`",
            _m(60, 15, 2, 15), Start("separate-networks", samples=True, prepare=("filters", "hub")), needs=("07", "03"),
            you_will=('push modules to a registry with user accounts', 'deploy them with TrafficExtension and WasmPlugin, roll out, break the digest', 'write a Lua extension',)),
    LabInfo("09", "09-security-across-clusters.ipynb",
            "security across clusters: mTLS modes, authorization by identity, trust domains, TLS at the "
            "ingress and egress edges",
            _m(40, 20, 1, 15), Start("flat-network", samples=True), needs=("02",),
            you_will=('refuse plaintext with STRICT mTLS, then let one legacy client back in', 'find and fix an identity collision across clusters', 'require a JWT at the ingress and originate TLS at the egress',)),
    LabInfo("10", "10-troubleshooting.ipynb",
            "break and fix: seeded faults diagnosed with an operator's views (endpoints, sync status, "
            "access-log flags, stats), each fix written by the learner and graded by traffic; a mystery round",
            _m(30, 40, 2, 25), Start("separate-networks"), needs=("03", "04", "06"),  # eight fixes to write, a mystery round
            you_will=("diagnose seeded faults with endpoints, proxy status, access logs and stats",
                      "write each fix and prove it with traffic", "find unnamed faults in a mystery round")),
    LabInfo("11", "11-capstone.ipynb",
            "capstone: one service across two networks, locked down (STRICT mTLS, an AuthorizationPolicy), extended (a "
            "Wasm filter from the hub, pinned by digest) and kept running through an unnamed incident; every step "
            "written by the learner and graded by traffic",
            _m(30, 30, 2, 20), Start("separate-networks", samples=True, prepare=("filters", "hub")), needs=("08", "09", "10"),
            you_will=("predict how a request crosses to the other network", "write the security policy and the TrafficExtension "
                      "that ship the service", "diagnose and fix an unnamed incident with the four views")),
]  # fmt: skip


class Header:
    """The first lines of a lab, from the catalogue: its time, the labs to do first and its starting state.

    A notebook's first code cell is ``header("06")``: it renders as Markdown in Jupyter and as text elsewhere,
    so a notebook never carries a time of its own that could drift from the catalogue's.
    """

    def __init__(self, info: LabInfo) -> None:
        self.info = info

    def lines(self) -> list[str]:
        i, t = self.info, self.info.time
        local, kind = i.minutes.get("local"), i.minutes.get("kind")
        time = (f"**Time:** about {local} minutes on the local backend — reading {t.reading}, exercises and quiz "
                f"{t.exercises}, the cells themselves {t.running['local']}" + (f"; {kind} on kind (with its bring-up)" if kind else ""))
        first = ", ".join(f"lab {n} ({find(n).notebook})" for n in i.needs) or "nothing"
        you = [f"**You will** {'; '.join(i.you_will)}."] if i.you_will else []
        return [f"**Lab {i.number}** · {i.teaches}", *you, time, f"**Do first:** {first}",
                f"**Starts from:** {i.start.describe()} — `meshlab goto {i.number}` builds that state"]

    def _repr_markdown_(self) -> str:
        return "\n>\n".join(f"> {line}" for line in self.lines())  # a box above the lab

    def __str__(self) -> str:
        return "\n".join(line.replace("**", "") for line in self.lines())

    __repr__ = __str__


def header(number: str | int) -> Header:
    """The header a lab notebook shows first (``from meshlab.labs import header; header("06")``)."""
    return Header(find(number))


# The course's shape for an instructor: labs in teaching order (failover before the management plane), with
# breaks. Times come from the catalogue; docs/agenda.md is agenda_markdown() (a unit test keeps them equal).
BREAKS = {"break": 15, "lunch": 60}
AGENDAS: dict[str, dict[str, list[str]]] = {
    "One day": {
        "before the day (on the learner's machine)": ["00"],
        "the day": ["02", "break", "03", "lunch", "06", "break", "04", "07"],
        "afterwards (self-paced)": ["01", "01b", "06b", "03b", "05", "08", "09", "10", "11"],
    },
    "Two days": {
        "before day 1 (on the learner's machine)": ["00"],
        "day 1": ["01", "02", "break", "03", "lunch", "06", "break", "06b", "04"],
        "day 2": ["07", "break", "08", "lunch", "09", "break", "10", "11"],
        "afterwards (self-paced)": ["01b", "03b", "05"],
    },
}
DAY_STARTS = "09:00"
DAY_ENDS_BY = "17:00"  # a room's day: every timed part of an agenda ends by then (a unit test checks it)


def agenda_markdown(backend: str = "local") -> str:
    """The one-day and two-day agendas as Markdown, timed with the catalogue's minutes for ``backend``."""
    out = ["# Agendas for instructors", "",
           f"Generated from the lab catalogue (`lib/meshlab/labs.py`, `meshlab.labs.agenda_markdown()`); times are a "
           f"learner's on the {backend} backend — reading, exercises and quiz, and the cells' own running time. Each "
           "lab's first cell shows the same numbers. Labs keep their numbers; the order is the teaching order "
           "(locality failover, lab 06, before the management plane, lab 05). `meshlab goto N` prepares any lab's "
           "starting state, so a room can skip or reorder labs.", ""]
    for name, parts in AGENDAS.items():
        out += [f"## {name}", ""]
        for part, items in parts.items():
            timed = part.startswith(("day", "the day"))
            clock = int(DAY_STARTS[:2]) * 60 + int(DAY_STARTS[3:])
            rows, total = [], 0
            for item in items:
                if item in BREAKS:
                    minutes, what = BREAKS[item], item
                else:
                    info = find(item)
                    minutes, what = info.minutes[backend], f"lab {info.number} · `{info.notebook}`"
                    total += minutes
                start = f"{clock // 60:02d}:{clock % 60:02d}" if timed else ""
                rows.append(f"| {start} | {what} | {minutes} min |")
                clock += minutes
            end = f", ends about {clock // 60:02d}:{clock % 60:02d}" if timed else ""
            out += [f"**{part}** — {total} min of labs{end}", "", "| start | what | time |", "|---|---|---|", *rows, ""]
    return "\n".join(out)


def _build_filters() -> str:
    todo = filters()
    with Progress("building the Wasm filters", total=len(todo)) as progress:
        for f in todo:
            build_filter(f.dir)
            progress(f"{f.name} built")
    return f"{len(todo)} Wasm filters built"


def _start_hub() -> str:
    hub = Hub.up(keep=True)
    return f"Wasm module hub up at {hub.address}"


# name -> (what it gives the learner, how to get it; returns a one-line summary)
PREREQUISITES: dict[str, tuple[str, Callable[[], str]]] = {
    "filters": ("the Wasm filters built (make filters)", _build_filters),
    "hub": ("the Wasm module hub running (meshlab wasm hub up)", _start_hub),
}


def network_needs(number: str | int) -> list[str]:
    """What lab ``number`` would fetch from the network while it runs on the local backend ([] after
    ``make setup``: it installs every npm dependency and builds every filter, so a room works offline)."""
    info = find(number)
    if "filters" not in info.start.prepare:
        return []

    return [f"the npm registry: the dependencies of {f.dir} are not installed (its build runs `npm ci`)"
            for f in filters() if not npm_installed(f)]


def say_network_needs(number: str | int) -> str:
    """A lab's first words on the network: nothing needed, or what it will fetch and how to avoid it."""
    needs = network_needs(number)
    if not needs:
        return (f"lab {find(number).number} needs no network on the local backend: every dependency is installed "
                "(make setup); the kind backend pulls its images unless `meshlab kind images pull` ran before")
    return "\n".join([f"lab {find(number).number} will use the network while it runs:", *(f"  - {n}" for n in needs),
                      "  to work offline (a workshop room), run `make setup` (or `meshlab wasm build-all`) first"])


def find(number: str | int) -> LabInfo:
    """A lab by number: ``6``, ``"06"`` or a notebook name such as ``06-locality-failover``."""
    key = str(number).strip()
    key = key.split("-", 1)[0].removesuffix(".ipynb").zfill(2) if key[:1].isdigit() else key
    for info in LABS:
        if info.number == key:
            return info
    raise MeshlabError(f"no lab {number!r}", f"labs: {', '.join(i.number for i in LABS)} (see `meshlab labs`)")


def table(backend: str | None = None) -> Table:
    """The catalogue as a table: number, notebook, time per backend, starting state."""
    rows = []
    for i in LABS:
        row: dict[str, object] = {"LAB": i.number, "NOTEBOOK": i.notebook}
        for b in ("local", "kind"):
            if backend in (None, b):
                row[f"{b.upper()} (min)"] = i.minutes.get(b, "-")
        row["STARTS FROM"] = i.start.describe()
        if not i.path.exists():
            row["NOTEBOOK"] += " (not written yet)"
        rows.append(row)
    total = {b: sum(i.minutes.get(b, 0) for i in LABS) for b in ("local", "kind")}
    return Table(rows, title=f"{len(LABS)} labs, about {total['local'] / 60:.1f} h on local, {total['kind'] / 60:.1f} h on kind")


def readme_table() -> str:
    """The Markdown table the README shows (checked against the README by a unit test)."""
    lines = ["| lab | notebook | what it teaches | local | kind |", "|---|---|---|---|---|"]
    for i in LABS:
        lines.append(f"| {i.number} | `{i.notebook}` | {i.teaches} | {i.minutes['local']} min | {i.minutes['kind']} min |")
    return "\n".join(lines)


def reset(quiet: bool = False) -> dict[str, int]:
    """Back to a fresh clone: stop every lab, standalone Envoy and hub; remove scratch labs and hub data.

    Built filters, downloaded tools and ``.venv`` stay (they are caches, not state).
    """
    removed = Lab.down_all(quiet=True)
    removed["scratch labs"] = Lab.down_scratch()
    removed["standalone envoys"] = standalone_down()
    removed["hub processes"] = Hub.down_all()
    if hub_home().exists():
        shutil.rmtree(hub_home(), ignore_errors=True)
    if not quiet:
        print(f"reset: {removed['processes']} processes stopped, {removed['namespaces']} namespaces deleted, "
              f"{removed['scratch labs']} scratch labs, {removed['standalone envoys']} standalone Envoys, "
              f"{removed['hub processes']} hub processes; state in {home()} cleared")
    return removed


def offer_restore(ask: Callable[[str], str] | None = None, dest: Path | None = None) -> list[str]:
    """After a reset: offer to restore the learner's edited notebook copies (their answers would be lost).
    ``ask`` prompts (``input`` on a terminal); without one, say how to restore. Returns the names restored."""
    dest = dest or learner_labs()
    edited = edited_copies(dest)
    if not edited:
        return []
    listing = ", ".join(edited)
    if ask is None:
        print(f"your copies of the labs in {dest} keep your answers ({listing}); "
              "restore the course's version with: meshlab reset --notebooks")
        return []
    if ask(f"restore the course's version of {listing} in {dest}? Your answers and outputs there are lost [y/N] ").strip().lower() not in ("y", "yes"):
        print(f"kept your copies in {dest}")
        return []
    restored = restore_copies(edited, dest)
    print(f"restored {len(restored)} notebooks in {dest}")
    return restored


def goto(number: str | int, backend: str = "local", quiet: bool = False) -> "LabInfo":
    """Bring the environment to the state lab ``number`` starts from: reset, pattern up, prerequisites."""
    info = find(number)
    if backend not in info.backends:
        raise MeshlabError(f"lab {info.number} does not run on the {backend} backend",
                           f"use one of: {', '.join(info.backends)}")
    say = (lambda s: None) if quiet else (lambda s: print(s, flush=True))
    reset(quiet=True)
    t0 = time.perf_counter()
    if info.start.pattern:
        Lab.up(info.start.pattern, backend=backend, samples=info.start.samples, keep=True, quiet=quiet,
               prepared_for=info.number)
    for name in info.start.prepare:
        say(PREREQUISITES[name][1]())
    say(f"ready for lab {info.number} in {time.perf_counter() - t0:.1f}s: {info.start.describe()}")
    return info

