"""The one way meshlab runs an external command: an argv list, captured output, and on failure a
RunError that shows the exact command (copy-pasteable) and the tail of what it printed.

Tools are found where distributions put them, not only on the caller's PATH: an ordinary user's login
PATH on Debian has no ``/usr/sbin`` (where ``ip`` and ``sysctl`` live), and the wheels put ``envoy`` and
``kubectl`` next to the running Python. Every child gets that same search path, so a command that runs
another one (``nsenter ... ip netns exec NS sysctl``) finds it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from .errors import RunError, ToolError


SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def search_path() -> str:
    """Where meshlab looks for tools: next to the running Python, the caller's PATH, then the sbin folders."""
    dirs = [os.path.dirname(sys.executable), *os.environ.get("PATH", "").split(os.pathsep), *SBIN_DIRS]
    return os.pathsep.join(dict.fromkeys(d for d in dirs if d))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every command meshlab starts: the caller's, with :func:`search_path` as PATH."""
    return {**os.environ, "PATH": search_path(), **(extra or {})}


def which(tool: str, hint: str | None = None) -> str:
    """Resolve a tool on :func:`search_path`; a ToolError naming the folders searched if it is nowhere."""
    found = shutil.which(tool, path=search_path())
    if not found:
        raise ToolError(f"required tool {tool!r} was not found (searched {search_path()})", hint or "run `make setup`")
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
            env=child_env(env),
        )
    except FileNotFoundError as e:
        raise ToolError(f"cannot run {argv[0]!r}: not found (searched {search_path()})", hint or "run `make setup`") from e
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise RunError(argv, -1, out + f"\n(timed out after {timeout}s)", hint) from e
    if check and proc.returncode != 0:
        raise RunError(argv, proc.returncode, (proc.stdout or "") + (proc.stderr or ""), hint)
    return proc
