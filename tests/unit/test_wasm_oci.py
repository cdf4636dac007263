"""OCI images of Wasm modules (wasm-image-spec media types, the compat layout), references, digest
verification, the WasmPlugin and TrafficExtension shapes (translation: tests/parity). No
registry, no Envoy: a module assembled byte by byte (meshlab.wasm.handmade) stands in for a build."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any

import pytest

from meshlab.errors import ResourceError
from meshlab.resources import parse
from meshlab.controlplane import extensions as deploy
from meshlab.wasm import oci
from meshlab.wasm.handmade import crashing_filter
from meshlab.wasm.inspect import NotProxyWasmError

MODULE = crashing_filter()  # a valid proxy-wasm module (ABI 0.2.1)
MODULE_SHA = "sha256:" + hashlib.sha256(MODULE).hexdigest()


def blobs_of(img: oci.Image) -> dict[str, bytes]:
    return {b.digest: b.data for b in img.blobs}


# ---- packaging --------------------------------------------------------------------------------------
def test_oci_variant_uses_the_wasm_image_spec_media_types() -> None:
    img = oci.package(MODULE, root_ids=["crash"])
    m = img.manifest
    assert m["mediaType"] == oci.OCI_MANIFEST == "application/vnd.oci.image.manifest.v1+json"
    assert m["config"]["mediaType"] == "application/vnd.module.wasm.config.v1+json"
    config = json.loads(blobs_of(img)[m["config"]["digest"]])
    # the runtime config: ABI version read from the module's own proxy_abi_version_0_2_1 export
    assert config == {"type": "envoy_proxy", "abiVersions": ["v0.2.1"], "config": {"rootIds": ["crash"]}}
    # the two-layer layout `wasme push` made (and Istio's agent requires): runtime config + module
    assert [d["mediaType"] for d in m["layers"]] == [oci.CONFIG_MEDIA_TYPE, "application/vnd.module.wasm.content.layer.v1+wasm"]
    wasm_layer = m["layers"][1]
    assert wasm_layer["digest"] == MODULE_SHA and wasm_layer["size"] == len(MODULE)
    assert wasm_layer["annotations"] == {"org.opencontainers.image.title": "filter.wasm"}
    assert m["annotations"]["module.wasm.runtime/abi_version"] == "v0.2.1"
    assert img.digest == "sha256:" + hashlib.sha256(img.manifest_bytes).hexdigest()


def test_compat_variant_is_a_plain_image_with_plugin_wasm_in_its_last_layer() -> None:
    img = oci.package(MODULE, root_ids=["crash"], variant="compat")
    m = img.manifest
    assert m["config"]["mediaType"] == oci.OCI_IMAGE_CONFIG
    assert [d["mediaType"] for d in m["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    assert m["annotations"]["module.wasm.image/variant"] == "compat"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blobs_of(img)[m["layers"][0]["digest"]]))) as tar:
        assert sorted(tar.getnames()) == ["plugin.wasm", "runtime-config.json"]
        assert tar.extractfile("plugin.wasm").read() == MODULE  # type: ignore[union-attr]
    wasm, variant = oci.extract_module(m, lambda d: blobs_of(img)[d["digest"]])
    assert (wasm, variant) == (MODULE, "compat")


def test_packaging_is_reproducible_and_reads_root_ids_from_filter_json(tmp_path: Any) -> None:
    assert oci.package(MODULE, ["a"]).digest == oci.package(MODULE, ["a"]).digest
    assert oci.package(MODULE, ["a"], "compat").digest == oci.package(MODULE, ["a"], "compat").digest
    folder = tmp_path / "my-filter"
    (folder / "build").mkdir(parents=True)
    (folder / "build" / "filter.wasm").write_bytes(MODULE)
    (folder / "filter.json").write_text(json.dumps({"name": "my-filter", "root_id": "my_root"}))
    assert oci.package(folder).runtime_config["config"]["rootIds"] == ["my_root"]  # a folder means its build/filter.wasm


def test_a_file_that_is_not_proxy_wasm_is_not_packaged() -> None:
    with pytest.raises(NotProxyWasmError, match="not a proxy-wasm filter"):
        oci.package(b"\0asm\x01\0\0\0")
    with pytest.raises(oci.OciError, match="unknown image variant"):
        oci.package(MODULE, variant="docker")


# ---- what Istio's agent accepts ------------------------------------------------------------------------
def test_extract_applies_istios_layer_rules() -> None:
    img = oci.package(MODULE)
    one_layer = {**img.manifest, "layers": img.manifest["layers"][1:]}  # what `oras push` makes
    with pytest.raises(oci.OciError) as e:
        oci.extract_module(one_layer, lambda d: blobs_of(img)[d["digest"]], strict=True)
    assert "invalid format as an OCI image" in e.value.message and "number of layers must be 2 but got 1" in e.value.message
    assert oci.extract_module(one_layer, lambda d: blobs_of(img)[d["digest"]], strict=False) == (MODULE, "oci")
    assert oci.extract_module(img.manifest, lambda d: blobs_of(img)[d["digest"]], strict=True) == (MODULE, "oci")


# ---- digests ------------------------------------------------------------------------------------------
class FakeRegistry(oci.Registry):
    """Answers from a dict instead of the network (the HTTP layer is tested against a real registry)."""

    def __init__(self, files: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__("registry.test:5000", plain_http=True)
        self.files = files

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, what: str = "") -> tuple[int, dict[str, str], bytes]:
        return self.files.get(path, (404, {}, b'{"errors": [{"code": "NOT_FOUND", "message": "not here"}]}'))


def serve(img: oci.Image, tamper: bool = False) -> FakeRegistry:
    files = {f"/v2/wasm/x/manifests/v1": (200, {"content-type": oci.OCI_MANIFEST, "docker-content-digest": img.digest}, img.manifest_bytes)}
    for b in img.blobs:
        data = b.data + b"!" if tamper and b.media_type == oci.WASM_MEDIA_TYPE else b.data
        files[f"/v2/wasm/x/blobs/{b.digest}"] = (200, {}, data)
    return FakeRegistry(files)


def test_pull_verifies_every_blob_against_the_manifest() -> None:
    img = oci.package(MODULE, ["crash"])
    pulled = serve(img).pull("wasm/x:v1")
    assert pulled.wasm == MODULE and pulled.digest == img.digest and pulled.root_ids == ["crash"]
    with pytest.raises(oci.DigestMismatch) as e:
        serve(img, tamper=True).pull("wasm/x:v1")
    actual = "sha256:" + hashlib.sha256(MODULE + b"!").hexdigest()
    assert MODULE_SHA in e.value.message and actual in e.value.message  # names both: expected and what arrived


def test_a_manifest_that_is_not_the_one_asked_for_is_refused() -> None:
    img = oci.package(MODULE)
    reg = serve(img)
    other = "sha256:" + "0" * 64
    reg.files[f"/v2/wasm/x/manifests/{other}"] = reg.files["/v2/wasm/x/manifests/v1"]
    with pytest.raises(oci.DigestMismatch) as e:
        reg.pull(f"wasm/x@{other}")
    assert other in e.value.message and img.digest in e.value.message
    reg.files["/v2/wasm/x/manifests/v1"] = (200, {"docker-content-digest": other}, img.manifest_bytes)
    with pytest.raises(oci.DigestMismatch, match="the registry says"):
        reg.pull("wasm/x:v1")
    with pytest.raises(oci.OciError, match="no image registry.test:5000/wasm/x:v9"):
        reg.pull("wasm/x:v9")


def test_references() -> None:
    r = oci.parse_ref("oci://127.0.0.1:5000/wasm/add-header:v1")
    assert (r.registry, r.repository, r.tag, r.digest) == ("127.0.0.1:5000", "wasm/add-header", "v1", "")
    assert oci.parse_ref("wasm/add-header", "hub:1").reference == "latest"
    d = "sha256:" + "a" * 64
    assert oci.parse_ref(f"localhost:5001/x@{d}").reference == d
    for bad, msg in (("wasm/x:v1", "names no registry"), ("oci://h:1/Wasm:v1", "not valid"), ("http://h/x", "not an OCI reference"),
                     ("h:1/x@sha256:12", "not a sha256 digest")):
        with pytest.raises(oci.OciError, match=msg):
            oci.parse_ref(bad)


# ---- the WasmPlugin resource ------------------------------------------------------------------------
def plugin(name: str = "p", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": name, "namespace": "sample"},
            "spec": {"url": "file:///x.wasm", **spec}}  # fmt: skip


def test_wasmplugin_shape_accepts_what_the_local_backend_implements() -> None:
    [doc] = parse(plugin(
        selector={"matchLabels": {"app": "helloworld"}}, sha256="a" * 64, pluginConfig={"keys": ["k"], "nested": {"n": 1}},
        pluginName="api_key", phase="AUTHN", priority=10, failStrategy="FAIL_OPEN", imagePullSecret="alice",
        imagePullPolicy="Always", match=[{"mode": "SERVER", "ports": [{"number": 5000}]}],
    ))  # fmt: skip
    assert doc["spec"]["phase"] == "AUTHN"


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"targetRefs": [{"kind": "Service", "name": "helloworld"}]}, "spec.targetRefs"),
        ({"vmConfig": {"env": [{"name": "A", "value": "b"}]}}, "spec.vmConfig"),
        ({"verificationKey": "k"}, "spec.verificationKey"),
        ({"type": "NETWORK"}, "spec.type='NETWORK'"),
        ({"phase": "LATE"}, "spec.phase='LATE'"),
        ({"failStrategy": "FAIL_SOMETIMES"}, "spec.failStrategy"),
        ({"match": [{"mode": "BOTH"}]}, "spec.match[0].mode"),
        ({"pluginConfig": "not a struct"}, "spec.pluginConfig must be dict"),
    ],
)
def test_unsupported_wasmplugin_fields_are_refused_by_name(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ResourceError) as e:
        parse(plugin(**spec))
    assert field in e.value.message


def test_wasmplugin_needs_its_api_version_and_sane_values() -> None:
    with pytest.raises(ResourceError, match="not Istio extensions"):
        parse({**plugin(), "apiVersion": "networking.istio.io/v1"})
    for spec, msg in (({"sha256": "ABC"}, "64 lowercase hex"), ({"url": "ftp://x"}, "scheme 'ftp'"),
                      ({"match": [{"mode": "CLIENT", "ports": [{"number": 80}]}]}, "single outbound listener"),
                      ({"url": "oci://h:1/x@sha256:" + "b" * 64, "sha256": "c" * 64}, "does not match the @sha256")):  # fmt: skip
        with pytest.raises(ResourceError, match=msg):
            deploy.check(plugin(**spec))


# ---- TrafficExtension (translation and order: tests/parity/test_extensions.py) -----------------------
def extension(name: str = "t", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "TrafficExtension", "metadata": {"name": name, "namespace": "sample"}, "spec": spec}


def test_traffic_extension_shape_accepts_wasm_and_lua() -> None:
    [w] = parse(extension(selector={"matchLabels": {"app": "x"}}, phase="AUTHN", priority=3, match=[{"mode": "SERVER"}],
                          wasm={"url": "oci://h:1/x:v1", "sha256": "a" * 64, "pluginName": "x", "pluginConfig": {"k": [1]},
                                "failStrategy": "FAIL_OPEN", "imagePullPolicy": "Always", "imagePullSecret": "s", "type": "HTTP"}))  # fmt: skip
    [lua] = parse(extension(lua={"inlineCode": "function envoy_on_request(h) end"}))
    deploy.check(w)
    deploy.check(lua)


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"targetRefs": [{"kind": "Service", "name": "helloworld"}]}, "spec.targetRefs"),
        ({"wasm": {"url": "file:///x", "vmConfig": {"env": []}}}, "spec.wasm.vmConfig"),
        ({"wasm": {"url": "file:///x", "verificationKey": "k"}}, "spec.wasm.verificationKey"),
        ({"wasm": {"url": "file:///x", "type": "NETWORK"}}, "spec.wasm.type='NETWORK'"),
        ({"lua": {"inlineCode": "x", "sourceCode": "y"}}, "spec.lua.sourceCode"),
        ({"phase": "UNSPECIFIED_PHASE"}, "spec.phase='UNSPECIFIED_PHASE'"),  # WasmPlugin's name for it, not TrafficExtension's
        ({"url": "file:///x"}, "spec.url"),  # a WasmPlugin field, not a TrafficExtension one
    ],
)
def test_unsupported_traffic_extension_fields_are_refused_by_name(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ResourceError) as e:
        parse(extension(**spec))
    assert field in e.value.message


def test_traffic_extension_is_wasm_or_lua_not_both() -> None:
    for spec, msg in (({}, "exactly one of spec.wasm or spec.lua"), ({"lua": {"inlineCode": "x"}, "wasm": {"url": "file:///x"}}, "exactly one"),
                      ({"lua": {"inlineCode": ""}}, "1 to 65536"), ({"wasm": {"url": "ftp://x"}}, "spec.wasm.url 'ftp://x' has scheme")):  # fmt: skip
        with pytest.raises(ResourceError, match=msg):
            deploy.check(extension(**spec))
