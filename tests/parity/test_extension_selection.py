"""Extensions across namespaces and the plugin configuration Envoy receives, from Istio 1.31's source.

- push_context.go ``TrafficExtensionsByListenerInfo``: the proxy's namespace is looked up before the root
  namespace (creation order within each), then ``sortByPriority`` sorts each phase stably by priority.
- extensions.go ``buildWasmConfig``: ``pluginConfig`` (a Struct) reaches the plugin as the JSON string that
  golang/protobuf's ``jsonpb.Marshaler`` writes (protomarshal.ToJSON): keys sorted, no spaces, numbers as Go's
  encoding/json writes a float64, strings HTML-escaped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshlab.controlplane import extensions as deploy


def te(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "TrafficExtension", "metadata": {"name": name, "namespace": namespace},
            "spec": {"wasm": {"url": "file:///m.wasm"}, **spec}}  # fmt: skip


def order(resources: list[dict[str, Any]], namespace: str = "sample") -> list[str]:
    filters = deploy.http_filters({"app": "x"}, namespace, resources, "inbound", lambda n: Path("/xds") / n, 5000)
    return [f["name"].removeprefix(deploy.RESOURCE_PREFIX) for f in filters]


@pytest.mark.istio("pilot/pkg/model/push_context.go: TrafficExtensionsByListenerInfo")
def test_the_proxys_namespace_comes_before_the_root_namespace() -> None:
    res = [
        te("mesh-wide", "istio-system", phase="AUTHN"),  # created first, in the root namespace
        te("own", "sample", phase="AUTHN"),
        te("mesh-first", "istio-system", phase="AUTHN", priority=5),
        te("own-stats", "sample", phase="STATS"),
        te("root-stats", "istio-system", phase="STATS"),
    ]
    # within a phase: priority first; equal priorities keep the lookup order (own namespace, then root)
    assert order(res) == ["istio-system.mesh-first", "sample.own", "istio-system.mesh-wide", "sample.own-stats", "istio-system.root-stats"]
    # a proxy in the root namespace looks there once
    assert order(res, "istio-system") == ["istio-system.mesh-first", "istio-system.mesh-wide", "istio-system.root-stats"]


def plugin_configuration(config: dict[str, Any]) -> str:
    t = te("p", "sample", wasm={"url": "oci://reg:5000/p:v1", "pluginConfig": config})
    cfg = deploy.extension_config(t)["typed_config"]["config"]
    return str(cfg["configuration"]["value"])


@pytest.mark.istio("pilot/pkg/model/extensions.go: buildWasmConfig")
def test_plugin_config_is_serialised_as_jsonpb_writes_a_struct() -> None:
    # keys sorted at every level, no spaces
    assert plugin_configuration({"b": 1, "a": {"y": True, "x": None}, "c": ["z", "a"]}) == '{"a":{"x":null,"y":true},"b":1,"c":["z","a"]}'
    # every number is a float64 that encoding/json formats: no ".0", exponent only below 1e-6 or from 1e21
    assert plugin_configuration({"n": 1.0, "m": 2.5, "big": 1e21, "large": 123456789012, "tiny": 0.0000001, "neg": -0.5}) == (
        '{"big":1e+21,"large":123456789012,"m":2.5,"n":1,"neg":-0.5,"tiny":1e-7}'
    )
    assert plugin_configuration({"huge": 12345678901234567890}) == '{"huge":12345678901234567000}'  # a float64
    # strings: HTML-safe escaping, UTF-8 kept, the control characters JSON requires escaped
    assert plugin_configuration({"s": "<a href='x'>&</a>", "u": "héllo", "c": "tab\tline\n\u2028"}) == (
        '{"c":"tab\\tline\\n\\u2028","s":"\\u003ca href=\'x\'\\u003e\\u0026\\u003c/a\\u003e","u":"héllo"}'
    )
    assert json.loads(plugin_configuration({"k": "v"})) == {"k": "v"}
