"""Istio-style PKI on disk: named roots, one intermediate CA per cluster, SPIFFE workload certificates.

Istio's "plugin CA" mode reads a ``cacerts`` secret (ca-cert, ca-key, root-cert, cert-chain); clusters
whose intermediates share a root trust each other, clusters under different roots do not. Several
named roots can live side by side so a lab can show both. Everything is created once and then reused
from disk, so certificates issued earlier stay valid across notebook re-runs.

Layout under the caller's directory::

    <root>/root-cert.pem, <root>/root-key.pem
    <root>/<cluster>/cacerts/{ca-cert,ca-key,root-cert,cert-chain}.pem
    <root>/<cluster>/workloads/<ns>.<sa>.{cert-chain,key}.pem
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import MeshlabError

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_CA_VALIDITY = dt.timedelta(days=3650)
_LEAF_VALIDITY = dt.timedelta(days=30)
_RENEW_BEFORE = dt.timedelta(days=1)  # a reused leaf must still have at least this long to live
_ISTIOD_SAN = "istiod.istio-system.svc"  # as in Istio's tools/certs Makefile

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class WorkloadCert:
    """Files a sidecar (or a test client) needs to speak mTLS as one service account."""

    spiffe_id: str  # spiffe://cluster.local/ns/sample/sa/curl
    cert_chain: Path  # leaf + intermediate PEM (what Envoy serves)
    key: Path  # leaf private key, 0600
    root_cert: Path  # the trust bundle: root only
    issuer: str  # RFC 4514 subject of the intermediate, for asserting on access logs


def _label(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _LABEL.match(value):
        raise MeshlabError(
            f"invalid {kind} {value!r}: it must be a DNS-1123 label",
            "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
        )
    return value


def _domain(value: str) -> str:
    if not isinstance(value, str) or len(value) > 253 or not all(_LABEL.match(p) for p in value.split(".")):
        raise MeshlabError(
            f"invalid trust domain {value!r}: it must be a lowercase DNS name",
            "use something like 'cluster.local' or 'mesh1.example.org'",
        )
    return value


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The identity Istio gives a workload; authorization policies match on it."""
    return (
        f"spiffe://{_domain(trust_domain)}/ns/{_label('namespace', namespace)}"
        f"/sa/{_label('service account', service_account)}"
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace ``path``; the temp file is created with ``mode`` so a key is never readable by others."""
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _save(cert_path: Path, key_path: Path, cert_pem: bytes, key: Key) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(key_path, key_pem, 0o600)  # key first: a cert without its key is never left behind
    _write(cert_path, cert_pem, 0o644)


def _load(cert_path: Path, key_path: Path, issuer: x509.Certificate | None) -> tuple[x509.Certificate, Key] | None:
    """The pair on disk, or None if missing, mismatched, or not signed by ``issuer`` (then it is regenerated)."""
    if not (cert_path.exists() and key_path.exists()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())  # first PEM block: the leaf of a chain
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as e:
        raise MeshlabError(f"cannot parse {cert_path} / {key_path}: {e}",
                           f"delete {cert_path.parent} to have it regenerated") from e
    if not isinstance(key, Key) or key.public_key() != cert.public_key():
        return None
    try:
        cert.verify_directly_issued_by(issuer or cert)
    except Exception:
        return None
    return cert, key


def _build(subject: x509.Name, key: Key, issuer: tuple[x509.Certificate, Key] | None,
           validity: dt.timedelta, extensions: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew between containers
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    return b.sign(issuer_key, hashes.SHA256())


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=not cert_sign,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )


class PKI:
    """Certificates for a lab, kept under one directory and reused on every call."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @contextmanager
    def _locked(self, root: str) -> Iterator[Path]:
        """Serialize creation per root so two processes never write mismatched key/cert pairs."""
        base = self.directory / _label("root name", root)
        base.mkdir(parents=True, exist_ok=True)
        with open(base / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield base

    def _root(self, base: Path, root: str) -> tuple[x509.Certificate, Key]:
        paths = base / "root-cert.pem", base / "root-key.pem"
        if loaded := _load(*paths, None):
            return loaded
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshlab"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"meshlab root CA {root}")])
        cert = _build(subject, key, None, _CA_VALIDITY, [
            (x509.BasicConstraints(ca=True, path_length=1), True), (_usage(cert_sign=True), True)])
        _save(*paths, _pem(cert), key)
        return cert, key

    def _intermediate(self, base: Path, cluster: str, root: tuple[x509.Certificate, Key]) -> tuple[x509.Certificate, Key]:
        cacerts = base / _label("cluster", cluster) / "cacerts"
        paths = cacerts / "ca-cert.pem", cacerts / "ca-key.pem"
        if not (pair := _load(*paths, root[0])):
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshlab"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, f"meshlab intermediate CA {cluster}"),
                                 x509.NameAttribute(NameOID.LOCALITY_NAME, cluster)])
            cert = _build(subject, key, root, _CA_VALIDITY, [
                (x509.BasicConstraints(ca=True, path_length=0), True), (_usage(cert_sign=True), True),
                (x509.SubjectAlternativeName([x509.DNSName(_ISTIOD_SAN)]), False)])
            _save(*paths, _pem(cert), key)
            pair = cert, key
        _write(cacerts / "root-cert.pem", _pem(root[0]), 0o644)
        _write(cacerts / "cert-chain.pem", _pem(pair[0]) + _pem(root[0]), 0o644)
        return pair

    def root_cert(self, root: str = "root") -> Path:
        """The trust bundle every cluster under ``root`` shares (creating the root if needed)."""
        with self._locked(root) as base:
            self._root(base, root)
            return base / "root-cert.pem"

    def cacerts(self, cluster: str, root: str = "root") -> Path:
        """The directory to load as Istio's ``cacerts`` secret, so istiod signs with this cluster's intermediate."""
        _label("cluster", cluster)
        with self._locked(root) as base:
            self._intermediate(base, cluster, self._root(base, root))
            return base / cluster / "cacerts"

    def server(self, name: str, hosts: list[str], root: str = "root") -> tuple[Path, Path, Path]:
        """A TLS server certificate for ``hosts`` (DNS names or IP addresses), signed by ``root`` itself.

        For meshlab's own servers outside the mesh (the wasm hub's registry): returns the paths of
        (certificate chain, key, root certificate); clients trust the root. Reused while still valid.
        """
        _label("server name", name)
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(_domain(h)))
        with self._locked(root) as base:
            root_pair = self._root(base, root)
            chain_path, key_path = base / "servers" / f"{name}.cert.pem", base / "servers" / f"{name}.key.pem"
            loaded = _load(chain_path, key_path, root_pair[0])
            fresh = loaded and loaded[0].not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > _RENEW_BEFORE
            if not (loaded and fresh and set(loaded[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == set(sans)):
                key = ec.generate_private_key(ec.SECP256R1())
                leaf = _build(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshlab"),
                                         x509.NameAttribute(NameOID.COMMON_NAME, name)]), key, root_pair, _LEAF_VALIDITY, [
                    (x509.SubjectAlternativeName(sans), False),
                    (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                    (_usage(cert_sign=False), True), (x509.BasicConstraints(ca=False, path_length=None), True)])
                _save(chain_path, key_path, _pem(leaf), key)
            return chain_path, key_path, base / "root-cert.pem"

    def workload(self, cluster: str, namespace: str, service_account: str,
                 trust_domain: str = "cluster.local", root: str = "root") -> WorkloadCert:
        """A leaf like istiod would issue, for talking mTLS to the mesh from outside it (or faking a workload)."""
        sid = spiffe_id(trust_domain, namespace, service_account)
        _label("cluster", cluster)
        with self._locked(root) as base:
            inter = self._intermediate(base, cluster, self._root(base, root))
            out, name = base / cluster / "workloads", f"{namespace}.{service_account}"
            chain_path, key_path = out / f"{name}.cert-chain.pem", out / f"{name}.key.pem"
            if not self._reusable(chain_path, key_path, inter[0], sid):
                key = ec.generate_private_key(ec.SECP256R1())
                leaf = _build(x509.Name([]), key, inter, _LEAF_VALIDITY, [
                    (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(sid)]), True),
                    (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
                    (_usage(cert_sign=False), True), (x509.BasicConstraints(ca=False, path_length=None), True)])
                _save(chain_path, key_path, _pem(leaf) + _pem(inter[0]), key)
            return WorkloadCert(sid, chain_path, key_path, base / "root-cert.pem", inter[0].subject.rfc4514_string())

    @staticmethod
    def _reusable(chain_path: Path, key_path: Path, intermediate: x509.Certificate, sid: str) -> bool:
        """Reuse a leaf only if it is still ours: same key, same issuer, same SPIFFE ID, not about to expire."""
        if not (loaded := _load(chain_path, key_path, intermediate)):
            return False
        leaf = loaded[0]
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
        fresh = leaf.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > _RENEW_BEFORE
        return uris == [sid] and fresh and chain_path.read_bytes() == _pem(leaf) + _pem(intermediate)

    # ---- a cluster agent's CSR, signed by a management plane (Service Mesh Hub's shared trust) ----
    def agent_csr(self, cluster: str, root: str) -> Path:
        """The cluster's agent creates its intermediate CA's key and a CSR; the key never leaves the cluster.

        Returns the CSR's path (``<root>/<cluster>/agent/ca.csr.pem``); the key sits beside it (0600).
        A CSR made earlier for this root is reused with its key.
        """
        _label("cluster", cluster)
        with self._locked(root) as base:
            agent = base / cluster / "agent"
            csr_path, key_path = agent / "ca.csr.pem", agent / "ca-key.pem"
            if csr_path.exists() and key_path.exists():
                return csr_path
            key = ec.generate_private_key(ec.SECP256R1())
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshlab"),
                                         x509.NameAttribute(NameOID.COMMON_NAME, f"meshlab intermediate CA {cluster}"),
                                         x509.NameAttribute(NameOID.LOCALITY_NAME, cluster)]))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(_ISTIOD_SAN)]), critical=False)
                .sign(key, hashes.SHA256())
            )
            _save(csr_path, key_path, csr.public_bytes(serialization.Encoding.PEM), key)
            return csr_path

    def sign_csr(self, csr_pem: bytes, root: str, ttl_days: int = 365) -> bytes:
        """The management plane signs a cluster's CSR with ``root``: an intermediate CA (path length 0).

        Refuses a CSR whose signature does not verify or that does not ask for a CA certificate.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as e:
            raise MeshlabError(f"not a PEM certificate signing request: {e}", "pass the agent's ca.csr.pem") from e
        if not csr.is_signature_valid:
            raise MeshlabError("the CSR's signature does not verify", "have the agent create a new key and CSR")
        try:
            bc = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if not bc or not bc.ca:
            raise MeshlabError("the CSR does not ask for a CA certificate (basicConstraints CA:TRUE)", "an agent's CSR is for istiod's intermediate CA")
        with self._locked(root) as base:
            root_pair = self._root(base, root)
            now = dt.datetime.now(dt.timezone.utc)
            issued = (
                x509.CertificateBuilder()
                .subject_name(csr.subject)
                .issuer_name(root_pair[0].subject)
                .public_key(csr.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=ttl_days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_usage(cert_sign=True), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_pair[1].public_key()), critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(_ISTIOD_SAN)]), critical=False)
                .sign(root_pair[1], hashes.SHA256())
            )
            return _pem(issued)

    def install_issued(self, cluster: str, root: str, cert_pem: bytes) -> Path:
        """The agent writes Istio's ``cacerts`` from its key and the issued certificate; returns the directory.

        Workload certificates issued for ``root`` from now on chain to it (:meth:`workload`).
        """
        _label("cluster", cluster)
        with self._locked(root) as base:
            root_pair = self._root(base, root)
            agent = base / cluster / "agent"
            key = serialization.load_pem_private_key((agent / "ca-key.pem").read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_pem)
            if not isinstance(key, Key) or key.public_key() != cert.public_key():
                raise MeshlabError(f"the issued certificate does not match {cluster}'s agent key", "sign the CSR this agent created")
            cert.verify_directly_issued_by(root_pair[0])
            cacerts = base / cluster / "cacerts"
            _save(cacerts / "ca-cert.pem", cacerts / "ca-key.pem", cert_pem, key)
            _write(cacerts / "root-cert.pem", _pem(root_pair[0]), 0o644)
            _write(cacerts / "cert-chain.pem", cert_pem + _pem(root_pair[0]), 0o644)
            return cacerts


def describe(pem: bytes) -> list[dict[str, str]]:
    """Each certificate of a PEM chain (or a CSR) as subject / issuer / validity rows, leaf first."""
    rows = []
    if b"CERTIFICATE REQUEST" in pem:
        csr = x509.load_pem_x509_csr(pem)
        try:
            asks = f"CA:{csr.extensions.get_extension_for_class(x509.BasicConstraints).value.ca}"
        except x509.ExtensionNotFound:
            asks = "-"
        key = csr.public_key()
        return [{"SUBJECT": csr.subject.rfc4514_string(), "PUBLIC KEY": f"EC {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else "other",
                 "ASKS FOR": asks, "SIGNATURE OK": str(csr.is_signature_valid)}]  # fmt: skip
    for cert in x509.load_pem_x509_certificates(pem):
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            ca = f"CA:{bc.ca}" + (f" pathlen:{bc.path_length}" if bc.path_length is not None else "")
        except x509.ExtensionNotFound:
            ca = "-"
        try:
            san = ",".join(str(v) for v in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier))
        except x509.ExtensionNotFound:
            san = ""
        rows.append({"SUBJECT": cert.subject.rfc4514_string() or san, "ISSUER": cert.issuer.rfc4514_string(), "CA": ca,
                     "NOT AFTER": cert.not_valid_after_utc.strftime("%Y-%m-%d")})  # fmt: skip
    return rows
