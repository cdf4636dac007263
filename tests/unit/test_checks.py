"""meshlab.checks: the shapes istiod sends, read the same way as the translator's."""

from __future__ import annotations

import pytest

from meshlab import checks
from meshlab.backends import backend_class


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


class _KindLab:
    """Enough of a Lab on kind for the config views: a backend name and one sidecar's config dump."""

    def __init__(self, dump: dict[str, object]) -> None:
        from types import SimpleNamespace

        self.backend = SimpleNamespace(capabilities=backend_class("kind").capabilities)
        self.dump = dump

    def envoy_config(self, workload: str, cluster: str, resource: str) -> dict[str, object]:
        return self.dump[resource]  # type: ignore[return-value]


def test_inbound_tls_and_routes_as_istiod_sends_them() -> None:
    tls = {"require_client_certificate": True, "common_tls_context": {"combined_validation_context": {"default_validation_context": {}}}}
    inbound = {"name": "virtualInbound", "filter_chains": [
        {"filter_chain_match": {"destination_port": 5000, "transport_protocol": "raw_buffer"}},
        {"filter_chain_match": {"destination_port": 5000, "transport_protocol": "tls"}, "transport_socket": {"typed_config": tls}},
    ]}  # fmt: skip
    vhost = {"name": "helloworld.sample.svc.cluster.local:5000", "routes": [{"route": {"retry_policy": {"num_retries": 2}}}]}
    lab = _KindLab({"dynamic_listeners": {"configs": [{"active_state": {"listener": inbound}}]},
                    "dynamic_route_configs": {"configs": [{"route_config": {"name": "5000", "virtual_hosts": [vhost]}}]}})
    assert checks.inbound_tls(lab, "helloworld", "cluster2", 5000) == {  # type: ignore[arg-type]
        "listener": "virtualInbound", "require_client_certificate": True, "sans": []}
    assert checks.virtual_host(lab, "curl", "cluster1", vhost["name"]) == vhost  # type: ignore[arg-type]
    assert checks.sidecar_captures_every_port(lab) and not checks.callers_keep_their_pod_ip(lab)  # type: ignore[arg-type]
    assert not checks.killed_app_is_ejected(lab)  # type: ignore[arg-type]


def test_inbound_client_sans_on_both_backends() -> None:
    from types import SimpleNamespace

    def on(name: str) -> SimpleNamespace:
        return SimpleNamespace(backend=SimpleNamespace(capabilities=backend_class(name).capabilities))

    assert checks.inbound_client_sans(on("kind")) == []  # type: ignore[arg-type]
    assert checks.inbound_client_sans(on("local")) == [{"prefix": "spiffe://cluster.local/"}]  # type: ignore[arg-type]
