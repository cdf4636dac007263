"""Declarative extensions on the local backend: istiod's half of Istio's ``TrafficExtension`` (Wasm and
Lua, extensions.istio.io/v1alpha1, Istio >= 1.30) and of its predecessor ``WasmPlugin``.

What istiod does with them (Istio 1.31; the agent's half is :mod:`meshlab.runtime.agent`):

* a ``WasmPlugin`` becomes a synthetic TrafficExtension named ``<name>~istio-translated-wasmplugin``
  with the same selector, phase, priority, match and a ``wasm`` block
  (``pilot/pkg/config/kube/extensions/translate.go``);
* a TrafficExtension applies to the proxies of its namespace (all namespaces from the root namespace)
  whose labels its ``selector`` matches, on the listeners its ``match`` allows (no ``match``: every
  HTTP connection manager, inbound and outbound); in each, extensions are ordered by phase (AUTHN,
  AUTHZ, STATS, then unspecified, before the router), within a phase by ``priority`` (higher first,
  none = lowest), ties in creation order (``pilot/pkg/networking/core/listener_builder.go``,
  ``pilot/pkg/model/push_context.go`` ``sortByPriority``);
* **Lua** is inlined in the listener: ``envoy.filters.http.lua`` with ``default_source_code``
  (``pilot/pkg/networking/core/extension/lua.go``);
* **Wasm** is not in the listener: the HTTP filter only names an extension config,
  ``extensions.istio.io/trafficextension/<ns>.<name>``, to be discovered over **ECDS**
  (``config_discovery``, types Wasm and RBAC, initial fetch timeout 0: the listener waits for it).
  istiod serves that config with the module as *remote* code -- ``http_uri {uri: <url>, cluster: "_",
  timeout: 30s}, sha256`` (``file://`` stays a local file) -- and the pull controls as VM environment
  variables ``ISTIO_META_WASM_*`` that the agent reads and strips (``pilot/pkg/model/extensions.go``,
  ``pilot/pkg/networking/core/extension/extensionfilter.go``). Istio's xDS server sends it over ADS;
  meshlab writes it to a file per extension config that Envoy watches (``path_config_source``).
"""

from __future__ import annotations

import json
import math
import urllib.parse
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import ResourceError
from ..wasm import oci

WASM_FILTER = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_FILTER = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
LUA_FILTER = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
EXTENSION_CONFIG = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
V8 = "envoy.wasm.runtime.v8"  # Istio always configures V8
RESOURCE_PREFIX = "extensions.istio.io/trafficextension/"  # model.TrafficExtensionResourceNamePrefix
SYNTHETIC = "~istio-translated-wasmplugin"  # a WasmPlugin's TrafficExtension name suffix
PHASES = ("AUTHN", "AUTHZ", "STATS", "UNSPECIFIED")  # the order in the filter chain
FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}
ROOT_NAMESPACE = "istio-system"  # an extension there applies to every namespace
SCHEMES = ("oci", "file", "http", "https")
LUA_MAX = 65536  # the CRD's maxLength of lua.inlineCode
# the VM environment variables istiod sets for the agent (pilot/pkg/model/wasm.go)
SECRET_ENV = "ISTIO_META_WASM_IMAGE_PULL_SECRET"
POLICY_ENV = "ISTIO_META_WASM_IMAGE_PULL_POLICY"
VERSION_ENV = "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION"


def _where(doc: dict[str, Any]) -> str:
    md = doc.get("metadata") or {}
    return f"{doc.get('kind', 'TrafficExtension')} {md.get('namespace', 'sample')}/{md.get('name', '?')}"


def read_file_url(url: str, where: str) -> tuple[Path, bytes]:
    """The module behind a ``file://`` URL, or an error that says how to give one."""
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    try:
        return path, path.read_bytes()
    except OSError as e:
        raise ResourceError(f"{where}: cannot read {url}: {e.strerror}", "build the module first, and give its absolute path: file:///...") from None


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "oci"  # Istio: no scheme means oci://


def wasm_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The ``wasm`` block of a TrafficExtension, or a WasmPlugin's spec (the same fields)."""
    spec = doc.get("spec") or {}
    return spec if doc.get("kind") == "WasmPlugin" else spec.get("wasm")


def check(doc: dict[str, Any]) -> None:
    """What Istio's admission (CRD patterns and CEL rules) refuses, beyond the shape check in resources.SHAPES."""
    spec = doc.get("spec") or {}
    where = _where(doc)
    if doc.get("kind") == "TrafficExtension":
        if ("wasm" in spec) == ("lua" in spec):
            raise ResourceError(f"{where}: exactly one of spec.wasm or spec.lua must be set", "a TrafficExtension is either a Wasm module or Lua code")
        if "lua" in spec and not 0 < len(spec["lua"].get("inlineCode", "")) <= LUA_MAX:
            raise ResourceError(f"{where}: spec.lua.inlineCode must hold 1 to {LUA_MAX} characters", "give the Lua code inline")
        prefix = "spec.wasm"
    else:
        prefix = "spec"
    wasm = wasm_spec(doc)
    if wasm is not None:
        url = wasm.get("url") or ""
        if not url:
            raise ResourceError(f"{where}: {prefix}.url is required", "e.g. url: oci://127.0.0.1:5000/wasm/add-header:v1")
        if scheme_of(url) not in SCHEMES:
            raise ResourceError(f"{where}: {prefix}.url {url!r} has scheme {scheme_of(url)!r}", f"use one of: {', '.join(s + '://' for s in SCHEMES)}")
        sha = wasm.get("sha256", "")
        if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise ResourceError(f"{where}: {prefix}.sha256 {sha!r} is not 64 lowercase hex digits", "give the digest without the 'sha256:' prefix")
        if scheme_of(url) == "oci":
            ref = oci.parse_ref(url if "://" in url else "oci://" + url)
            if ref.digest and sha and ref.digest != "sha256:" + sha:
                raise ResourceError(f"{where}: {prefix}.sha256 does not match the @sha256 digest in {prefix}.url", "make them equal, or give only one")
        if len(wasm.get("pluginName", "")) > 256:
            raise ResourceError(f"{where}: {prefix}.pluginName is longer than 256 characters", "use the root id the module registers")
    for i, m in enumerate(spec.get("match", [])):
        if m.get("ports") and m.get("mode", "UNDEFINED") != "SERVER":
            raise ResourceError(
                f"{where}: spec.match[{i}] selects ports for outbound (CLIENT) traffic, which the local backend's single outbound listener cannot tell apart",
                "use mode: SERVER with ports (inbound), or drop ports",
            )


# ---- the istiod half: which proxies, which listeners, what filter -------------------------------
def namespace_of(doc: dict[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("namespace", "default"))


def as_traffic_extension(doc: dict[str, Any]) -> dict[str, Any]:
    """A WasmPlugin as the synthetic TrafficExtension istiod makes of it; a TrafficExtension as it is."""
    if doc.get("kind") != "WasmPlugin":
        return doc
    spec = doc.get("spec") or {}
    te: dict[str, Any] = {k: spec[k] for k in ("selector", "priority", "match") if k in spec}
    if spec.get("phase") and spec["phase"] != "UNSPECIFIED_PHASE":
        te["phase"] = spec["phase"]
    keys = ("url", "sha256", "imagePullPolicy", "imagePullSecret", "pluginConfig", "pluginName", "failStrategy", "type")
    te["wasm"] = {k: spec[k] for k in keys if k in spec}
    md = doc.get("metadata") or {}
    return {**doc, "kind": "TrafficExtension", "metadata": {**md, "name": md.get("name", "") + SYNTHETIC}, "spec": te}


def resource_name(te: dict[str, Any]) -> str:
    """The ECDS resource name, also the HTTP filter's name: ``extensions.istio.io/trafficextension/<ns>.<name>``."""
    return f"{RESOURCE_PREFIX}{namespace_of(te)}.{te['metadata']['name']}"


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


def extensions_for(labels: dict[str, str], namespace: str, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The TrafficExtensions (WasmPlugins translated) that select a workload: those of its own namespace,
    then those of the root namespace, each in creation (apply) order (``TrafficExtensionsByListenerInfo``)."""
    tes = [as_traffic_extension(r) for r in resources if r.get("kind") in ("TrafficExtension", "WasmPlugin")]
    chosen = [t for t in tes if selects(t, labels, namespace)]
    return [t for t in chosen if namespace_of(t) == namespace] + [t for t in chosen if namespace_of(t) != namespace]


def _go_float(f: float) -> str:
    """A float64 as Go's encoding/json writes it: shortest digits, plain notation from 1e-6 up to 1e21."""
    if math.isnan(f) or math.isinf(f):
        raise ResourceError(f"pluginConfig: {f} is not a JSON number", "use a finite number")
    if f == 0 or 1e-6 <= abs(f) < 1e21:
        plain = format(Decimal(repr(f)), "f")
        return plain.rstrip("0").rstrip(".") if "." in plain else plain
    mantissa, _, exp = repr(f).partition("e")
    return f"{mantissa.removesuffix('.0')}e{exp[0]}{exp[1:].lstrip('0')}"


def _go_string(s: str) -> str:
    """A string as Go's encoding/json writes it (HTML-safe: <, > and & escaped; U+2028/2029 escaped)."""
    out = json.dumps(s, ensure_ascii=False)
    for c, e in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        out = out.replace(c, e)
    return out


def struct_json(value: Any) -> str:
    """``pluginConfig`` (a protobuf Struct) as golang/protobuf's jsonpb writes it for istiod (protomarshal.ToJSON):
    keys sorted, no spaces, every number a float64."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_go_string(str(k))}:{struct_json(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(struct_json(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _go_float(float(value))
    return _go_string(str(value))


def _priority(te: dict[str, Any]) -> int:
    p = (te.get("spec") or {}).get("priority")
    return -(2**31) if p is None else int(p)  # no priority sorts last (math.MinInt32)


def ecds_source(path: Path) -> dict[str, Any]:
    """Where Envoy discovers an extension config: istiod's ADS, here a file (written atomically)."""
    return {"path_config_source": {"path": str(path)}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}


def http_filters(
    labels: dict[str, str], namespace: str, resources: list[dict[str, Any]], direction: str, ecds_path: Any, port: int | None = None,
    phases: tuple[str, ...] = PHASES,
) -> list[dict[str, Any]]:  # fmt: skip
    """The extension filters of one HTTP connection manager of one proxy, in Istio's order (of the
    given ``phases``: Istio puts each phase's group at its own place around the security filters).

    ``ecds_path(name)`` is the file the proxy's Envoy watches for the extension config ``name``."""
    chosen = [t for t in extensions_for(labels, namespace, resources) if matches_listener(t, direction, port)]
    out = []
    for phase in phases:
        group = [t for t in chosen if (t["spec"].get("phase") or "UNSPECIFIED") == phase]
        for t in sorted(group, key=lambda t: -_priority(t)):  # stable: creation order within one priority
            name = resource_name(t)
            if "lua" in t["spec"]:
                out.append({"name": name, "typed_config": {"@type": LUA_FILTER, "default_source_code": {"inline_string": t["spec"]["lua"]["inlineCode"]}}})
            else:
                out.append({"name": name, "config_discovery": {"config_source": ecds_source(ecds_path(name)), "type_urls": [WASM_FILTER, RBAC_FILTER]}})
    return out


def extension_config(te: dict[str, Any]) -> dict[str, Any]:
    """The ECDS resource istiod serves for a Wasm TrafficExtension: the module as remote code."""
    w = te["spec"]["wasm"]
    url = w["url"]
    if scheme_of(url) == "file":
        code: dict[str, Any] = {"local": {"filename": urllib.parse.unquote(urllib.parse.urlsplit(url).path)}}
    else:
        uri = url if "://" in url else "oci://" + url
        code = {"remote": {"http_uri": {"uri": uri, "cluster": "_", "timeout": "30s"}, "sha256": w.get("sha256", "")}}
    env = {VERSION_ENV: str((te.get("metadata") or {}).get("resourceVersion", ""))}
    if w.get("imagePullSecret"):  # the secret's resource name; the ECDS generator puts in its content
        env[SECRET_ENV] = f"kubernetes://{namespace_of(te)}/{w['imagePullSecret']}"
    if w.get("imagePullPolicy", "UNSPECIFIED_POLICY") != "UNSPECIFIED_POLICY":
        env[POLICY_ENV] = w["imagePullPolicy"]
    config: dict[str, Any] = {
        "name": f"{namespace_of(te)}.{te['metadata']['name']}",
        "root_id": w.get("pluginName", ""),
        "vm_config": {"runtime": V8, "code": code, "environment_variables": {"key_values": env}},
    }
    if w.get("pluginConfig"):  # Istio passes the Struct to the plugin as a JSON string (buildWasmConfig)
        config["configuration"] = {"@type": STRING_VALUE, "value": struct_json(w["pluginConfig"])}
    config["failure_policy"] = FAILURE_POLICY[w.get("failStrategy", "FAIL_CLOSE")]  # FAIL_CLOSE is the enum's zero value
    return {"@type": EXTENSION_CONFIG, "name": resource_name(te), "typed_config": {"@type": WASM_FILTER, "config": config}}


def extension_configs(labels: dict[str, str], namespace: str, resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every ECDS resource istiod would serve this workload's proxy, by name (Lua needs none)."""
    return {resource_name(t): extension_config(t) for t in extensions_for(labels, namespace, resources) if "wasm" in t["spec"]}


def ecds_from_dump(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The extension configs in a full ``/config_dump`` (``istioctl proxy-config ecds``): name ->
    ``{"version_info", "ecds_filter", "last_updated"}``; empty when Envoy has none."""
    out = {}
    for section in dump.get("configs", []):
        if section.get("@type", "").endswith(".EcdsConfigDump"):
            for c in section.get("ecds_filters", []):
                out[c["ecds_filter"]["name"]] = c
    return out


def referenced(listeners: list[dict[str, Any]]) -> set[str]:
    """Names of the extension configs the listeners' HTTP filters discover (``config_discovery``)."""
    return {hf["name"] for lis in listeners for hf in _http_filters(lis) if "config_discovery" in hf}


def _http_filters(lis: dict[str, Any]) -> list[dict[str, Any]]:
    return [hf for chain in lis.get("filter_chains", []) for f in chain.get("filters", []) for hf in (f.get("typed_config") or {}).get("http_filters", [])]


def signature(listeners: list[dict[str, Any]], ecds: dict[str, dict[str, Any]] | None = None) -> dict[str, list[tuple[str, ...]]]:
    """Per listener, its extension filters (once, whatever the number of filter chains that carry them):
    (name, kind, configuration, failure policy), where kind is
    ``wasm``, ``rbac-deny``/``rbac-allow`` (the agent's fallback), ``lua`` or ``ecds?`` (not loaded).

    Works on generated listeners and on Envoy's ``/config_dump`` alike; ``ecds`` maps an extension
    config's name to its TypedExtensionConfig (the proxy's ECDS files, or Envoy's ``ecds_filters``).
    """
    ecds = ecds or {}
    out: dict[str, list[tuple[str, ...]]] = {}
    for lis in listeners:
        found: list[tuple[str, ...]] = []
        for hf in _http_filters(lis):
            if not hf.get("name", "").startswith(RESOURCE_PREFIX):
                continue  # not an extension (e.g. Istio's own stats filter, also Wasm)
            tc = hf.get("typed_config") or {}
            if "config_discovery" in hf:
                tc = (ecds.get(hf["name"]) or {}).get("typed_config") or {"@type": "ecds?"}
            kind = tc.get("@type", "")
            if kind == WASM_FILTER:
                c = tc.get("config", {})
                found.append((hf["name"], "wasm", c.get("configuration", {}).get("value", ""), c.get("failure_policy", "")))
            elif kind == RBAC_FILTER:
                found.append((hf["name"], "rbac-deny" if "rules" in tc else "rbac-allow", tc.get("rules_stat_prefix", ""), ""))
            elif kind == LUA_FILTER:
                found.append((hf["name"], "lua", tc.get("default_source_code", {}).get("inline_string", ""), ""))
            elif kind == "ecds?":
                found.append((hf["name"], "ecds?", "", ""))
        out[lis.get("name", "")] = list(dict.fromkeys(found))  # the same filters on every chain (mTLS, plaintext) count once
    return out
