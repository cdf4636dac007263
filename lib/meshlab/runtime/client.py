"""Traffic from inside a pod: HTTP calls through the pod's sidecar, and raw TCP connects.

Run in-process (the calling thread enters the pod's namespace) or, in user-namespace mode where a
multithreaded process may not join another user namespace, as a subprocess inside the pod:
``python -m meshlab.runtime.client '{"op": "calls", ...}'`` printing JSON; or, to keep the cost of a
process start off every call, ``python -m meshlab.runtime.client --serve``: one JSON request per line
on stdin, one JSON answer per line on stdout, until stdin closes.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


def calls(
    host: str, port: int, authority: str, path: str, n: int, headers: dict[str, str], timeout: float, tls: dict[str, Any] | None = None,
    method: str = "GET",
) -> list[dict[str, Any]]:
    """``n`` requests (``method``, no body) on one keep-alive connection (reopened after a failure), like a curl loop.

    ``tls`` = {"sni": name, "ca": file}: HTTPS to ``host``, the server's certificate checked against ``ca``
    for ``name`` (as ``curl --resolve name:port:host --cacert ca``); the TLS version lands in each answer.
    """
    out: list[dict[str, Any]] = []
    conn: http.client.HTTPConnection | None = None
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
                if tls:
                    ctx = ssl.create_default_context(cafile=tls.get("ca"))
                    conn.sock = ctx.wrap_socket(socket.create_connection((host, port), timeout=timeout), server_hostname=tls["sni"])
                else:
                    conn.connect()
            conn.request(method, path, headers={"Host": authority, **headers})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            got = {k.lower(): v for k, v in resp.getheaders()}  # response headers
            if tls and isinstance(conn.sock, ssl.SSLSocket):
                got["x-meshlab-client-tls"] = str(conn.sock.version())  # what the client negotiated
            out.append({"status": resp.status, "body": body, "seconds": time.perf_counter() - t0, "headers": got})
            if (resp.getheader("connection") or "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            out.append({"status": 0, "body": "", "error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t0})
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return out


def connect(address: str, port: int, timeout: float) -> str:
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return "connected"
    except OSError as e:
        return f"refused: {e.strerror or e}"


_serving: dict[tuple[str, ...], "subprocess.Popen[str]"] = {}  # namespace prefix -> its serving client
_serving_lock = threading.Lock()


def ask(prefix: Sequence[str], req: dict[str, Any], timeout: float,
        record: Callable[[dict[str, object]], None] | None = None) -> Any:
    """``req`` answered inside the namespace that ``prefix`` enters (``nsenter ... ip netns exec NS``), by a
    serving client started there on first use and kept: starting a process per call costs more than the
    call (~0.1 s idle, most of a second on a loaded machine). ``record`` gets each client started (the lab
    records it, so ``down`` stops it). A client that died is started again once."""
    from ..errors import MeshlabError
    from ..exec import child_env
    from .procs import start_time

    key = tuple(prefix)
    with _serving_lock:
        for attempt in (1, 2):
            p = _serving.get(key)
            if p is None or p.poll() is not None:
                p = subprocess.Popen([*prefix, sys.executable, "-m", "meshlab.runtime.client", "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env(),
                                     start_new_session=True)  # fmt: skip
                _serving[key] = p
                if record:
                    record({"name": "client", "pid": p.pid, "start_time": start_time(p.pid)})
            assert p.stdin is not None and p.stdout is not None
            try:
                p.stdin.write(json.dumps(req) + "\n")
                p.stdin.flush()
                if not select.select([p.stdout], [], [], timeout)[0]:
                    p.kill()
                    _serving.pop(key, None)
                    raise MeshlabError(f"no answer from inside {prefix[-1]} within {timeout:.0f}s", "run `meshlab down`, then try again")
                line = p.stdout.readline()
                if line:
                    return json.loads(line)
            except (BrokenPipeError, ValueError):
                pass
            p.kill()
            _serving.pop(key, None)
        raise MeshlabError(f"the client inside {prefix[-1]} exited before it answered", "the lab may be gone: `meshlab status`")


def answer(req: dict[str, Any]) -> Any:
    op = req.pop("op")
    return calls(**req) if op == "calls" else connect(**req)


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        for line in sys.stdin:
            print(json.dumps(answer(json.loads(line))), flush=True)
        return
    json.dump(answer(json.loads(sys.argv[1])), sys.stdout)


if __name__ == "__main__":
    main()
