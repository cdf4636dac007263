"""WebAssembly modules as OCI images, and a small client for the OCI distribution API (any registry).

Two layouts, both from solo-io's wasm-image-spec (``spec/spec.md`` and ``spec/spec-compat.md``):

* **oci** -- the spec's own media types. The manifest's config is the module's *runtime config*
  ``application/vnd.module.wasm.config.v1+json`` (``{"type": "envoy_proxy", "abiVersions": [...],
  "config": {"rootIds": [...]}}``); the layers are that same config blob and the module itself,
  ``application/vnd.module.wasm.content.layer.v1+wasm``: the two-layer layout ``wasme push`` made,
  and the only artifact layout Istio's agent accepts (exactly 2 layers).
* **compat** -- an ordinary image, as ``FROM scratch`` + ``COPY plugin.wasm`` would build it: an OCI
  image config and one ``tar+gzip`` layer holding ``plugin.wasm`` (and ``runtime-config.json``);
  annotation ``module.wasm.image/variant: compat``. Any registry and any image tool handle it, and
  Istio pulls it too.

Both are built deterministically (no timestamps): the same module gives the same digests.

    img = package("wasm-filters/add-header/build/filter.wasm")     # root id from filter.json
    reg = Registry("127.0.0.1:5000", "alice", "secret", ca_file=hub_ca)
    digest = reg.push("wasm/add-header", "v1", img)                  # sha256:... (the manifest digest)
    pulled = reg.pull("wasm/add-header:v1")                          # every blob's sha256 checked
    pulled.wasm == img.wasm

Pulling verifies every digest: the manifest against the digest asked for (or the registry's
``Docker-Content-Digest``), and each blob against its descriptor in the manifest; a mismatch raises
:class:`DigestMismatch` naming both values.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import re
import socket
import ssl
import tarfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MeshlabError

# wasm-image-spec (solo-io/wasm spec/spec.md)
CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
WASM_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
# OCI image spec and Docker's manifest v2 (the "compat" variant)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
VARIANTS = ("oci", "compat")
TITLE = "org.opencontainers.image.title"
COMPAT_FILE = "plugin.wasm"  # what Istio's agent looks for in a compat image's last layer


class OciError(MeshlabError):
    """A registry or image problem (unreachable, refused, not found, wrong layout)."""


class DigestMismatch(OciError):
    """Downloaded bytes whose sha256 is not the digest the manifest (or the caller) names."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces): the same object always has the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ---- images -------------------------------------------------------------------------------------
@dataclass
class Blob:
    media_type: str
    data: bytes
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


@dataclass
class Image:
    """A packaged module: the manifest bytes (whose sha256 is the image digest) and its blobs."""

    variant: str
    manifest_bytes: bytes
    config: Blob
    layers: list[Blob]
    wasm: bytes
    runtime_config: dict[str, Any]

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(json.loads(self.manifest_bytes))

    @property
    def media_type(self) -> str:
        return str(self.manifest["mediaType"])

    @property
    def digest(self) -> str:
        """The manifest digest: what ``@sha256:...`` references and Istio's WasmPlugin ``sha256`` mean."""
        return sha256_digest(self.manifest_bytes)

    @property
    def blobs(self) -> list[Blob]:
        seen: dict[str, Blob] = {}
        for b in [self.config, *self.layers]:
            seen.setdefault(b.digest, b)
        return list(seen.values())


def root_ids_for(path: Path) -> list[str]:
    """The root id of a module built in a filter folder (``<folder>/build/filter.wasm`` + ``filter.json``)."""
    meta = path.resolve().parent.parent / "filter.json"
    if path.resolve().parent.name == "build" and meta.exists():
        try:
            rid = json.loads(meta.read_text()).get("root_id")
        except (json.JSONDecodeError, AttributeError):
            return []
        return [str(rid)] if rid else []
    return []


def runtime_config(wasm: bytes, root_ids: list[str], where: str = "module") -> dict[str, Any]:
    """The spec's runtime config for Envoy: ABI version read from the module's own exports."""
    from .inspect import inspect_bytes

    report = inspect_bytes(wasm, where)  # raises for a file that is not a proxy-wasm module
    if report.errors:
        raise OciError(
            f"{where} would not load in Envoy: " + "; ".join(report.errors),
            f"`meshlab wasm inspect {where}` shows its imports and exports; fix and rebuild it before publishing",
        )
    return {"type": "envoy_proxy", "abiVersions": [f"v{report.abi_version}"], "config": {"rootIds": list(root_ids)}}


def _tar_gz(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """A reproducible layer: (tar, tar.gz) with fixed owner, mode and times."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=9, mtime=0)


def package(wasm: str | Path | bytes, root_ids: list[str] | None = None, variant: str = "oci") -> Image:
    """Package a module as an OCI image (``variant`` "oci" or "compat", see the module docstring).

    ``root_ids`` default to the filter folder's ``root_id`` (from ``filter.json``) when ``wasm`` is a
    ``build/filter.wasm``. The module must be a loadable proxy-wasm module (checked with inspect).
    """
    if variant not in VARIANTS:
        raise OciError(f"unknown image variant {variant!r}", f"use one of: {', '.join(VARIANTS)}")
    if isinstance(wasm, bytes):
        data, where, rids = wasm, "module", list(root_ids or [])
    else:
        p = Path(wasm)
        if p.is_dir() and (p / "build" / "filter.wasm").exists():
            p = p / "build" / "filter.wasm"
        try:
            data = p.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise OciError(f"no module file at {p}", "build the filter first: meshlab wasm build DIR") from None
        where, rids = str(p), list(root_ids) if root_ids is not None else root_ids_for(p)
    rc = runtime_config(data, rids, where)
    rc_bytes = _json(rc)
    annotations = {"module.wasm.runtime/type": rc["type"], "module.wasm.runtime/abi_version": ",".join(rc["abiVersions"])}
    if variant == "oci":
        config = Blob(CONFIG_MEDIA_TYPE, rc_bytes)
        layers = [Blob(CONFIG_MEDIA_TYPE, rc_bytes, {TITLE: "runtime-config.json"}), Blob(WASM_MEDIA_TYPE, data, {TITLE: "filter.wasm"})]
    else:
        raw, gz = _tar_gz({COMPAT_FILE: data, "runtime-config.json": rc_bytes})
        image_config = {
            "architecture": "wasm", "os": "wasip1", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(raw)]},
        }  # fmt: skip
        config = Blob(OCI_IMAGE_CONFIG, _json(image_config))
        layers = [Blob(OCI_LAYER_TAR_GZIP, gz)]
        annotations["module.wasm.image/variant"] = "compat"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers],
        "annotations": annotations,
    }
    return Image(variant, _json(manifest), config, layers, data, rc)


# ---- what is in an image: the module, as Istio's agent finds it --------------------------------
def _plugin_from_tar_gz(data: bytes) -> bytes | None:
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
            for m in tar.getmembers():
                if m.isfile() and Path(m.name).name == COMPAT_FILE:
                    f = tar.extractfile(m)
                    return f.read() if f else None
    except (OSError, tarfile.TarError, EOFError):
        return None
    return None


def extract_module(manifest: dict[str, Any], blob: Callable[[dict[str, Any]], bytes], strict: bool = True) -> tuple[bytes, str]:
    """The module inside an image, tried in the order Istio's agent tries (reference §5.4).

    ``blob(descriptor)`` downloads (and verifies) one blob. Returns ``(wasm bytes, variant)``.
    ``strict`` applies Istio's rules exactly (a wasm artifact must have 2 layers); without it a
    one-layer artifact (what ``oras push`` makes) is accepted too.
    """
    layers = manifest.get("layers") or []
    media = manifest.get("mediaType", "")
    why: list[str] = []
    if layers:
        last = layers[-1]
        for kind, mt, lmt in (("docker", DOCKER_MANIFEST, DOCKER_LAYER_TAR_GZIP), ("compat", OCI_MANIFEST, OCI_LAYER_TAR_GZIP)):
            if media == mt or (kind == "compat" and not media):
                if last.get("mediaType") != lmt:
                    why.append(f"{kind}: the last layer is {last.get('mediaType')}, not {lmt}")
                    continue
                data = _plugin_from_tar_gz(blob(last))
                if data is None:
                    why.append(f"{kind}: the last layer holds no {COMPAT_FILE}")
                    continue
                return data, "compat"
    wasm_layers = [d for d in layers if d.get("mediaType") == WASM_MEDIA_TYPE]
    if strict and len(layers) != 2:
        why.append(f"oci: number of layers must be 2 but got {len(layers)}")
    elif len(wasm_layers) != 1:
        why.append(f"oci: needs one layer of media type {WASM_MEDIA_TYPE}, found {len(wasm_layers)}")
    else:
        return blob(wasm_layers[0]), "oci"
    raise OciError(
        "the given image is in invalid format as an OCI image: " + "; ".join(why),
        "publish the module with `meshlab wasm push` (variant oci: runtime config + module, or compat: plugin.wasm in a tar layer)",
    )


# ---- references ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    registry: str
    repository: str
    tag: str = "latest"
    digest: str = ""

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}" + (f"@{self.digest}" if self.digest else f":{self.tag}")


_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_ref(ref: str, default_registry: str | None = None) -> Ref:
    """``[oci://][host[:port]/]repo[:tag][@sha256:...]``; a ref without a host uses ``default_registry``."""
    text = ref[len("oci://") :] if ref.startswith("oci://") else ref
    if "://" in text:
        raise OciError(f"{ref!r} is not an OCI reference", "write it like oci://127.0.0.1:5000/wasm/add-header:v1")
    digest = ""
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise OciError(f"{ref!r}: {digest!r} is not a sha256 digest", "a digest is sha256: followed by 64 lowercase hex digits")
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    elif default_registry:
        registry, path = default_registry, text
    else:
        raise OciError(f"{ref!r} names no registry", "write host:port/repository:tag, e.g. 127.0.0.1:5000/wasm/add-header:v1")
    tag = "latest"
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    if not _REPO.match(path):
        raise OciError(f"{ref!r}: repository name {path!r} is not valid", "use lowercase letters, digits, '.', '_', '-' and '/'")
    if not _TAG.match(tag):
        raise OciError(f"{ref!r}: tag {tag!r} is not valid", "a tag is up to 128 letters, digits, '_', '.', '-'")
    return Ref(registry, path, tag, digest)


# ---- the distribution API -----------------------------------------------------------------------
@dataclass
class Pulled:
    """An image as pulled, every digest verified."""

    ref: Ref
    digest: str  # the manifest digest
    manifest_bytes: bytes
    media_type: str
    variant: str
    wasm: bytes
    runtime_config: dict[str, Any] | None

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(json.loads(self.manifest_bytes))

    @property
    def wasm_sha256(self) -> str:
        """The module's digest, ``sha256:<hex>`` (the content layer's digest in the manifest)."""
        return sha256_digest(self.wasm)

    @property
    def root_ids(self) -> list[str]:
        return list(((self.runtime_config or {}).get("config") or {}).get("rootIds") or [])

    def save(self, path: str | Path) -> Path:
        from ..state import write_atomic

        p = Path(path)
        write_atomic(p, self.wasm)
        return p


_ACCEPT = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX])


class Registry:
    """A registry at ``address`` (``host:port``), spoken to over HTTPS (trusting ``ca_file`` if given).

    ``plain_http=None`` tries HTTPS and falls back to plain HTTP when the server answers the TLS
    handshake in plain HTTP -- the fallback Istio's agent has; True/False forces one. Credentials,
    when given, go with every request (HTTP Basic, or exchanged for a Bearer token when the
    registry asks for one).
    """

    def __init__(
        self,
        address: str,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | Path | None = None,
        plain_http: bool | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.address = address
        self.username, self.password = username, password
        self.ca_file = str(ca_file) if ca_file else None
        self.plain_http = plain_http
        self.timeout = timeout
        self._token: str | None = None
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
        self.host, self.port = (host or address), (int(port) if port.isdigit() else None)

    def __repr__(self) -> str:
        return f"<Registry {self.address} user={self.username or 'anonymous'}>"

    # ---- HTTP -------------------------------------------------------------------------------------
    def _connection(self, plain: bool) -> http.client.HTTPConnection:
        if plain:
            return http.client.HTTPConnection(self.host, self.port or 80, timeout=self.timeout)
        ctx = ssl.create_default_context(cafile=self.ca_file)
        return http.client.HTTPSConnection(self.host, self.port or 443, timeout=self.timeout, context=ctx)

    def _auth_header(self) -> dict[str, str]:
        if self._token:
            return {"Authorization": f"Bearer {self._token}"}
        if self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """One request to a path (``/v2/...``) or an absolute URL on this registry."""
        u = urllib.parse.urlsplit(url)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        plain = self.plain_http if self.plain_http is not None else False
        if u.scheme:
            plain = u.scheme == "http"
        try:
            conn = self._connection(plain)
            try:
                conn.request(method, path, body=body, headers={**self._auth_header(), **headers})
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            finally:
                conn.close()
        except ssl.SSLCertVerificationError as e:
            raise OciError(
                f"the TLS certificate of registry {self.address} is not trusted: {e.verify_message}",
                "pass the registry's CA certificate (ca_file=...); for meshlab's hub that is hub.ca_file "
                "(`meshlab wasm hub status` shows its path)",
            ) from None
        except ssl.SSLError as e:
            if not plain and self.plain_http is None and any(r in str(e) for r in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG")):
                self.plain_http = True  # the server answered in plain HTTP: fall back, as Istio's agent does
                return self._send(method, url if not u.scheme else url.replace("https://", "http://", 1), body, headers)
            raise OciError(f"TLS with registry {self.address} failed: {e}", "is it a registry? check the address and port") from None
        except ConnectionRefusedError:
            raise OciError(
                f"cannot reach registry {self.address}: connection refused",
                "is it running? start meshlab's hub with `meshlab wasm hub up` (or hub.up()), and check the port",
            ) from None
        except (OSError, http.client.HTTPException) as e:
            raise OciError(f"cannot talk to registry {self.address}: {e}", "check the address and that the registry is running") from None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, what: str = "") -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        for _ in range(5):  # authentication round and redirects
            status, h, data = self._send(method, path, body, headers)
            if status == 401 and self._token is None and "bearer" in h.get("www-authenticate", "").lower():
                self._bearer(h["www-authenticate"])
                continue
            if status in (301, 302, 303, 307, 308) and "location" in h and method in ("GET", "HEAD"):
                path = urllib.parse.urljoin(path if "://" in path else f"{'http' if self.plain_http else 'https'}://{self.address}{path}", h["location"])
                continue
            if status == 401:
                self._refused(method, path, what)
            return status, h, data
        raise OciError(f"registry {self.address}: too many redirects for {method} {path}", "check the registry's configuration")

    def _refused(self, method: str, path: str, what: str) -> None:
        doing = what or f"{method} {path}"
        if self.username is None:
            raise OciError(
                f"registry {self.address} refused an anonymous request ({doing}): HTTP 401, authentication required",
                "log in: pass a user (`meshlab wasm ... --user NAME`, `meshlab wasm login NAME`, or hub.registry(user=...)); "
                "in a WasmPlugin, name the credentials in imagePullSecret",
            )
        raise OciError(
            f"registry {self.address} refused the credentials of user {self.username!r} ({doing}): HTTP 401, wrong user name or password",
            "check the password; `meshlab wasm hub users add NAME` (re)sets one",
        )

    def _bearer(self, challenge: str) -> None:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise OciError(f"registry {self.address} asked for a token without a realm: {challenge}", "check the registry's auth configuration")
        u = urllib.parse.urlsplit(realm)
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
        token_host = Registry(u.netloc, self.username, self.password, self.ca_file, plain_http=u.scheme == "http", timeout=self.timeout)
        status, _, data = token_host._send("GET", f"{u.path}?{query}", None, {})
        if status != 200:
            self._refused("GET", realm, "token")
        body = json.loads(data or b"{}")
        self._token = body.get("token") or body.get("access_token")

    @staticmethod
    def _error_text(data: bytes) -> str:
        try:
            errs = json.loads(data).get("errors") or []
            return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs) or data.decode(errors="replace")[:200]
        except (ValueError, AttributeError):
            return data.decode(errors="replace")[:200]

    # ---- read -------------------------------------------------------------------------------------
    def ping(self) -> None:
        """``GET /v2/``: the registry is there and accepts these credentials (raises otherwise)."""
        status, _, data = self.request("GET", "/v2/", what="log in")
        if status != 200:
            raise OciError(f"registry {self.address} answered {status} to GET /v2/: {self._error_text(data)}", "is this an OCI registry?")

    def manifest(self, ref: Ref) -> tuple[bytes, str, str]:
        """(manifest bytes, media type, digest) of ``ref``; the digest is checked against the bytes."""
        status, h, data = self.request("GET", f"/v2/{ref.repository}/manifests/{ref.reference}", headers={"Accept": _ACCEPT}, what=f"pull {ref}")
        if status == 404:
            raise OciError(
                f"no image {ref} in registry {self.address}: {self._error_text(data)}",
                "check the repository and tag; `meshlab wasm list` shows what the hub has",
            )
        if status != 200:
            raise OciError(f"registry {self.address} answered {status} for the manifest of {ref}: {self._error_text(data)}", "check the reference")
        actual = sha256_digest(data)
        claimed = ref.digest or h.get("docker-content-digest", "")
        if claimed and claimed != actual:
            raise DigestMismatch(
                f"the manifest of {ref} has digest {actual}, but {'the reference asks for' if ref.digest else 'the registry says'} {claimed}",
                "the image was changed or corrupted: do not use it; push it again from a known module",
            )
        media = h.get("content-type", "").split(";")[0] or json.loads(data).get("mediaType", "")
        return data, media, actual

    def blob(self, repository: str, descriptor: dict[str, Any], what: str = "") -> bytes:
        """A blob's bytes, verified: their sha256 must equal the descriptor's digest (and the size match)."""
        digest = str(descriptor["digest"])
        status, _, data = self.request("GET", f"/v2/{repository}/blobs/{digest}", what=what or f"pull blob {digest[:19]}")
        if status != 200:
            raise OciError(f"registry {self.address} answered {status} for blob {digest} of {repository}: {self._error_text(data)}", "push the image again")
        actual = sha256_digest(data)
        if actual != digest:
            raise DigestMismatch(
                f"a layer of {self.address}/{repository} is corrupt or was tampered with: its bytes hash to {actual}, "
                f"but the manifest says {digest}",
                "do not use this module; push it again from a known build and pull again",
            )
        if "size" in descriptor and int(descriptor["size"]) != len(data):
            raise DigestMismatch(f"blob {digest} of {repository} has {len(data)} bytes, the manifest says {descriptor['size']}", "push it again")
        return data

    def pull(self, ref: str | Ref, strict: bool = False) -> Pulled:
        """Manifest + module (+ runtime config), every digest verified. ``strict``: Istio's layout rules."""
        r = ref if isinstance(ref, Ref) else parse_ref(ref, self.address)
        data, media, digest = self.manifest(r)
        manifest = json.loads(data)
        if media == OCI_INDEX or manifest.get("mediaType") == OCI_INDEX:
            raise OciError(f"{r} is an image index (several platforms), not a module image", "push the module itself with `meshlab wasm push`")
        wasm, variant = extract_module(manifest, lambda d: self.blob(r.repository, d, f"pull {r}"), strict=strict)
        rc: dict[str, Any] | None = None
        cfg = manifest.get("config") or {}
        if cfg.get("mediaType") == CONFIG_MEDIA_TYPE:
            rc = json.loads(self.blob(r.repository, cfg, f"pull {r}"))
        elif variant == "compat":
            rc = _compat_runtime_config(self.blob(r.repository, manifest["layers"][-1], f"pull {r}"))
        return Pulled(r, digest, data, media or manifest.get("mediaType", ""), variant, wasm, rc)

    def tags(self, repository: str) -> list[str]:
        status, _, data = self.request("GET", f"/v2/{repository}/tags/list", what=f"list tags of {repository}")
        if status == 404:
            return []
        if status != 200:
            raise OciError(f"registry {self.address} answered {status} listing tags of {repository}: {self._error_text(data)}", "check the name")
        return sorted(json.loads(data).get("tags") or [])

    def catalog(self) -> list[str]:
        status, _, data = self.request("GET", "/v2/_catalog?n=1000", what="list repositories")
        if status != 200:
            raise OciError(f"registry {self.address} answered {status} to the catalog: {self._error_text(data)}", "this registry may not offer /v2/_catalog")
        return sorted(json.loads(data).get("repositories") or [])

    # ---- write ------------------------------------------------------------------------------------
    def _push_blob(self, repository: str, blob: Blob) -> None:
        status, _, _ = self.request("HEAD", f"/v2/{repository}/blobs/{blob.digest}", what=f"push to {repository}")
        if status == 200:
            return  # already there: registries deduplicate by digest
        status, h, data = self.request("POST", f"/v2/{repository}/blobs/uploads/", b"", {"Content-Length": "0"}, what=f"push to {repository}")
        if status != 202 or "location" not in h:
            raise OciError(f"registry {self.address} refused an upload to {repository} (HTTP {status}): {self._error_text(data)}", "check the repository name")
        loc = h["location"]
        sep = "&" if "?" in loc else "?"
        url = f"{loc}{sep}digest={urllib.parse.quote(blob.digest)}"
        status, _, data = self.request("PUT", url, blob.data, {"Content-Type": "application/octet-stream", "Content-Length": str(len(blob.data))}, what=f"push to {repository}")
        if status != 201:
            raise OciError(f"registry {self.address} did not store blob {blob.digest} (HTTP {status}): {self._error_text(data)}", "check the registry's log")

    def put_manifest(self, repository: str, tag: str, manifest_bytes: bytes, media_type: str) -> str:
        status, h, data = self.request(
            "PUT", f"/v2/{repository}/manifests/{tag}", manifest_bytes, {"Content-Type": media_type}, what=f"push {repository}:{tag}"
        )
        if status != 201:
            raise OciError(f"registry {self.address} refused manifest {repository}:{tag} (HTTP {status}): {self._error_text(data)}", "check the registry's log")
        digest = sha256_digest(manifest_bytes)
        if h.get("docker-content-digest", digest) != digest:
            raise DigestMismatch(f"registry stored {repository}:{tag} as {h['docker-content-digest']}, the manifest's digest is {digest}", "push again")
        return digest

    def push(self, repository: str, tag: str, image: Image) -> str:
        """Blobs first (skipping those the registry has), then the manifest under ``tag``; returns its digest."""
        r = parse_ref(f"{repository}:{tag}", self.address)
        for b in image.blobs:
            self._push_blob(r.repository, b)
        return self.put_manifest(r.repository, r.tag, image.manifest_bytes, image.media_type)

    def tag(self, source: str | Ref, new_tag: str) -> str:
        """Give the image ``source`` another tag (the same manifest bytes: the same digest)."""
        r = source if isinstance(source, Ref) else parse_ref(source, self.address)
        if not _TAG.match(new_tag):
            raise OciError(f"tag {new_tag!r} is not valid", "a tag is up to 128 letters, digits, '_', '.', '-'")
        data, media, _ = self.manifest(r)
        return self.put_manifest(r.repository, new_tag, data, media or json.loads(data).get("mediaType", OCI_MANIFEST))


def copy(src: Registry, ref: Ref, dst: Registry, repository: str, reference: str | None = None) -> str:
    """Copy an image as it is (same manifest bytes, so the same digest) to another registry."""
    data, media, digest = src.manifest(ref)
    manifest = json.loads(data)
    for d in [manifest.get("config"), *(manifest.get("layers") or [])]:
        if d:
            dst._push_blob(repository, Blob(str(d["mediaType"]), src.blob(ref.repository, d, f"pull {ref}")))
    return dst.put_manifest(repository, reference or ref.reference, data, media or manifest.get("mediaType", OCI_MANIFEST))


def _compat_runtime_config(layer: bytes) -> dict[str, Any] | None:
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer)), mode="r:") as tar:
            for m in tar.getmembers():
                if Path(m.name).name == "runtime-config.json":
                    f = tar.extractfile(m)
                    return dict(json.loads(f.read())) if f else None
    except (OSError, tarfile.TarError, EOFError, ValueError):
        return None
    return None


def port_open(address: str, timeout: float = 0.5) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False
