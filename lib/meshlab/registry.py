"""The service registry as istiod sees it: workloads (pods with their identity, addresses and ports),
Kubernetes Services, and Istio's names for them.

Model layer: both backends record their pods as :class:`Workload`; the control plane
(:mod:`meshlab.controlplane`) reads them. Names follow ``pilot/pkg/model/service.go``
(``BuildSubsetKey``, ``BuildDNSSrvSubsetKey``) and the gateways' labels as Istio installs them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OUTBOUND_PORT = 15001
GATEWAY_PORT = 15443
GATEWAY_APP = "istio-eastwestgateway"
INGRESS_APP = "istio-ingressgateway"
INGRESS_LABELS = {"istio": "ingressgateway"}
GATEWAY_LABELS = {GATEWAY_APP: {"istio": "eastwestgateway"}, INGRESS_APP: INGRESS_LABELS}  # as installed
DOMAIN_SUFFIX = "svc.cluster.local"


@dataclass
class Workload:
    """One pod: its identity, addresses and the service ports its app serves (none for clients)."""

    pod: str
    deployment: str
    app: str
    version: str
    cluster: str
    namespace: str
    service_account: str
    ip: str
    netns: str | None
    outbound: str
    app_host: str
    ports: list[int] = field(default_factory=list)
    port_names: list[str] = field(default_factory=list)  # the Kubernetes Service's port names, as ``ports``
    admin: str = ""
    access_log: str = ""
    sidecar: bool = True  # False: a plain process in the pod (plaintext, no identity)
    protocol: str = "http"  # "grpc": the sidecar speaks HTTP/2 to the app (Istio: the Service port's protocol)

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def fqdn(self) -> str:
        return f"{self.app}.{self.namespace}.{DOMAIN_SUFFIX}"

    @property
    def labels(self) -> dict[str, str]:
        if self.app in GATEWAY_LABELS:  # as installed; expose-services selects istio=eastwestgateway
            return {"app": self.app, **GATEWAY_LABELS[self.app]}
        return {"app": self.app, "version": self.version}


def outbound_cluster_name(port: int, fqdn: str, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{fqdn}"


def sni(port: int, fqdn: str, subset: str = "") -> str:
    return f"outbound_.{port}_.{subset}_.{fqdn}"


@dataclass(frozen=True)
class Service:
    """A Kubernetes Service as the registry shows it: ports and their names (endpoints join on the name)."""

    name: str
    namespace: str
    ports: tuple[int, ...]
    port_names: tuple[str, ...] = ()

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.{DOMAIN_SUFFIX}"
