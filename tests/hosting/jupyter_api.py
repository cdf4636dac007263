"""A small client for JupyterHub's REST API and a Jupyter server's kernel API: what the hub test drives.

It logs a learner in (``POST /hub/api/users/NAME/tokens`` with their password: the hub's authenticator
checks it), starts their server, and runs a notebook's code cells in a kernel of that server over the
kernel websocket (Jupyter's messaging protocol: ``execute_request`` on the shell channel, outputs and
errors on iopub), the way JupyterLab does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect


@dataclass
class CellResult:
    index: int
    status: str  # "ok" or "error"
    error: str = ""
    stdout: str = ""


@dataclass
class Learner:
    base: str  # http://127.0.0.1:PORT (the proxy)
    name: str
    token: str = ""
    results: list[CellResult] = field(default_factory=list)

    async def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"token {token or self.token}"} if (token or self.token) else {}
        req = HTTPRequest(self.base + path, method=method, headers=headers, request_timeout=120,
                          body=None if body is None and method in ("GET", "DELETE") else json.dumps(body or {}))
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.response is None:
                raise
            resp = e.response
        text = resp.body.decode() if resp.body else ""
        return resp.code, (json.loads(text) if text.strip().startswith(("{", "[")) else text)

    async def login(self, password: str) -> int:
        """Ask the hub for an API token with the learner's password; the HTTP status (201: a token was made)."""
        code, body = await self.api("POST", f"/hub/api/users/{self.name}/tokens",
                                    {"auth": {"username": self.name, "password": password}, "note": "hub test"}, token="")
        if code == 201:
            self.token = body["token"]
        return code

    async def start_server(self, timeout: float = 180) -> dict[str, Any]:
        code, body = await self.api("POST", f"/hub/api/users/{self.name}/server")
        assert code in (201, 202), f"{self.name}: starting the server answered {code}: {body}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            code, model = await self.api("GET", f"/hub/api/users/{self.name}")
            server = (model.get("servers") or {}).get("", {}) if code == 200 else {}
            if server.get("ready"):
                return model
            await asyncio.sleep(0.5)
        raise AssertionError(f"{self.name}: the server was not ready after {timeout}s (last answer {code}: {model})")

    async def run_notebook(self, path: str, parameters: str, timeout: float = 300) -> list[CellResult]:
        """Execute the code cells of ``path`` (from the server's contents API) in a new kernel of the server."""
        code, nb = await self.api("GET", f"/user/{self.name}/api/contents/{path}?content=1")
        assert code == 200, f"{self.name}: {path} not found in the learner's server ({code})"
        sources = []
        for i, c in enumerate(c for c in nb["content"]["cells"] if c["cell_type"] == "code"):
            sources.append((i, "".join(c["source"])))
            if "parameters" in c.get("metadata", {}).get("tags", []):
                sources.append((i, parameters))  # papermill's way: injected right after the parameters cell
        return await self.run_cells(sources, timeout)

    async def run_cells(self, sources: list[tuple[int, str]], timeout: float = 300) -> list[CellResult]:
        """Execute (index, code) cells in order in a new kernel of the learner's server; stop at the first error."""
        code, kernel = await self.api("POST", f"/user/{self.name}/api/kernels", {"name": "python3"})
        assert code == 201, f"{self.name}: no kernel ({code}: {kernel})"
        ws_url = self.base.replace("http", "ws", 1) + f"/user/{self.name}/api/kernels/{kernel['id']}/channels"
        ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {self.token}"}))
        session = uuid.uuid4().hex
        results = []
        try:
            for i, source in sources:
                result = await asyncio.wait_for(self._execute(ws, session, i, source), timeout)
                results.append(result)
                if result.status != "ok":
                    break
        finally:
            ws.close()
            await self.api("DELETE", f"/user/{self.name}/api/kernels/{kernel['id']}")
        self.results += results
        return results

    async def _execute(self, ws: Any, session: str, index: int, source: str) -> CellResult:
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": self.name, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": source, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        result = CellResult(index, "ok")
        reply = idle = False
        while not (reply and idle):
            raw = await ws.read_message()
            assert raw is not None, f"{self.name}: the kernel's websocket closed during cell {index}"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                result.stdout += content.get("text", "")
            elif kind == "error":
                result.status, result.error = "error", f"{content['ename']}: {content['evalue']}"
            elif kind == "execute_reply":
                reply = True
                if content["status"] != "ok":
                    result.status = "error"
                    result.error = result.error or f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        return result
