"""A tiny JWT issuer for labs and tests: an RSA key, its JWKS (for RequestAuthentication's inline
``jwks``) and RS256-signed tokens. Nothing is fetched from anywhere.

    issuer = Issuer("https://issuer.meshlab.example")
    jwks = issuer.jwks()                                  # put in spec.jwtRules[].jwks
    token = issuer.token(sub="alice", claims={"group": "dev"})
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n: int) -> str:
    return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Issuer:
    """Signs tokens as ``iss``; a fresh key per instance (``kid`` names it)."""

    def __init__(self, iss: str, kid: str = "meshlab") -> None:
        self.iss = iss
        self.kid = kid
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        """The public key as a JSON Web Key Set (a string, as ``jwks`` takes it)."""
        pub = self._key.public_key().public_numbers()
        return json.dumps({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": _uint(pub.n), "e": _uint(pub.e)}]})

    def token(self, sub: str, claims: dict[str, Any] | None = None, lifetime_s: int = 3600) -> str:
        """A signed token for ``sub``; its request principal in Istio is ``<iss>/<sub>``."""
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        payload = {"iss": self.iss, "sub": sub, "iat": now, "exp": now + lifetime_s, **(claims or {})}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(sig)}"
