"""Security parity: PeerAuthentication, AuthorizationPolicy and RequestAuthentication as istiod builds
them, on the generated Envoy config and, in one shared lab, on real traffic through real Envoys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshlab import xds as E
from meshlab.runtime import net
from meshlab.controlplane import security as S
from meshlab.controlplane import Translator
from meshlab.registry import Workload
from meshlab.jwt import Issuer
from meshlab.lab import Lab
from meshlab.pki import WorkloadCert
from meshlab.resources import parse
from meshlab.state import prefix_for
from meshlab.topology import load_topology, parse_topology
from meshlab.dataplane import access_logs_on

URL = "http://helloworld.sample:5000/hello"
HW = {"app": "helloworld", "version": "v1"}


def pa(name: str, ns: str, mode: str | None = None, selector: dict[str, str] | None = None, ports: dict[int, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if mode:
        spec["mtls"] = {"mode": mode}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    if ports:
        spec["portLevelMtls"] = {p: {"mode": m} for p, m in ports.items()}
    return parse({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": name, "namespace": ns}, "spec": spec})[0]


def ap(name: str, spec: dict[str, Any], ns: str = "sample", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": ns, **({"annotations": annotations} if annotations else {})}
    return parse({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": md, "spec": spec})[0]


# ---- PeerAuthentication ---------------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/security/authn/policy_applier.go: ComposePeerAuthentication")
def test_peer_authentication_precedence() -> None:
    assert S.mtls_mode([], HW, "sample", 5000) == "PERMISSIVE"  # no policy: PERMISSIVE
    mesh = pa("default", "istio-system", "STRICT")
    assert S.mtls_mode([mesh], HW, "sample", 5000) == "STRICT"
    ns = pa("ns", "sample", "DISABLE")
    assert S.mtls_mode([mesh, ns], HW, "sample", 5000) == "DISABLE"  # namespace over mesh
    assert S.mtls_mode([mesh, ns], HW, "other", 5000) == "STRICT"  # another namespace's policy does not apply
    unset = pa("wl", "sample", None, selector={"app": "helloworld"}, ports={5000: "PERMISSIVE", 6000: "UNSET"})
    assert S.mtls_mode([mesh, ns, unset], HW, "sample", 7000) == "DISABLE"  # UNSET inherits from the namespace
    assert S.mtls_mode([mesh, ns, unset], HW, "sample", 5000) == "PERMISSIVE"  # port level wins
    assert S.mtls_mode([mesh, ns, unset], HW, "sample", 6000) == "DISABLE"  # UNSET port: the workload's mode
    older, newer = pa("a-older", "sample", "STRICT"), pa("b-newer", "sample", "PERMISSIVE")
    assert S.mtls_mode([older, newer], HW, "sample", 5000) == "STRICT"  # the oldest of one scope wins
    root_wl = pa("root-wl", "istio-system", "DISABLE", selector={"app": "helloworld"})
    assert S.mtls_mode([mesh, root_wl], HW, "sample", 5000) == "STRICT"  # workload policies in the root namespace are ignored


@pytest.mark.istio("pilot/pkg/networking/core/filterchain_options.go: getFilterChainMatchOptions")
def test_inbound_filter_chains_per_mode() -> None:
    tls = {"require_client_certificate": True}
    strict = S.inbound_filter_chains("STRICT", tls, [])
    assert [c["filter_chain_match"] for c in strict] == [{"transport_protocol": "tls"}]
    permissive = S.inbound_filter_chains("PERMISSIVE", tls, [])
    assert [c["filter_chain_match"] for c in permissive] == [
        {"transport_protocol": "tls", "application_protocols": ["istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"]},
        {"transport_protocol": "raw_buffer"},
    ]
    assert "transport_socket" in permissive[0] and "transport_socket" not in permissive[1]
    assert [c["filter_chain_match"] for c in S.inbound_filter_chains("DISABLE", tls, [])] == [{"transport_protocol": "raw_buffer"}]


def _cert(w: Workload) -> WorkloadCert:
    return WorkloadCert(f"spiffe://cluster.local/ns/{w.namespace}/sa/{w.service_account}", Path("/c"), Path("/k"), Path("/r"), "CN=x")


def _wl(pod: str, app: str, ip: str, ports: list[int], sidecar: bool = True, cluster: str = "cluster1") -> Workload:
    return Workload(pod, app, app, "v1" if ports else "", cluster, "sample", app, ip, None, "127.0.0.1", "127.0.0.6", ports, sidecar=sidecar)


@pytest.mark.istio("pilot/pkg/xds/endpoints/mtls_checker.go: checkMtlsEnabled")
def test_auto_mtls_follows_the_servers_mode() -> None:
    curl = _wl("curl-0", "curl", "10.10.0.9", [])
    hw, legacy = _wl("hw-0", "helloworld", "10.10.0.10", [5000]), _wl("hw-1", "helloworld", "10.10.0.11", [5000], sidecar=False)
    reg = [curl, hw, legacy]
    t = Translator(load_topology("flat-network"), {}, {w.pod: _cert(w) for w in reg if w.sidecar})

    def tls_modes(resources: list[dict[str, Any]]) -> dict[str, bool]:
        cfg = t.sidecar(curl, reg, Path("/x"), resources)
        return {e.address: e.tls_mode for e in cfg.endpoints["outbound|5000||helloworld.sample.svc.cluster.local"]}

    assert tls_modes([]) == {"10.10.0.10": True, "10.10.0.11": False}  # no sidecar: plaintext
    assert tls_modes([pa("off", "sample", "DISABLE", selector={"app": "helloworld"})]) == {"10.10.0.10": False, "10.10.0.11": False}
    assert tls_modes([pa("p", "sample", "STRICT", selector={"app": "helloworld"}, ports={5000: "DISABLE"})])["10.10.0.10"] is False
    dr = parse({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "d", "namespace": "sample"},
                "spec": {"host": "helloworld", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}})  # fmt: skip
    cfg = t.sidecar(curl, reg, Path("/x"), dr)
    cluster = next(c for c in cfg.clusters if c["name"].startswith("outbound|5000||"))
    assert "transport_socket" in cluster and "transport_socket_matches" not in cluster  # the DestinationRule decides, for every endpoint
    la = E.load_assignment("c", [E.Endpoint("10.10.0.10", 5000, "r", "z", tls_mode=True)])
    assert la["endpoints"][0]["lb_endpoints"][0]["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}


# ---- AuthorizationPolicy --------------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/security/authz/builder/builder.go: build")
def test_rbac_filters_audit_deny_allow_in_order_with_istio_names() -> None:
    allow = ap("allow-curl", {"selector": {"matchLabels": {"app": "helloworld"}}, "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/sample/sa/curl"]}}]}]})
    deny = ap("deny-admin", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"], "methods": ["POST"]}}]}]})
    audit = ap("audit", {"action": "AUDIT", "rules": [{}]})
    empty = ap("nothing", {}, ns="istio-system")  # an empty ALLOW policy, mesh-wide: matches nothing
    filters = S.rbac_filters([allow, deny, audit, empty], HW, "sample", ["cluster.local"])
    assert [(f["name"], f["typed_config"]["rules"]["action"]) for f in filters] == [
        ("envoy.filters.http.rbac", "LOG"), ("envoy.filters.http.rbac", "DENY"), ("envoy.filters.http.rbac", "ALLOW")]  # fmt: skip
    allow_policies = filters[2]["typed_config"]["rules"]["policies"]
    assert allow_policies["ns[sample]-policy[allow-curl]-rule[0]"] == {
        "permissions": [{"and_rules": {"rules": [{"any": True}]}}],
        "principals": [{"and_ids": {"ids": [{"or_ids": {"ids": [{"authenticated": {"principal_name": {"exact": "spiffe://cluster.local/ns/sample/sa/curl"}}}]}}]}}],
    }
    assert allow_policies["ns[istio-system]-policy[nothing]-rule[0]"] == {"permissions": [{"not_rule": {"any": True}}], "principals": [{"not_id": {"any": True}}]}
    deny_perm = filters[1]["typed_config"]["rules"]["policies"]["ns[sample]-policy[deny-admin]-rule[0]"]["permissions"][0]
    # fields are generated hosts, methods, paths, ports (each inserted at the front)
    assert deny_perm == {"and_rules": {"rules": [
        {"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "POST"}}}]}},
        {"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/admin/"}}}]}},
    ]}}  # fmt: skip
    assert all(f["typed_config"]["shadow_rules_stat_prefix"] == "istio_dry_run_allow_" for f in filters)
    dry = S.rbac_filters([ap("d", {"action": "DENY", "rules": [{}]}, annotations={"istio.io/dry-run": "true"})], HW, "sample", ["cluster.local"])
    assert "rules" not in dry[0]["typed_config"] and dry[0]["typed_config"]["shadow_rules_stat_prefix"] == "istio_dry_run_deny_"
    assert S.rbac_filters([allow], {"app": "other"}, "sample", ["cluster.local"]) == []  # selector does not match: no filter


@pytest.mark.istio("pilot/pkg/security/authz/model/generator.go: srcPrincipalGenerator.principal")
def test_rbac_matchers_for_source_operation_and_when() -> None:
    spec = {"rules": [{
        "from": [{"source": {"namespaces": ["sample"], "ipBlocks": ["10.10.0.0/16"], "notPrincipals": ["*/sa/bad"], "requestPrincipals": ["https://iss/alice"]}}],
        "to": [{"operation": {"hosts": ["*.sample"], "ports": ["5000"], "notPaths": ["/private*"]}}],
        "when": [{"key": "request.headers[x-team]", "values": ["blue"]}, {"key": "request.auth.claims[group]", "values": ["dev"]}],
    }]}  # fmt: skip
    (f,) = S.rbac_filters([ap("p", spec)], HW, "sample", ["cluster.local"])
    pol = f["typed_config"]["rules"]["policies"]["ns[sample]-policy[p]-rule[0]"]
    ids = pol["principals"][0]["and_ids"]["ids"]
    assert ids[0] == {"not_id": {"or_ids": {"ids": [{"authenticated": {"principal_name": {"safe_regex": {"regex": "spiffe://.*/sa/bad"}}}}]}}}
    iss, sub = ids[1]["and_ids"]["ids"]
    assert iss["metadata"] == {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "payload"}, {"key": "iss"}], "value": {"string_match": {"exact": "https://iss"}}}
    assert sub["metadata"]["value"] == {"string_match": {"exact": "alice"}}
    assert ids[2] == {"or_ids": {"ids": [{"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/sample/.*"}}}}]}}
    assert ids[3] == {"or_ids": {"ids": [{"direct_remote_ip": {"address_prefix": "10.10.0.0", "prefix_len": 16}}]}}
    assert ids[4] == {"or_ids": {"ids": [{"header": {"name": "x-team", "string_match": {"exact": "blue"}}}]}}
    group = ids[5]["metadata"]
    assert group["path"] == [{"key": "payload"}, {"key": "group"}]
    assert group["value"] == {"or_match": {"value_matchers": [{"list_match": {"one_of": {"string_match": {"exact": "dev"}}}}, {"string_match": {"exact": "dev"}}]}}
    rules = pol["permissions"][0]["and_rules"]["rules"]
    assert rules == [
        {"or_rules": {"rules": [{"header": {"name": ":authority", "string_match": {"suffix": ".sample", "ignore_case": True}}}]}},
        {"not_rule": {"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/private"}}}]}}},
        {"or_rules": {"rules": [{"destination_port": 5000}]}},
    ]


@pytest.mark.istio("pilot/pkg/security/authz/model/model.go: checkError")
def test_http_only_fields_on_tcp_drop_an_allow_rule_and_widen_a_deny_rule() -> None:
    rule = {"from": [{"source": {"namespaces": ["sample"]}}], "to": [{"operation": {"methods": ["GET"]}}]}
    allow = S.rbac_filters([ap("a", {"rules": [rule]})], HW, "sample", ["cluster.local"], for_tcp=True)
    assert allow[0]["name"] == "envoy.filters.network.rbac" and allow[0]["typed_config"]["stat_prefix"] == "tcp."
    assert allow[0]["typed_config"]["rules"]["policies"] == {}  # the rule is gone: nothing is allowed
    deny = S.rbac_filters([ap("d", {"action": "DENY", "rules": [rule]})], HW, "sample", ["cluster.local"], for_tcp=True)
    perm = deny[0]["typed_config"]["rules"]["policies"]["ns[sample]-policy[d]-rule[0]"]["permissions"]
    assert perm == [{"and_rules": {"rules": [{"any": True}]}}]  # methods dropped: any request of that namespace is denied


@pytest.mark.istio("pilot/pkg/security/trustdomain/bundle.go: ReplaceTrustDomainAliases")
def test_trust_domain_aliases_rewrite_principals() -> None:
    bundle = ["cluster2.local", "cluster1.local"]
    assert S.migrate_trust_domain("cluster1.local/ns/sample/sa/curl", bundle) == [
        "cluster2.local/ns/sample/sa/curl", "cluster1.local/ns/sample/sa/curl"]  # fmt: skip
    assert S.migrate_trust_domain("cluster.local/ns/sample/sa/curl", ["cluster2.local"]) == ["cluster2.local/ns/sample/sa/curl"]
    assert S.migrate_trust_domain("other.org/ns/sample/sa/curl", bundle) == ["other.org/ns/sample/sa/curl"]
    assert S.migrate_trust_domain("*/ns/sample/sa/curl", bundle) == ["*/ns/sample/sa/curl"]
    topo = parse_topology({
        "name": "t", "networks": {"n": {}},
        "meshes": {"m": {"trustDomain": "cluster2.local", "trustDomainAliases": ["cluster1.local"]}},
        "clusters": {"c": {"mesh": "m", "network": "n", "region": "r", "zone": "z", "podCIDR": "10.1.0.0/16", "serviceCIDR": "10.2.0.0/24", "controlPlane": "primary"}},
    })  # fmt: skip
    assert topo.trust_domains("c") == ["cluster2.local", "cluster1.local"]
    tls = S.downstream_mtls("/c", "/k", "/r", topo.trust_domains("c"))
    assert [m["matcher"] for m in tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]] == [
        {"prefix": "spiffe://cluster2.local/"}, {"prefix": "spiffe://cluster1.local/"}]  # fmt: skip


# ---- RequestAuthentication ------------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/security/authn/policy_applier.go: convertToEnvoyJwtConfig")
def test_jwt_filter_one_provider_per_rule_sorted_by_issuer() -> None:
    a, b = Issuer("https://b.example"), Issuer("https://a.example")
    ra = parse({"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication", "metadata": {"name": "jwt", "namespace": "sample"},
                "spec": {"jwtRules": [{"issuer": a.iss, "jwks": a.jwks()}, {"issuer": b.iss, "jwks": b.jwks(), "fromHeaders": [{"name": "x-jwt"}]}]}})  # fmt: skip
    (f,) = S.jwt_filter(ra, HW, "sample")
    cfg = f["typed_config"]
    assert f["name"] == "envoy.filters.http.jwt_authn"
    assert [cfg["providers"][n]["issuer"] for n in ("origins-0", "origins-1")] == ["https://a.example", "https://b.example"]
    assert cfg["providers"]["origins-0"]["payload_in_metadata"] == "payload"
    assert cfg["providers"]["origins-0"]["from_headers"] == [{"name": "x-jwt"}]
    req = cfg["rules"][0]["requires"]["requires_any"]["requirements"]
    assert req[:2] == [{"provider_name": "origins-0"}, {"provider_name": "origins-1"}]
    assert req[2] == {"requires_all": {"requirements": [
        {"requires_any": {"requirements": [{"provider_name": "origins-0"}, {"allow_missing": {}}]}},
        {"requires_any": {"requirements": [{"provider_name": "origins-1"}, {"allow_missing": {}}]}},
    ]}}  # fmt: skip


# ---- on real Envoys -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(module_home: Path) -> Iterator[Lab]:
    home = module_home
    lab = access_logs_on(Lab.up("flat-network", samples=True, home_dir=home, quiet=True))
    lab.deploy("curl", "cluster1", namespace="legacy", sidecar=False)
    yield lab
    lab.down(quiet=True)
    assert not net.existing_namespaces(prefix_for(home))


@pytest.mark.istio("pilot/pkg/networking/core/listener_inbound.go: inboundChainForOpts")
def test_plaintext_client_served_under_permissive_refused_under_strict(lab: Lab) -> None:
    r = lab.call("curl.legacy", URL, cluster="cluster1", n=2)
    assert [a.status for a in r.answers] == [200, 200], r.answers  # default PERMISSIVE: the raw_buffer chain serves it
    entry = lab.access_log("helloworld", "cluster1")[-1]
    assert entry["downstream_peer"] is None and entry["tls"] is None  # plaintext: no peer identity
    strict = pa("default", "istio-system", "STRICT")
    lab.apply(strict, "cluster1")
    try:
        r = lab.call("curl.legacy", URL, cluster="cluster1", n=1)
        assert r.answers[0].status == 0, r.answers  # no filter chain matches plaintext: the connection is closed
        assert lab.stats("helloworld", "cluster1", "no_filter_chain_match"), "the refusal should count as no_filter_chain_match"
        assert lab.call("curl", URL, cluster="cluster1", n=4).errors == 0  # sidecars still talk mTLS
        assert lab.validate() == len([w for w in lab.backend.workloads if w.sidecar])
    finally:
        lab.delete("PeerAuthentication", "default", "cluster1", namespace="istio-system")


@pytest.mark.istio("pilot/pkg/networking/core/listener_builder.go: buildHTTPConnectionManager")
def test_denied_request_gets_403_rbac_in_access_log_and_stats(lab: Lab) -> None:
    lab.apply(ap("deny-hello", {"selector": {"matchLabels": {"app": "helloworld"}}, "action": "DENY",
                                "rules": [{"to": [{"operation": {"paths": ["/hello"]}}]}]}), "cluster1")  # fmt: skip
    try:
        r = lab.call("curl", URL, cluster="cluster1", n=4)
        assert {(a.status, a.body) for a in r.answers} == {(403, "RBAC: access denied")}
        entries = [e for e in lab.access_log("helloworld", "cluster1") + lab.access_log("helloworld", "cluster2") if e["status"] == 403]
        assert entries and all(e["upstream_host"] is None for e in entries)  # answered by the sidecar: the app never saw it
        assert "rbac_access_denied_matched_policy[ns[sample]-policy[deny-hello]-rule[0]]" in {e["response_code_details"] for e in entries}
        assert sum(sum(lab.stats("helloworld", c, "inbound_5000.rbac.denied").values()) for c in ("cluster1", "cluster2")) == 4
        assert lab.call("curl", "http://helloworld.sample:5000/other", cluster="cluster1", n=1).answers[0].status == 404  # other paths pass (the app has no /other)
    finally:
        lab.delete("AuthorizationPolicy", "deny-hello", "cluster1")


@pytest.mark.istio("pilot/pkg/networking/plugin/authn/authentication.go: BuildHTTP")
def test_jwt_401_without_valid_token_403_without_token_200_with(lab: Lab) -> None:
    issuer = Issuer("https://issuer.meshlab.example")
    lab.apply([
        {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication", "metadata": {"name": "jwt"},
         "spec": {"selector": {"matchLabels": {"app": "helloworld"}}, "jwtRules": [{"issuer": issuer.iss, "jwks": issuer.jwks()}]}},
        {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "need-jwt"},
         "spec": {"selector": {"matchLabels": {"app": "helloworld"}},
                  "rules": [{"from": [{"source": {"requestPrincipals": [f"{issuer.iss}/alice"]}}]}]}},
    ], "cluster1")  # fmt: skip
    try:
        def status(headers: dict[str, str] | None = None) -> set[int]:
            return {a.status for a in lab.call("curl", URL, cluster="cluster1", n=2, headers=headers).answers}

        assert status() == {403}  # no token: jwt_authn lets it through, RBAC finds no request principal
        assert status({"authorization": "Bearer not.a.jwt"}) == {401}  # a bad token is rejected by jwt_authn
        assert status({"authorization": f"Bearer {Issuer(issuer.iss).token('alice')}"}) == {401}  # signed by another key
        assert status({"authorization": f"Bearer {issuer.token('bob')}"}) == {403}  # valid, wrong subject
        assert status({"authorization": f"Bearer {issuer.token('alice')}"}) == {200}
    finally:
        lab.delete("AuthorizationPolicy", "need-jwt", "cluster1")
        lab.delete("RequestAuthentication", "jwt", "cluster1")
