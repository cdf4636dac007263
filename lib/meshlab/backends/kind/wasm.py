"""WasmPlugins and Wasm TrafficExtensions on the kind backend: the module goes to the registry the clusters
reach, the resource to istiod.

On kind, Istio's own agent pulls the module inside each pod, so the module must be in a registry the
pods can reach: the lab's registry container ``meshlab-registry`` on the kind network (port 5000
inside, ``localhost:5001`` from the host, plain HTTP, no accounts). :func:`ship` rewrites each
WasmPlugin so that it points there and returns the step that puts the module there first:

* ``oci://`` from meshlab's hub (or any registry on the host's loopback) -> the image is copied as it
  is (same manifest bytes, so the same digest: a ``sha256`` stays valid) to ``localhost:5001`` and
  the URL becomes ``oci://meshlab-registry:5000/<repository>:<tag>``. ``imagePullSecret`` is
  dropped: it names credentials of the hub, the lab registry has none;
* ``file://`` -> the module is packaged (wasm-image-spec oci layout, as ``meshlab wasm push``) and
  pushed as ``wasm/<plugin>:sha-<12 hex of the module>``; a ``sha256`` given for the file is checked
  here and replaced by the image's manifest digest (what Istio compares for ``oci://``);
* anything else (another registry, ``http(s)://``) is applied unchanged.

Istio's agent pulls from a plain-HTTP registry when the URL names its port: the HTTPS attempt fails
with "server gave HTTP response" and it retries over HTTP. ``WASM_INSECURE_REGISTRIES`` (proxy
metadata) only skips TLS *verification*, so the lab does not need to set it.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from pathlib import Path
from typing import Any

from ...controlplane.extensions import read_file_url
from ...errors import MeshlabError
from ...wasm import oci
from ...wasm.hub import Hub
from .clusters import REGISTRY_HOST_PORT, REGISTRY_NAME
from .plan import Step

IN_CLUSTER = f"{REGISTRY_NAME}:5000"  # what pods (and istio-agent) reach, through the kind network's DNS
FROM_HOST = f"localhost:{REGISTRY_HOST_PORT}"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _image_name(doc: dict[str, Any]) -> str:
    return "wasm/" + (re.sub(r"[^a-z0-9._-]+", "-", doc["metadata"]["name"].lower()).strip("-._") or "plugin")


def ship(doc: dict[str, Any]) -> tuple[dict[str, Any], Step | None]:
    """The WasmPlugin (or Wasm TrafficExtension) as kind's istiod should get it, and the step that pushes
    its module (or None). A Lua TrafficExtension carries its code inline: nothing to ship."""
    if doc.get("kind") == "TrafficExtension":
        if "wasm" not in (doc.get("spec") or {}):
            return doc, None
        wasm_doc, step = ship({**doc, "kind": "WasmPlugin", "spec": doc["spec"]["wasm"]})
        return {**doc, "spec": {**doc["spec"], "wasm": wasm_doc["spec"]}}, step
    return _ship_plugin(doc)


def _ship_plugin(doc: dict[str, Any]) -> tuple[dict[str, Any], Step | None]:
    spec = dict(doc.get("spec") or {})
    url = str(spec.get("url", ""))
    scheme = url.split("://", 1)[0] if "://" in url else "oci"
    where = f"WasmPlugin {doc['metadata'].get('namespace', 'sample')}/{doc['metadata']['name']}"
    if scheme == "oci":
        ref = oci.parse_ref(url if "://" in url else "oci://" + url)
        host = ref.registry.rsplit(":", 1)[0]
        if ref.registry == IN_CLUSTER:
            return doc, None
        if host not in LOOPBACK:
            return doc, None  # another registry: the pods pull from it themselves
        target = f"{FROM_HOST}/{ref.repository}" + (f"@{ref.digest}" if ref.digest else f":{ref.tag}")
        secret = spec.pop("imagePullSecret", None)
        spec["url"] = f"oci://{IN_CLUSTER}/{ref.repository}" + (f"@{ref.digest}" if ref.digest else f":{ref.tag}")
        step = Step(
            f"copy the module {ref} to {REGISTRY_NAME} (localhost:{REGISTRY_HOST_PORT}), where the pods pull it from",
            "meshlab", call="wasm_push", args={"source": url, "target": target, "pull_secret": secret},
            describe=f"pull {ref} (as {secret or 'anonymous'}; digests verified) and push the same manifest and blobs to "
            f"{target} (plain HTTP); the WasmPlugin's url becomes {spec['url']}",
            tags=("wasm-push",),
            note="the lab registry has no accounts, so imagePullSecret is dropped; Istio's agent reaches it over plain "
            "HTTP by itself (WASM_INSECURE_REGISTRIES is not needed: it only skips TLS verification)",
        )  # fmt: skip
        return {**doc, "spec": spec}, step
    if scheme == "file":
        path, data = read_file_url(url, where)
        sha = hashlib.sha256(data).hexdigest()
        if spec.get("sha256") and spec["sha256"] != sha:
            raise MeshlabError(f"{where}: module {path} has checksum {sha}, which does not match: {spec['sha256']}", "fix spec.sha256")
        img = oci.package(data, root_ids=[spec["pluginName"]] if spec.get("pluginName") else [])
        ref = f"{_image_name(doc)}:sha-{sha[:12]}"
        spec["url"] = f"oci://{IN_CLUSTER}/{ref}"
        if spec.get("sha256"):
            spec["sha256"] = img.digest.split(":", 1)[1]  # for oci:// Istio compares the manifest digest
        step = Step(
            f"push the module {path.name} to {REGISTRY_NAME} as {ref} (localhost:{REGISTRY_HOST_PORT})",
            "meshlab", call="wasm_push", args={"source": url, "target": f"{FROM_HOST}/{ref}", "root_ids": img.runtime_config["config"]["rootIds"]},
            describe=f"package {path} as an OCI image (wasm-image-spec media types, digest {img.digest}) and push it to "
            f"{FROM_HOST}/{ref} (plain HTTP); the WasmPlugin's url becomes {spec['url']}",
            tags=("wasm-push",),
        )  # fmt: skip
        return {**doc, "spec": spec}, step
    return doc, None


def push(source: str, target: str, pull_secret: str | None = None, root_ids: list[str] | None = None, **_: Any) -> str:
    """The executor action behind ``wasm_push``: copy (oci://) or package and push (file://); returns the digest."""
    dst_ref = oci.parse_ref(target)
    dst = oci.Registry(dst_ref.registry, plain_http=True)
    if source.startswith("file://"):
        img = oci.package(Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path)).read_bytes(), root_ids=root_ids or [])
        return dst.push(dst_ref.repository, dst_ref.reference, img)
    src_ref = oci.parse_ref(source)
    hub = Hub.running()
    user = password = None
    if pull_secret:
        if hub is None:
            raise MeshlabError(f"imagePullSecret {pull_secret!r}: no wasm hub is running to hold it", "start it: meshlab wasm hub up")
        user, password = hub.secret(pull_secret)
    ca = hub.ca_file if hub is not None and hub.address == src_ref.registry else None
    src = oci.Registry(src_ref.registry, user, password, ca_file=ca)
    return oci.copy(src, src_ref, dst, dst_ref.repository, dst_ref.reference)
