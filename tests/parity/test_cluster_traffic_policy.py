"""DestinationRule trafficPolicy -> Envoy cluster: circuit breakers, retry budget, panic threshold
(istiod's cluster_traffic_policy.go), checked on the generated config and by Envoy's validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshlab import xds as E
from meshlab.controlplane.clusters import UNLIMITED, apply_traffic_policy
from meshlab.runtime.envoy import validate



def cluster_fields(policy: dict[str, Any]) -> dict[str, Any]:
    eps = [E.Endpoint("10.10.0.10", 5000, "region1", "zone1")]
    return apply_traffic_policy(policy, eps, ("region1", "zone1"), {})


def thresholds(policy: dict[str, Any]) -> dict[str, Any]:
    return cluster_fields(policy)["circuit_breakers"]["thresholds"][0]


@pytest.mark.istio("pilot/pkg/networking/core/cluster_traffic_policy.go: applyConnectionPool")
def test_circuit_breakers_are_unlimited_by_default() -> None:
    """getDefaultCircuitBreakerThresholds: MaxUint32 everywhere, even without a DestinationRule."""
    assert thresholds({}) == {k: UNLIMITED for k in ("max_connections", "max_pending_requests", "max_requests", "max_retries")}


@pytest.mark.istio("pilot/pkg/networking/core/cluster_traffic_policy.go: applyConnectionPool")
def test_connection_pool_sets_the_limits() -> None:
    th = thresholds({"connectionPool": {"tcp": {"maxConnections": 1},
                                         "http": {"http1MaxPendingRequests": 2, "http2MaxRequests": 3, "maxRetries": 4}}})
    assert (th["max_connections"], th["max_pending_requests"], th["max_requests"], th["max_retries"]) == (1, 2, 3, 4)
    assert "retry_budget" not in th


@pytest.mark.istio("pilot/pkg/networking/core/cluster_traffic_policy.go: applyRetryBudget")
def test_retry_budget_defaults_and_fields(tmp_path: Path) -> None:
    """applyRetryBudget: 20 % and 3 concurrent retries unless given; budgetInterval passed through."""
    assert thresholds({"retryBudget": {}})["retry_budget"] == {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 3}
    th = thresholds({"retryBudget": {"percent": 30, "minRetryConcurrency": 4, "budgetInterval": "10s"},
                     "connectionPool": {"http": {"maxRetries": 10}}})
    assert th["retry_budget"] == {"budget_percent": {"value": 30.0}, "min_retry_concurrency": 4, "budget_interval": "10.000s"}
    assert th["max_retries"] == 10  # kept, as in Istio (Envoy ignores it while a budget is set)
    cluster = E.static_cluster("outbound|5000||helloworld.sample.svc.cluster.local", "10.10.0.10", 5000)
    cluster.update(cluster_fields({"retryBudget": {"percent": 30, "minRetryConcurrency": 4, "budgetInterval": "10s"}}))
    validate({"static_resources": {"clusters": [json.loads(json.dumps(cluster))]}}, tmp_path)


@pytest.mark.istio("pilot/pkg/networking/core/cluster_traffic_policy.go: applyOutlierDetection")
def test_min_health_percent_is_the_panic_threshold() -> None:
    """applyOutlierDetection: with outlierDetection the panic threshold is minHealthPercent, 0 (off) by default;
    applyLoadBalancer: without it, 0 too (Istio sends unhealthy endpoints by default)."""
    assert cluster_fields({})["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}}
    od = {"consecutive5xxErrors": 1}
    assert cluster_fields({"outlierDetection": od})["common_lb_config"]["healthy_panic_threshold"] == {"value": 0.0}
    lb = cluster_fields({"outlierDetection": {**od, "minHealthPercent": 50}})["common_lb_config"]
    assert lb["healthy_panic_threshold"] == {"value": 50.0}
    assert "locality_weighted_lb_config" not in lb  # only with a locality setting (loadbalancer.go)
