"""meshlab.checks on a real local lab: the helpers see what the check cells assert, and can fail."""

from __future__ import annotations

import pytest

from meshlab import checks
from meshlab.lab import Lab

FQDN = "helloworld.sample.svc.cluster.local"


def test_config_views(flat_lab: Lab) -> None:
    clusters = flat_lab.envoy_config("curl", "cluster1", "dynamic_active_clusters")["configs"]
    hw = next(c["cluster"] for c in clusters if c["cluster"]["name"] == f"outbound|5000||{FQDN}")
    assert checks.upstream_tls(hw) == {"sni": f"outbound_.5000_._.{FQDN}",
                                       "sans": [{"exact": "spiffe://cluster.local/ns/sample/sa/helloworld"}]}
    assert checks.virtual_host(flat_lab, "curl", "cluster1", f"{FQDN}:5000")["routes"]
    with pytest.raises(AssertionError, match="no virtual host"):
        checks.virtual_host(flat_lab, "curl", "cluster1", "nope:1")
    hw_ip = next(w.ip for w in flat_lab.backend.workloads if w.app == "helloworld" and w.cluster == "cluster2")
    inbound = checks.inbound_tls(flat_lab, "helloworld", "cluster2", 5000)
    assert inbound["listener"] == f"{hw_ip}_5000" and inbound["require_client_certificate"] is True
    assert not checks.sidecar_captures_every_port(flat_lab) and checks.callers_keep_their_pod_ip(flat_lab)
    assert checks.killed_app_is_ejected(flat_lab)
    assert checks.pods_have_own_addresses(flat_lab) == (flat_lab.backend.mode != "loopback")
    assert checks.gateway_addresses(flat_lab) == {}  # one network: no east-west gateways


def test_nothing_left(flat_lab: Lab) -> None:
    fp = checks.footprint(flat_lab)
    left = checks.leftovers(fp)
    assert any(x.startswith("process") for x in left) and any("recorded" in x for x in left)
    with pytest.raises(AssertionError, match="meshlab down"):
        checks.assert_nothing_left(fp)
    flat_lab.down(quiet=True)
    assert checks.assert_nothing_left(fp).startswith("clean")
