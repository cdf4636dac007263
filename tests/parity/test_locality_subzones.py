"""Locality load balancing with subzones, written from Istio 1.31's source.

- util.go ``LbPriority``: 0 for the same region, zone and subzone, 1 for another subzone of the zone, 2 for
  another zone of the region, 3 for another region (applyLocalityFailover then compacts the priorities);
- util.go ``LocalityMatch``: a rule's zone or subzone matches anything when ``*`` or left out; the ``from``
  of a ``distribute`` rule is matched against the proxy's full locality (loadbalancer.go ``applyLocalityWeights``).

The proxy runs in region1/zone1 (no subzone); the endpoints come from a ServiceEntry with subzone localities.
"""

from __future__ import annotations

import pytest

from meshlab.topology import load_topology

from .kit import localities, sidecar, workload

FLAT = load_topology("flat-network")
CLIENT = workload("curl-1", "curl", "cluster1", "10.10.0.9")
NAME = "outbound|80||db.example.internal"
SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.30.0.1, locality: region1/zone1}
  - {address: 10.30.0.2, locality: region1/zone1/sub-b}
  - {address: 10.30.0.3, locality: region1/zone2/sub-c}
  - {address: 10.30.0.4, locality: region2/zone2}
"""


def dr(lb: str) -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db}}
spec:
  host: db.example.internal
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 3}}
    loadBalancer: {{localityLbSetting: {lb}}}
"""


def groups(lb: str) -> list[tuple[str, int, int]]:
    return localities(sidecar(FLAT, CLIENT, [], SE + dr(lb)), NAME)


@pytest.mark.istio("pilot/pkg/networking/util/util.go: LbPriority")
def test_another_subzone_of_the_zone_is_priority_one() -> None:
    prio = {loc: p for loc, p, _w in groups("{enabled: true}")}
    assert prio == {"region1/zone1/": 0, "region1/zone1/sub-b": 1, "region1/zone2/sub-c": 2, "region2/zone2/": 3}


@pytest.mark.istio("pilot/pkg/networking/util/util.go: LocalityMatch")
def test_distribute_matches_subzones_and_a_missing_part_matches_any() -> None:
    # to: a subzone, and a zone's every subzone; localities no rule names are dropped
    got = groups("{distribute: [{from: 'region1/zone1/*', to: {'region1/zone1/sub-b': 70, 'region1/zone2/*': 30}}]}")
    assert [(loc, w) for loc, _p, w in got] == [("region1/zone1/sub-b", 70), ("region1/zone2/sub-c", 30)]
    # a rule without a subzone matches the zone's endpoints with and without one: the weight is shared
    got = groups("{distribute: [{from: region1/zone1, to: {region1/zone1: 100}}]}")
    assert [(loc, w) for loc, _p, w in got] == [("region1/zone1/", 50), ("region1/zone1/sub-b", 50)]
    # ``from`` names a subzone the proxy is not in: the rule does not apply, every locality keeps its weight
    got = groups("{distribute: [{from: region1/zone1/sub-x, to: {region1/zone1: 100}}]}")
    assert [(loc, w) for loc, _p, w in got] == [("region1/zone1/", 1), ("region1/zone1/sub-b", 1), ("region1/zone2/sub-c", 1), ("region2/zone2/", 1)]
