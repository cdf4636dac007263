"""A standalone Envoy with one upstream and a Wasm filter you can swap while it runs.

    from meshlab.wasm import envoy
    with envoy() as e:                                   # Envoy + helloworld upstream, no filter yet
        e.load("wasm-filters/add-header/build/filter.wasm", {"name": "x-hello", "value": "hi"}, root_id="add_header")
        status, headers, body = e.request("/hello")      # headers["x-hello"] == "hi"
        e.load(..., {"name": "x-hello", "value": "v2"})  # hot swap: same Envoy process (e.pid)
        e.stats("wasm")                                  # {"wasm.envoy.wasm.runtime.v8.active": 2, ...}
        e.logs()                                         # the filter's proxy_log lines

How it works: Envoy starts from a bootstrap with a static cluster (the upstream) and its listeners
from a file (LDS, ``path_config_source``). ``load()`` writes a new listener file -- temp file +
rename, so Envoy never reads half a file -- whose HTTP filter chain is ``envoy.filters.http.wasm``
then the router, and waits until Envoy reports the update applied (or rejected: then it raises with
Envoy's reason). Envoy swaps the filter chain in place; connections on the old chain drain.

Every process is recorded (pid + start time) in a state file under ``$MESHLAB_HOME/wasm/`` the
moment it starts, and stopped by ``close()``, at interpreter exit, or -- after a crashed kernel -- by
:func:`down_all` (``meshlab down``).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import http.client
import json
import re
import secrets
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from .. import xds as X
from ..errors import LabDownError, MeshlabError
from ..runtime import envoy as E
from ..runtime import procs
from ..state import State, home, write_atomic
from .inspect import inspect

WASM_FILTER = X.T + "envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = X.T + "google.protobuf.StringValue"
V8 = "envoy.wasm.runtime.v8"
LISTENER = "wasm_demo"
UPSTREAM = "helloworld"
FAILURE_POLICIES = ("FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD")

# The access log records, per request, what the filter did: status, Envoy's response details (a
# local reply from a filter shows its details string) and the request headers as they left Envoy.
ACCESS_LOG_FORMAT = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(:PATH)%",
    "status": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",
    "upstream_host": "%UPSTREAM_HOST%",
    "duration_ms": "%DURATION%",
}


def _config_text(config: Any) -> str:
    """The plugin configuration as the module receives it: a str as is, None as nothing, else JSON."""
    if config is None:
        return ""
    return config if isinstance(config, str) else json.dumps(config)


def _log_time(line: str) -> datetime | None:
    """The timestamp Envoy puts at the start of each log line (local time), or None."""
    try:
        return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None


def wasm_root() -> Path:
    return home() / "wasm"


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Loaded:
    """What ``load()`` put in place."""

    name: str
    root_id: str
    module: Path  # the content-addressed copy Envoy reads
    sha256: str
    config: Any
    failure_policy: str
    version: str
    applied_in_s: float


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _check_port(port: int | None, what: str) -> int:
    if port is None:
        return free_port()
    if not 0 < port < 65536:
        raise MeshlabError(f"{what} port {port} is not a TCP port", "use 1-65535, or leave it out to get a free one")
    if not port_is_free(port):
        raise MeshlabError(
            f"{what} port 127.0.0.1:{port} is already in use",
            f"stop whatever listens there (`ss -ltnp 'sport = :{port}'`), pick another port, or leave it out to get a free one",
        )
    return port


def _stream_trace(lines: list[str]) -> tuple[list[str], list[str]]:
    """The callbacks and host calls of the request's stream context, from Envoy's wasm trace lines: from
    its ``proxy_on_context_create(id, parent != 0)`` to its ``proxy_on_delete(id)``, on that worker thread
    (other contexts -- a swapped-out plugin's root context being torn down -- are left out)."""
    callbacks: list[str] = []
    host: list[str] = []
    thread = context = None
    for ln in lines:
        m = re.search(r"\]\[(\d+)\]\[trace\]\[wasm\].*?\[(host->vm|vm->host)\] ([\w.]+)\(([^)]*)\)", ln)
        if not m:
            continue
        tid, direction, name, args = m.groups()
        first = args.split(",")[0].strip()
        if context is None:
            if name == "proxy_on_context_create" and args.split(",")[-1].strip() not in ("0", ""):
                thread, context = tid, first
                callbacks.append(name)
            continue
        if tid != thread:
            continue
        if direction == "vm->host":
            host.append(name)
        elif name == "proxy_on_memory_allocate" or name == "malloc" or first == context:
            callbacks.append(name)
            if name == "proxy_on_delete" and first == context:
                break
    return callbacks, host


@dataclass
class Calls:
    """One request as the module saw it (``WasmEnvoy.calls``): Envoy's trace of the ABI boundary."""

    status: int
    callbacks: list[str]  # proxy_on_* the host called in the module, in order
    host_functions: list[str]  # env.proxy_* the module called in the host, in order


T = TypeVar("T")


def _open_only(method: Callable[..., T]) -> Callable[..., T]:
    """After ``close()`` (the lab's Cleanup) a use of the Envoy says the lab is down, not ConnectionRefused."""

    @functools.wraps(method)
    def guarded(self: "WasmEnvoy", *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise LabDownError()
        return method(self, *args, **kwargs)

    return guarded


class WasmEnvoy:
    """One Envoy (admin on a Unix socket) + helloworld upstream on 127.0.0.1, filter loaded by ``load()``."""

    def __init__(
        self,
        port: int | None = None,
        upstream_port: int | None = None,
        log_headers: tuple[str, ...] = ("x-abi-tour-config", "x-api-key", "x-user"),
        log_level: str = "info",
    ) -> None:
        self.port = _check_port(port, "listener")
        self.upstream_port = _check_port(upstream_port, "upstream")
        if self.upstream_port == self.port:
            raise MeshlabError(f"listener and upstream cannot share port {self.port}", "give them different ports")
        self.log_headers = tuple(h.lower() for h in log_headers)
        self.dir = wasm_root() / f"envoy-{secrets.token_hex(3)}"
        if len(str(self.dir / "admin.sock")) > 100:  # a Unix socket path has at most 107 bytes
            raise MeshlabError(
                f"the state directory {wasm_root()} is too long a path for Envoy's admin socket",
                "set MESHLAB_HOME to a shorter directory, e.g. export MESHLAB_HOME=/tmp/meshlab",
            )
        self.state = State(self.dir)
        self.state.data = {"kind": "wasm-envoy", "created": time.time(), "port": self.port, "upstream_port": self.upstream_port, "processes": []}
        self.state.save()
        self.admin = E.Admin(self.dir / "admin.sock")
        self.envoy_log = self.dir / "envoy.log"
        self.access_log_path = self.dir / "access.log"
        self.lds = self.dir / "lds.json"
        self.version = 0
        self.loaded: Loaded | None = None
        self._closed = False
        self._lock = threading.Lock()
        atexit.register(self.close)
        try:
            self._start_upstream()
            self._start_envoy(log_level)
        except BaseException:
            self.close()
            raise

    # ---- processes -------------------------------------------------------------------------------
    def _record(self, p: procs.Proc) -> None:
        self.state.record("processes", p.record())

    def _start_upstream(self) -> None:
        argv = [
            sys.executable, "-m", "meshlab.runtime.apps", "helloworld",
            "--listen", f"127.0.0.1:{self.upstream_port}", "--version", "v1", "--instance", "wasm-upstream",
        ]  # fmt: skip
        p = procs.spawn("wasm/upstream", argv, self.dir / "upstream.log")
        self._record(p)

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=0.5):
                return True

        procs.wait_until(listening, p, f"helloworld listens on 127.0.0.1:{self.upstream_port}")

    def _bootstrap(self) -> dict[str, Any]:
        return {
            "node": {"id": "wasm-demo", "cluster": "wasm-demo"},
            "admin": {"address": {"pipe": {"path": str(self.admin.path)}}},
            "static_resources": {"clusters": [X.static_cluster(UPSTREAM, "127.0.0.1", self.upstream_port)]},
            "dynamic_resources": {"lds_config": {"path_config_source": {"path": str(self.lds)}, "resource_api_version": "V3"}},
        }

    def _start_envoy(self, log_level: str) -> None:
        write_atomic(self.lds, json.dumps(self._lds_doc(None), indent=1))
        boot = self.dir / "bootstrap.json"
        write_atomic(boot, json.dumps(self._bootstrap(), indent=1))
        argv = E.envoy_argv(boot, self.envoy_log) + ["--log-level", log_level]
        p = procs.spawn("wasm/envoy", argv, self.dir / "envoy.stdout")
        self._record(p)
        self._envoy_proc = p
        procs.wait_until(self.admin.ready, p, "Envoy's /ready answered 200")
        self._await_version(
            "0", {"update_rejected": 0, "update_failure": 0}, datetime.now() - timedelta(seconds=5), 10.0,
            what="Envoy could not open its listener",
            hint=f"if the port is taken, start it on another one: meshlab.wasm.envoy(port=...) (it was {self.port})",
        )  # fmt: skip

    @property
    def pid(self) -> int:
        """Envoy's process id: the same before and after ``load()`` (no restart)."""
        return self._envoy_proc.pid

    def alive(self) -> bool:
        return procs.is_alive(self._envoy_proc.record())

    def close(self) -> None:
        """Stop Envoy and the upstream, remove the state directory. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        procs.terminate(self.state.data.get("processes", []))
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    def __enter__(self) -> "WasmEnvoy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        what = f"{self.loaded.name} ({self.loaded.sha256[:12]})" if self.loaded else "no filter"
        return f"<WasmEnvoy pid={self.pid} listener=127.0.0.1:{self.port} upstream=127.0.0.1:{self.upstream_port} {what}>"

    # ---- configuration ---------------------------------------------------------------------------
    def wasm_filter(self, loaded: Loaded) -> dict[str, Any]:
        """The Envoy HTTP filter for a loaded module (what a learner would write by hand)."""
        return {
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": WASM_FILTER,
                "config": {
                    "name": loaded.name,
                    "root_id": loaded.root_id,
                    "configuration": {"@type": STRING_VALUE, "value": _config_text(loaded.config)},
                    "vm_config": {
                        # one VM per loaded version: an old VM drains with the old filter chain
                        "vm_id": f"{loaded.name}-{loaded.version}",
                        "runtime": V8,
                        "code": {"local": {"filename": str(loaded.module)}},
                    },
                    "failure_policy": loaded.failure_policy,
                },
            },
        }

    def _listener(self, loaded: Loaded | None) -> dict[str, Any]:
        filters = ([self.wasm_filter(loaded)] if loaded else []) + [{"name": "envoy.filters.http.router", "typed_config": {"@type": X.ROUTER}}]
        log_format = dict(ACCESS_LOG_FORMAT)
        for h in self.log_headers:
            log_format[h] = f"%REQ({h})%"
        route = {
            "name": "local",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": UPSTREAM}}]}],
        }
        return X.listener(
            LISTENER,
            "127.0.0.1",
            self.port,
            filter_chains=[
                {
                    "filters": [
                        {
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": {
                                "@type": X.HCM,
                                "stat_prefix": LISTENER,
                                "route_config": route,
                                "http_filters": filters,
                                "access_log": [
                                    {
                                        "name": "envoy.access_loggers.file",
                                        "typed_config": {
                                            "@type": X.FILE_LOG,
                                            "path": str(self.access_log_path),
                                            "log_format": {"json_format": log_format},
                                        },
                                    }
                                ],
                            },
                        }
                    ]
                }
            ],
        )

    def _lds_doc(self, loaded: Loaded | None) -> dict[str, Any]:
        return {"version_info": str(self.version), "resources": [X.resource("envoy.config.listener.v3.Listener", self._listener(loaded))]}

    @_open_only
    def load(
        self,
        wasm_path: str | Path,
        config: Any = None,
        root_id: str = "",
        fail_open: bool = False,
        *,
        failure_policy: str | None = None,
        name: str | None = None,
        check: bool = True,
        timeout: float = 15.0,
    ) -> Loaded:
        """Put ``wasm_path`` in the filter chain with ``config`` (a dict is sent as JSON), without a restart.

        ``fail_open`` picks Envoy's ``failure_policy``: FAIL_CLOSED (default: a failed VM answers 503)
        or FAIL_OPEN (a failed VM is skipped). ``failure_policy`` sets it directly (also FAIL_RELOAD).
        ``check`` inspects the module first and refuses one that is not proxy-wasm or would not load.
        Returns when Envoy applied the new listener; raises MeshlabError with Envoy's reason if it
        rejected it (the previous filter then stays in place).
        """
        src = Path(wasm_path)
        if check:
            report = inspect(src)
            if report.errors:
                raise MeshlabError(
                    f"{src} would not load in Envoy: " + "; ".join(report.errors),
                    f"`meshlab wasm inspect {src}` shows the module's imports and exports",
                )
        elif not src.is_file():
            raise MeshlabError(f"no such file: {src}", "build the filter first: meshlab wasm build DIR")
        policy = failure_policy or ("FAIL_OPEN" if fail_open else "FAIL_CLOSED")
        if policy not in FAILURE_POLICIES:
            raise MeshlabError(f"unknown failure_policy {policy!r}", f"use one of {', '.join(FAILURE_POLICIES)}")
        data = src.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        default = root_id or (src.stem if src.stem != "filter" else src.parent.parent.name)
        plugin = name or re.sub(r"[^a-zA-Z0-9_]", "_", default or "filter")
        module = self.dir / "modules" / f"{sha[:16]}.wasm"  # content-addressed: a rebuild never changes a loaded module
        if not module.exists():
            write_atomic(module, data)
        self.version += 1
        loaded = Loaded(plugin, root_id, module, sha, config, policy, str(self.version), 0.0)
        t = time.perf_counter()
        self._apply(loaded, timeout)
        loaded.applied_in_s = time.perf_counter() - t
        self.loaded = loaded
        return loaded

    @_open_only
    def unload(self, timeout: float = 15.0) -> None:
        """Remove the Wasm filter (router only): the baseline without a filter."""
        self.version += 1
        self._apply(None, timeout)
        self.loaded = None

    def _apply(self, loaded: Loaded | None, timeout: float) -> None:
        before = self._lds_counters()
        # Envoy logs local time with millisecond resolution: start the window a little early
        log_mark = datetime.now() - timedelta(milliseconds=5)
        write_atomic(self.lds, json.dumps(self._lds_doc(loaded), indent=1))
        self._await_version(str(self.version), before, log_mark, timeout)

    def _await_version(
        self,
        version: str,
        before: dict[str, Any],
        log_mark: datetime,
        timeout: float,
        what: str = "Envoy rejected the new filter configuration and keeps the previous one",
        hint: str = "a module that fails to start or returns false from proxy_on_configure is refused at load time; "
        "see e.logs() for the filter's own messages",
    ) -> None:
        """Until Envoy applied listener ``version``; raise with Envoy's reason if it rejected it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise MeshlabError(
                    f"Envoy (pid {self.pid}) exited while applying the listener; last log lines:\n{procs.log_tail(self.envoy_log)}",
                    "read the log above",
                )
            now = self._lds_counters()
            if now["update_rejected"] > before["update_rejected"] or now["update_failure"] > before["update_failure"]:
                raise MeshlabError(f"{what}:\n" + self._rejection_reason(log_mark), hint)
            if now["version_text"] == version:
                self._wait_listener(version, deadline - time.monotonic())
                return
            time.sleep(0.01)
        raise MeshlabError(f"Envoy did not apply listener version {version} within {timeout:.0f}s", f"look at {self.envoy_log}")

    def _lds_counters(self) -> dict[str, Any]:
        status, body = self.admin.get("/stats?format=json&filter=^listener_manager\\.lds\\.")
        out: dict[str, Any] = {"update_rejected": 0, "update_failure": 0, "version_text": None}
        if status != 200:
            return out
        for s in json.loads(body).get("stats", []):
            key = s.get("name", "").rsplit(".", 1)[-1]
            if key in out:
                out[key] = s.get("value")
        return out

    def _wait_listener(self, version: str, timeout: float = 10.0) -> None:
        """Until Envoy's LDS reports ``version`` applied and no listener is warming.

        (The config dump's ``version_info`` of a listener updated in place keeps the old value in
        Envoy 1.40, so the LDS stats are the reliable signal.)
        """
        deadline = time.monotonic() + max(timeout, 0.5)
        while time.monotonic() < deadline:
            s = self.admin.stats(filter="^listener_manager\\.total_listeners_warming$")
            if self._lds_counters()["version_text"] == version and s.get("listener_manager.total_listeners_warming", 1) == 0:
                return
            time.sleep(0.01)
        raise MeshlabError(f"listener version {version} did not become active", f"look at {self.envoy_log}")

    def _rejection_reason(self, since: datetime) -> str:
        """Envoy's log lines about the rejected update: the filter's own errors, then Envoy's verdict."""
        deadline = time.monotonic() + 1.0
        lines: list[str] = []
        while time.monotonic() < deadline:  # the log file is flushed every 200 ms
            lines = [ln for ln in self._log_lines() if (_log_time(ln) or since) >= since]
            if any("update rejected" in ln for ln in lines):
                break
            time.sleep(0.05)
        problems = ("[error]", "[critical]", "[warning]")
        keep = [ln for ln in lines if ("][wasm]" in ln and any(p in ln for p in problems)) or "rejected" in ln]
        return "\n".join(f"  {ln}" for ln in keep[-12:]) or procs.log_tail(self.envoy_log)

    # ---- traffic and observation -----------------------------------------------------------------
    @_open_only
    def request(
        self, path: str = "/hello", headers: dict[str, str] | None = None, method: str = "GET", body: str | bytes | None = None, timeout: float = 5.0
    ) -> Response:
        """One HTTP/1.1 request through Envoy's listener (a new connection each time)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read().decode(errors="replace")
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    @_open_only
    def calls(self, path: str = "/hello", method: str = "POST", body: str | bytes | None = "a request body") -> Calls:
        """Send one request with the ``wasm`` log at trace level and return what crossed the boundary:
        the callbacks Envoy called in the module (``[host->vm] proxy_on_...``) and the host functions the
        module called (``[vm->host] env.proxy_...``), in order -- observed, not read from the module."""
        level = self._log_level("wasm")
        start = len(self._log_lines())
        self.admin.get("/logging?wasm=trace", method="POST")
        try:
            response = self.request(path, method=method, body=body)
            self.wait_for_log("[host->vm] proxy_on_delete")  # the stream context's last callback
            time.sleep(0.25)  # Envoy flushes its log every 200 ms
        finally:
            self.admin.get(f"/logging?wasm={level}", method="POST")
        return Calls(response.status, *_stream_trace(self._log_lines()[start:]))

    def _log_level(self, logger: str) -> str:
        _, body = self.admin.get("/logging", method="POST")
        m = re.search(rf"^\s*{logger}: (\w+)", body, re.M)
        return m.group(1) if m else "info"

    @_open_only
    def stats(self, prefix: str = "wasm") -> dict[str, int]:
        """Envoy's counters and gauges whose name starts with ``prefix`` (e.g. ``wasm``, ``wasmcustom``)."""
        return {k: v for k, v in self.admin.stats(filter="^" + re.escape(prefix)).items()}

    def _log_lines(self) -> list[str]:
        try:
            return self.envoy_log.read_text(errors="replace").splitlines()
        except OSError:
            return []

    @_open_only
    def logs(self, contains: str = "", wasm_only: bool = True, last: int | None = None, wait: float = 0.3) -> list[str]:
        """Envoy log lines of the wasm component (the filter's proxy_log output is ``wasm log ...``).

        Envoy flushes its log file every 200 ms: ``wait`` gives the latest lines time to arrive.
        """
        if wait:
            time.sleep(wait)
        lines = [ln for ln in self._log_lines() if (not wasm_only or "][wasm]" in ln) and contains in ln]
        return lines[-last:] if last else lines

    @_open_only
    def wait_for_log(self, contains: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in reversed(self._log_lines()):
                if contains in line:
                    return line
            time.sleep(0.05)
        raise MeshlabError(f"no Envoy log line containing {contains!r} within {timeout:.0f}s", f"look at {self.envoy_log}")

    @_open_only
    def access_log(self, last: int = 20, wait: float = 0.3) -> list[dict[str, Any]]:
        """The listener's access log entries (JSON), newest last."""
        if wait:
            time.sleep(wait)
        try:
            lines = self.access_log_path.read_text().splitlines()
        except OSError:
            return []
        return [json.loads(ln) for ln in lines[-last:] if ln.strip()]

    @_open_only
    def config(self) -> dict[str, Any]:
        """The Wasm filter as Envoy holds it now (from /config_dump), or {} without one."""
        dump = self.admin.config_dump("dynamic_listeners")
        for cfg in dump.get("configs", []):
            if cfg.get("name") != LISTENER:
                continue
            listener = cfg.get("active_state", {}).get("listener", {})
            for chain in listener.get("filter_chains", []):
                for f in chain.get("filters", []):
                    for hf in f.get("typed_config", {}).get("http_filters", []):
                        if hf.get("name") == "envoy.filters.http.wasm":
                            return hf
        return {}


def envoy(port: int | None = None, upstream_port: int | None = None, **kwargs: Any) -> WasmEnvoy:
    """Start a standalone Envoy with a helloworld upstream (see :class:`WasmEnvoy`)."""
    return WasmEnvoy(port=port, upstream_port=upstream_port, **kwargs)


def down_all(root: Path | None = None) -> int:
    """Stop every standalone Envoy recorded under ``$MESHLAB_HOME/wasm`` (e.g. after a killed kernel).

    Returns how many processes were still running.
    """
    base = root or wasm_root()
    stopped = 0
    if not base.is_dir():
        return 0
    for d in sorted(base.glob("envoy-*")):
        st = State(d)
        stopped += procs.terminate(st.data.get("processes", []))
        shutil.rmtree(d, ignore_errors=True)
    return stopped
