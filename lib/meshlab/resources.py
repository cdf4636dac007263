"""Istio resources as meshlab accepts them: parsed from YAML or dicts and checked strictly.

The local backend implements a subset of Istio's API. Anything outside that subset is refused with
a message that names the field, so a learner never believes a setting took effect when it did not.
Each shape below mirrors Istio's field names (networking.istio.io v1; WasmPlugin:
extensions.istio.io v1alpha1).
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ResourceError

# A shape is: type for a leaf (str, int, bool, float), a dict of field -> shape, a list with one
# element shape ([shape] = list of shape), or ("map", value shape) for free-form keys.
_DURATION = str
_OUTLIER = {
    "consecutive5xxErrors": int,
    "consecutiveGatewayErrors": int,
    "interval": _DURATION,
    "baseEjectionTime": _DURATION,
    "maxEjectionPercent": int,
    "minHealthPercent": int,
}
_LOCALITY_LB = {
    "enabled": bool,
    "failover": [{"from": str, "to": str}],
    "failoverPriority": [str],
    "distribute": [{"from": str, "to": ("map", int)}],
}
_TRAFFIC_POLICY = {
    "tls": {"mode": str},
    "outlierDetection": _OUTLIER,
    "loadBalancer": {"simple": str, "localityLbSetting": _LOCALITY_LB},
    "connectionPool": {
        "tcp": {"maxConnections": int, "connectTimeout": _DURATION},
        "http": {"http1MaxPendingRequests": int, "http2MaxRequests": int, "maxRequestsPerConnection": int, "maxRetries": int},
    },
}
_META = {"name": str, "namespace": str, "labels": ("map", str), "annotations": ("map", str)}
_STRING_MATCH = {"exact": str, "prefix": str, "regex": str}
_DESTINATION = {"host": str, "subset": str, "port": {"number": int}}
_PERCENT = {"value": float}
_HTTP_ROUTE = {
    "name": str,
    "match": [{"uri": _STRING_MATCH, "headers": ("map", _STRING_MATCH)}],
    "route": [{"destination": _DESTINATION, "weight": int}],
    "retries": {
        "attempts": int,
        "perTryTimeout": _DURATION,
        "retryOn": str,
        "retryRemoteLocalities": bool,
        "retryIgnorePreviousHosts": bool,
        "backoff": _DURATION,
    },
    "timeout": _DURATION,
    "fault": {
        "delay": {"fixedDelay": _DURATION, "percentage": _PERCENT},
        "abort": {"httpStatus": int, "percentage": _PERCENT},
    },
    "mirror": _DESTINATION,
    "mirrorPercentage": _PERCENT,
}

SHAPES: dict[str, dict[str, Any]] = {
    "DestinationRule": {
        "host": str,
        "trafficPolicy": _TRAFFIC_POLICY,
        "subsets": [{"name": str, "labels": ("map", str)}],
        "exportTo": [str],
    },
    "VirtualService": {"hosts": [str], "http": [_HTTP_ROUTE], "exportTo": [str]},
    # extensions.istio.io/v1alpha1; meshlab.wasm.deploy fetches the module and builds the filter
    "WasmPlugin": {
        "selector": {"matchLabels": ("map", str)},
        "url": str,
        "sha256": str,
        "imagePullPolicy": str,
        "imagePullSecret": str,
        "pluginConfig": dict,  # a Struct: any JSON object, passed to the plugin as a JSON string
        "pluginName": str,
        "phase": str,
        "priority": int,
        "failStrategy": str,
        "type": str,
        "match": [{"mode": str, "ports": [{"number": int}]}],
    },
    "ServiceEntry": {
        "hosts": [str],
        "addresses": [str],
        "ports": [{"number": int, "name": str, "protocol": str, "targetPort": int}],
        "location": str,
        "resolution": str,
        "subjectAltNames": [str],
        "exportTo": [str],
        "endpoints": [
            {"address": str, "ports": ("map", int), "labels": ("map", str), "network": str, "locality": str, "weight": int, "serviceAccount": str}
        ],
    },
}
ENUMS = {
    "spec.trafficPolicy.tls.mode": {"ISTIO_MUTUAL", "DISABLE"},
    "spec.trafficPolicy.loadBalancer.simple": {"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"},
    "spec.location": {"MESH_INTERNAL", "MESH_EXTERNAL"},
    "spec.resolution": {"STATIC"},
    "spec.phase": {"UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"},
    "spec.failStrategy": {"FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"},
    "spec.imagePullPolicy": {"UNSPECIFIED_POLICY", "IfNotPresent", "Always"},
    "spec.type": {"UNSPECIFIED_PLUGIN_TYPE", "HTTP"},  # NETWORK plugins: not on the local backend
}
MATCH_MODES = {"UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"}  # WasmPlugin spec.match[i].mode
API_VERSIONS = {"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}
API_VERSIONS_BY_KIND = {"WasmPlugin": {"extensions.istio.io/v1alpha1"}}


def parse(source: str | dict[str, Any] | list[Any]) -> list[dict[str, Any]]:
    """One or more resources from YAML text (``---`` separated), a dict, or a list of dicts; validated."""
    if isinstance(source, str):
        try:
            docs = [d for d in yaml.safe_load_all(source) if d is not None]
        except yaml.YAMLError as e:
            raise ResourceError(f"not valid YAML: {e}", "fix the YAML at the position shown") from e
    elif isinstance(source, dict):
        docs = [source]
    else:
        docs = list(source)
    for d in docs:
        validate(d)
    return docs


def validate(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise ResourceError(f"a resource must be a mapping, got {type(doc).__name__}", "start it with apiVersion: and kind:")
    kind = doc.get("kind")
    name = (doc.get("metadata") or {}).get("name", "?")
    if kind == "Service" and "trafficDistribution" in (doc.get("spec") or {}):
        raise ResourceError(
            f"Service {name!r}: spec.trafficDistribution is not supported by the local backend (its Services come from "
            "the deployed apps, not from resources)",
            "for locality failover write a DestinationRule with outlierDetection and loadBalancer.localityLbSetting "
            "(failoverPriority: [topology.istio.io/network, topology.kubernetes.io/region, topology.kubernetes.io/zone] "
            "is what Istio derives from PreferClose); or use the kind backend",
        )
    if kind not in SHAPES:
        raise ResourceError(
            f"kind {kind!r} is not supported by the local backend",
            f"supported kinds: {', '.join(SHAPES)}; the kind backend applies every Istio kind to the cluster",
        )
    where = f"{kind} {name!r}"
    versions = API_VERSIONS_BY_KIND.get(kind, API_VERSIONS)
    if doc.get("apiVersion") not in versions:
        group = "Istio extensions" if kind in API_VERSIONS_BY_KIND else "Istio networking"
        raise ResourceError(f"{where}: apiVersion {doc.get('apiVersion')!r} is not {group}", f"use one of: {', '.join(sorted(versions))}")
    extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
    if extra:
        raise ResourceError(f"{where}: unknown top-level field {sorted(extra)[0]!r}", "only apiVersion, kind, metadata and spec")
    _check(doc.get("metadata") or {}, _META, "metadata", where)
    if not (doc.get("metadata") or {}).get("name"):
        raise ResourceError(f"{kind}: metadata.name is required", "add metadata: {name: ...}")
    _check(doc.get("spec") or {}, SHAPES[kind], "spec", where)


def _check(value: Any, shape: Any, path: str, where: str) -> None:
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            raise ResourceError(f"{where}: {path} must be a mapping", "see Istio's reference for this field")
        for k, v in value.items():
            if k not in shape:
                raise ResourceError(
                    f"{where}: field {path}.{k} is not supported by the local backend",
                    f"remove it, or use the kind backend for full Istio; supported under {path}: {', '.join(shape)}",
                )
            _check(v, shape[k], f"{path}.{k}", where)
    elif isinstance(shape, list):
        if not isinstance(value, list):
            raise ResourceError(f"{where}: {path} must be a list", "write it as a YAML list")
        for i, item in enumerate(value):
            _check(item, shape[0], f"{path}[{i}]", where)
    elif isinstance(shape, tuple):
        if not isinstance(value, dict):
            raise ResourceError(f"{where}: {path} must be a mapping", "write it as key: value lines")
        for k, v in value.items():
            _check(v, shape[1], f"{path}.{k}", where)
    else:
        ok = isinstance(value, (int, float)) if shape is float else isinstance(value, shape)
        if not ok or (shape in (int, float) and isinstance(value, bool)):
            raise ResourceError(f"{where}: {path} must be {shape.__name__}, got {value!r}", "fix the value's type")
        allowed = ENUMS.get(path)
        if allowed is None and path.startswith("spec.match[") and path.endswith(".mode"):
            allowed = MATCH_MODES
        if allowed and value not in allowed:
            raise ResourceError(
                f"{where}: {path}={value!r} is not supported by the local backend",
                f"use one of: {', '.join(sorted(allowed))}",
            )


def duration_s(value: str) -> float:
    """Istio durations ("1s", "500ms", "1m") in seconds."""
    for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return float(value[: -len(unit)]) * factor
    raise ResourceError(f"{value!r} is not a duration", "write it like 1s, 500ms or 2m")


def envoy_duration(value: str) -> str:
    return f"{duration_s(value):.3f}s"
