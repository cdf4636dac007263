"""Download + sha256 verification of the kind backend's tools, against a local HTTP server on
127.0.0.1: a good file, a wrong checksum, an unreachable server; plus the release asset names."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab import versions
from meshlab.backends.kind import tools
from meshlab.errors import ToolError


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve ``tmp_path/www`` on 127.0.0.1 (a random free port); yields (base URL, directory)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *a) -> None:  # type: ignore[no-untyped-def]
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_good_file_with_published_checksum(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    data = b"#!/bin/sh\necho kind v0.33.0\n" * 100
    (www / "kind-linux-amd64").write_bytes(data)
    (www / "kind-linux-amd64.sha256sum").write_text(f"{sha(data)}  /build/bin/kind-linux-amd64\n")
    dest = tmp_path / "tools" / "kind-linux-amd64"
    got = tools.download(f"{base}/kind-linux-amd64", dest, sha256_url=f"{base}/kind-linux-amd64.sha256sum")
    assert got == dest and dest.read_bytes() == data
    # a second call finds the verified file and downloads nothing
    (www / "kind-linux-amd64").unlink()
    assert tools.download(f"{base}/kind-linux-amd64", dest, sha256_url=f"{base}/kind-linux-amd64.sha256sum") == dest


def test_good_file_with_pinned_checksum(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    data = b"apiVersion: v1\nkind: Namespace\n"
    (www / "metallb-native.yaml").write_bytes(data)
    dest = tmp_path / "m.yaml"
    tools.download(f"{base}/metallb-native.yaml", dest, sha256=sha(data))
    assert dest.read_bytes() == data


def test_wrong_checksum_leaves_nothing_behind(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    (www / "istio.tar.gz").write_bytes(b"tampered")
    (www / "istio.tar.gz.sha256").write_text(f"{sha(b'the real release')}  istio.tar.gz\n")
    dest = tmp_path / "d" / "istio.tar.gz"
    with pytest.raises(ToolError) as e:
        tools.download(f"{base}/istio.tar.gz", dest, sha256_url=f"{base}/istio.tar.gz.sha256")
    assert "checksum mismatch" in e.value.message and sha(b"tampered") in e.value.message
    assert e.value.hint and "nothing was installed" in e.value.hint
    assert not dest.exists() and list(dest.parent.iterdir()) == [], "no partial or bad file is left"


def test_existing_file_with_wrong_content_is_replaced(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    data = b"good"
    (www / "f").write_bytes(data)
    dest = tmp_path / "f"
    dest.write_bytes(b"stale or corrupted")
    tools.download(f"{base}/f", dest, sha256=sha(data))
    assert dest.read_bytes() == data


def test_missing_file_is_an_http_error(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(ToolError, match="HTTP 404"):
        tools.download(f"{base}/nope", tmp_path / "nope", sha256="0" * 64)


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ToolError) as e:
        tools.download(f"http://127.0.0.1:{port}/kind", tmp_path / "kind", sha256_url=f"http://127.0.0.1:{port}/kind.sha256sum")
    assert "cannot download" in e.value.message and "internet connection" in (e.value.hint or "")
    assert not (tmp_path / "kind").exists()


def test_checksum_file_formats() -> None:
    h = "a" * 64
    assert tools.parse_checksum(f"{h}  kind-linux-amd64\n", "kind-linux-amd64") == h
    assert tools.parse_checksum(f"{h} *bin/kind-linux-amd64", "kind-linux-amd64") == h
    assert tools.parse_checksum(f"{h}\n", "anything") == h
    assert tools.parse_checksum(f"{'b' * 64}  other\n{h}  istio-1.31.0-linux-amd64.tar.gz\n", "istio-1.31.0-linux-amd64.tar.gz") == h
    with pytest.raises(ToolError, match="exactly one sha256"):
        tools.parse_checksum("<html>not found</html>", "kind")


def test_ensure_installs_kind_and_extracts_istioctl(server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ensure() path with artifacts pointed at the local server."""
    base, www = server
    kind_bin = b"\x7fELF fake kind"
    (www / "kind-linux-amd64").write_bytes(kind_bin)
    (www / "kind-linux-amd64.sha256sum").write_text(f"{sha(kind_bin)}  kind-linux-amd64\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in ((f"istio-{versions.ISTIO_VERSION}/bin/istioctl", b"fake istioctl"),
                              (f"istio-{versions.ISTIO_VERSION}/samples/README", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    asset = f"istio-{versions.ISTIO_VERSION}-linux-amd64.tar.gz"
    (www / asset).write_bytes(buf.getvalue())
    (www / f"{asset}.sha256").write_text(f"{sha(buf.getvalue())}  {asset}\n")

    root = tmp_path / "tools"
    k = tools.kind_artifact(plat=("linux", "amd64"), root=root)
    i = tools.istioctl_artifact(plat=("linux", "amd64"), root=root)
    k = tools.Artifact(k.name, k.version, f"{base}/kind-linux-amd64", k.dest, k.program, sha256_url=f"{base}/kind-linux-amd64.sha256sum")
    i = tools.Artifact(i.name, i.version, f"{base}/{asset}", i.dest, i.program, sha256_url=f"{base}/{asset}.sha256", member=i.member)

    assert not tools.installed(k)
    kp, ip = tools.ensure(k), tools.ensure(i)
    assert kp == root / f"kind-{versions.KIND_VERSION}" / "kind" and kp.read_bytes() == kind_bin and kp.stat().st_mode & 0o111
    assert ip == root / f"istio-{versions.ISTIO_VERSION}" / "bin" / "istioctl" and ip.read_bytes() == b"fake istioctl"
    assert not i.dest.exists(), "the verified tarball is not kept"
    assert tools.installed(k) and tools.installed(i)
    (www / "kind-linux-amd64").unlink()  # installed: no network needed any more
    assert tools.ensure(k) == kp
    kp.write_bytes(b"modified after install")
    assert not tools.installed(k), "a binary changed after verification is not trusted"


def test_release_urls_follow_the_pins() -> None:
    k = tools.kind_artifact(plat=("darwin", "arm64"))
    assert k.url == f"https://github.com/kubernetes-sigs/kind/releases/download/{versions.KIND_VERSION}/kind-darwin-arm64"
    assert k.sha256_url == k.url + ".sha256sum"
    v = versions.ISTIO_VERSION
    assert tools.istioctl_artifact(plat=("linux", "arm64")).url.endswith(f"/{v}/istio-{v}-linux-arm64.tar.gz")
    assert tools.istioctl_artifact(plat=("darwin", "amd64")).url.endswith(f"/{v}/istio-{v}-osx.tar.gz")
    assert tools.istioctl_artifact(plat=("darwin", "arm64")).sha256_url.endswith(f"istio-{v}-osx-arm64.tar.gz.sha256")
    m = tools.metallb_artifact()
    assert m.url == f"https://raw.githubusercontent.com/metallb/metallb/{versions.METALLB_VERSION}/config/manifests/metallb-native.yaml"
    assert m.sha256 == tools.METALLB_MANIFEST_SHA256


def test_tools_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MESHLAB_TOOLS", str(tmp_path / "t"))
    assert tools.tools_dir() == tmp_path / "t"
    monkeypatch.delenv("MESHLAB_TOOLS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert tools.tools_dir() == tmp_path / "xdg" / "meshlab" / "tools"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tools.tools_dir() == tmp_path / "home" / ".local" / "share" / "meshlab" / "tools"


def test_tool_checks_for_doctor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MESHLAB_TOOLS", str(tmp_path))
    checks = tools.tool_checks()
    assert [c.name for c in checks] == [f"kind {versions.KIND_VERSION}", f"istioctl {versions.ISTIO_VERSION}"]
    assert all(c.backend == "kind" and "not downloaded yet" in c.detail for c in checks)
