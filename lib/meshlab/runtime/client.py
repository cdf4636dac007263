"""Traffic from inside a pod: HTTP calls through the pod's sidecar, and raw TCP connects.

Run in-process (the calling thread enters the pod's namespace) or, in user-namespace mode where a
multithreaded process may not join another user namespace, as a subprocess inside the pod:
``python -m meshlab.runtime.client '{"op": "calls", ...}'`` printing JSON.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import sys
import time
from typing import Any


def calls(
    host: str, port: int, authority: str, path: str, n: int, headers: dict[str, str], timeout: float, tls: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """``n`` GET requests on one keep-alive connection (reopened after a failure), like a curl loop.

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
            conn.request("GET", path, headers={"Host": authority, **headers})
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


def main() -> None:
    req = json.loads(sys.argv[1])
    op = req.pop("op")
    result = calls(**req) if op == "calls" else connect(**req)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
