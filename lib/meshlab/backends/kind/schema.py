"""Strict validation of every manifest the kind backend emits (and of resources a learner applies).

- **Kubernetes core kinds** (Namespace, Secret, Service, Deployment, ServiceAccount, ConfigMap, ...)
  are checked with the ``kubernetes`` client's generated models: strict pydantic models built from
  the Kubernetes OpenAPI spec (types, required fields, unknown fields forbidden). A round trip through
  the model also rejects snake_case spellings that the model would accept but the API server would not.
- **Istio kinds** (Gateway, VirtualService, ServiceEntry, DestinationRule, ... all of Istio 1.31's
  CRDs) and **MetalLB** (IPAddressPool, L2Advertisement) are checked against schemas generated from
  the upstream CRDs (:mod:`.crd_schemas`, regenerated with :mod:`.schemagen`).
- **IstioOperator** has no CRD any more (istioctl validates it against its Go/proto types), and
  **kind's Cluster** config is not a Kubernetes object: both have a hand-written schema below, taken
  from the field names in istio ``operator/pkg/apis/{types.go,values_types.proto}`` (release-1.31)
  and kind ``pkg/apis/config/v1alpha4/types.go``. The IstioOperator one is a *subset*: the fields
  meshlab writes; anything else is refused rather than passed through unchecked.

Compact schema notation: ``"string" | "integer" | "number" | "boolean" | "int-or-string" | "any"``,
``{"enum": [...]}``, ``{"list": S}``, ``{"map": S}`` (free keys), ``{"props": {...}, "required": [...]}``
(closed object: unknown fields fail) and ``"k8s:V1EnvVar"`` (a Kubernetes model from the client).
"""

from __future__ import annotations

from typing import Any

from ...errors import MeshlabError
from .crd_schemas import ISTIO, METALLB


class SchemaError(MeshlabError):
    """A manifest does not match its kind's schema; the message names the field."""


# ---- hand-written schemas ----------------------------------------------------------------------

_K8S_RESOURCES = {  # operator/pkg/apis/types.go KubernetesResources (fields meshlab may set)
    "props": {
        "env": {"list": "k8s:V1EnvVar"},
        "service": "k8s:V1ServiceSpec",
        "resources": "k8s:V1ResourceRequirements",
        "replicaCount": "integer",
        "podAnnotations": {"map": "string"},
        "serviceAnnotations": {"map": "string"},
        "nodeSelector": {"map": "string"},
        "imagePullPolicy": "string",
    }
}
_COMPONENT = {"props": {"enabled": "boolean", "namespace": "string", "hub": "string", "tag": "int-or-string", "k8s": _K8S_RESOURCES}}
_GATEWAY_COMPONENT = {"props": {**_COMPONENT["props"], "name": "string", "label": {"map": "string"}}}

ISTIO_OPERATOR = {
    "props": {
        "profile": "string",
        "hub": "string",
        "tag": "int-or-string",
        "namespace": "string",
        "revision": "string",
        "compatibilityVersion": "string",
        "meshConfig": {  # istio/api mesh/v1alpha1 MeshConfig (subset)
            "props": {
                "trustDomain": "string",
                "trustDomainAliases": {"list": "string"},
                "accessLogFile": "string",
                "accessLogEncoding": {"enum": ["TEXT", "JSON"]},
                "accessLogFormat": "string",
                "enableTracing": "boolean",
                # ServiceSettings: clusterLocal hosts (cluster_local.go)
                "serviceSettings": {"list": {"props": {"settings": {"props": {"clusterLocal": "boolean"}},
                                                       "hosts": {"list": "string"}}}},
                # MeshConfig.ExtensionProvider (subset): the OpenTelemetry tracing provider of istio.io's Jaeger task
                "extensionProviders": {"list": {"props": {
                    "name": "string",
                    "opentelemetry": {"props": {"service": "string", "port": "integer", "maxTagLength": "integer"},
                                      "required": ["service", "port"]},
                }, "required": ["name"]}},
                "defaultConfig": {"props": {  # ProxyConfig (subset)
                    "proxyMetadata": {"map": "string"},
                    "proxyStatsMatcher": {"props": {
                        "inclusionPrefixes": {"list": "string"}, "inclusionSuffixes": {"list": "string"},
                        "inclusionRegexps": {"list": "string"}}},
                }},
            }
        },
        "components": {
            "props": {
                "base": {"props": {"enabled": "boolean", "k8s": _K8S_RESOURCES}},
                "pilot": _COMPONENT,
                "cni": _COMPONENT,
                "ztunnel": _COMPONENT,
                "istiodRemote": _COMPONENT,
                "ingressGateways": {"list": _GATEWAY_COMPONENT},
                "egressGateways": {"list": _GATEWAY_COMPONENT},
            }
        },
        "values": {  # operator/pkg/apis/values_types.proto Values (subset)
            "props": {
                "profile": "string",
                "global": {
                    "props": {
                        "meshID": "string",
                        "network": "string",
                        "multiCluster": {"props": {"enabled": "boolean", "clusterName": "string"}},
                        "externalIstiod": "boolean",
                        "remotePilotAddress": "string",
                        "configCluster": "boolean",
                        "hub": "string",
                        "tag": "int-or-string",
                        "imagePullPolicy": "string",
                    }
                },
                "istiodRemote": {  # IstiodRemoteConfig; deprecated here in favour of pilot.istiodRemote, still what the guides use
                    "props": {"injectionPath": "string", "injectionURL": "string", "enabled": "boolean"}
                },
                "pilot": {"props": {"env": {"map": "any"}, "autoscaleEnabled": "boolean", "istiodRemote": {"props": {"injectionPath": "string", "injectionURL": "string", "enabled": "boolean"}}}},
                "gateways": {
                    "props": {
                        "istio-ingressgateway": {"props": {"injectionTemplate": "string", "type": "string", "env": {"map": "any"}}},
                    }
                },
            }
        },
    }
}

KIND_CLUSTER = {  # sigs.k8s.io/kind pkg/apis/config/v1alpha4 Cluster
    "props": {
        "kind": {"enum": ["Cluster"]},
        "apiVersion": {"enum": ["kind.x-k8s.io/v1alpha4"]},
        "name": "string",
        "nodes": {
            "list": {
                "props": {
                    "role": {"enum": ["control-plane", "worker"]},
                    "image": "string",
                    "labels": {"map": "string"},
                    "extraMounts": {"list": {"props": {
                        "containerPath": "string", "hostPath": "string", "readOnly": "boolean", "selinuxRelabel": "boolean",
                        "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]}}}},
                    "extraPortMappings": {"list": {"props": {
                        "containerPort": "integer", "hostPort": "integer", "listenAddress": "string",
                        "protocol": {"enum": ["TCP", "UDP", "SCTP"]}}}},
                    "kubeadmConfigPatches": {"list": "string"},
                    "kubeadmConfigPatchesJSON6902": {"list": {"props": {
                        "group": "string", "version": "string", "kind": "string", "patch": "string"},
                        "required": ["group", "kind", "patch", "version"]}},
                }
            }
        },
        "networking": {
            "props": {
                "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]},
                "apiServerPort": "integer",
                "apiServerAddress": "string",
                "podSubnet": "string",
                "serviceSubnet": "string",
                "disableDefaultCNI": "boolean",
                "kubeProxyMode": {"enum": ["iptables", "ipvs", "nftables"]},
                "dnsSearch": {"list": "string"},
            }
        },
        "featureGates": {"map": "boolean"},
        "runtimeConfig": {"map": "string"},
        "kubeadmConfigPatches": {"list": "string"},
        "kubeadmConfigPatchesJSON6902": {"list": "any"},
        "containerdConfigPatches": {"list": "string"},
        "containerdConfigPatchesJSON6902": {"list": "string"},
    },
    "required": ["apiVersion", "kind"],
}  # fmt: skip

# Core API groups whose kinds are checked with the kubernetes client's models (class V1<Kind>).
CORE_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1",
               "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1", "autoscaling/v1", "discovery.k8s.io/v1"}


def known_kinds() -> list[str]:
    return sorted({"IstioOperator", "Cluster (kind.x-k8s.io/v1alpha4)", *ISTIO, *METALLB})


# ---- validation --------------------------------------------------------------------------------

def _where(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    ns = meta.get("namespace")
    return f"{doc.get('kind', '?')} {(ns + '/') if ns else ''}{meta.get('name') or doc.get('name') or '?'}"


def validate(doc: Any) -> None:
    """Raise :class:`SchemaError` naming the first field that is unknown, mistyped or missing."""
    if not isinstance(doc, dict):
        raise SchemaError(f"a manifest must be a mapping, got {type(doc).__name__}", "start it with apiVersion: and kind:")
    api, kind = doc.get("apiVersion"), doc.get("kind")
    where = _where(doc)
    if not isinstance(api, str) or not isinstance(kind, str):
        raise SchemaError(f"{where}: apiVersion and kind are required strings", "add apiVersion: and kind:")
    if api == "kind.x-k8s.io/v1alpha4" and kind == "Cluster":
        check(doc, KIND_CLUSTER, "", where)
        return
    if kind == "IstioOperator":
        if api != "install.istio.io/v1alpha1":
            raise SchemaError(f"{where}: apiVersion {api!r}", "IstioOperator is install.istio.io/v1alpha1")
        _top(doc, where, spec=ISTIO_OPERATOR, spec_required=False, metadata_required=False)
        return
    group, _, version = api.rpartition("/")
    for table in (ISTIO, METALLB):
        if kind in table and table[kind]["group"] == group:
            if version not in table[kind]["versions"]:
                raise SchemaError(f"{where}: {group} serves {kind} as {', '.join(table[kind]['versions'])}, not {version!r}",
                                  f"use apiVersion: {group}/{table[kind]['versions'][0]}")
            _top(doc, where, spec=table[kind]["spec"], spec_required=True)
            return
    if api in CORE_GROUPS:
        _core(doc, where)
        return
    raise SchemaError(f"{where}: no schema for {api} {kind}",
                      f"meshlab validates: core Kubernetes kinds and {', '.join(known_kinds())}")


def _top(doc: dict[str, Any], where: str, spec: Any, spec_required: bool, metadata_required: bool = True) -> None:
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "spec"):
            raise SchemaError(f"{where}: unknown top-level field {key!r}", "only apiVersion, kind, metadata and spec")
    if metadata_required or "metadata" in doc:
        _metadata(doc.get("metadata"), where)
    if "spec" not in doc:
        if spec_required:
            raise SchemaError(f"{where}: spec is required", "add a spec:")
        return
    check(doc["spec"], spec, "spec", where)


def _metadata(meta: Any, where: str) -> None:
    import kubernetes.client as k

    if not isinstance(meta, dict) or not meta.get("name"):
        raise SchemaError(f"{where}: metadata.name is required", "add metadata: {name: ...}")
    _model(meta, k.V1ObjectMeta, "metadata", where)


def _core(doc: dict[str, Any], where: str) -> None:
    import kubernetes.client as k

    cls = getattr(k, f"V1{doc['kind']}", None)
    if cls is None or "api_version" not in getattr(cls, "model_fields", {}):
        raise SchemaError(f"{where}: {doc['apiVersion']} {doc['kind']} is not a Kubernetes kind meshlab knows",
                          "check the kind's spelling and apiVersion")
    _metadata(doc.get("metadata"), where)
    _model(doc, cls, "", where)


def _model(value: Any, cls: Any, path: str, where: str) -> None:
    """Validate with a kubernetes-client model, then require the input to survive a round trip unchanged."""
    from pydantic import ValidationError

    try:
        obj = cls.model_validate(value)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        field = ".".join(p for p in (path, loc) if p)
        msg = {"extra_forbidden": "unknown field", "missing": "required field is missing"}.get(err["type"], err["msg"])
        raise SchemaError(f"{where}: {field}: {msg}", "compare with `kubectl explain` for this field") from None
    dumped = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    _same_keys(value, dumped, path, where)


def _same_keys(given: Any, canonical: Any, path: str, where: str) -> None:
    if isinstance(given, dict) and isinstance(canonical, dict):
        for key, v in given.items():
            if v is None:
                continue
            if key not in canonical:
                raise SchemaError(f"{where}: {path + '.' if path else ''}{key}: not the API's spelling of this field",
                                  "Kubernetes field names are camelCase, e.g. targetPort")
            _same_keys(v, canonical[key], f"{path + '.' if path else ''}{key}", where)
    elif isinstance(given, list) and isinstance(canonical, list):
        for i, (a, b) in enumerate(zip(given, canonical)):
            _same_keys(a, b, f"{path}[{i}]", where)


def check(value: Any, schema: Any, path: str, where: str) -> None:
    """Check ``value`` against a compact schema (see the module docstring)."""

    def fail(problem: str, hint: str) -> SchemaError:
        return SchemaError(f"{where}: {path or '(top)'}: {problem}", hint)

    if schema == "any":
        return
    if isinstance(schema, str):
        if schema.startswith("k8s:"):
            import kubernetes.client as k

            _model(value, getattr(k, schema[4:]), path, where)
            return
        ok = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "int-or-string": isinstance(value, (int, str)) and not isinstance(value, bool),
        }[schema]
        if not ok:
            raise fail(f"must be {schema}, got {type(value).__name__} {value!r}", "fix the value's type (quote strings like \"true\")")
        return
    if "enum" in schema:
        if value not in schema["enum"]:
            raise fail(f"{value!r} is not allowed", f"use one of: {', '.join(map(str, schema['enum']))}")
        return
    if "list" in schema:
        if not isinstance(value, list):
            raise fail(f"must be a list, got {type(value).__name__}", "write it as a YAML list")
        for i, item in enumerate(value):
            check(item, schema["list"], f"{path}[{i}]", where)
        return
    if "map" in schema:
        if not isinstance(value, dict):
            raise fail(f"must be a mapping, got {type(value).__name__}", "write it as key: value lines")
        for k_, v in value.items():
            if not isinstance(k_, str):
                raise fail(f"key {k_!r} must be a string", "quote the key")
            check(v, schema["map"], f"{path}.{k_}" if path else k_, where)
        return
    props = schema["props"]
    if not isinstance(value, dict):
        raise fail(f"must be a mapping, got {type(value).__name__}", "write it as key: value lines")
    for k_, v in value.items():
        sub = f"{path}.{k_}" if path else str(k_)
        if k_ not in props:
            raise SchemaError(f"{where}: {sub}: unknown field", f"fields allowed under {path or 'the top level'}: {', '.join(sorted(props))}")
        check(v, props[k_], sub, where)
    for r in schema.get("required", []):
        if r not in value:
            raise fail(f"required field {r!r} is missing", f"add {r}:")


def load_documents(source: str | dict[str, Any] | list[Any]) -> list[dict[str, Any]]:
    """Resources from YAML text (``---`` separated), a dict or a list, each validated strictly.

    What ``Lab.apply`` uses on the kind backend: every Istio kind is accepted (the cluster runs real
    istiod), but a misspelt or unknown field is refused before anything reaches the cluster.
    """
    import yaml

    if isinstance(source, str):
        try:
            docs = [d for d in yaml.safe_load_all(source) if d is not None]
        except yaml.YAMLError as e:
            raise SchemaError(f"not valid YAML: {e}", "fix the YAML at the position shown") from e
    elif isinstance(source, dict):
        docs = [source]
    else:
        docs = list(source)
    for d in docs:
        if isinstance(d, dict) and isinstance(d.get("metadata"), dict) and "namespace" not in d["metadata"]:
            d = {**d, "metadata": {"namespace": "sample", **d["metadata"]}}
        validate(d)
    return docs
