"""VirtualService routes as Istio 1.31's route.go writes them: route names, fault injection and its
percentage arithmetic, mirror percentages."""

from __future__ import annotations

from typing import Any

import pytest

from meshlab.topology import load_topology

from .kit import routes, sidecar, workload

FLAT = load_topology("flat-network")
CLIENT = workload("curl-1", "curl", "cluster1", "10.10.0.9")
SERVERS = [workload("hw-1", "helloworld", "cluster1", "10.10.0.10")]
FAULT = "envoy.filters.http.fault"


def vs(http: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: hw}}
spec:
  hosts: [helloworld]
  http:
{http}
"""


def translated(http: str) -> list[dict[str, Any]]:
    return routes(sidecar(FLAT, CLIENT, SERVERS, vs(http)))


def fault(http: str) -> dict[str, Any]:
    (r,) = translated(http)
    cfg = dict(r["typed_per_filter_config"][FAULT])
    cfg.pop("@type")
    return cfg


# ---- item 9: a route is named after the VirtualService's http route, or not at all ---------------------------
@pytest.mark.istio("pilot/pkg/networking/core/route/route.go: TranslateRoute")
def test_an_unnamed_route_has_no_name() -> None:
    (r,) = translated("  - route: [{destination: {host: helloworld}}]")
    assert "name" not in r  # Name = in.Name, empty
    (r,) = translated("  - name: to-hw\n    route: [{destination: {host: helloworld}}]")
    assert r["name"] == "to-hw"
    (r,) = routes(sidecar(FLAT, CLIENT, SERVERS))  # without a VirtualService: BuildDefaultHTTPOutboundRoute
    assert r["name"] == "default"


# ---- item 3 and the percentage arithmetic -------------------------------------------------------------------
@pytest.mark.istio("pilot/pkg/networking/core/route/route.go: TranslateFault")
def test_a_fault_without_percentage_applies_to_no_request() -> None:
    # abort: Percentage nil stays unset, which Envoy reads as 0 %
    assert fault("  - route: [{destination: {host: helloworld}}]\n    fault: {abort: {httpStatus: 503}}") == {"abort": {"http_status": 503}}
    # delay: the deprecated integer ``percent`` (0 when unset), out of a HUNDRED
    assert fault("  - route: [{destination: {host: helloworld}}]\n    fault: {delay: {fixedDelay: 2s}}") == {
        "delay": {"fixed_delay": "2.000s", "percentage": {"numerator": 0, "denominator": "HUNDRED"}}
    }


@pytest.mark.istio("pilot/pkg/networking/core/route/route.go: translatePercentToFractionalPercent")
def test_fault_percentages_are_truncated_to_millionths() -> None:
    """uint32(p.Value * 10000) out of a MILLION: the float product is truncated, not rounded."""

    def abort(value: str) -> dict[str, Any]:
        return fault(f"  - route: [{{destination: {{host: helloworld}}}}]\n    fault: {{abort: {{httpStatus: 500, percentage: {{value: {value}}}}}}}")["abort"]

    assert abort("50")["percentage"] == {"numerator": 500000, "denominator": "MILLION"}
    assert abort("0.043")["percentage"] == {"numerator": 429, "denominator": "MILLION"}  # 0.043 * 10000 = 429.99999999999994
    assert abort("0.0001")["percentage"] == {"numerator": 1, "denominator": "MILLION"}
    assert abort("0.00001")["percentage"] == {"numerator": 0, "denominator": "MILLION"}
    assert abort("100")["percentage"] == {"numerator": 1000000, "denominator": "MILLION"}
    delay = fault("  - route: [{destination: {host: helloworld}}]\n    fault: {delay: {fixedDelay: 1s, percentage: {value: 0.071}}}")["delay"]
    assert delay["percentage"] == {"numerator": 709, "denominator": "MILLION"}  # 0.071 * 10000 = 709.9999999999999


@pytest.mark.istio("pilot/pkg/networking/core/route/route.go: MirrorPercent")
def test_mirror_percentage_defaults_to_all_and_zero_means_no_mirror() -> None:
    def mirror(extra: str) -> list[dict[str, Any]] | None:
        (r,) = translated(f"  - route: [{{destination: {{host: helloworld}}}}]\n    mirror: {{host: helloworld}}{extra}")
        return r["route"].get("request_mirror_policies")

    (m,) = mirror("")
    assert m["runtime_fraction"] == {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    (m,) = mirror("\n    mirrorPercentage: {value: 0.043}")
    assert m["runtime_fraction"] == {"default_value": {"numerator": 429, "denominator": "MILLION"}}
    assert mirror("\n    mirrorPercentage: {value: 0}") is None
