"""Sample applications run as plain processes inside pod namespaces.

``helloworld`` answers ``GET /hello`` like Istio's sample:
``Hello version: v1, instance: helloworld-v1-...``. Query parameters make it misbehave, for the
data-plane experiments of labs 01 and 01b:

- ``sleep=0.5``: answer half a second later (a slow backend, for timeouts);
- ``tail=0.1`` (with ``sleep``): only one request in ten is slow (a long tail, for hedging);
- ``fail=0.3``: answer 503 to 30 % of requests (for retries and outlier detection);
- ``only=v2``: the above apply only on instances of version v2 (e.g. a slow shadow).

It echoes the trace headers it received (``traceparent``, ``x-request-id``, B3) as ``x-echo-<name>``
response headers: what an application would have to forward to keep a trace together.

It is a small asyncio HTTP/1.1 server with keep-alive, so it is never the bottleneck when the
benchmark measures the sidecars.

Run: ``python -m meshlab.runtime.apps helloworld --listen 127.0.0.1:5000 --version v1 --instance NAME``;
with ``--tls-cert``/``--tls-key`` it serves HTTPS (an external service on the underlay) and says in
headers which TLS version the client negotiated (``x-served-tls``) and which server name it asked for
(``x-served-sni``, absent without SNI).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import ssl


# W3C trace context, Envoy's request id and B3: what Envoy's tracers propagate (meshlab.tracing.TRACE_HEADERS)
TRACE_HEADERS = ("traceparent", "tracestate", "x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled")


async def _serve(host: str, port: int, version: str, instance: str, tls: ssl.SSLContext | None = None) -> None:
    hello = f"Hello version: {version}, instance: {instance}\n".encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                route, _, query = path.partition("?")
                if route in ("/hello", "/"):
                    status, body = "200 OK", hello
                    q = dict(p.partition("=")[::2] for p in query.split("&") if p)
                    if q.get("only", version) == version:
                        if q.get("sleep") and random.random() < float(q.get("tail", 1)):
                            await asyncio.sleep(min(float(q["sleep"]), 30.0))
                        if q.get("fail") and random.random() < float(q["fail"]):
                            status, body = "503 Service Unavailable", f"failing on purpose ({instance})\n".encode()
                elif path == "/healthz":
                    status, body = "200 OK", b"ok\n"
                else:
                    status, body = "404 Not Found", f"no route {path}\n".encode()
                close = headers.get("connection", "").lower() == "close"
                sslobj = writer.get_extra_info("ssl_object")
                served = f"x-served-tls: {sslobj.version()}\r\n" if sslobj else ""
                if getattr(sslobj, "meshlab_sni", None):
                    served += f"x-served-sni: {sslobj.meshlab_sni}\r\n"
                # the trace context the request arrived with, echoed (lab 03b: what the app received and must forward)
                served += "".join(f"x-echo-{h}: {headers[h]}\r\n" for h in TRACE_HEADERS if h in headers)
                writer.write(
                    f"HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {len(body)}\r\n{served}"
                    f"{'connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode()
                    + (body if method != "HEAD" else b"")
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, reuse_address=True, backlog=1024, ssl=tls)
    print(f"listening on {host}:{port}", flush=True)  # meshlab waits for this line
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="meshlab-app")
    p.add_argument("app", choices=["helloworld"])
    p.add_argument("--listen", required=True, help="host:port")
    p.add_argument("--version", required=True)
    p.add_argument("--instance", required=True)
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    p.add_argument("--tls-key", help="... and this key")
    a = p.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    tls = None
    if a.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.tls_cert, a.tls_key)
        tls.sni_callback = lambda obj, name, _ctx: setattr(obj, "meshlab_sni", name)  # the SNI the client sent
    asyncio.run(_serve(host, int(port), a.version, a.instance, tls))


if __name__ == "__main__":
    main()
