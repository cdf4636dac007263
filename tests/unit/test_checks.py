"""meshlab.checks: the shapes istiod sends, read the same way as the translator's."""

from __future__ import annotations

import pytest

from meshlab import checks


def test_upstream_tls_as_istiod_sends_it() -> None:
    tls = {"sni": "outbound_.5000_._.helloworld.sample.svc.cluster.local",
           "common_tls_context": {"combined_validation_context": {"default_validation_context": {
               "match_subject_alt_names": [{"exact": "spiffe://cluster.local/ns/sample/sa/helloworld"}]}}}}
    cluster = {"transport_socket_matches": [
        {"name": "tlsMode-istio", "transport_socket": {"typed_config": tls}},
        {"name": "tlsMode-disabled", "transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}},
    ]}  # fmt: skip
    assert checks.upstream_tls(cluster) == {"sni": tls["sni"], "sans": [{"exact": "spiffe://cluster.local/ns/sample/sa/helloworld"}]}


def test_backend_ready_refuses_unknown_backend() -> None:
    with pytest.raises(AssertionError, match="'local' or 'kind'"):
        checks.assert_backend_ready("docker")
