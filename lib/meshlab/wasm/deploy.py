"""Declarative deployment: Istio's ``WasmPlugin`` (extensions.istio.io/v1alpha1) on the local backend.

The two halves Istio splits between istiod and the istio-agent next to each Envoy:

* **fetch** (the agent, ``pkg/wasm``): resolve ``url`` -- ``oci://`` from any registry (meshlab's
  hub with the credentials ``imagePullSecret`` names, its CA trusted), ``http(s)://``, ``file://``;
  no scheme means ``oci://`` -- check the checksum against ``sha256`` (for ``oci://`` the *image
  manifest digest*, as Istio >= 1.14; for the others the sha256 of the file), check the bytes are a
  loadable proxy-wasm module, and cache it by checksum:
  ``<run dir>/wasm-cache/<sha256(module name)[:16]>/<checksum>.wasm`` (Istio: ``/var/lib/istio/data``).
  ``imagePullPolicy`` as Istio: ``IfNotPresent`` (the default) reuses a cached copy of the same URL,
  ``Always`` (the default for tag ``latest``) asks the registry again.
* **translate** (istiod): :func:`http_filters` puts one ``envoy.filters.http.wasm`` filter per
  plugin into the HTTP connection managers of the *selected* workloads' sidecars -- inbound and
  outbound, unless ``match`` narrows it (``mode: SERVER`` = inbound only), exactly as istiod does
  for a plugin without ``match`` -- ordered by ``phase`` (AUTHN, AUTHZ, STATS, then unspecified),
  within a phase by ``priority`` (higher first), before the router. The code is the cached file
  (``local.filename``, what the agent rewrites ``remote`` to), the VM id is fresh per module digest
  (a new module gets a new VM; the old one drains with the old filter chain).

Where meshlab differs from Istio, and says so: a module that cannot be fetched or fails its checksum
is refused when the WasmPlugin is applied (``lab.apply`` raises, no proxy changes), where Istio
accepts the resource and each agent then fails (since 1.25 installing a deny-all filter when
FAIL_CLOSE); filters are inlined in the listener (LDS) instead of delivered through ECDS.
"""

from __future__ import annotations

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

from ..errors import MeshlabError, ResourceError
from ..state import write_atomic
from . import oci

WASM_FILTER = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
V8 = "envoy.wasm.runtime.v8"  # Istio always configures V8
PHASES = ("AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE")  # the order in the filter chain
FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}
ROOT_NAMESPACE = "istio-system"  # a plugin there applies to every namespace
MAX_BYTES = 256 * 1024 * 1024  # Istio's ISTIO_WASM_MAX_BINARY_SIZE_BYTES default
SCHEMES = ("oci", "file", "http", "https")


@dataclass
class Module:
    """A fetched module, as the agent cached it."""

    url: str
    path: str  # the cached file Envoy loads
    sha256: str  # of the module bytes
    checksum: str  # what WasmPlugin.sha256 is compared with: manifest digest (oci) or file sha256
    variant: str = ""  # oci / compat (oci:// only)
    root_ids: list[str] = field(default_factory=list)
    source: str = ""  # registry address, or the file / http URL
    seconds: float = 0.0
    cached: bool = False

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _where(doc: dict[str, Any]) -> str:
    md = doc.get("metadata") or {}
    return f"WasmPlugin {md.get('namespace', 'sample')}/{md.get('name', '?')}"


def read_file_url(url: str, where: str) -> tuple[Path, bytes]:
    """The module behind a ``file://`` URL, or an error that says how to give one."""
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    try:
        return path, path.read_bytes()
    except OSError as e:
        raise ResourceError(f"{where}: cannot read {url}: {e.strerror}", "build the module first, and give its absolute path: file:///...") from None


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "oci"  # Istio: no scheme means oci://


def check(doc: dict[str, Any]) -> None:
    """What the local backend needs beyond the shape check (resources.SHAPES): values that make sense."""
    spec = doc.get("spec") or {}
    where = _where(doc)
    url = spec.get("url") or ""
    if not url:
        raise ResourceError(f"{where}: spec.url is required", "e.g. url: oci://127.0.0.1:5000/wasm/add-header:v1")
    if scheme_of(url) not in SCHEMES:
        raise ResourceError(f"{where}: spec.url {url!r} has scheme {scheme_of(url)!r}", f"use one of: {', '.join(s + '://' for s in SCHEMES)}")
    sha = spec.get("sha256", "")
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise ResourceError(f"{where}: spec.sha256 {sha!r} is not 64 lowercase hex digits", "give the digest without the 'sha256:' prefix")
    if scheme_of(url) == "oci":
        ref = oci.parse_ref(url if "://" in url else "oci://" + url)
        if ref.digest and sha and ref.digest != "sha256:" + sha:
            raise ResourceError(f"{where}: spec.sha256 does not match the @sha256 digest in spec.url", "make them equal, or give only one")
    name = spec.get("pluginName", "")
    if len(name) > 256:
        raise ResourceError(f"{where}: spec.pluginName is longer than 256 characters", "use the root id the module registers")
    for i, m in enumerate(spec.get("match", [])):
        if m.get("ports") and m.get("mode", "UNDEFINED") != "SERVER":
            raise ResourceError(
                f"{where}: spec.match[{i}] selects ports for outbound (CLIENT) traffic, which the local backend's single outbound listener cannot tell apart",
                "use mode: SERVER with ports (inbound), or drop ports",
            )


# ---- the agent half: fetch, verify, cache ------------------------------------------------------
def _module_name(url: str) -> str:
    """The URL without tag or digest (Istio keys its cache by this name plus the checksum)."""
    if scheme_of(url) != "oci":
        return url
    r = oci.parse_ref(url if "://" in url else "oci://" + url)
    return f"oci://{r.registry}/{r.repository}"


def _cache_path(cache: Path, url: str, checksum: str) -> Path:
    return cache / hashlib.sha256(_module_name(url).encode()).hexdigest()[:16] / f"{checksum}.wasm"


def _hubs(hub_dirs: list[Path]) -> list[Any]:
    from .hub import Hub

    out = []
    for d in dict.fromkeys(hub_dirs):
        h = Hub.running(d)
        if h is not None:
            out.append(h)
    return out


def _credentials(doc: dict[str, Any], hubs: list[Any]) -> tuple[str | None, str | None]:
    name = (doc.get("spec") or {}).get("imagePullSecret")
    if not name:
        return None, None
    if not hubs:
        raise ResourceError(
            f"{_where(doc)}: imagePullSecret {name!r} names credentials kept by meshlab's wasm hub, but no hub is running",
            "start it (meshlab.wasm.hub.up() / `meshlab wasm hub up`) and add the user: `meshlab wasm hub users add NAME`",
        )
    last: MeshlabError | None = None
    for h in hubs:
        try:
            return h.secret(name)
        except MeshlabError as e:
            last = e
    assert last is not None
    raise ResourceError(f"{_where(doc)}: {last.message}", last.hint)


def _ssl_context(host: str, hubs: list[Any]) -> ssl.SSLContext:
    ca = next((h.ca_file for h in hubs if h.address == host or h.address.split(":")[0] == host), None)
    return ssl.create_default_context(cafile=ca)


def fetch(doc: dict[str, Any], cache: Path, hub_dirs: list[Path]) -> Module:
    """Download (or reuse from the cache) the module of a WasmPlugin and verify it; raises ResourceError."""
    check(doc)
    spec = doc["spec"]
    where = _where(doc)
    url = spec["url"]
    scheme = scheme_of(url)
    expected = spec.get("sha256", "")
    policy = spec.get("imagePullPolicy", "UNSPECIFIED_POLICY")
    hubs = _hubs(hub_dirs)
    t = time.perf_counter()
    index_path = cache / "index.json"
    index: dict[str, str] = json.loads(index_path.read_text()) if index_path.exists() else {}
    variant, root_ids, source, data = "", [], url, None
    ref = oci.parse_ref(url if "://" in url else "oci://" + url) if scheme == "oci" else None
    always = policy == "Always" or (policy == "UNSPECIFIED_POLICY" and ref is not None and not ref.digest and ref.tag == "latest")
    known = index.get(url)
    if known and not always and _cache_path(cache, url, known).exists() and (not expected or known == expected):
        meta = json.loads(_cache_path(cache, url, known).with_suffix(".json").read_text())
        return Module(**{**meta, "seconds": time.perf_counter() - t, "cached": True})
    try:
        if ref is not None:
            user, password = _credentials(doc, hubs)
            ca = next((h.ca_file for h in hubs if h.address == ref.registry), None)
            reg = oci.Registry(ref.registry, user, password, ca_file=ca)
            pulled = reg.pull(ref, strict=True)  # Istio's layout rules; every blob digest verified
            data, checksum, variant, root_ids, source = pulled.wasm, pulled.digest.split(":", 1)[1], pulled.variant, pulled.root_ids, ref.registry
        elif scheme == "file":
            path, data = read_file_url(url, where)
            checksum, source = hashlib.sha256(data).hexdigest(), str(path)
        else:
            user, password = _credentials(doc, hubs)
            req = urllib.request.Request(url)
            if user is not None:
                import base64

                req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
            ctx = _ssl_context(urllib.parse.urlsplit(url).hostname or "", hubs) if scheme == "https" else None
            try:
                with urllib.request.urlopen(req, timeout=15, context=ctx) as resp:
                    data = resp.read(MAX_BYTES + 1)
            except (urllib.error.URLError, OSError) as e:
                raise ResourceError(f"{where}: cannot download {url}: {getattr(e, 'reason', e)}", "check the URL and that the server is up") from None
            checksum = hashlib.sha256(data).hexdigest()
    except oci.DigestMismatch as e:
        raise ResourceError(f"{where}: {e.message}", e.hint) from None
    except oci.OciError as e:
        raise ResourceError(f"{where}: cannot fetch {url}: {e.message}", e.hint) from None
    assert data is not None
    if len(data) > MAX_BYTES:
        raise ResourceError(f"{where}: the module at {url} is larger than {MAX_BYTES} bytes", "Istio's agent refuses it too")
    if expected and checksum != expected:
        hint = "fix spec.sha256, or remove it to accept whatever the URL serves now"
        if scheme == "oci":
            hint = (f"for oci:// URLs, sha256 is the image *manifest* digest (`meshlab wasm list` shows it; this image's is {checksum})"
                    + ("; you gave the sha256 of the .wasm file itself" if hashlib.sha256(data).hexdigest() == expected else ""))
        raise ResourceError(f"{where}: module downloaded from {url} has checksum {checksum}, which does not match: {expected}", hint)
    from .inspect import inspect_bytes

    try:
        report = inspect_bytes(data, url)
    except MeshlabError as e:
        raise ResourceError(f"{where}: {e.message}", e.hint) from None
    if report.errors:
        raise ResourceError(f"{where}: the module at {url} would not load in Envoy: " + "; ".join(report.errors), "rebuild it; `meshlab wasm inspect` shows why")
    name = spec.get("pluginName", "")
    if root_ids and name not in root_ids:
        raise ResourceError(
            f"{where}: spec.pluginName {name!r} is not a root id of this module (its image lists {', '.join(root_ids)}); "
            "Envoy would pass that root_id and the module would find no root context for it",
            f"set pluginName: {root_ids[0]}",
        )
    sha = hashlib.sha256(data).hexdigest()
    path = _cache_path(cache, url, checksum)
    if not path.exists():
        write_atomic(path, data)
    m = Module(url, str(path), sha, checksum, variant, list(root_ids), source, time.perf_counter() - t, False)
    write_atomic(path.with_suffix(".json"), json.dumps({k: v for k, v in m.record().items() if k not in ("seconds", "cached")}))
    index[url] = checksum
    write_atomic(index_path, json.dumps(index, indent=1, sort_keys=True))
    return m


# ---- the istiod half: which proxies, which listeners, what filter -------------------------------
def namespace_of(doc: dict[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("namespace", "default"))


def selects(doc: dict[str, Any], labels: dict[str, str], namespace: str) -> bool:
    """Istio's rule: same namespace (or the root namespace), and the selector's labels all match."""
    ns = namespace_of(doc)
    if ns != namespace and ns != ROOT_NAMESPACE:
        return False
    want = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in want.items())


def matches_listener(doc: dict[str, Any], direction: str, port: int | None) -> bool:
    """``direction`` inbound (SERVER) or outbound (CLIENT); no ``match`` means every listener."""
    selectors = (doc.get("spec") or {}).get("match") or []
    if not selectors:
        return True
    for m in selectors:
        mode = m.get("mode", "UNDEFINED")
        mode_ok = mode in ("UNDEFINED", "CLIENT_AND_SERVER") or (mode == "SERVER") == (direction == "inbound")
        ports = [p.get("number") for p in m.get("ports", [])]
        if mode_ok and (not ports or port in ports):
            return True
    return False


def envoy_filter(doc: dict[str, Any], module: dict[str, Any]) -> dict[str, Any]:
    """The Envoy HTTP filter for one plugin: what istiod generates, with the agent's local file."""
    spec = doc["spec"]
    name = f"{namespace_of(doc)}.{doc['metadata']['name']}"
    config: dict[str, Any] = {
        "name": name,
        "root_id": spec.get("pluginName", ""),
        "vm_config": {
            "vm_id": f"{name}@{module['sha256'][:12]}",  # fresh per module: a new module never shares the old VM
            "runtime": V8,
            "code": {"local": {"filename": module["path"]}},
        },
        "failure_policy": FAILURE_POLICY[spec.get("failStrategy", "FAIL_CLOSE")],
    }
    if "pluginConfig" in spec:  # Istio passes the Struct to the plugin as a JSON string
        config["configuration"] = {"@type": STRING_VALUE, "value": json.dumps(spec["pluginConfig"], separators=(",", ":"))}
    return {"name": name, "typed_config": {"@type": WASM_FILTER, "config": config}}


def http_filters(
    labels: dict[str, str], namespace: str, resources: list[dict[str, Any]], modules: dict[str, dict[str, Any]], direction: str, port: int | None = None
) -> list[dict[str, Any]]:
    """The wasm filters for one HTTP connection manager of one proxy, in Istio's order.

    ``modules`` maps ``<namespace>/<name>`` of each WasmPlugin to its fetched :class:`Module` record.
    """
    chosen = [r for r in resources if r["kind"] == "WasmPlugin" and selects(r, labels, namespace) and matches_listener(r, direction, port)]
    out = []
    for phase in PHASES:
        group = [r for r in chosen if (r["spec"].get("phase") or "UNSPECIFIED_PHASE") == phase]
        group.sort(key=lambda r: (-int(r["spec"].get("priority", 0)), r["metadata"]["name"], namespace_of(r)))
        for r in group:
            key = f"{namespace_of(r)}/{r['metadata']['name']}"
            if key not in modules:
                raise ResourceError(f"{_where(r)} has no fetched module", "apply it again: lab.apply(...) fetches the module", "apply it again: meshlab apply -f FILE --cluster C fetches the module")
            out.append(envoy_filter(r, modules[key]))
    return out


def signature(listeners: list[dict[str, Any]]) -> dict[str, list[tuple[str, ...]]]:
    """Per listener, the wasm filters of its HTTP connection managers (name, VM, config, policy).

    Works on generated listeners and on Envoy's ``/config_dump`` alike: the local backend waits
    until Envoy's active listeners have exactly the filters it wrote.
    """
    out: dict[str, list[tuple[str, ...]]] = {}
    for lis in listeners:
        found: list[tuple[str, ...]] = []
        for chain in lis.get("filter_chains", []):
            for f in chain.get("filters", []):
                for hf in (f.get("typed_config") or {}).get("http_filters", []):
                    tc = hf.get("typed_config") or {}
                    if tc.get("@type") != WASM_FILTER:
                        continue
                    c = tc.get("config", {})
                    found.append((hf.get("name", ""), c.get("vm_config", {}).get("vm_id", ""),
                                  c.get("configuration", {}).get("value", ""), c.get("failure_policy", "")))  # fmt: skip
        out[lis.get("name", "")] = found
    return out
