"""istio-agent's half of Wasm delivery, one agent per proxy: fetch the module an extension config names,
verify it, keep it in the proxy's cache, and hand Envoy a config that loads it from a local file.

Istio's agent sits between istiod and Envoy (``pkg/istio-agent/xds_proxy.go``) and rewrites every ECDS
response before Envoy sees it (``pkg/wasm/convert.go`` ``MaybeConvertWasmExtensionConfig``):

* a Wasm config whose code is ``remote`` is fetched (``pkg/wasm/cache.go``): ``oci://`` images from any
  registry (the pull secret's credentials, if the ECDS carried one), ``http(s)://`` downloads; the
  checksum is compared with ``sha256`` (for ``oci://`` the *image manifest digest*, otherwise the
  file's sha256: "module downloaded from ... has checksum X, which does not match: Y"), the bytes
  must start with the wasm magic, and the module is cached by checksum under
  ``<cache>/<sha256(module name)>/<checksum>.wasm``. ``imagePullPolicy``: ``IfNotPresent`` (the
  default, except oci tag ``latest``) reuses the cached module, ``Always`` pulls again when the
  resource's version changed. The ``ISTIO_META_*`` VM variables are stripped and ``remote`` becomes
  ``local.filename``;
* if anything fails, the extension config becomes an **RBAC filter** under the same name: deny-all
  (``rules: {}``, stat prefix ``wasm-default-deny``) unless the plugin fails open, then allow-all
  (``wasm-default-allow``) -- since Istio 1.25; the agent logs "error in converting the wasm config
  to local: ... applying deny RBAC filter". So a wrong digest fails in each proxy, not at apply.

The agent runs when the ECDS it is given changes (istiod pushes ECDS only for extension, EnvoyFilter
and Secret changes: ``pilot/pkg/xds/ecds.go``), so an endpoint change never triggers a download.
meshlab adds hints Istio does not give (the module's ABI version, its root ids): they are logged and
reported, labelled as meshlab's, and change nothing.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MeshlabError
from ..state import write_atomic
from ..wasm import oci
from ..controlplane.extensions import POLICY_ENV, RBAC_FILTER, SECRET_ENV, VERSION_ENV, WASM_FILTER, scheme_of

MAX_BYTES = 256 * 1024 * 1024  # Istio's ISTIO_WASM_MAX_BINARY_SIZE_BYTES default
WASM_MAGIC = b"\0asm"
HINT = "meshlab hint (Istio does not check this)"
DENY = {"@type": RBAC_FILTER, "rules": {}, "rules_stat_prefix": "wasm-default-deny"}  # empty rules: deny all
ALLOW = {"@type": RBAC_FILTER, "rules_stat_prefix": "wasm-default-allow"}  # no rules: allow all


class FetchError(MeshlabError):
    """A module the agent could not fetch or verify; ``result`` is the label of Istio's
    ``istio_agent_wasm_remote_fetch_count`` (download_failure, manifest_failure, checksum_mismatched, fetch_failure)."""

    def __init__(self, message: str, result: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.result = result


@dataclass
class Module:
    """A fetched module, as the agent cached it."""

    url: str
    path: str  # the cached file Envoy loads
    sha256: str  # of the module bytes
    checksum: str  # what sha256 is compared with: manifest digest (oci) or file sha256
    variant: str = ""  # oci / compat (oci:// only)
    root_ids: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # meshlab's own checks (ABI, loadability)
    source: str = ""  # registry address, or the http URL
    seconds: float = 0.0
    cached: bool = False

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _module_name(url: str) -> str:
    """The URL without tag or digest (Istio keys its cache by this name plus the checksum)."""
    if scheme_of(url) != "oci":
        return url
    r = oci.parse_ref(url if "://" in url else "oci://" + url)
    return f"oci://{r.registry}/{r.repository}"


def cache_path(cache: Path, url: str, checksum: str) -> Path:
    return cache / hashlib.sha256(_module_name(url).encode()).hexdigest() / f"{checksum}.wasm"


def _hubs(hub_dirs: list[Path]) -> list[Any]:
    from ..wasm.hub import Hub

    return [h for d in dict.fromkeys(hub_dirs) if (h := Hub.running(d)) is not None]


def _ca_for(host: str, hubs: list[Any]) -> str | None:
    """meshlab's hub signs its TLS certificate with its own CA; the agent trusts it (Istio: a CA the proxy trusts)."""
    return next((h.ca_file for h in hubs if h.address == host or h.address.split(":")[0] == host), None)


def credentials(docker_config: str | None, registry: str) -> tuple[str | None, str | None]:
    """(user, password) for ``registry`` from a ``kubernetes.io/dockerconfigjson`` secret's content."""
    if not docker_config:
        return None, None
    auths = json.loads(docker_config).get("auths", {})
    entry = auths.get(registry) or auths.get(f"https://{registry}") or {}
    if "auth" in entry:
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        return user, password
    return entry.get("username"), entry.get("password")


def fetch(
    url: str, checksum: str, cache: Path, hub_dirs: list[Path], *, pull_secret: str | None = None, policy: str = "",
    resource: str = "", resource_version: str = "", root_id: str = "",
) -> Module:  # fmt: skip
    """Download (or reuse from the cache) a module and verify it, as Istio's ``LocalFileCache.Get``; raises FetchError."""
    t = time.perf_counter()
    scheme = scheme_of(url)
    ref = oci.parse_ref(url if "://" in url else "oci://" + url) if scheme == "oci" else None
    index_path = cache / "index.json"
    index: dict[str, Any] = json.loads(index_path.read_text()) if index_path.exists() else {}
    always = policy == "Always" or (not policy and ref is not None and not ref.digest and ref.tag == "latest")
    known = checksum or index.get("tags", {}).get(url, "")
    unchanged = index.get("versions", {}).get(resource) == resource_version
    if known and cache_path(cache, url, known).exists() and (not always or unchanged):
        meta = json.loads(cache_path(cache, url, known).with_suffix(".json").read_text())
        return Module(**{**meta, "seconds": time.perf_counter() - t, "cached": True})
    hubs = _hubs(hub_dirs)
    variant, root_ids, source = "", [], url
    if ref is not None:
        user, password = credentials(pull_secret, ref.registry)
        try:
            pulled = oci.Registry(ref.registry, user, password, ca_file=_ca_for(ref.registry, hubs)).pull(ref, strict=True)
        except oci.DigestMismatch as e:
            raise FetchError(f"could not fetch Wasm binary: {e.message}", "download_failure", e.hint) from None
        except oci.OciError as e:
            raise FetchError(f"could not fetch Wasm OCI image: {e.message}", "manifest_failure", e.hint) from None
        data, got, variant, root_ids, source = pulled.wasm, pulled.digest.split(":", 1)[1], pulled.variant, pulled.root_ids, ref.registry
    else:
        req = urllib.request.Request(url)  # no credentials: Istio's HTTP fetcher sends none (pull secrets are for OCI)
        host = urllib.parse.urlsplit(url).hostname or ""
        ctx = ssl.create_default_context(cafile=_ca_for(host, hubs)) if scheme == "https" else None
        try:
            with urllib.request.urlopen(req, timeout=15, context=ctx) as resp:
                data = resp.read(MAX_BYTES + 1)
        except (urllib.error.URLError, OSError) as e:
            raise FetchError(f"cannot download {url}: {getattr(e, 'reason', e)}", "download_failure", "check the URL and that the server is up") from None
        got = hashlib.sha256(data).hexdigest()
    if checksum and got != checksum:
        hint = "fix sha256, or remove it to accept whatever the URL serves now"
        if scheme == "oci":
            hint = (f"for oci:// URLs, sha256 is the image *manifest* digest (`meshlab wasm list` shows it; this image's is {got})"
                    + ("; you gave the sha256 of the .wasm file itself" if hashlib.sha256(data).hexdigest() == checksum else ""))  # fmt: skip
        raise FetchError(f"module downloaded from {url} has checksum {got}, which does not match: {checksum}", "checksum_mismatched", hint)
    if len(data) > MAX_BYTES or len(data) < 8 or data[:4] != WASM_MAGIC:
        raise FetchError(f"fetched Wasm binary from {url} is invalid", "fetch_failure", "the bytes are not a WebAssembly module (no \\0asm magic)")
    path = cache_path(cache, url, got)
    if not path.exists():
        write_atomic(path, data)
    m = Module(url, str(path), hashlib.sha256(data).hexdigest(), got, variant, list(root_ids), _hints(data, url, root_ids, root_id), source,
               time.perf_counter() - t, False)  # fmt: skip
    write_atomic(path.with_suffix(".json"), json.dumps({k: v for k, v in m.record().items() if k not in ("seconds", "cached")}))
    index.setdefault("tags", {})[url] = got
    index.setdefault("versions", {})[resource] = resource_version
    write_atomic(index_path, json.dumps(index, indent=1, sort_keys=True))
    return m


def _hints(data: bytes, url: str, root_ids: list[str], root_id: str) -> list[str]:
    """What meshlab checks beyond Istio: would Envoy load it (ABI, imports), does it register the root id."""
    from ..wasm.inspect import inspect_bytes

    try:
        report = inspect_bytes(data, url)
        hints = [f"{HINT}: the module would not load in Envoy: " + "; ".join(report.errors)] if report.errors else []
    except MeshlabError as e:
        hints = [f"{HINT}: {e.message}"]
    if root_ids and root_id not in root_ids:
        hints.append(f"{HINT}: pluginName {root_id!r} is not a root id of this module (its image lists {', '.join(root_ids)}); "
                     f"Envoy will pass that root_id and the module will find no root context for it: set pluginName: {root_ids[0]}")  # fmt: skip
    return hints


@dataclass
class Event:
    """One thing the agent did that a learner should see: an error (with the fallback) or a meshlab hint."""

    resource: str
    message: str
    level: str = "error"  # error | hint | info


class Agent:
    """The agent of one proxy: its module cache, its log, and what it last gave Envoy."""

    def __init__(self, directory: Path, log: Path, hub_dirs: list[Path]) -> None:
        self.dir = directory
        self.log_path = log
        self.hub_dirs = hub_dirs
        self.memo_path = directory / "ecds.json"

    def convert(self, ecds: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[Event]]:
        """Envoy's ECDS resources from istiod's, with the events of the conversions that ran."""
        memo: dict[str, Any] = json.loads(self.memo_path.read_text()) if self.memo_path.exists() else {}
        out, events, new_memo = {}, [], {}
        for name, resource in ecds.items():
            if name in memo and memo[name]["in"] == resource:
                out[name] = memo[name]["out"]  # an unchanged extension config is not pushed again
            else:
                out[name], evs = self._convert_one(resource)
                events += evs
            new_memo[name] = {"in": resource, "out": out[name]}
        if new_memo != memo:
            write_atomic(self.memo_path, json.dumps(new_memo, indent=1))
        self._log(events)
        return out, events

    def metrics(self) -> dict[str, int]:
        """``istio_agent_wasm_remote_fetch_count{result=...}`` and ``wasm_config_conversion_count{result=...}``."""
        path = self.dir / "metrics.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def _count(self, metric: str) -> None:
        m = self.metrics()
        m[metric] = m.get(metric, 0) + 1
        write_atomic(self.dir / "metrics.json", json.dumps(m, indent=1, sort_keys=True))

    def _convert_one(self, resource: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        tc = resource.get("typed_config") or {}
        code = ((tc.get("config") or {}).get("vm_config") or {}).get("code") or {}
        if tc.get("@type") != WASM_FILTER or "remote" not in code:
            self._count('wasm_config_conversion_count{result="no_remote_load"}')
            return resource, []  # not remote Wasm: bypassed
        out = copy.deepcopy(resource)
        config = out["typed_config"]["config"]
        vm = config["vm_config"]
        env = vm.get("environment_variables", {}).get("key_values", {})
        secret, policy, version = env.get(SECRET_ENV), env.get(POLICY_ENV, ""), env.get(VERSION_ENV, "")
        for k in [k for k in env if k.startswith("ISTIO_META")]:  # meant for the agent, never for Envoy or the module
            del env[k]
        if not env:
            vm.pop("environment_variables", None)
        remote = vm["code"]["remote"]
        url = remote["http_uri"]["uri"]
        fail_open = config.get("failure_policy") == "FAIL_OPEN"
        try:
            if secret == "":
                raise FetchError(f"cannot fetch Wasm module {config['name']}: missing image pulling secret", "fetch_failure",
                                 "the Secret named in imagePullSecret does not exist in this proxy's cluster (namespace of the plugin)")  # fmt: skip
            m = fetch(url, remote.get("sha256", ""), self.dir / "wasm-cache", self.hub_dirs, pull_secret=secret, policy=policy,
                      resource=resource["name"], resource_version=version, root_id=config.get("root_id", ""))  # fmt: skip
        except FetchError as e:
            self._count(f'istio_agent_wasm_remote_fetch_count{{result="{e.result}"}}')
            self._count('wasm_config_conversion_count{result="fetch_failure"}')
            fallback = "allow" if fail_open else "deny"
            msg = f"error in converting the wasm config to local: cannot fetch Wasm module {url}: {e.message}. applying {fallback} RBAC filter"
            events = [Event(resource["name"], msg)]  # Istio's own line, word for word: what a learner will find at work
            if e.hint:  # meshlab's advice goes on a line of its own, labelled: Istio's agent logs no such thing
                events.append(Event(resource["name"], f"{HINT}: {e.hint}", "hint"))
            return {**resource, "typed_config": dict(ALLOW if fail_open else DENY)}, events
        if not m.cached:
            self._count('istio_agent_wasm_remote_fetch_count{result="success"}')
        self._count('wasm_config_conversion_count{result="success"}')
        vm["code"] = {"local": {"filename": m.path}}
        how = "from the cache" if m.cached else f"fetched from {m.source} in {m.seconds:.2f}s"
        events = [Event(resource["name"], f"module sha256:{m.sha256[:12]}... {how}", "info")]
        return out, events + [Event(resource["name"], h, "hint") for h in m.hints]

    def _log(self, events: list[Event]) -> None:
        if not events:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            for e in events:
                f.write(f"{stamp}\t{e.level}\twasm\t{e.resource}: {e.message}\n")
