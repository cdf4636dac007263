"""Istio resources as meshlab accepts them: parsed from YAML or dicts and checked strictly.

The local backend implements a subset of Istio's API. Anything outside that subset is refused with
a message that names the field, so a learner never believes a setting took effect when it did not.
Each shape below mirrors Istio's field names (networking.istio.io v1; security.istio.io v1;
TrafficExtension and WasmPlugin: extensions.istio.io v1alpha1).
"""

from __future__ import annotations

import ipaddress
import json
import re
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
    "tls": {"mode": str, "sni": str, "caCertificates": str, "credentialName": str, "subjectAltNames": [str]},
    "outlierDetection": _OUTLIER,
    "loadBalancer": {"simple": str, "localityLbSetting": _LOCALITY_LB},
    "connectionPool": {
        "tcp": {"maxConnections": int, "connectTimeout": _DURATION},
        "http": {
            "http1MaxPendingRequests": int, "http2MaxRequests": int, "maxRequestsPerConnection": int, "maxRetries": int,
            "h2UpgradePolicy": str,
        },  # fmt: skip
    },
    "retryBudget": {"percent": float, "minRetryConcurrency": int, "budgetInterval": _DURATION},
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

_SELECTOR = {"matchLabels": ("map", str)}
_MTLS = {"mode": str}
_SOURCE = {k: [str] for k in (
    "principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces", "notNamespaces",
    "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks")}  # fmt: skip
_OPERATION = {k: [str] for k in ("hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths")}
_SERVER_TLS = {"mode": str, "credentialName": str, "serverCertificate": str, "privateKey": str, "minProtocolVersion": str}

SHAPES: dict[str, dict[str, Any]] = {
    "DestinationRule": {
        "host": str,
        "trafficPolicy": _TRAFFIC_POLICY,
        "subsets": [{"name": str, "labels": ("map", str)}],
        "exportTo": [str],
    },
    "VirtualService": {"hosts": [str], "gateways": [str], "http": [_HTTP_ROUTE], "exportTo": [str]},
    # networking.istio.io: an ingress gateway's HTTP/HTTPS servers (meshlab.controlplane.gateway builds its
    # listeners) and what expose-services.yaml needs: SNI passthrough on an east-west gateway (lab 10 deletes it)
    "Gateway": {
        "selector": ("map", str),
        "servers": [{"port": {"number": int, "name": str, "protocol": str}, "hosts": [str], "tls": _SERVER_TLS, "name": str}],
    },
    # security.istio.io/v1 (meshlab.controlplane.security translates them)
    "PeerAuthentication": {"selector": _SELECTOR, "mtls": _MTLS, "portLevelMtls": ("map", _MTLS)},
    "AuthorizationPolicy": {
        "selector": _SELECTOR,
        "action": str,
        "provider": {"name": str},
        "rules": [{"from": [{"source": _SOURCE}], "to": [{"operation": _OPERATION}], "when": [{"key": str, "values": [str], "notValues": [str]}]}],
    },
    "RequestAuthentication": {
        "selector": _SELECTOR,
        "jwtRules": [
            {
                "issuer": str, "audiences": [str], "jwks": str, "jwksUri": str, "fromHeaders": [{"name": str, "prefix": str}],
                "fromParams": [str], "forwardOriginalToken": bool, "outputPayloadToHeader": str,
            }  # fmt: skip
        ],
    },
    # extensions.istio.io/v1alpha1; meshlab.controlplane.extensions builds the filter, meshlab.runtime.agent fetches the module
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
    # networking.istio.io/v1alpha3; a subset applied by meshlab.controlplane.envoyfilter
    "EnvoyFilter": {
        "workloadSelector": {"labels": ("map", str)},
        "configPatches": [
            {
                "applyTo": str,
                "match": {
                    "context": str,
                    "listener": {"portNumber": int, "filterChain": {"filter": {"name": str, "subFilter": {"name": str}}}},
                    "routeConfiguration": {"vhost": {"name": str}},
                },
                "patch": {"operation": str, "value": dict},
            }
        ],
    },
    # extensions.istio.io/v1alpha1 (Istio >= 1.30): Wasm or Lua; meshlab.controlplane.extensions builds the filters
    "TrafficExtension": {
        "selector": {"matchLabels": ("map", str)},
        "phase": str,
        "priority": int,
        "match": [{"mode": str, "ports": [{"number": int}]}],
        "wasm": {
            "url": str,
            "sha256": str,
            "imagePullPolicy": str,
            "imagePullSecret": str,
            "pluginConfig": dict,
            "pluginName": str,
            "failStrategy": str,
            "type": str,
        },
        "lua": {"inlineCode": str},
    },
    # networking.istio.io: a sidecar's egress hosts only (meshlab.controlplane.sidecar)
    "Sidecar": {"workloadSelector": {"labels": ("map", str)}, "egress": [{"hosts": [str]}]},
    # telemetry.istio.io/v1: tracing (meshlab.backends.local.tracing follows telemetry.go and tracing.go) and
    # access logging with the built-in ``envoy`` provider (controlplane/telemetry.py follows telemetry.go)
    "Telemetry": {
        "selector": {"matchLabels": ("map", str)},
        "accessLogging": [{"providers": [{"name": str}], "disabled": bool, "match": {"mode": str}}],
        "tracing": [{
            "providers": [{"name": str}],
            "match": {"mode": str},
            "randomSamplingPercentage": float,
            "disableSpanReporting": bool,
            "customTags": ("map", {"literal": {"value": str}, "header": {"name": str, "defaultValue": str},
                                   "environment": {"name": str, "defaultValue": str}}),
            "useRequestIdForTraceSampling": bool,
            "enableIstioTags": bool,
            "disableContextPropagation": bool,
        }],
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
    "spec.configPatches[].applyTo": {"HTTP_FILTER", "VIRTUAL_HOST"},
    "spec.configPatches[].match.context": {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND"},
    "spec.configPatches[].patch.operation": {"ADD", "INSERT_FIRST", "INSERT_BEFORE", "INSERT_AFTER", "MERGE"},
    "spec.trafficPolicy.tls.mode": {"ISTIO_MUTUAL", "DISABLE", "SIMPLE"},
    "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy": {"DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"},
    "spec.accessLogging[].match.mode": {"CLIENT_AND_SERVER", "CLIENT", "SERVER"},
    "spec.mtls.mode": {"UNSET", "STRICT", "PERMISSIVE", "DISABLE"},
    "spec.portLevelMtls.*.mode": {"UNSET", "STRICT", "PERMISSIVE", "DISABLE"},
    "spec.action": {"ALLOW", "DENY", "AUDIT", "CUSTOM"},
    "spec.servers[].port.protocol": {"HTTP", "HTTPS", "TLS"},  # TLS: east-west passthrough only
    "spec.servers[].tls.mode": {"SIMPLE", "AUTO_PASSTHROUGH"},
    "spec.trafficPolicy.loadBalancer.simple": {"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"},
    "spec.location": {"MESH_INTERNAL", "MESH_EXTERNAL"},
    "spec.resolution": {"STATIC"},
    "spec.phase": {"UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"},
    "spec.failStrategy": {"FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"},
    "spec.imagePullPolicy": {"UNSPECIFIED_POLICY", "IfNotPresent", "Always"},
    "spec.type": {"UNSPECIFIED_PLUGIN_TYPE", "HTTP"},  # NETWORK plugins: not on the local backend
    "spec.tracing[].match.mode": {"CLIENT_AND_SERVER", "CLIENT", "SERVER"},
}
ENUMS_BY_KIND = {  # where a kind's enum differs from the one at the same path above
    "TrafficExtension": {
        "spec.phase": {"UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"},
        "spec.wasm.failStrategy": ENUMS["spec.failStrategy"],
        "spec.wasm.imagePullPolicy": ENUMS["spec.imagePullPolicy"],
        "spec.wasm.type": ENUMS["spec.type"],
    },
}
MATCH_MODES = {"UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"}  # WasmPlugin/TrafficExtension spec.match[i].mode
API_VERSIONS = {"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}
_SECURITY_VERSIONS = {"security.istio.io/v1", "security.istio.io/v1beta1"}
API_VERSIONS_BY_KIND = {
    "WasmPlugin": {"extensions.istio.io/v1alpha1"},
    "EnvoyFilter": {"networking.istio.io/v1alpha3"},
    "TrafficExtension": {"extensions.istio.io/v1alpha1"},
    **{k: _SECURITY_VERSIONS for k in ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication")},
    "Telemetry": {"telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"},
}


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
        group = {"WasmPlugin": "Istio extensions", "TrafficExtension": "Istio extensions", "Telemetry": "Istio telemetry"}.get(
            kind, "Istio security" if kind in API_VERSIONS_BY_KIND else "Istio networking")
        raise ResourceError(f"{where}: apiVersion {doc.get('apiVersion')!r} is not {group}", f"use one of: {', '.join(sorted(versions))}")
    extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
    if extra:
        raise ResourceError(f"{where}: unknown top-level field {sorted(extra)[0]!r}", "only apiVersion, kind, metadata and spec")
    _check(doc.get("metadata") or {}, _META, "metadata", where)
    if not (doc.get("metadata") or {}).get("name"):
        raise ResourceError(f"{kind}: metadata.name is required", "add metadata: {name: ...}")
    _check(doc.get("spec") or {}, SHAPES[kind], "spec", where, ENUMS_BY_KIND.get(kind, {}))
    if kind in _SEMANTIC:
        _SEMANTIC[kind](doc.get("spec") or {}, where)
    if kind == "AuthorizationPolicy":
        _check_dry_run(doc, where)


# Go's strconv.ParseBool, which istiod uses for istio.io/dry-run (builder.go isDryRun)
PARSE_BOOL = {v: True for v in ("1", "t", "T", "TRUE", "true", "True")} | {v: False for v in ("0", "f", "F", "FALSE", "false", "False")}
DRY_RUN = "istio.io/dry-run"


def _check_dry_run(doc: dict[str, Any], where: str) -> None:
    """validation.go ``checkDryRunAnnotation``: a value ParseBool accepts, on an ALLOW or DENY policy only."""
    value = ((doc.get("metadata") or {}).get("annotations") or {}).get(DRY_RUN)
    if value is None:
        return
    if value not in PARSE_BOOL:
        raise ResourceError(f"{where}: annotation {DRY_RUN} has an invalid value {value!r}", "Istio refuses it too: write true or false")
    action = (doc.get("spec") or {}).get("action", "ALLOW")
    if action not in ("ALLOW", "DENY"):
        raise ResourceError(f"{where}: the annotation {DRY_RUN} only supports action ALLOW or DENY, not {action}", "Istio refuses it too: remove the annotation")


def _check(value: Any, shape: Any, path: str, where: str, enums: dict[str, set[str]] | None = None) -> None:
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            raise ResourceError(f"{where}: {path} must be a mapping", "see Istio's reference for this field")
        for k, v in value.items():
            if k not in shape:
                raise ResourceError(
                    f"{where}: field {path}.{k} is not supported by the local backend",
                    f"remove it, or use the kind backend for full Istio; supported under {path}: {', '.join(shape)}",
                )
            _check(v, shape[k], f"{path}.{k}", where, enums)
    elif isinstance(shape, list):
        if not isinstance(value, list):
            raise ResourceError(f"{where}: {path} must be a list", "write it as a YAML list")
        for i, item in enumerate(value):
            _check(item, shape[0], f"{path}[{i}]", where, enums)
    elif isinstance(shape, tuple):
        if not isinstance(value, dict):
            raise ResourceError(f"{where}: {path} must be a mapping", "write it as key: value lines")
        for k, v in value.items():
            _check(v, shape[1], f"{path}.{k}", where, enums)
    else:
        ok = isinstance(value, (int, float)) if shape is float else isinstance(value, shape)
        if not ok or (shape in (int, float) and isinstance(value, bool)):
            raise ResourceError(f"{where}: {path} must be {shape.__name__}, got {value!r}", "fix the value's type")
        generic = re.sub(r"\.portLevelMtls\.[^.]+\.", ".portLevelMtls.*.", re.sub(r"\[\d+\]", "[]", path))
        allowed = (enums or {}).get(generic, ENUMS.get(generic))
        if allowed is None and path.startswith("spec.match[") and path.endswith(".mode"):
            allowed = MATCH_MODES
        if allowed and value not in allowed:
            raise ResourceError(
                f"{where}: {path}={value!r} is not supported by the local backend",
                f"use one of: {', '.join(sorted(allowed))}",
            )


# ---- security.istio.io: what a shape cannot say -----------------------------------------------------
# AuthorizationPolicy ``when`` keys the local backend translates (Istio's list: pilot/pkg/security/authz/model/model.go)
WHEN_KEYS = {
    "source.ip", "remote.ip", "source.namespace", "source.principal", "request.auth.principal",
    "request.auth.audiences", "request.auth.presenter", "destination.ip", "destination.port", "connection.sni",
}  # fmt: skip
WHEN_PREFIXES = ("request.headers[", "request.auth.claims[")
_PRINCIPAL = re.compile(r"^[^/*]+/ns/[^/]+/sa/[^/]+$")


def _cidr(value: str, field: str, where: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ResourceError(f"{where}: {field} {value!r} is not an IP address or CIDR", "write it like 10.10.0.12 or 10.10.0.0/16") from None


def _principal(value: str, field: str, where: str) -> None:
    """Istio principals are ``<trust domain>/ns/<ns>/sa/<sa>`` without ``spiffe://`` (or use a ``*``)."""
    if value.startswith("spiffe://"):
        raise ResourceError(
            f"{where}: {field} {value!r} starts with spiffe://", f"Istio adds it itself: write {value[len('spiffe://'):]!r}"
        )
    if "*" not in value and not _PRINCIPAL.match(value):
        raise ResourceError(f"{where}: {field} {value!r} is not a principal", "write <trust domain>/ns/<namespace>/sa/<service account>, e.g. cluster.local/ns/sample/sa/curl, or use * at one end")


def _port(value: str, field: str, where: str) -> None:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ResourceError(f"{where}: {field} {value!r} is not a port number", "ports are strings of digits, e.g. \"5000\"")


_VALUE_CHECKS = {
    "principals": _principal, "notPrincipals": _principal, "source.principal": _principal,
    "ipBlocks": _cidr, "notIpBlocks": _cidr, "remoteIpBlocks": _cidr, "notRemoteIpBlocks": _cidr,
    "source.ip": _cidr, "remote.ip": _cidr, "destination.ip": _cidr,
    "ports": _port, "notPorts": _port, "destination.port": _port,
}  # fmt: skip


def _check_authorization_policy(spec: dict[str, Any], where: str) -> None:
    if spec.get("action") == "CUSTOM" or "provider" in spec:
        raise ResourceError(
            f"{where}: action CUSTOM (an ext_authz provider) is not supported by the local backend",
            "use ALLOW, DENY or AUDIT here, or the kind backend with an extensionProvider in the mesh config",
        )
    for i, rule in enumerate(spec.get("rules", [])):
        for j, f in enumerate(rule.get("from", [])):
            for k, values in f.get("source", {}).items():
                for v in values:
                    if k in _VALUE_CHECKS:
                        _VALUE_CHECKS[k](v, f"spec.rules[{i}].from[{j}].source.{k}", where)
        for j, t in enumerate(rule.get("to", [])):
            for k, values in t.get("operation", {}).items():
                for v in values:
                    if k in _VALUE_CHECKS:
                        _VALUE_CHECKS[k](v, f"spec.rules[{i}].to[{j}].operation.{k}", where)
                    if k in ("paths", "notPaths") and "{" in v:
                        raise ResourceError(f"{where}: spec.rules[{i}].to[{j}].operation.{k} {v!r}: path templates are not supported by the local backend", "use an exact path, a prefix (/api/*) or a suffix (*/info)")
        for j, w in enumerate(rule.get("when", [])):
            key = w.get("key", "")
            if key not in WHEN_KEYS and not (key.startswith(WHEN_PREFIXES) and key.endswith("]")):
                raise ResourceError(
                    f"{where}: spec.rules[{i}].when[{j}].key {key!r} is not supported by the local backend",
                    f"use one of: {', '.join(sorted(WHEN_KEYS))}, request.headers[<name>], request.auth.claims[<name>]",
                )
            if not w.get("values") and not w.get("notValues"):
                raise ResourceError(f"{where}: spec.rules[{i}].when[{j}] has neither values nor notValues", "give at least one of them")
            for field in ("values", "notValues"):
                for v in w.get(field, []):
                    if key in _VALUE_CHECKS:
                        _VALUE_CHECKS[key](v, f"spec.rules[{i}].when[{j}].{field}", where)


def _check_peer_authentication(spec: dict[str, Any], where: str) -> None:
    for port in spec.get("portLevelMtls", {}):
        _port(str(port), "spec.portLevelMtls key", where)
    if spec.get("portLevelMtls") and not spec.get("selector", {}).get("matchLabels"):
        raise ResourceError(f"{where}: portLevelMtls needs a workload selector", "Istio ignores port-level settings without one: add selector.matchLabels")


def _check_request_authentication(spec: dict[str, Any], where: str) -> None:
    for i, rule in enumerate(spec.get("jwtRules", [])):
        at = f"{where}: spec.jwtRules[{i}]"
        if "jwksUri" in rule:
            raise ResourceError(f"{at}.jwksUri: the local backend fetches nothing from the internet", "inline the key set: jwks: '{\"keys\": [...]}'")
        if not rule.get("issuer"):
            raise ResourceError(f"{at}.issuer is required", "set the issuer (the token's iss claim)")
        try:
            keys = json.loads(rule.get("jwks", ""))["keys"]
            assert isinstance(keys, list) and keys
        except (ValueError, KeyError, TypeError, AssertionError):
            raise ResourceError(f"{at}.jwks is not a JSON Web Key Set", 'give a JSON object with a non-empty "keys" list') from None


def _check_envoy_filter(spec: dict[str, Any], where: str) -> None:
    for i, p in enumerate(spec.get("configPatches", [])):
        op, to = p.get("patch", {}).get("operation"), p.get("applyTo")
        allowed = {"HTTP_FILTER": {"ADD", "INSERT_FIRST", "INSERT_BEFORE", "INSERT_AFTER"}, "VIRTUAL_HOST": {"MERGE"}}.get(to, set())
        if op not in allowed:
            raise ResourceError(
                f"{where}: spec.configPatches[{i}]: operation {op!r} on {to} is not supported by the local backend",
                f"use one of {', '.join(sorted(allowed))} for {to}, or the kind backend",
            )
        if p.get("match", {}).get("listener", {}).get("portNumber") is not None and p.get("match", {}).get("context") != "SIDECAR_INBOUND":
            raise ResourceError(f"{where}: spec.configPatches[{i}]: listener.portNumber is only supported with context SIDECAR_INBOUND",
                                "match the inbound port, or drop portNumber")


def _check_sidecar(spec: dict[str, Any], where: str) -> None:
    """Istio's validation: every egress host is ``namespace/dnsName`` (``.``, ``*`` or ``~`` allowed as namespace)."""
    if not spec.get("egress"):
        raise ResourceError(f"{where}: spec.egress is required by the local backend", "list the hosts: egress: [{hosts: [./*, istio-system/*]}]")
    for i, e in enumerate(spec["egress"]):
        for h in e.get("hosts", []):
            if h.count("/") != 1 or not h.split("/")[1]:
                raise ResourceError(f"{where}: spec.egress[{i}].hosts: {h!r} is not namespace/dnsName",
                                    "write it like ./*, istio-system/*, */helloworld.sample.svc.cluster.local or ~other/*")


def _check_telemetry(spec: dict[str, Any], where: str) -> None:
    for i, entry in enumerate(spec.get("accessLogging", [])):
        for p in entry.get("providers", []):
            if p.get("name", "").lower() != "envoy":
                raise ResourceError(
                    f"{where}: spec.accessLogging[{i}].providers: {p.get('name')!r} is not a provider of the local backend",
                    "use the built-in file access log provider `envoy` (meshConfig's default extension provider), or the kind backend",
                )


def _check_virtual_service(spec: dict[str, Any], where: str) -> None:
    if "mesh" in spec.get("gateways", ["mesh"]):
        for h in spec.get("hosts", []):
            if "*" in h:
                raise ResourceError(
                    f"{where}: host {h!r}: a wildcard host for sidecars is not supported by the local backend "
                    "(Istio applies it to every service it matches that has no more specific VirtualService)",
                    "name the service's host, or use the kind backend",
                )


_SEMANTIC = {
    "Sidecar": _check_sidecar,
    "Telemetry": _check_telemetry,
    "VirtualService": _check_virtual_service,
    "EnvoyFilter": _check_envoy_filter,
    "AuthorizationPolicy": _check_authorization_policy,
    "PeerAuthentication": _check_peer_authentication,
    "RequestAuthentication": _check_request_authentication,
}


def duration_s(value: str) -> float:
    """Istio durations ("1s", "500ms", "1m") in seconds."""
    for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return float(value[: -len(unit)]) * factor
    raise ResourceError(f"{value!r} is not a duration", "write it like 1s, 500ms or 2m")


def envoy_duration(value: str) -> str:
    return f"{duration_s(value):.3f}s"
