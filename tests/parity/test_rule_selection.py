"""Which DestinationRule and VirtualService a sidecar uses for a host, written from Istio 1.31's source.

- push_context.go ``destinationRule``: the rules of the client's namespace, else the service's namespace
  (exported to the client), else the root namespace; ``setDestinationRules`` merges rules only within one
  namespace's index (``mergeDestinationRule``).
- config.go ``ResolveShortnameToFQDN``: only a host without a dot is expanded (``<host>.<rule ns>.svc.cluster.local``);
  ``MostSpecificHostMatch``: an exact host first, else the longest wildcard that matches.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshlab.errors import ResourceError
from meshlab.topology import load_topology

from .kit import HOST, cluster, routes, sidecar, workload

FLAT = load_topology("flat-network")


def client(namespace: str) -> Any:
    w = workload(f"curl-{namespace}", "curl", "cluster1", "10.10.0.9")
    w.namespace = namespace
    return w


SERVERS = [workload("hw-1", "helloworld", "cluster1", "10.10.0.10"), workload("hw-2", "helloworld", "cluster1", "10.10.0.11", "v2")]


def dr(name: str, namespace: str, host: str, body: str) -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: "{host}"
{body}
"""


def lb(simple: str) -> str:
    return f"  trafficPolicy: {{loadBalancer: {{simple: {simple}}}}}"


def policy_for(namespace: str, resources: str) -> str:
    return str(cluster(sidecar(FLAT, client(namespace), SERVERS, resources))["lb_policy"])


def subset_names(namespace: str, resources: str) -> set[str]:
    cfg = sidecar(FLAT, client(namespace), SERVERS, resources)
    return {c["name"].split("|")[2] for c in cfg.clusters if c["name"].endswith("|" + HOST) and c["name"].split("|")[2]}


# ---- item 1: the client's namespace, then the service's, then the root namespace -----------------------------
@pytest.mark.istio("pilot/pkg/model/push_context.go: destinationRule")
def test_the_clients_namespace_wins_then_the_services_then_the_root() -> None:
    service_ns = dr("hw", "sample", HOST, lb("ROUND_ROBIN"))
    client_ns = dr("hw-frontend", "frontend", HOST, lb("RANDOM"))
    root = dr("hw-root", "istio-system", HOST, lb("LEAST_REQUEST") + "\n  subsets: [{name: root, labels: {version: v1}}]")
    both = service_ns + client_ns + root
    assert policy_for("frontend", both) == "RANDOM"  # the rule in the client's own namespace
    assert policy_for("legacy", both) == "ROUND_ROBIN"  # none there: the service's namespace
    assert policy_for("sample", both) == "ROUND_ROBIN"
    assert policy_for("legacy", root) == "LEAST_REQUEST"  # neither: the root namespace
    assert subset_names("legacy", both) == set()  # one namespace's rule: the root rule's subset is not merged in
    assert policy_for("legacy", client_ns) == "LEAST_REQUEST"  # another client namespace's rule: Istio's default policy


@pytest.mark.istio("pilot/pkg/model/push_context.go: setDestinationRules")
def test_rules_merge_only_within_one_namespace() -> None:
    a = dr("a", "sample", HOST, "  subsets: [{name: v1, labels: {version: v1}}]")
    b = dr("b", "sample", HOST, "  subsets: [{name: v2, labels: {version: v2}}]")
    c = dr("c", "frontend", HOST, "  subsets: [{name: mine, labels: {version: v2}}]")
    assert subset_names("sample", a + b + c) == {"v1", "v2"}  # same namespace: merged
    assert subset_names("legacy", a + b + c) == {"v1", "v2"}
    assert subset_names("frontend", a + b + c) == {"mine"}  # its own namespace's rule only


@pytest.mark.istio("pilot/pkg/model/push_context.go: getExportedDestinationRuleFromNamespace")
def test_export_to_decides_who_sees_a_rule_from_another_namespace() -> None:
    private = dr("hw", "sample", HOST, lb("RANDOM") + "\n  exportTo: ['.']")
    assert policy_for("sample", private) == "RANDOM"
    assert policy_for("legacy", private) == "LEAST_REQUEST"  # not exported to legacy
    to_legacy = dr("hw", "sample", HOST, lb("RANDOM") + "\n  exportTo: [legacy]")
    assert policy_for("legacy", to_legacy) == "RANDOM" and policy_for("frontend", to_legacy) == "LEAST_REQUEST"
    # rules of one host in different namespaces may have different exportTo
    assert policy_for("frontend", private + dr("hw-f", "frontend", HOST, lb("ROUND_ROBIN") + "\n  exportTo: ['.']")) == "ROUND_ROBIN"


# ---- item 2: host resolution and wildcards ------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/model/config.go: ResolveShortnameToFQDN")
def test_only_a_host_without_a_dot_is_expanded() -> None:
    assert policy_for("sample", dr("hw", "sample", "helloworld", lb("RANDOM"))) == "RANDOM"
    assert policy_for("legacy", dr("hw", "sample", "helloworld", lb("RANDOM"))) == "RANDOM"  # the rule's namespace, not the client's
    # a name with a dot is taken as written: helloworld.sample is no service, the rule applies to nothing
    assert policy_for("sample", dr("hw", "sample", "helloworld.sample", lb("RANDOM"))) == "LEAST_REQUEST"
    assert policy_for("sample", dr("hw", "sample", "helloworld.sample.svc", lb("RANDOM"))) == "LEAST_REQUEST"
    # a short host in another namespace names that namespace's service
    assert policy_for("frontend", dr("hw", "frontend", "helloworld", lb("RANDOM"))) == "LEAST_REQUEST"


@pytest.mark.istio("pilot/pkg/model/config.go: MostSpecificHostMatch")
def test_wildcard_hosts_match_and_the_most_specific_wins() -> None:
    assert policy_for("sample", dr("all", "sample", "*.sample.svc.cluster.local", lb("RANDOM"))) == "RANDOM"
    assert policy_for("legacy", dr("all", "istio-system", "*.local", lb("ROUND_ROBIN"))) == "ROUND_ROBIN"
    assert policy_for("sample", dr("other", "sample", "*.other.svc.cluster.local", lb("RANDOM"))) == "LEAST_REQUEST"
    # in one namespace: the exact host before any wildcard, then the longest wildcard
    same_ns = dr("w1", "sample", "*.local", lb("RANDOM")) + dr("w2", "sample", "*.svc.cluster.local", lb("ROUND_ROBIN"))
    assert policy_for("sample", same_ns) == "ROUND_ROBIN"
    assert policy_for("sample", same_ns + dr("exact", "sample", HOST, lb("LEAST_REQUEST") + "\n  subsets: [{name: v1, labels: {version: v1}}]")) == "LEAST_REQUEST"
    # the namespace order comes first: a wildcard in the client's namespace beats an exact host in the service's
    assert policy_for("frontend", dr("exact", "sample", HOST, lb("ROUND_ROBIN")) + dr("w", "frontend", "*.local", lb("RANDOM"))) == "RANDOM"
    # a wildcard rule's subsets become clusters of every service it matches
    assert subset_names("sample", dr("w", "sample", "*.sample.svc.cluster.local", "  subsets: [{name: v2, labels: {version: v2}}]")) == {"v2"}


VS = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: hw, namespace: sample}}
spec:
  hosts: [{host}]
  http: [{{route: [{{destination: {{host: helloworld, subset: v2}}}}]}}]
"""


@pytest.mark.istio("pilot/pkg/networking/core/route/route.go: separateVSHostsAndServices")
def test_a_virtual_service_host_resolves_as_istio_resolves_it() -> None:
    subsets = dr("hw", "sample", "helloworld", "  subsets: [{name: v2, labels: {version: v2}}]")

    def first_cluster(host: str, namespace: str = "sample") -> str:
        (r, *_) = routes(sidecar(FLAT, client(namespace), SERVERS, subsets + VS.format(host=host)))
        return str(r["route"]["cluster"])

    assert first_cluster("helloworld") == f"outbound|5000|v2|{HOST}"
    assert first_cluster(HOST, "legacy") == f"outbound|5000|v2|{HOST}"
    # helloworld.sample is not a service: on port 5000 the VirtualService has no route (Istio adds one on port 80 only)
    assert first_cluster("helloworld.sample") == f"outbound|5000||{HOST}"
    with pytest.raises(ResourceError, match=r"\*\.sample\.svc\.cluster\.local"):  # wildcard VirtualService hosts: refused by name
        sidecar(FLAT, client("sample"), SERVERS, subsets + VS.format(host="'*.sample.svc.cluster.local'"))
