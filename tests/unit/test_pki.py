"""meshlab.pki: the certificates must be what Istio and Envoy expect, and must verify (or not) for real."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshlab.errors import MeshlabError
from meshlab.pki import PKI, spiffe_id


def certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        return False
    return cert.issuer == issuer.subject


def openssl_verify(root: Path, intermediate: Path, leaf: Path) -> subprocess.CompletedProcess[str]:
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    argv = ["openssl", "verify", "-x509_strict", "-purpose", "sslclient",
            "-CAfile", str(root), "-untrusted", str(intermediate), str(leaf)]
    return subprocess.run(argv, capture_output=True, text=True)


def split_chain(wl_chain: Path, tmp_path: Path) -> tuple[Path, Path]:
    """openssl verify reads only the first certificate of the leaf file, so give it the leaf alone."""
    leaf, inter = certs(wl_chain)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    (tmp_path / "inter.pem").write_bytes(inter.public_bytes(Encoding.PEM))
    return tmp_path / "leaf.pem", tmp_path / "inter.pem"


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return PKI(tmp_path / "pki")


def test_cacerts_files_and_chain_order(pki: PKI) -> None:
    d = pki.cacerts("east")
    assert d == pki.directory / "root" / "east" / "cacerts"
    assert sorted(p.name for p in d.iterdir()) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    [inter] = certs(d / "ca-cert.pem")
    [root] = certs(d / "root-cert.pem")
    assert (d / "root-cert.pem").read_bytes() == pki.root_cert().read_bytes()
    assert certs(d / "cert-chain.pem") == [inter, root]
    assert (d / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("ca-cert.pem", "root-cert.pem", "cert-chain.pem"):
        assert (d / name).stat().st_mode & 0o777 == 0o644 & ~umask
    assert (pki.directory / "root" / "root-key.pem").stat().st_mode & 0o777 == 0o600
    assert signed_by(inter, root) and signed_by(root, root)
    assert not list(d.glob(".*.tmp")), "temp files left behind"


def test_ca_extensions(pki: PKI) -> None:
    d = pki.cacerts("east")
    [inter] = certs(d / "ca-cert.pem")
    [root] = certs(d / "root-cert.pem")
    rbc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    ibc = inter.extensions.get_extension_for_class(x509.BasicConstraints)
    assert rbc.value.ca and rbc.value.path_length == 1
    assert ibc.value.ca and ibc.value.path_length == 0 and ibc.critical
    for c in (root, inter):
        ku = c.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign
        assert isinstance(c.public_key(), ec.EllipticCurvePublicKey)
        assert c.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
        assert (c.not_valid_after_utc - c.not_valid_before_utc).days >= 3650
    assert root.subject.rfc4514_string() == "CN=meshlab root CA root,O=meshlab"
    assert inter.subject.rfc4514_string() == "L=east,CN=meshlab intermediate CA east,O=meshlab"
    san = inter.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc"]


def test_leaf_chain_verifies(pki: PKI, tmp_path: Path) -> None:
    wl = pki.workload("east", "sample", "curl")
    assert wl.spiffe_id == "spiffe://cluster.local/ns/sample/sa/curl"
    leaf, inter = certs(wl.cert_chain)
    [root] = certs(wl.root_cert)
    assert signed_by(leaf, inter) and signed_by(inter, root)
    assert not signed_by(leaf, root)
    assert inter == certs(pki.cacerts("east") / "ca-cert.pem")[0]
    assert wl.issuer == inter.subject.rfc4514_string() == "L=east,CN=meshlab intermediate CA east,O=meshlab"
    assert wl.key.stat().st_mode & 0o777 == 0o600
    leaf_path, inter_path = split_chain(wl.cert_chain, tmp_path)
    r = openssl_verify(wl.root_cert, inter_path, leaf_path)
    assert r.returncode == 0, r.stdout + r.stderr
    # The leaf alone, without the intermediate, must not verify: the root does not sign leaves.
    r = openssl_verify(wl.root_cert, leaf_path, leaf_path)
    assert r.returncode != 0


def test_leaf_is_spiffe(pki: PKI) -> None:
    wl = pki.workload("west", "prod", "reviews-v2", trust_domain="mesh1.example.org")
    leaf = certs(wl.cert_chain)[0]
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://mesh1.example.org/ns/prod/sa/reviews-v2"]
    assert san.value.get_values_for_type(x509.DNSName) == []
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment and not ku.value.key_cert_sign
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert 29 <= (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days <= 31


def test_separate_roots_do_not_trust_each_other(pki: PKI, tmp_path: Path) -> None:
    a = pki.workload("east", "sample", "curl", root="a")
    b = pki.workload("east", "sample", "curl", root="b")
    assert a.root_cert != b.root_cert
    assert certs(a.root_cert)[0].subject.rfc4514_string() == "CN=meshlab root CA a,O=meshlab"
    leaf_a, inter_a = split_chain(a.cert_chain, tmp_path)
    assert openssl_verify(a.root_cert, inter_a, leaf_a).returncode == 0
    r = openssl_verify(b.root_cert, inter_a, leaf_a)
    assert r.returncode != 0, r.stdout
    assert not signed_by(certs(inter_a)[0], certs(b.root_cert)[0])


def test_clusters_under_one_root_share_trust(pki: PKI, tmp_path: Path) -> None:
    east, west = pki.workload("east", "sample", "curl"), pki.workload("west", "sample", "curl")
    assert east.root_cert == west.root_cert
    assert east.issuer != west.issuer
    leaf, inter = split_chain(west.cert_chain, tmp_path)
    assert openssl_verify(east.root_cert, inter, leaf).returncode == 0


def test_idempotent(pki: PKI, tmp_path: Path) -> None:
    d = pki.cacerts("east")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    wl = pki.workload("east", "sample", "curl")
    wl_before = wl.cert_chain.read_bytes(), wl.key.read_bytes()
    again = PKI(pki.directory)  # a fresh object must find everything on disk
    assert again.cacerts("east") == d
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert again.workload("east", "sample", "curl") == wl
    assert (wl.cert_chain.read_bytes(), wl.key.read_bytes()) == wl_before
    # A second cluster does not disturb the root the first one was issued under.
    pki.cacerts("west")
    assert (d / "root-cert.pem").read_bytes() == before["root-cert.pem"]


def test_reissues_when_intermediate_replaced(pki: PKI) -> None:
    wl = pki.workload("east", "sample", "curl")
    old = wl.cert_chain.read_bytes()
    d = pki.cacerts("east")
    (d / "ca-key.pem").unlink()  # simulate a lost intermediate key: the old leaf would no longer chain
    wl2 = pki.workload("east", "sample", "curl")
    assert wl2.cert_chain.read_bytes() != old
    leaf, inter = certs(wl2.cert_chain)
    assert signed_by(leaf, inter) and inter == certs(d / "ca-cert.pem")[0]
    assert certs(d / "cert-chain.pem")[0] == inter


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"namespace": "Bad_NS"}, "Bad_NS"),
        ({"service_account": "a" * 64}, "a" * 64),
        ({"cluster": "-east"}, "-east"),
        ({"root": "my root"}, "my root"),
        ({"trust_domain": "Cluster.Local"}, "Cluster.Local"),
        ({"trust_domain": "cluster..local"}, "cluster..local"),
    ],
)
def test_bad_input(pki: PKI, kwargs: dict[str, str], bad: str) -> None:
    args = {"cluster": "east", "namespace": "sample", "service_account": "curl"} | kwargs
    with pytest.raises(MeshlabError) as e:
        pki.workload(**args)
    assert bad in str(e.value)
    assert e.value.hint
    assert not list(pki.directory.rglob("*.pem")), "nothing is written for bad input"


def test_spiffe_id() -> None:
    assert spiffe_id("cluster.local", "istio-system", "default") == "spiffe://cluster.local/ns/istio-system/sa/default"
    with pytest.raises(MeshlabError, match="UPPER"):
        spiffe_id("cluster.local", "UPPER", "default")
