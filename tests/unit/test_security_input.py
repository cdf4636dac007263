"""Bad security input: refused by name before anything changes."""

from __future__ import annotations

from typing import Any

import pytest

from meshlab.errors import ResourceError
from meshlab.resources import parse


def ap(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return parse({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": name}, "spec": spec})[0]


def pa(name: str, ns: str, mode: str) -> dict[str, Any]:
    return parse({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": name, "namespace": ns}, "spec": {"mtls": {"mode": mode}}})[0]


def test_bad_security_input_is_refused_by_name() -> None:
    with pytest.raises(ResourceError, match="CUSTOM"):
        ap("x", {"action": "CUSTOM", "provider": {"name": "ext"}})
    with pytest.raises(ResourceError, match="spec.action='SOMETIMES'"):
        ap("x", {"action": "SOMETIMES"})
    with pytest.raises(ResourceError, match=r"starts with spiffe://"):
        ap("x", {"rules": [{"from": [{"source": {"principals": ["spiffe://cluster.local/ns/a/sa/b"]}}]}]})
    with pytest.raises(ResourceError, match=r"source.principals 'curl' is not a principal"):
        ap("x", {"rules": [{"from": [{"source": {"principals": ["curl"]}}]}]})
    with pytest.raises(ResourceError, match=r"ipBlocks '10.0.0.0/33' is not an IP address or CIDR"):
        ap("x", {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]})
    with pytest.raises(ResourceError, match=r"when\[0\].key 'source.planet'"):
        ap("x", {"rules": [{"when": [{"key": "source.planet", "values": ["earth"]}]}]})
    with pytest.raises(ResourceError, match=r"source.serviceAccounts is not supported"):
        ap("x", {"rules": [{"from": [{"source": {"serviceAccounts": ["curl"]}}]}]})
    with pytest.raises(ResourceError, match="jwksUri"):
        parse({"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication", "metadata": {"name": "r"},
               "spec": {"jwtRules": [{"issuer": "i", "jwksUri": "https://example.com/jwks"}]}})  # fmt: skip
    with pytest.raises(ResourceError, match=r"spec.mtls.mode='SOMETIMES'"):
        pa("x", "sample", "SOMETIMES")
