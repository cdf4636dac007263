"""The kind backend's plan: an ordered list of steps, each with a number, a title that says what and
why, the exact command, and the manifests it applies inline.

The same plan is printed (``meshlab up PATTERN --backend kind --dry-run``), checked by the tests, and
executed (:class:`~meshlab.backends.kind.executor.Executor`). Values only known at run time — a
container's IP, a LoadBalancer address — are shell-style placeholders ``${NAME}``: an earlier step
*sets* ``NAME`` (its output is captured), later steps *use* it. Nothing is invented in a dry run.

The text form reads like a shell script an instructor can follow (and mostly paste): manifests are
here-documents, captures are ``NAME=$(...)``, waits are ``until`` loops or ``kubectl wait``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml
from ...errors import MeshlabError
from .schema import SchemaError, validate

PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")

ACTIONS = ("run", "meshlab")  # a command, or an action meshlab performs itself (download, PKI, ...)


def var_name(cluster: str, suffix: str) -> str:
    """``cluster2`` + ``EW_IP`` -> ``CLUSTER2_EW_IP`` (a valid shell variable name)."""
    base = re.sub(r"[^A-Z0-9]", "_", cluster.upper())
    if base[:1].isdigit():
        base = "C" + base
    return f"{base}_{suffix}"


def placeholders(value: Any) -> set[str]:
    """Names of every ``${NAME}`` inside strings anywhere in ``value``."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(k) | placeholders(v) for k, v in value.items())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


class UnsetPlaceholder(KeyError):
    """A step used ``${NAME}`` but no earlier step set NAME."""


def substitute(value: Any, variables: dict[str, str]) -> Any:
    """``value`` with every ``${NAME}`` replaced; a name nobody set is an error (never a guess)."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            if m.group(1) not in variables:
                raise UnsetPlaceholder(m.group(1))
            return variables[m.group(1)]

        return PLACEHOLDER.sub(repl, value)
    if isinstance(value, dict):
        return {substitute(k, variables): substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    return value


def shell_quote(arg: str) -> str:
    """Quote for a POSIX shell, keeping ``${NAME}`` expandable (double quotes) where it appears."""
    if PLACEHOLDER.search(arg) and not re.search(r'["`\\]|\$(?!\{)', arg):
        return arg if re.fullmatch(r"[\w@%+=:,./${}-]+", arg) else f'"{arg}"'
    return shlex.quote(arg)


def shell_join(argv: list[str]) -> str:
    return " ".join(shell_quote(a) for a in argv)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (``|``), as a person would write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def manifests_yaml(docs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120) for d in docs)


@dataclass
class Step:
    """One thing the backend does. ``action`` is ``run`` (a command) or ``meshlab`` (done in Python)."""

    title: str
    action: str = "run"
    argv: list[str] = field(default_factory=list)
    cluster: str | None = None
    phase: str = ""
    manifests: list[dict[str, Any]] = field(default_factory=list)  # YAML on stdin (the command reads `-f -`)
    stdin: str | None = None  # other stdin text
    pipe_to: list[str] | None = None  # `argv | pipe_to`
    capture: str | None = None  # variable set from this step's output
    poll: bool = False  # repeat the command until it prints something (or time out)
    unless: list[str] | None = None  # skip the step when this probe prints something
    only_if: list[str] | None = None  # run the step only when this probe prints something
    timeout: float = 120.0
    retries: int = 0  # extra attempts after a failure (e.g. a webhook that is still starting)
    hint: str | None = None  # what to check when the step fails
    tags: tuple[str, ...] = ()
    call: str | None = None  # for action "meshlab": the action's name
    args: dict[str, Any] = field(default_factory=dict)
    describe: str | None = None  # for action "meshlab": what it does, in words
    note: str | None = None  # an extra line of explanation
    group: str | None = None  # steps of one group run in parallel
    number: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown step action {self.action!r}")
        if self.action == "run" and not self.argv:
            raise ValueError(f"step {self.title!r} has no command")
        if self.action == "meshlab" and not self.call:
            raise ValueError(f"step {self.title!r} names no meshlab action")

    # ---- placeholders ---------------------------------------------------------------------------
    def uses(self) -> set[str]:
        return placeholders([self.argv, self.manifests, self.stdin or "", self.pipe_to or [], self.args,
                             self.unless or [], self.only_if or []])

    # ---- text ----------------------------------------------------------------------------------
    def command_text(self) -> str:
        """The step as shell (or, for a meshlab action, as a description)."""
        if self.action == "meshlab":
            out = f"# meshlab: {self.describe or self.call}"
            if self.capture:
                out += f"\n# sets ${{{self.capture}}}"
            return out
        cmd = shell_join(self.argv)
        if self.pipe_to:
            cmd += " | " + shell_join(self.pipe_to)
        if self.poll:
            v = self.capture or "OUT"
            cmd = (f"until {v}=$({cmd}) && [ -n \"${v}\" ]; do sleep 3; done"
                   f"   # gives up after {self.timeout:.0f}s")
        elif self.capture:
            cmd = f"{self.capture}=$({cmd})"
        if self.unless:
            cmd = f'[ -n "$({shell_join(self.unless)} 2>/dev/null)" ] || {cmd}'
        if self.only_if:
            cmd = f'[ -z "$({shell_join(self.only_if)} 2>/dev/null)" ] || {cmd}'
        body = None
        if self.manifests:
            body = manifests_yaml(self.manifests)
        elif self.stdin is not None:
            body = self.stdin
        if body is not None:
            cmd += " <<EOF\n" + body.rstrip("\n") + "\nEOF"
        return cmd

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number, "title": self.title, "phase": self.phase, "cluster": self.cluster,
            "action": self.action, "argv": list(self.argv), "pipe_to": self.pipe_to, "manifests": self.manifests,
            "stdin": self.stdin, "capture": self.capture, "poll": self.poll, "unless": self.unless,
            "only_if": self.only_if, "timeout": self.timeout, "retries": self.retries, "hint": self.hint,
            "tags": list(self.tags), "call": self.call, "args": self.args, "group": self.group,
            "uses": sorted(self.uses()), "command": self.command_text(),
        }  # fmt: skip


class PlanError(Exception):
    pass


class Plan:
    """Ordered steps plus what an instructor needs to read them (title, header notes)."""

    def __init__(self, title: str, notes: list[str] | None = None) -> None:
        self.title = title
        self.notes = list(notes or [])
        self.steps: list[Step] = []
        self.phase = ""
        self._group: str | None = None

    # ---- building ------------------------------------------------------------------------------
    def add(self, step: Step) -> Step:
        step.number = len(self.steps) + 1
        step.phase = step.phase or self.phase
        if self._group and not step.group:
            step.group = self._group
        self.steps.append(step)
        return step

    def run(self, title: str, argv: list[str], **kw: Any) -> Step:
        return self.add(Step(title, "run", [str(a) for a in argv], **kw))

    def meshlab(self, title: str, call: str, describe: str, **kw: Any) -> Step:
        return self.add(Step(title, "meshlab", call=call, describe=describe, **kw))

    @contextmanager
    def parallel(self, name: str) -> Iterator[None]:
        """Steps added inside run concurrently (e.g. one ``kind create cluster`` per cluster)."""
        self._group = name
        try:
            yield
        finally:
            self._group = None

    def extend(self, other: "Plan") -> None:
        for s in other.steps:
            self.add(s)

    # ---- queries (what the tests use) ----------------------------------------------------------
    def find(self, tag: str | None = None, cluster: str | None = None, action: str | None = None,
             text: str | None = None) -> list[Step]:
        out = []
        for s in self.steps:
            if tag is not None and tag not in s.tags:
                continue
            if cluster is not None and s.cluster != cluster:
                continue
            if action is not None and s.action != action:
                continue
            if text is not None and text not in s.command_text() and text not in s.title:
                continue
            out.append(s)
        return out

    def first(self, tag: str | None = None, cluster: str | None = None, **kw: Any) -> Step:
        found = self.find(tag, cluster, **kw)
        if not found:
            raise PlanError(f"no step with tag={tag!r} cluster={cluster!r} {kw or ''}")
        return found[0]

    def last(self, tag: str | None = None, cluster: str | None = None, **kw: Any) -> Step:
        found = self.find(tag, cluster, **kw)
        if not found:
            raise PlanError(f"no step with tag={tag!r} cluster={cluster!r} {kw or ''}")
        return found[-1]

    def manifests(self) -> list[tuple[Step, dict[str, Any]]]:
        return [(s, d) for s in self.steps for d in s.manifests]

    def setter(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.capture == name), None)

    def problems(self) -> list[str]:
        """What would make this plan wrong before it runs: unknown placeholders, invalid manifests."""
        out = []
        defined: dict[str, int] = {}
        for s in self.steps:
            for name in sorted(s.uses()):
                if name not in defined:
                    setter = self.setter(name)
                    where = f"only set later, by step {setter.number}" if setter else "never set by any step"
                    out.append(f"step {s.number} ({s.title}) uses ${{{name}}}, {where}")
            for d in s.manifests:
                try:
                    validate(d)
                except SchemaError as e:
                    out.append(f"step {s.number} ({s.title}): {e.message}")
            if s.capture:
                defined[s.capture] = s.number
        return out

    def check(self) -> "Plan":
        problems = self.problems()
        if problems:
            raise MeshlabError("the kind plan is inconsistent:\n  " + "\n  ".join(problems),
                               "this is a meshlab bug: report it with the pattern file")
        return self

    def as_dicts(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.steps]

    # ---- text ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __str__(self) -> str:
        lines = [self.title, "=" * min(len(self.title), 100)]
        lines += self.notes
        phase = None
        groups: dict[str, list[int]] = {}
        for s in self.steps:
            if s.group:
                groups.setdefault(s.group, []).append(s.number)
        width = len(str(len(self.steps)))
        for s in self.steps:
            if s.phase != phase:
                phase = s.phase
                lines += ["", f"## {phase}" if phase else "##"]
            where = f"{s.cluster}: " if s.cluster and not s.title.startswith(f"{s.cluster}:") else ""
            lines.append("")
            lines.append(f"{s.number:>{width}}. {where}{s.title}")
            pad = " " * (width + 2)
            meta = []
            if s.group and len(groups[s.group]) > 1:
                others = [n for n in groups[s.group] if n != s.number]
                meta.append(f"runs in parallel with step{'s' if len(others) > 1 else ''} {', '.join(map(str, others))}")
            used = sorted(s.uses())
            if used:
                meta.append("uses " + ", ".join(f"${{{u}}} (step {self.setter(u).number})" if self.setter(u) else f"${{{u}}}" for u in used))  # type: ignore[union-attr]
            if s.retries:
                meta.append(f"retried up to {s.retries} times")
            if s.action == "run" and (s.poll or s.timeout != 120.0):
                meta.append(f"timeout {s.timeout:.0f}s")
            if s.note:
                lines.append(pad + s.note)
            if meta:
                lines.append(pad + "[" + "; ".join(meta) + "]")
            for i, ln in enumerate(s.command_text().splitlines()):
                lines.append(pad + ("$ " if i == 0 and s.action == "run" else "  ") + ln)
            if s.hint:
                lines.append(pad + f"if this fails: {s.hint}")
        lines.append("")
        lines.append(f"{len(self.steps)} steps.")
        return "\n".join(lines)
