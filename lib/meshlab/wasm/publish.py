"""Ship a module to a lab's mesh in two calls: push it to meshlab's hub with a pull secret in every
cluster, then write the extension resource that deploys it. Used by the labs and by seeded faults.

    from meshlab.wasm.publish import publish, wasm_plugin
    pushed = publish(lab, "header-metric", "wasm/header-metric:v1")   # a filter folder's name, or a .wasm path
    lab.apply(wasm_plugin("metric", pushed, {"app": "helloworld"}, {"header": "x-user", "metric": "requests"}), cluster="cluster1")

A wrong digest is the classic mistake (the ``.wasm`` file's sha256 where ``oci://`` wants the image
manifest's): ``wasm_plugin(..., sha256=wrong_digest(pushed))``. Istio accepts the resource; each selected
proxy's agent fails the fetch and, with ``FAIL_CLOSE``, installs a deny-all RBAC filter: every request to
the workload answers ``403 RBAC: access denied``, Envoy counts ``rbac.wasm-default-deny.denied`` and the
agent logs "... which does not match ... applying deny RBAC filter" (``lab.agent_log``). On kind the image
is copied to the lab registry unchanged, so the digest stays wrong there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .build import build_once, repo_filters_dir
from .hub import Hub, Pushed

if TYPE_CHECKING:
    from ..lab import Lab

SECRET = "meshlab-pull"  # the hub user and the pull secret the extensions name


def publish(lab: "Lab", module: str | Path, ref: str, secret: str = SECRET, hub: Hub | None = None) -> Pushed:
    """Build (a filter folder's name) or take (a path) a module, push it to meshlab's hub (``hub``, or the
    default one, started if needed) as ``ref`` (``repo:tag``), and create the pull secret ``secret`` in
    every cluster of the lab (Istio reads it in each pulling proxy's own cluster)."""
    path = Path(module)
    if not path.exists():
        path = build_once(repo_filters_dir() / str(module)).wasm
    hub = hub or Hub.up()  # a no-op when it runs already
    if secret not in hub.users:
        hub.add_user(secret)
    pushed = hub.push(path, ref, user=secret)
    for cluster in lab.topology.clusters:
        lab.create_pull_secret(secret, cluster, **hub.pull_secret(secret))
    return pushed


def wasm_plugin(
    name: str, pushed: Pushed, match_labels: dict[str, str], config: dict[str, Any] | None = None, *,
    sha256: str | None = None, fail_strategy: str = "FAIL_CLOSE", phase: str | None = None, secret: str = SECRET,
) -> dict[str, Any]:  # fmt: skip
    """A WasmPlugin for a pushed module (``pluginName`` = its first root id), pinned to its manifest
    digest unless ``sha256`` says otherwise."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": dict(match_labels)},
        "url": pushed.url,
        "sha256": sha256 if sha256 is not None else pushed.digest.split(":", 1)[1],
        "imagePullSecret": secret,
        "pluginName": pushed.root_ids[0] if pushed.root_ids else name,
        "failStrategy": fail_strategy,
    }
    if config:
        spec["pluginConfig"] = config
    if phase:
        spec["phase"] = phase
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": name, "namespace": "sample"}, "spec": spec}


def wrong_digest(pushed: Pushed) -> str:
    """The sha256 of the ``.wasm`` file: what people write, and not what Istio compares for ``oci://``."""
    return pushed.wasm_sha256.split(":", 1)[1]
