"""Errors a learner can act on: each one names the problem and, where we know it, the fix."""

from __future__ import annotations


class MeshlabError(Exception):
    """Base error. ``hint`` says what to do about it; it is printed after the message.

    A fix that reads differently from a shell gives ``cli`` too: the ``meshlab`` command prints that
    one (``meshlab deploy curl --cluster cluster1``), Python shows ``hint`` (``lab.deploy(...)``), so
    each user reads the interface they typed into.
    """

    def __init__(self, message: str, hint: str | None = None, cli: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.cli = cli
        super().__init__(message if not hint else f"{message}\n  fix: {hint}")


def report(e: MeshlabError) -> int:
    """Print ``e`` for a terminal (problem, then the fix in command form) and return the CLI's exit status."""
    import sys

    print(f"error: {e.message}", file=sys.stderr)
    if e.cli or e.hint:
        print(f"  fix: {e.cli or e.hint}", file=sys.stderr)
    return 1


class TopologyError(MeshlabError):
    """A pattern file is malformed or inconsistent."""


class ResourceError(MeshlabError):
    """An Istio resource is malformed or uses a field the backend does not implement."""


class ToolError(MeshlabError):
    """A required external tool is missing or unusable."""


class RunError(MeshlabError):
    """An external command failed. Carries the exact argv and the tail of its output."""

    def __init__(self, argv: list[str], returncode: int, output: str, hint: str | None = None) -> None:
        import shlex

        self.argv = argv
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-20:])
        msg = f"command failed (exit {returncode}): {shlex.join(argv)}"
        if tail:
            msg += "\n" + "\n".join("  | " + line for line in tail.splitlines())
        super().__init__(msg, hint)


class ProcessExitedError(MeshlabError):
    """A supervised process exited while we waited for it to become ready."""


class LabStateError(MeshlabError):
    """The lab is not in a state that allows the requested operation."""


class LabDownError(LabStateError):
    """The lab was torn down (its Cleanup cell, ``lab.down()`` or ``meshlab down``) and is used again.

    In a notebook IPython shows only the message and the fix (``_render_traceback_``): the learner's
    next step is to run the lab again, not to read the library's stack."""

    def __init__(self) -> None:
        super().__init__("this lab is down — run it again from the top",
                         "run the notebook again from its first cell (Run All restarts it)",
                         "bring a lab up again: meshlab up <pattern> (or meshlab goto <lab>)")

    def _render_traceback_(self) -> list[str]:
        return [f"⏹ {self.message}", f"  fix: {self.hint}"]
