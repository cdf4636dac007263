"""The one way meshlab runs an external command: an argv list, captured output, and on failure a
RunError that shows the exact command (copy-pasteable) and the tail of what it printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from .errors import RunError, ToolError


def which(tool: str, hint: str | None = None) -> str:
    """Resolve a tool on PATH (and next to the running Python, where the wheels put envoy/kubectl)."""
    import sys

    here = os.path.dirname(sys.executable)
    found = shutil.which(tool, path=os.pathsep.join([here, os.environ.get("PATH", "")]))
    if not found:
        raise ToolError(f"required tool {tool!r} was not found on PATH", hint or "run `make setup`")
    return found


def run(
    argv: Sequence[str],
    *,
    input: str | bytes | None = None,
    check: bool = True,
    timeout: float | None = 120,
    env: dict[str, str] | None = None,
    hint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion and return it; raise RunError on a non-zero exit when ``check``."""
    argv = [str(a) for a in argv]
    data = input.decode() if isinstance(input, bytes) else input
    try:
        proc = subprocess.run(
            argv,
            input=data,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else {**os.environ, **env},
        )
    except FileNotFoundError as e:
        raise ToolError(f"cannot run {argv[0]!r}: not found", hint or "run `make setup`") from e
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise RunError(argv, -1, out + f"\n(timed out after {timeout}s)", hint) from e
    if check and proc.returncode != 0:
        raise RunError(argv, proc.returncode, (proc.stdout or "") + (proc.stderr or ""), hint)
    return proc
