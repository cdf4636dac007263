"""Endpoints as istiod gives them to a proxy: the registry its control plane reads, split-horizon EDS across
networks, and the topology labels every endpoint carries.

Follows ``pilot/pkg/xds/endpoints/endpoint_builder.go`` (``EndpointsByNetworkFilter``, ``GetLBWeightScaleFactor``),
``pilot/pkg/networking/util/util.go`` (locality labels), ``pilot/pkg/serviceregistry/kube/controller/multicluster.go``
(which clusters a control plane reads) and ``pilot/pkg/networking/core/mtls_checker.go`` (``tlsMode`` per endpoint).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .. import xds as E
from ..registry import GATEWAY_PORT, Service, Workload
from ..topology import Topology
from . import security as S


class EndpointBuilder:
    """The registry view and the endpoints of one control plane's proxies. The config generator
    (:class:`meshlab.controlplane.generator.Translator`) is one; it sets the four attributes below."""

    topology: Topology
    gateway_ip: dict[str, str]  # cluster -> east-west gateway address (multi-network patterns)
    network_labels: dict[str, str]  # cluster -> the topology.istio.io/network label of its istio-system namespace
    remote_secrets: dict[str, list[str]]  # control plane -> the clusters it reads through a remote secret

    def endpoint_network(self, cluster: str) -> str:
        """The network istiod gives a pod of ``cluster``: its istio-system namespace's label ("" without one;
        pods carry no network label of their own). The proxies' own network comes from the install values."""
        return self.network_labels.get(cluster, "")

    def direct(self, client_cluster: str, cluster: str) -> bool:
        """Istio's EndpointsByNetworkFilter: an endpoint on the proxy's network, or on an unknown ("") one,
        is used at its own address; any other goes through its network's gateway."""
        return self.endpoint_network(cluster) in ("", self.topology.clusters[client_cluster].network)

    def reads(self, control_plane: str) -> list[str]:
        """The clusters whose registry ``control_plane`` reads: the clusters it serves, and those it holds a remote
        secret for (multi-primary: the other primaries of its mesh). A revoked secret's cluster is gone, as when
        istiod drops a deleted secret's cluster (``pilot/pkg/serviceregistry/kube/controller/multicluster.go``
        ``kubeController.Close``)."""
        served = [c.name for c in self.topology.served_by(control_plane)]
        return list(dict.fromkeys(served + list(self.remote_secrets.get(control_plane, []))))

    def visible(self, cluster: str, registry: list[Workload]) -> list[Workload]:
        """Workloads the control plane serving ``cluster`` knows about (its registry: :meth:`reads`)."""
        known = set(self.reads(self.topology.clusters[cluster].control_plane))
        return [w for w in registry if w.cluster in known]

    def topology_labels(self, cluster: str) -> dict[str, str]:
        c = self.topology.clusters[cluster]
        return {
            "topology.istio.io/cluster": c.name,
            "topology.istio.io/network": c.network,
            "topology.kubernetes.io/region": c.region,
            "topology.kubernetes.io/zone": c.zone,
        }

    @staticmethod
    def services(workloads: list[Workload]) -> list[Service]:
        ports: dict[tuple[str, str], dict[int, str]] = {}
        for w in workloads:
            if w.ports:
                ports.setdefault((w.app, w.namespace), {}).update(zip(w.ports, w.port_names or [""] * len(w.ports)))
        return [Service(n, ns, tuple(sorted(p)), tuple(p[k] for k in sorted(p))) for (n, ns), p in sorted(ports.items())]

    def weight_scale(self, client_cluster: str) -> int:
        """``GetLBWeightScaleFactor``: the lcm of the east-west gateway counts per network and per cluster
        that the control plane knows (one gateway per cluster here); 1 on a single network."""
        if len(self.topology.networks) < 2:
            return 1
        known = self.reads(self.topology.clusters[client_cluster].control_plane)
        per_network = Counter(self.topology.clusters[c].network for c in known)
        return math.lcm(1, *per_network.values())

    def endpoints(
        self, client_cluster: str, pods: list[Workload], port: int, resources: list[dict[str, Any]] | None = None, dr_tls: str | None = None
    ) -> list[E.Endpoint]:
        """Split-horizon (``EndpointsByNetworkFilter``): every weight scaled by :meth:`weight_scale`;
        local-network pods directly; the pods of each remote-network cluster as that cluster's gateway
        on 15443, in their locality, weighted by the sum of their scaled weights, labelled with cluster
        and network only.

        An endpoint is marked for mTLS (``tlsMode: istio``) as mtls_checker.go decides: the
        DestinationRule's mode if it sets one, else "has a sidecar and its PeerAuthentication does
        not DISABLE mTLS on the port". Cross-network traffic needs mTLS (the gateway routes by SNI),
        so remote pods without it are left out.
        """
        scale = self.weight_scale(client_cluster)
        out: list[E.Endpoint] = []
        behind_gateway: dict[str, int] = {}
        for w in pods:
            c = self.topology.clusters[w.cluster]
            mtls = dr_tls == "ISTIO_MUTUAL" if dr_tls else w.sidecar and S.mtls_mode(resources or [], w.labels, w.namespace, port) != "DISABLE"
            if self.direct(client_cluster, w.cluster):
                out.append(E.Endpoint(w.ip, port, c.region, c.zone, weight=scale, labels={**w.labels, **self.topology_labels(w.cluster)}, tls_mode=mtls))
            elif mtls:
                behind_gateway[w.cluster] = behind_gateway.get(w.cluster, 0) + scale
        for cluster, weight in behind_gateway.items():
            c = self.topology.clusters[cluster]
            labels = {"topology.istio.io/cluster": c.name, "topology.istio.io/network": self.endpoint_network(cluster)}
            out.append(E.Endpoint(self.gateway_ip[cluster], GATEWAY_PORT, c.region, c.zone, weight=weight, labels=labels, tls_mode=True))
        return out
