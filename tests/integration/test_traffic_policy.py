"""VirtualService and DestinationRule behaviour on real Envoy (local backend, separate networks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab.errors import ResourceError
from meshlab.lab import Lab
from meshlab.dataplane import access_logs_on

pytestmark = pytest.mark.integration
URL = "http://helloworld.sample:5000/hello"

SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld, namespace: sample}
spec:
  host: helloworld
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def vs(http: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: helloworld, namespace: sample}}
spec:
  hosts: [helloworld]
  http:
{http}
"""


@pytest.fixture
def lab(lab_home: Path) -> Iterator[Lab]:
    lab = access_logs_on(Lab.up("separate-networks", samples=True, home_dir=lab_home, quiet=True))
    lab.apply(SUBSETS, cluster="cluster1")
    yield lab
    lab.down(quiet=True)


def test_weighted_routes_to_subsets_across_the_gateway(lab: Lab) -> None:
    lab.apply(
        vs(
            "  - route:\n"
            "    - {destination: {host: helloworld, subset: v1}, weight: 75}\n"
            "    - {destination: {host: helloworld, subset: v2}, weight: 25}\n"
        ),
        cluster="cluster1",
    )
    r = lab.call("curl", URL, cluster="cluster1", n=200)
    assert r.errors == 0
    v2 = r.tally.get(("cluster2", "v2"), 0)
    assert 25 <= v2 <= 80, r.tally  # 25% of 200 = 50, binomial spread allowed
    names = {row["CLUSTER"] for row in lab.endpoints("curl", cluster="cluster1", service="helloworld")}
    assert "outbound|5000|v2|helloworld.sample.svc.cluster.local" in names


def test_header_match_routes_a_canary(lab: Lab) -> None:
    lab.apply(
        vs(
            "  - match: [{headers: {x-canary: {exact: 'yes'}}}]\n"
            "    route: [{destination: {host: helloworld, subset: v2}}]\n"
            "  - route: [{destination: {host: helloworld, subset: v1}}]\n"
        ),
        cluster="cluster1",
    )
    assert lab.call("curl", URL, cluster="cluster1", n=10, headers={"x-canary": "yes"}).tally == {("cluster2", "v2"): 10}
    assert lab.call("curl", URL, cluster="cluster1", n=10).tally == {("cluster1", "v1"): 10}


def test_fault_abort_and_delay_and_timeout(lab: Lab) -> None:
    lab.apply(vs("  - fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n    route: [{destination: {host: helloworld}}]\n"), cluster="cluster1")
    assert lab.call("curl", URL, cluster="cluster1", n=5).tally == {("error", "418"): 5}
    lab.apply(vs("  - timeout: 100ms\n    route: [{destination: {host: helloworld}}]\n"), cluster="cluster1")
    assert lab.call("curl", URL + "?sleep=0.3", cluster="cluster1", n=3).tally == {("error", "504"): 3}
    assert lab.call("curl", URL, cluster="cluster1", n=3).errors == 0
    lab.apply(vs("  - fault: {delay: {fixedDelay: 200ms, percentage: {value: 100}}}\n    route: [{destination: {host: helloworld}}]\n"), cluster="cluster1")
    r = lab.call("curl", URL, cluster="cluster1", n=3)
    assert r.errors == 0 and min(a.seconds for a in r.answers) >= 0.19


def test_retries_on_5xx_hide_a_crash_and_attempts_0_shows_it(lab: Lab) -> None:
    lab.apply(vs("  - retries: {attempts: 0}\n    route: [{destination: {host: helloworld, subset: v1}}]\n"), cluster="cluster1")
    lab.kill("helloworld", "cluster1")
    assert lab.call("curl", URL, cluster="cluster1", n=3).tally == {("error", "503"): 3}
    lab.apply(
        vs(
            "  - retries: {attempts: 3, retryOn: 'connect-failure,5xx'}\n"
            "    route:\n"
            "    - {destination: {host: helloworld, subset: v1}, weight: 50}\n"
            "    - {destination: {host: helloworld, subset: v2}, weight: 50}\n"
        ),
        cluster="cluster1",
    )
    r = lab.call("curl", URL, cluster="cluster1", n=10)
    assert ("cluster2", "v2") in r.tally  # the v2 half still answers


def test_mirror_sends_a_copy_and_ignores_its_answer(lab: Lab) -> None:
    lab.apply(
        vs("  - route: [{destination: {host: helloworld, subset: v1}}]\n    mirror: {host: helloworld, subset: v2}\n    mirrorPercentage: {value: 100}\n"),
        cluster="cluster1",
    )
    before = len(lab.access_log("helloworld", "cluster2", last=1000))
    r = lab.call("curl", URL, cluster="cluster1", n=10)
    assert r.tally == {("cluster1", "v1"): 10}
    mirrored = lab.access_log("helloworld", "cluster2", last=1000)[before:]
    assert len(mirrored) == 10 and all("-shadow" in e["authority"] for e in mirrored), mirrored[:2]


def test_bad_routes_are_refused_and_change_nothing(lab: Lab) -> None:
    lab.apply(vs("  - route: [{destination: {host: helloworld, subset: v1}}]\n"), cluster="cluster1")
    with pytest.raises(ResourceError, match="subset 'v9'"):
        lab.apply(vs("  - route: [{destination: {host: helloworld, subset: v9}}]\n"), cluster="cluster1")
    assert lab.call("curl", URL, cluster="cluster1", n=5).tally == {("cluster1", "v1"): 5}
    other = vs("  - route: [{destination: {host: helloworld}}]\n").replace("name: helloworld,", "name: second,")
    with pytest.raises(ResourceError, match="already has VirtualService 'helloworld'"):
        lab.apply(other, cluster="cluster1")
    with pytest.raises(ResourceError, match="add up to 90"):
        lab.apply(
            vs("  - route:\n    - {destination: {host: helloworld, subset: v1}, weight: 50}\n    - {destination: {host: helloworld, subset: v2}, weight: 40}\n"),
            cluster="cluster1",
        )


def test_distribute_and_failover_priority(lab: Lab) -> None:
    lab.delete("DestinationRule", "helloworld", cluster="cluster1")
    lab.apply(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld, namespace: sample}
spec:
  host: helloworld
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 5s, maxEjectionPercent: 100}
    loadBalancer:
      localityLbSetting:
        failoverPriority: [topology.istio.io/network]
""",
        cluster="cluster1",
    )
    prio = {r["ENDPOINT"].split(":")[1]: r["PRIORITY"] for r in lab.endpoints("curl", cluster="cluster1", service="helloworld")}
    assert prio == {"5000": "0", "15443": "1"}  # same network first
    lab.delete("DestinationRule", "helloworld", cluster="cluster1")
    lab.apply(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld, namespace: sample}
spec:
  host: helloworld
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: region1/zone1/*
          to: {"region1/zone1/*": 90, "region2/zone2/*": 10}
""",
        cluster="cluster1",
    )
    r = lab.call("curl", URL, cluster="cluster1", n=200)
    assert 5 <= r.tally.get(("cluster2", "v2"), 0) <= 45, r.tally
