"""A hub for WebAssembly modules: a real OCI registry with user accounts, run by meshlab.

The registry is the CNCF distribution registry (``docker-registry`` 2.8, Debian package
``docker-registry``; ``make setup`` installs it), the same software as the ``registry:2`` image the
kind backend runs. meshlab starts it like its other processes -- recorded (pid + start time) in a
state file the moment it starts, stopped by :meth:`Hub.down`, at interpreter exit (unless
``keep``), or by ``meshlab down`` -- with a configuration generated under ``$MESHLAB_HOME/hub/``:

* **storage**: ``hub/data`` (filesystem driver, deletes enabled);
* **listen**: ``127.0.0.1:<port>``, a free port unless you pass one (a taken one is refused with
  who to ask: ``ss -ltnp``);
* **auth**: ``htpasswd`` with bcrypt hashes (the only format the registry accepts). Every request
  needs a user: anonymous pulls are refused with 401. ``add_user`` writes the file; the registry
  re-reads it when it changes, so no restart is needed;
* **TLS**: Basic auth sends the password with every request, so the hub serves HTTPS with a server
  certificate from :mod:`meshlab.pki` (the hub's own root CA, ``hub/pki/hub/root-cert.pem``); the
  clients meshlab makes trust that CA. (Registry 2.8.2 itself does not insist: its htpasswd auth
  also works over plain HTTP, which the docs warn against. meshlab does not offer that.)

Credentials live in the hub's state file (mode 0600): each user's password, the current login
(``meshlab wasm login``), and named pull secrets -- what a WasmPlugin's ``imagePullSecret`` names.

    hub = Hub.up()                                   # or `meshlab wasm hub up`
    pw = hub.add_user("alice")                       # generated password, also stored for alice
    hub.push("wasm-filters/add-header", "wasm/add-header:v1", user="alice")
    hub.pull("wasm/add-header:v1", user="alice")     # digests verified
    hub.down()
"""

from __future__ import annotations

import atexit
import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..display import Table
from ..errors import LabStateError, MeshlabError
from ..exec import run, which
from ..pki import PKI
from ..runtime import procs
from ..state import State, home, write_atomic
from . import oci
from .standalone import _check_port

REALM = "meshlab wasm hub"
BCRYPT_ROUNDS = 8  # the registry checks the hash on every request: cost 8 is ~15 ms, cost 12 would be ~250 ms
_USER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def hub_home(home_dir: str | Path | None = None) -> Path:
    return Path(home_dir) if home_dir else home() / "hub"


def registry_binary() -> str:
    return which(
        "docker-registry",
        "install the CNCF distribution registry: `make setup` (Debian package docker-registry: apt-get install docker-registry)",
    )


class _HubState(State):
    """The hub's state file, readable by its owner only: it holds passwords."""

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True), mode=0o600)


@dataclass
class Pushed:
    ref: str
    digest: str  # the manifest digest: WasmPlugin sha256 for oci:// is this, without "sha256:"
    variant: str
    wasm_sha256: str  # the module's digest, sha256:<hex>
    size: int
    root_ids: list[str]
    seconds: float

    @property
    def url(self) -> str:
        return f"oci://{self.ref}"

    def __str__(self) -> str:
        return (f"pushed {self.ref} ({self.variant}, {self.size} bytes, root ids {', '.join(self.root_ids) or '-'}) "
                f"in {self.seconds:.2f}s\n  digest {self.digest}")  # fmt: skip


class Hub:
    """A running hub (attach with :meth:`attach`; start with :meth:`up`)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.state = _HubState(directory)
        if not self.state.exists:
            raise LabStateError(f"no wasm hub recorded in {directory}", "start one: meshlab wasm hub up (or Hub.up())")

    # ---- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def up(cls, home_dir: str | Path | None = None, port: int | None = None, keep: bool = False, quiet: bool = True) -> "Hub":
        """Start the hub (or return the one already running there). Idempotent.

        Unless ``keep``, it is stopped when this Python process exits (the CLI keeps it until
        ``meshlab wasm hub down`` / ``meshlab down``).
        """
        d = hub_home(home_dir)
        running = cls.running(d)
        if running is not None:
            if port is not None and running.port != port:
                raise MeshlabError(
                    f"the hub in {d} already runs on {running.address}, not on port {port}",
                    "use it as it is, or stop it first: meshlab wasm hub down",
                )
            if not keep:
                running._stop_at_exit()
            return running
        cls.down_all(d)  # a stale record (crashed hub): stop what is left, start clean

        binary = registry_binary()
        port = _check_port(port, "hub")
        address = f"127.0.0.1:{port}"

        cert, key, ca = PKI(d / "pki").server("wasm-hub", ["127.0.0.1", "localhost"], root="hub")
        htpasswd = d / "htpasswd"
        if not htpasswd.exists():
            write_atomic(htpasswd, "", mode=0o600)
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(d / "data")}, "delete": {"enabled": True}},
            "auth": {"htpasswd": {"realm": REALM, "path": str(htpasswd)}},
            "http": {
                "addr": address,
                "secret": secrets.token_hex(16),
                "tls": {"certificate": str(cert), "key": str(key)},
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        write_atomic(d / "config.yml", yaml.safe_dump(config, sort_keys=False), mode=0o600)
        st = _HubState(d)
        st.data = {
            "kind": "wasm-hub", "created": time.time(), "address": address, "port": port,
            "ca_file": str(ca), "config": str(d / "config.yml"), "log": str(d / "registry.log"),
            "processes": [], "users": {}, "secrets": {}, "login": None,
        }  # fmt: skip
        st.save()
        p = procs.spawn("wasm-hub/registry", [binary, "serve", str(d / "config.yml")], d / "registry.log")
        st.record("processes", p.record())
        hub = cls(d)
        try:
            procs.wait_until(hub._answers, p, f"the registry answers on https://{address}/v2/", timeout=15)
        except BaseException:
            hub.down()
            raise
        if not keep:
            hub._stop_at_exit()
        if not quiet:
            print(f"wasm hub up: https://{address} (registry {registry_version()}, htpasswd auth, TLS with CA {ca})")
        return hub

    def _answers(self) -> bool:
        try:
            status, _, _ = oci.Registry(self.address, ca_file=self.ca_file, plain_http=False, timeout=1)._send("GET", "/v2/", None, {})
        except oci.OciError:
            return False
        return status in (200, 401)

    def _stop_at_exit(self) -> None:
        created = self.state.data.get("created")

        def stop() -> None:
            if _HubState(self.dir).data.get("created") == created:  # still the hub this process started
                self.down()

        atexit.register(stop)

    @classmethod
    def running(cls, home_dir: str | Path | None = None) -> "Hub | None":
        """The hub recorded in ``home_dir`` if its registry process is alive, else None."""
        d = hub_home(home_dir)
        if not (d / "state.json").exists():
            return None
        hub = cls(d)
        return hub if hub.alive() else None

    @classmethod
    def attach(cls, home_dir: str | Path | None = None) -> "Hub":
        hub = cls.running(home_dir)
        if hub is None:
            raise LabStateError(f"no wasm hub is running (state in {hub_home(home_dir)})", "start one: meshlab wasm hub up (or Hub.up())")
        return hub

    def alive(self) -> bool:
        return any(procs.is_alive(p) for p in self.state.data.get("processes", []))

    def down(self) -> int:
        """Stop the registry and remove the hub's files (modules, users, certificates). Safe twice."""
        return self.down_all(self.dir)

    @staticmethod
    def down_all(home_dir: str | Path | None = None) -> int:
        """Stop whatever hub ``home_dir`` records (also after a crashed kernel); returns processes stopped."""
        d = hub_home(home_dir)
        if not (d / "state.json").exists():
            return 0
        st = _HubState(d)
        stopped = procs.terminate(st.data.get("processes", []))
        shutil.rmtree(d, ignore_errors=True)
        return stopped

    # ---- facts -----------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return str(self.state.data["address"])

    @property
    def port(self) -> int:
        return int(self.state.data["port"])

    @property
    def ca_file(self) -> str:
        return str(self.state.data["ca_file"])

    @property
    def log(self) -> Path:
        return Path(self.state.data["log"])

    def url(self, ref: str) -> str:
        """``wasm/add-header:v1`` -> ``oci://127.0.0.1:PORT/wasm/add-header:v1`` (a WasmPlugin url)."""
        return f"oci://{self.ref(ref)}"

    def ref(self, ref: str) -> str:
        return str(oci.parse_ref(ref, self.address))

    def __repr__(self) -> str:
        return f"<Hub https://{self.address} users={','.join(self.users) or '-'} dir={self.dir}>"

    def status(self) -> dict[str, Any]:
        d = self.state.data
        return {
            "address": self.address, "url": f"https://{self.address}", "running": self.alive(), "ca_file": self.ca_file,
            "users": self.users, "login": d.get("login"), "secrets": sorted(d.get("secrets", {})), "dir": str(self.dir),
        }  # fmt: skip

    # ---- users, logins and pull secrets ----------------------------------------------------------
    @property
    def users(self) -> list[str]:
        return sorted(self.state.data.get("users", {}))

    def add_user(self, name: str, password: str | None = None) -> str:
        """Create (or reset) a user; returns the password (generated when not given).

        The registry gets a bcrypt hash in its htpasswd file; the hub's state keeps the password
        (0600) as that user's login, and as a pull secret of the same name.
        """
        try:
            import bcrypt
        except ImportError:
            raise MeshlabError("the Python package bcrypt is missing (htpasswd needs bcrypt hashes)", "run `make setup`") from None
        if not _USER.match(name or ""):
            raise MeshlabError(f"invalid user name {name!r}", "use 1-63 lowercase letters, digits, '.', '_' or '-'")
        password = password if password is not None else secrets.token_urlsafe(12)
        if not password:
            raise MeshlabError("a password must not be empty", "pass one, or leave it out to get a generated one")
        users = self.state.data.setdefault("users", {})
        users[name] = password
        self.state.data.setdefault("secrets", {})[name] = {"registry": self.address, "username": name, "password": password}
        self.state.save()
        lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()}" for u, p in sorted(users.items())]
        write_atomic(self.dir / "htpasswd", "\n".join(lines) + "\n", mode=0o600)
        return password

    def login(self, user: str, password: str | None = None) -> None:
        """Check the credentials against the registry and make ``user`` the default for push/pull/list."""
        pw = password if password is not None else self._password(user)
        oci.Registry(self.address, user, pw, ca_file=self.ca_file).ping()
        self.state.data["login"] = user
        if password is not None:
            self.state.data.setdefault("users", {})[user] = password
        self.state.save()

    def logout(self) -> None:
        self.state.data["login"] = None
        self.state.save()

    def add_secret(self, name: str, username: str, password: str) -> None:
        """A named pull secret (what a WasmPlugin's ``imagePullSecret`` refers to)."""
        if not _USER.match(name or ""):
            raise MeshlabError(f"invalid secret name {name!r}", "use lowercase letters, digits, '.', '_' or '-'")
        self.state.data.setdefault("secrets", {})[name] = {"registry": self.address, "username": username, "password": password}
        self.state.save()

    def secret(self, name: str) -> tuple[str, str]:
        """(username, password) of the pull secret ``name``."""
        s = self.state.data.get("secrets", {}).get(name)
        if s is None:
            raise MeshlabError(
                f"imagePullSecret {name!r} is not known to the wasm hub (it has: {', '.join(sorted(self.state.data.get('secrets', {}))) or 'none'})",
                f"add the user (hub.add_user({name!r}) / `meshlab wasm hub users add {name}`) or a secret (hub.add_secret({name!r}, user, password))",
            )
        return str(s["username"]), str(s["password"])

    def pull_secret(self, name: str) -> dict[str, str]:
        """The pull secret ``name`` as ``kubectl create secret docker-registry`` takes it:
        ``lab.create_pull_secret(name, cluster, **hub.pull_secret(name))``."""
        user, password = self.secret(name)
        return {"registry": self.address, "username": user, "password": password}

    def _password(self, user: str) -> str:
        pw = self.state.data.get("users", {}).get(user)
        if pw is None:
            raise MeshlabError(
                f"the hub has no stored password for user {user!r}",
                f"add the user (`meshlab wasm hub users add {user}`), or pass the password (--password / password=)",
            )
        return str(pw)

    def registry(self, user: str | None = None, password: str | None = None, anonymous: bool = False) -> oci.Registry:
        """An OCI client for this hub, logged in as ``user`` (default: the current login; ``anonymous``: nobody)."""
        if anonymous:
            return oci.Registry(self.address, ca_file=self.ca_file, plain_http=False)
        user = user or self.state.data.get("login")
        if user is None:
            return oci.Registry(self.address, ca_file=self.ca_file, plain_http=False)
        return oci.Registry(self.address, user, password if password is not None else self._password(user), ca_file=self.ca_file, plain_http=False)

    # ---- modules ---------------------------------------------------------------------------------
    def push(
        self, wasm: str | Path, ref: str, user: str | None = None, *, password: str | None = None, variant: str = "oci",
        root_ids: list[str] | None = None, anonymous: bool = False,
    ) -> Pushed:  # fmt: skip
        """Package ``wasm`` (a .wasm file or a filter folder) and push it as ``ref`` (``repo:tag``)."""
        t = time.perf_counter()
        img = oci.package(wasm, root_ids=root_ids, variant=variant)
        r = oci.parse_ref(ref, self.address)
        reg = self.registry(user, password, anonymous)
        digest = reg.push(r.repository, r.tag, img)
        return Pushed(str(r), digest, variant, oci.sha256_digest(img.wasm), len(img.wasm), img.runtime_config["config"]["rootIds"], time.perf_counter() - t)

    def pull(self, ref: str, user: str | None = None, *, password: str | None = None, anonymous: bool = False, out: str | Path | None = None) -> oci.Pulled:
        """Pull ``ref``: manifest and blobs, every digest verified; ``out`` also writes the module there."""
        pulled = self.registry(user, password, anonymous).pull(oci.parse_ref(ref, self.address))
        if out:
            pulled.save(out)
        return pulled

    def tag(self, ref: str, new_tag: str, user: str | None = None, *, password: str | None = None) -> str:
        return self.registry(user, password).tag(oci.parse_ref(ref, self.address), new_tag)

    def list(self, user: str | None = None, *, password: str | None = None, repository: str | None = None) -> Table:
        """Every repository and tag with its digest, layout, ABI and root ids (``meshlab wasm list``)."""
        reg = self.registry(user, password)
        rows = []
        for repo in [repository] if repository else reg.catalog():
            for tag in reg.tags(repo):
                p = reg.pull(oci.Ref(self.address, repo, tag))
                rc = p.runtime_config or {}
                rows.append({
                    "REPOSITORY": repo, "TAG": tag, "DIGEST": p.digest[:19] + "...", "LAYOUT": p.variant,
                    "ABI": ",".join(rc.get("abiVersions", [])), "ROOT IDS": ",".join(p.root_ids), "SIZE": len(p.wasm),
                })  # fmt: skip
        return Table(rows, title=f"modules in the hub at {self.address}")


def registry_version() -> str:
    out = run([registry_binary(), "--version"], check=False, timeout=10).stdout.strip()
    return out.split()[-1] if out else "?"


def up(home_dir: str | Path | None = None, port: int | None = None, keep: bool = False) -> Hub:
    return Hub.up(home_dir, port=port, keep=keep)


def down_all(home_dir: str | Path | None = None) -> int:
    return Hub.down_all(home_dir)
