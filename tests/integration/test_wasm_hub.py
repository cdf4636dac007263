"""The module hub against the real CNCF distribution registry (docker-registry 2.8): user accounts
(htpasswd), TLS with the hub's own CA, push/pull/tag/list over the OCI distribution API, digests
verified on pull (also against a blob tampered with on the registry's disk), and the hub as a
recorded process that `meshlab down` removes."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab.runtime import procs
from meshlab.errors import MeshlabError
from meshlab.wasm import oci
from meshlab.wasm.build import build_once, filters
from meshlab.wasm.hub import Hub

pytestmark = pytest.mark.integration
FILTERS = {f.name: f for f in filters()}


@pytest.fixture(scope="module")
def api_key() -> Path:
    return build_once(FILTERS["api-key"].dir).wasm


@pytest.fixture(scope="module")
def hub(module_home: Path) -> Iterator[Hub]:
    home = module_home
    h = Hub.up(home / "hub")
    h.add_user("alice", "alice-pw")
    h.add_user("bob")
    records = list(h.state.data["processes"])
    yield h
    h.down()
    assert not any(procs.is_alive(r) for r in records), "hub.down() left the registry running"


def test_push_as_a_user_and_pull_with_every_digest_verified(hub: Hub, api_key: Path, tmp_path: Path) -> None:
    pushed = hub.push(api_key, "wasm/api-key:v1", user="alice")
    assert pushed.root_ids == ["api_key"] and pushed.variant == "oci"
    pulled = hub.pull("wasm/api-key:v1", user="bob", out=tmp_path / "m.wasm")  # any logged-in user may pull
    assert pulled.digest == pushed.digest
    assert (tmp_path / "m.wasm").read_bytes() == api_key.read_bytes()
    assert pulled.runtime_config == {"type": "envoy_proxy", "abiVersions": ["v0.2.1"], "config": {"rootIds": ["api_key"]}}
    wasm_layer = [d for d in pulled.manifest["layers"] if d["mediaType"] == oci.WASM_MEDIA_TYPE][0]
    assert wasm_layer["digest"] == "sha256:" + hashlib.sha256(api_key.read_bytes()).hexdigest()


def test_anonymous_and_wrong_password_are_refused(hub: Hub, api_key: Path) -> None:
    hub.push(api_key, "wasm/api-key:v1", user="alice")
    with pytest.raises(oci.OciError) as e:
        hub.pull("wasm/api-key:v1", anonymous=True)
    assert "refused an anonymous request" in e.value.message and "401" in e.value.message
    with pytest.raises(oci.OciError) as e:
        hub.push(api_key, "wasm/api-key:anon", anonymous=True)
    assert "anonymous" in e.value.message
    with pytest.raises(oci.OciError) as e:
        hub.pull("wasm/api-key:v1", user="alice", password="not-alices-password")
    assert "refused the credentials of user 'alice'" in e.value.message and "wrong user name or password" in e.value.message
    with pytest.raises(oci.OciError, match="refused the credentials of user 'mallory'"):
        hub.registry("mallory", "x").ping()


def test_tls_is_verified_against_the_hubs_ca(hub: Hub) -> None:
    with pytest.raises(oci.OciError, match="is not trusted"):
        oci.Registry(hub.address, "alice", "alice-pw", plain_http=False).ping()  # the system CAs do not know the hub
    oci.Registry(hub.address, "alice", "alice-pw", ca_file=hub.ca_file).ping()


def test_a_blob_tampered_with_in_the_registry_is_refused_on_pull(hub: Hub, tmp_path: Path) -> None:
    from meshlab.wasm.handmade import write_crashing_filter

    module = write_crashing_filter(tmp_path / "crash.wasm")  # a module of its own: its blob is not shared
    pushed = hub.push(module, "wasm/tampered:v1", user="alice")
    digest = pushed.wasm_sha256.split(":", 1)[1]
    [data] = list((hub.dir / "data").rglob(f"blobs/sha256/{digest[:2]}/{digest}/data"))
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))  # one byte changed on the registry's disk
    bad = "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    with pytest.raises(oci.DigestMismatch) as e:
        hub.pull("wasm/tampered:v1", user="alice")
    assert pushed.wasm_sha256 in e.value.message and bad in e.value.message


def test_tag_and_list(hub: Hub, api_key: Path) -> None:
    v1 = hub.push(api_key, "wasm/listed:v1", user="alice")
    assert hub.tag("wasm/listed:v1", "stable", user="alice") == v1.digest  # same manifest, same digest
    compat = hub.push(api_key, "wasm/listed:v1-compat", user="alice", variant="compat")
    assert compat.digest != v1.digest
    assert hub.pull("wasm/listed:v1-compat", user="alice").wasm == api_key.read_bytes()
    rows = {(r["TAG"], r["LAYOUT"], r["ROOT IDS"]) for r in hub.list(user="alice", repository="wasm/listed")}
    assert rows == {("v1", "oci", "api_key"), ("stable", "oci", "api_key"), ("v1-compat", "compat", "api_key")}
    assert "wasm/listed" in hub.registry("alice").catalog()
    with pytest.raises(oci.OciError, match="no image"):
        hub.pull("wasm/listed:v9", user="alice")


def test_login_sets_the_default_user_and_state_is_private(hub: Hub) -> None:
    with pytest.raises(oci.OciError, match="refused the credentials"):
        hub.login("alice", "wrong")
    hub.login("alice")
    assert hub.registry().username == "alice"
    hub.logout()
    assert hub.registry().username is None
    mode = stat.S_IMODE(os.stat(hub.dir / "state.json").st_mode)
    assert mode == 0o600, f"the hub's state holds passwords: mode {oct(mode)}"
    assert stat.S_IMODE(os.stat(hub.dir / "htpasswd").st_mode) == 0o600
    assert "alice:$2" in (hub.dir / "htpasswd").read_text()  # bcrypt, the only hash format the registry takes


def test_up_is_idempotent_and_a_busy_port_is_refused(hub: Hub, tmp_path: Path) -> None:
    assert Hub.up(hub.dir).address == hub.address
    with pytest.raises(MeshlabError, match="already runs on"):
        Hub.up(hub.dir, port=hub.port + 1 if hub.port < 65535 else hub.port - 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(MeshlabError) as e:
            Hub.up(tmp_path / "other", port=port)
        assert f"127.0.0.1:{port} is already in use" in e.value.message


def test_meshlab_down_stops_a_hub_left_by_a_crashed_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_key: Path) -> None:
    from meshlab.cli import main

    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path))
    h = Hub.up(keep=True)  # the default place: $MESHLAB_HOME/hub
    records = list(h.state.data["processes"])
    assert records and all(procs.is_alive(r) for r in records)
    assert main(["wasm", "hub", "users", "add", "carol", "--password", "c"]) == 0
    assert main(["wasm", "push", str(api_key), "wasm/cli:v1", "--user", "carol"]) == 0
    assert main(["wasm", "pull", "wasm/cli:v1", "-o", str(tmp_path / "cli.wasm")]) == 1  # no login: refused
    assert main(["wasm", "login", "carol"]) == 0
    assert main(["wasm", "pull", "wasm/cli:v1", "-o", str(tmp_path / "cli.wasm")]) == 0
    assert (tmp_path / "cli.wasm").read_bytes() == api_key.read_bytes()
    assert main(["down"]) == 0
    assert not any(procs.is_alive(r) for r in records)
    assert Hub.running() is None and not (tmp_path / "hub").exists()


def test_kind_push_action_copies_the_image_with_its_digest(hub: Hub, api_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the kind plan's `wasm_push` step does, against a second, plain-HTTP registry standing in for meshlab-registry."""
    import yaml

    monkeypatch.setenv("MESHLAB_HOME", str(hub.dir.parent))  # where the step looks for the hub holding the pull secret
    from meshlab.backends.kind.wasm import push
    from meshlab.wasm.hub import registry_binary
    from meshlab.wasm.standalone import free_port

    pushed = hub.push(api_key, "wasm/to-kind:v1", user="alice")
    port = free_port()
    cfg = {"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}}, "http": {"addr": f"127.0.0.1:{port}"}}
    (tmp_path / "config.yml").write_text(yaml.safe_dump(cfg))
    p = procs.spawn("test/kind-registry", [registry_binary(), "serve", str(tmp_path / "config.yml")], tmp_path / "registry.log")
    try:
        procs.wait_until(lambda: oci.port_open(f"127.0.0.1:{port}"), p, "the plain-HTTP registry listens")
        digest = push(source=pushed.url, target=f"127.0.0.1:{port}/wasm/to-kind:v1", pull_secret="alice")
        assert digest == pushed.digest  # the same manifest bytes: a WasmPlugin's sha256 stays valid
        plain = oci.Registry(f"127.0.0.1:{port}")  # no TLS there: the client falls back to HTTP, as Istio's agent does
        assert plain.pull("wasm/to-kind:v1", strict=True).wasm == api_key.read_bytes()
        assert plain.plain_http is True
        digest = push(source=f"file://{api_key}", target=f"127.0.0.1:{port}/wasm/from-file:sha-1", root_ids=["api_key"])
        assert digest == oci.package(api_key, ["api_key"]).digest
    finally:
        procs.terminate([p.record()])
