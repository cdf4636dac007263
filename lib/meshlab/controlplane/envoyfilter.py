"""EnvoyFilter -> patches of a sidecar's generated config, as istiod applies them (a subset).

Supported, following ``pilot/pkg/networking/core/envoyfilter`` (listener_patch.go, rc_patch.go):

- ``applyTo: HTTP_FILTER`` in the HTTP connection managers of the inbound (``SIDECAR_INBOUND``) or
  outbound (``SIDECAR_OUTBOUND``) listeners, or both (``ANY``): ``ADD`` appends, ``INSERT_FIRST``
  prepends, ``INSERT_BEFORE``/``INSERT_AFTER`` place the filter next to ``subFilter`` -- without a
  ``subFilter``, INSERT_BEFORE prepends and INSERT_AFTER appends, as in Istio; a ``subFilter`` that
  matches nothing applies nothing. ``listener.portNumber`` selects one inbound port.
- ``applyTo: VIRTUAL_HOST`` with ``MERGE``: the patch value is merged into the virtual hosts of that
  context (optionally the one named ``routeConfiguration.vhost.name``), with protobuf merge semantics
  (maps merge, lists append, scalars replace).

An EnvoyFilter in ``istio-system`` (the root namespace) applies to every workload, otherwise to the
workloads of its namespace; ``workloadSelector.labels`` narrows it. Other fields and operations are
refused by resources.py, never ignored.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from .. import xds as E

ROOT_NAMESPACE = "istio-system"
HCM_NAME = "envoy.filters.network.http_connection_manager"


def _selected(ef: dict[str, Any], labels: dict[str, str], namespace: str) -> bool:
    ns = ef["metadata"].get("namespace", "default")
    if ns not in (ROOT_NAMESPACE, namespace):
        return False
    want = ef["spec"].get("workloadSelector", {}).get("labels", {})
    return all(labels.get(k) == v for k, v in want.items())


def merge(into: dict[str, Any], value: dict[str, Any]) -> None:
    """Protobuf merge of JSON: maps merge, lists append, scalars replace."""
    for k, v in value.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        elif isinstance(v, list) and isinstance(into.get(k), list):
            into[k] = into[k] + copy.deepcopy(v)
        else:
            into[k] = copy.deepcopy(v)


def _hcms(listener: dict[str, Any]) -> list[dict[str, Any]]:
    return [f["typed_config"] for fc in listener.get("filter_chains", []) for f in fc.get("filters", []) if f.get("name") == HCM_NAME]




def _insert(filters: list[dict[str, Any]], op: str, value: dict[str, Any], sub: str | None) -> list[dict[str, Any]]:
    new = copy.deepcopy(value)
    if op == "ADD" or (op == "INSERT_AFTER" and not sub):
        return [*filters, new]
    if op == "INSERT_FIRST" or (op == "INSERT_BEFORE" and not sub):
        return [new, *filters]
    for i, f in enumerate(filters):
        if f.get("name") == sub:
            return filters[:i] + [new] + filters[i:] if op == "INSERT_BEFORE" else filters[: i + 1] + [new] + filters[i + 1 :]
    return filters  # no filter matched: nothing applied, as in Istio


def apply(
    cfg: E.ProxyConfig, labels: dict[str, str], namespace: str, resources: list[dict[str, Any]], outbound: str, inbound: set[str]
) -> E.ProxyConfig:
    """The proxy's config with every EnvoyFilter that selects it applied, in the order they were applied.

    ``outbound`` and ``inbound`` name the listeners of each context; others (e.g. the Prometheus stats
    listener, static in Istio's bootstrap) are never patched."""
    filters = [r for r in resources if r["kind"] == "EnvoyFilter" and _selected(r, labels, namespace)]
    if not filters:
        return cfg
    listeners = copy.deepcopy(cfg.listeners)
    for ef in filters:
        for patch in ef["spec"].get("configPatches", []):
            match = patch.get("match", {})
            context = match.get("context", "ANY")
            op, value = patch["patch"]["operation"], patch["patch"].get("value", {})
            seen: set[int] = set()  # filter chains may share one HCM object: patch each once
            for lis in listeners:
                ctx = "SIDECAR_OUTBOUND" if lis["name"] == outbound else "SIDECAR_INBOUND" if lis["name"] in inbound else None
                if ctx is None or context not in ("ANY", ctx):
                    continue
                lm = match.get("listener", {})
                port = lis.get("address", {}).get("socket_address", {}).get("port_value")
                if "portNumber" in lm and lm["portNumber"] != port:
                    continue
                for hcm in _hcms(lis):
                    if id(hcm) in seen:
                        continue
                    seen.add(id(hcm))
                    if patch["applyTo"] == "HTTP_FILTER":
                        fm = lm.get("filterChain", {}).get("filter", {})
                        if fm.get("name", HCM_NAME) != HCM_NAME:
                            continue
                        hcm["http_filters"] = _insert(hcm["http_filters"], op, value, fm.get("subFilter", {}).get("name"))
                    elif patch["applyTo"] == "VIRTUAL_HOST":
                        want = match.get("routeConfiguration", {}).get("vhost", {}).get("name")
                        for vh in hcm.get("route_config", {}).get("virtual_hosts", []):
                            if want in (None, vh["name"]):
                                merge(vh, value)
    return dataclasses.replace(cfg, listeners=listeners)
