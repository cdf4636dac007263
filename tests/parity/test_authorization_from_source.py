"""AuthorizationPolicy dry-run and trust-domain aliases, written from Istio 1.31's source.

- builder.go ``isDryRun``: ``istio.io/dry-run`` parsed with Go's ``strconv.ParseBool``; dry-run policies go to
  ``shadow_rules`` (``build``), enforced ones to ``rules``; validation.go ``checkDryRunAnnotation`` refuses a
  value ParseBool does not accept and the annotation on an action other than ALLOW or DENY.
- bundle.go ``ReplaceTrustDomainAliases`` (called by model.go ``MigrateTrustDomain`` for ``principals``,
  ``notPrincipals`` and ``when: source.principal``): a principal of a trust domain of the bundle, or of
  ``cluster.local``, is written for every trust domain; ``*``-suffix trust domains stay as written for the ones
  they match; a trust domain that is a prefix pattern is replaced; others stay. (A principal that is not
  ``<td>/ns/<ns>/sa/<sa>``, which Istio keeps as written and which then matches nobody, is refused by the local
  backend: docs/differences.md.)
"""

from __future__ import annotations

from typing import Any

import pytest

from meshlab.errors import ResourceError
from meshlab.resources import parse
from meshlab.topology import load_topology, parse_topology

from .kit import hcms, sidecar, workload

FLAT = load_topology("flat-network")
CLIENT = workload("curl-1", "curl", "cluster1", "10.10.0.9")
HW = workload("hw-1", "helloworld", "cluster1", "10.10.0.10")
RBAC = "envoy.filters.http.rbac"


def policy(name: str, spec: str, annotations: str = "", action: str = "") -> str:
    md = f"{{name: {name}, namespace: sample{', annotations: ' + annotations if annotations else ''}}}"
    return f"""
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {md}
spec:
{f"  action: {action}" if action else ""}
  selector: {{matchLabels: {{app: helloworld}}}}
{spec}
"""


def rbac_filters(resources: str, topology: Any = FLAT) -> list[dict[str, Any]]:
    (h, *_) = hcms(sidecar(topology, HW, [CLIENT], resources), "10.10.0.10_5000")
    return [f["typed_config"] for f in h["http_filters"] if f["name"] == RBAC]


ALLOW_CURL = "  rules: [{from: [{source: {principals: [cluster.local/ns/sample/sa/curl]}}]}]"


# ---- dry-run ---------------------------------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/security/authz/builder/builder.go: isDryRun")
def test_dry_run_is_read_with_parse_bool_and_becomes_shadow_rules() -> None:
    for value in ("'true'", "'1'", "t", "'True'", "'TRUE'"):
        (f,) = rbac_filters(policy("p", ALLOW_CURL, f"{{istio.io/dry-run: {value}}}"))
        assert "rules" not in f, value  # only dry-run policies: no enforced rules (nil)
        assert list(f["shadow_rules"]["policies"]) == ["ns[sample]-policy[p]-rule[0]"] and f["shadow_rules"]["action"] == "ALLOW"
        assert f["shadow_rules_stat_prefix"] == "istio_dry_run_allow_"
    for value in ("'false'", "'0'", "f", "'FALSE'"):
        (f,) = rbac_filters(policy("p", ALLOW_CURL, f"{{istio.io/dry-run: {value}}}"))
        assert list(f["rules"]["policies"]) == ["ns[sample]-policy[p]-rule[0]"] and "shadow_rules" not in f, value


@pytest.mark.istio("pilot/pkg/security/authz/builder/builder.go: build")
def test_enforced_and_dry_run_policies_of_one_action_share_a_filter() -> None:
    both = policy("enforced", ALLOW_CURL) + policy("trial", "  rules: [{to: [{operation: {methods: [GET]}}]}]", "{istio.io/dry-run: 'true'}")
    (f,) = rbac_filters(both)
    assert list(f["rules"]["policies"]) == ["ns[sample]-policy[enforced]-rule[0]"]
    assert list(f["shadow_rules"]["policies"]) == ["ns[sample]-policy[trial]-rule[0]"]
    (deny,) = rbac_filters(policy("d", "  rules: [{}]", "{istio.io/dry-run: 'true'}", action="DENY"))
    assert "rules" not in deny and deny["shadow_rules"]["action"] == "DENY" and deny["shadow_rules_stat_prefix"] == "istio_dry_run_deny_"


@pytest.mark.istio("pkg/config/validation/validation.go: checkDryRunAnnotation")
def test_a_dry_run_annotation_istio_would_reject_is_refused_by_name() -> None:
    with pytest.raises(ResourceError, match=r"istio.io/dry-run.*yes"):
        parse(policy("p", ALLOW_CURL, "{istio.io/dry-run: 'yes'}"))
    with pytest.raises(ResourceError, match=r"istio.io/dry-run.*AUDIT"):
        parse(policy("p", "  rules: [{}]", "{istio.io/dry-run: 'true'}", action="AUDIT"))


# ---- trust-domain aliases, every principal form -------------------------------------------------------------
ALIASED = parse_topology({
    "name": "t", "networks": {"n": {}},
    "meshes": {"m": {"trustDomain": "td1", "trustDomainAliases": ["td2"]}},
    "clusters": {"cluster1": {"mesh": "m", "network": "n", "region": "r", "zone": "z", "podCIDR": "10.10.0.0/16",
                              "serviceCIDR": "10.255.10.0/24", "controlPlane": "primary"}},
})  # fmt: skip


def principal_names(node: Any) -> list[dict[str, Any]]:
    """Every ``principal_name`` matcher in an RBAC principal tree, in order."""
    if isinstance(node, dict):
        if "principal_name" in node:
            return [node["principal_name"]]
        return [m for v in node.values() for m in principal_names(v)]
    if isinstance(node, list):
        return [m for v in node for m in principal_names(v)]
    return []


def rewritten(principal: str, field: str = "principals") -> list[dict[str, Any]]:
    (f,) = rbac_filters(policy("p", f"  rules: [{{from: [{{source: {{{field}: ['{principal}']}}}}]}}]"), ALIASED)
    return principal_names(f["rules"]["policies"]["ns[sample]-policy[p]-rule[0]"]["principals"])


def exact(*tds: str, rest: str = "/ns/foo/sa/bar") -> list[dict[str, str]]:
    return [{"exact": f"spiffe://{td}{rest}"} for td in tds]


@pytest.mark.istio("pilot/pkg/security/trustdomain/bundle.go: ReplaceTrustDomainAliases")
def test_every_principal_form_is_rewritten_as_the_bundle_says() -> None:
    assert rewritten("td1/ns/foo/sa/bar") == exact("td1", "td2")
    assert rewritten("td2/ns/foo/sa/bar") == exact("td1", "td2")
    assert rewritten("cluster.local/ns/foo/sa/bar") == exact("td1", "td2")  # "cluster.local" stands for the local trust domain
    assert rewritten("other/ns/foo/sa/bar") == exact("other")  # not in the bundle: as written
    # any trust domain: not enforced (StringMatcherWithPrefix: a leading * is a regex after spiffe://)
    assert rewritten("*/ns/foo/sa/bar") == [{"safe_regex": {"regex": "spiffe://.*/ns/foo/sa/bar"}}]
    # a suffix pattern stays as written for the trust domains it matches and is replaced for the others
    assert rewritten("*1/ns/foo/sa/bar") == [{"safe_regex": {"regex": "spiffe://.*1/ns/foo/sa/bar"}}, *exact("td2")]
    assert rewritten("td*/ns/foo/sa/bar") == exact("td1", "td2")  # a prefix pattern is replaced by each trust domain
    assert rewritten("td1/ns/foo/sa/*") == [{"prefix": "spiffe://td1/ns/foo/sa/"}, {"prefix": "spiffe://td2/ns/foo/sa/"}]


@pytest.mark.istio("pilot/pkg/security/authz/model/model.go: MigrateTrustDomain")
def test_not_principals_and_source_principal_conditions_are_rewritten_too() -> None:
    assert rewritten("td1/ns/foo/sa/bar", "notPrincipals") == exact("td1", "td2")
    for key in ("values", "notValues"):
        spec = f"  rules: [{{when: [{{key: source.principal, {key}: ['cluster.local/ns/foo/sa/bar']}}]}}]"
        (f,) = rbac_filters(policy("p", spec), ALIASED)
        assert principal_names(f["rules"]["policies"]["ns[sample]-policy[p]-rule[0]"]["principals"]) == exact("td1", "td2"), key
