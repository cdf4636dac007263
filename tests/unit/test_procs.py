"""An early exit names its real cause: the program's own log is read too (Envoy writes to --log-path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from meshlab.errors import ProcessExitedError
from meshlab.runtime import procs

# what Envoy 1.40 prints when inotify_init1 fails (source/common/filesystem/inotify/watcher_impl.cc)
ENVOY_INOTIFY = "assert failure: inotify_fd_ >= 0. Details: Consider increasing value of user.max_inotify_watches via sysctl"


def test_a_crash_shows_the_programs_own_log_and_the_fix(tmp_path: Path) -> None:
    own = tmp_path / "own.log"
    script = f"open({str(own)!r}, 'w').write({ENVOY_INOTIFY!r}); raise SystemExit(134)"
    p = procs.spawn("fake-envoy", [sys.executable, "-c", script, "--log-path", str(own)], tmp_path / "stdout.log")
    with pytest.raises(ProcessExitedError) as e:
        procs.wait_until(lambda: False, p, "ready", timeout=10)
    assert ENVOY_INOTIFY in e.value.message and "max_user_instances" in e.value.hint


def test_hints_follow_the_log() -> None:
    assert "meshlab down" in procs.exit_hint("error: Address already in use")
    assert procs.exit_hint("something else").startswith("read the log above")


def test_the_pod_client_sends_the_method_it_is_given() -> None:
    """lab.call(..., method="POST"): the in-pod client sends that method (lab 11's policy allows GET only)."""
    import http.server
    import threading

    from meshlab.runtime import client

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append(self.command)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_DELETE = _any

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        for method in ("GET", "POST", "DELETE"):
            [answer] = client.calls("127.0.0.1", port, f"x:{port}", "/hello", 1, {}, 5.0, method=method)
            assert answer["status"] == 200
    finally:
        server.shutdown()
    assert seen == ["GET", "POST", "DELETE"]
