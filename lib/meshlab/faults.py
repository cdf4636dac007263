"""Seeded faults for lab 10 (break and fix): each undoes one step of Istio's multi-cluster guides or
applies one plausible mistake, on either backend, through the same operations the course teaches.

    from meshlab import faults
    faults.inject(lab, "network-label")       # prints what was done, not what it breaks
    ...                                       # the learner diagnoses with endpoints, proxy status, logs, stats
    faults.repair(lab, "network-label")       # the operator's fix (lab 10's hidden solutions show it)

Faults that are Istio resources (a DestinationRule subset with a typo, a too-small ``maxEjectionPercent``,
an AuthorizationPolicy with the wrong principal, a WasmPlugin with a wrong ``sha256``) are applied with ``lab.apply``; the others are install
steps: the ``topology.istio.io/network`` label of a cluster's ``istio-system`` namespace, the
``expose-services`` Gateway, and the root a control plane's ``cacerts`` chain to. On kind every one of them
is a ``kubectl`` command through the kind executor (a dry run records it). What ``inject`` and ``repair``
print is the operator's command, with kind's context names.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backends.kind.clusters import context
from .errors import MeshlabError
from .federation import expose_services_gateway

if TYPE_CHECKING:
    from .lab import Lab

FQDN = "helloworld.sample.svc.cluster.local"
OTHER_ROOT = "other-root"
OLD_DIGEST = hashlib.sha256(b"header-metric, an older release").hexdigest()
HUB_USER = "alice"
GATEWAY = "cross-network-gateway"
NETWORK = "topology.istio.io/network"  # istiod reads it from the pod, else from the system namespace
INJECTED = "security.istio.io/tlsMode=istio"  # the label the injector puts on the pods it gives a sidecar


def _remote(lab: "Lab") -> str:
    """The cluster a fault breaks: the last one on a network other than the first cluster's."""
    first, *others = lab.topology.clusters.values()
    away = [c.name for c in others if c.network != first.network]
    if not away:
        raise MeshlabError(f"pattern {lab.topology.name!r} has one network: this fault needs two",
                           "use a multi-network pattern, e.g. separate-networks")
    return away[-1]


# ---- install steps -----------------------------------------------------------------------------

def _unlabel(lab: "Lab") -> str:
    c = _remote(lab)
    lab.backend.set_network_label(c, None)
    return (f"kubectl --context {context(c)} label namespace istio-system {NETWORK}-; "
            f"kubectl --context {context(c)} -n sample label pods -l {INJECTED} {NETWORK}-")


def _relabel(lab: "Lab") -> str:
    c = _remote(lab)
    net = lab.topology.clusters[c].network
    lab.backend.set_network_label(c, net)
    return (f"kubectl --context {context(c)} label namespace istio-system {NETWORK}={net} --overwrite; "
            f"kubectl --context {context(c)} -n sample label pods -l {INJECTED} {NETWORK}={net} --overwrite")


def _unexpose(lab: "Lab") -> str:
    _remote(lab)
    for cp in lab.topology.control_planes:
        lab.delete("Gateway", GATEWAY, cp, namespace="istio-system")
    # a removed listener drains (Envoy's --drain-time-s: 45 s on Istio, 1 s here) before its connections
    # close: until then pooled connections through the gateway hide the change
    lab.backend.wait_drained("istio-eastwestgateway", list(lab.topology.clusters))
    return "; ".join(f"kubectl --context {context(cp)} -n istio-system delete gateway {GATEWAY}" for cp in lab.topology.control_planes)


def _expose(lab: "Lab") -> str:
    for cp in lab.topology.control_planes:
        lab.apply(expose_services_gateway(), cp)
    return "; ".join(f"kubectl --context {context(cp)} apply -f samples/multicluster/expose-services.yaml"
                     for cp in lab.topology.control_planes)


def _second_primary(lab: "Lab") -> str:
    primaries = lab.topology.control_planes
    if len(primaries) < 2:
        raise MeshlabError(f"pattern {lab.topology.name!r} has one control plane: this fault needs two",
                           "use a pattern with two primaries, e.g. separate-control-planes")
    return primaries[-1]


def _second_root(lab: "Lab") -> str:
    c = _second_primary(lab)
    lab.backend.set_ca_root(c, OTHER_ROOT)
    return f"istiod in {c} re-installed with a self-signed CA: cacerts from root {OTHER_ROOT!r}, workloads restarted"


def _shared_root(lab: "Lab") -> str:
    c = _second_primary(lab)
    root = lab.topology.meshes[lab.topology.clusters[c].mesh].root_ca
    lab.backend.set_ca_root(c, root)
    return (f"kubectl --context {context(c)} -n istio-system create secret generic cacerts ... (from root {root!r}); "
            "rollout restart istiod and the workloads")


# ---- resources ---------------------------------------------------------------------------------

def subsets_rule(v2_label: str) -> str:
    """A DestinationRule with subsets v1 and v2 and a VirtualService splitting 50/50 between them."""
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: helloworld, namespace: sample}}
spec:
  host: {FQDN}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: {v2_label}}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: helloworld, namespace: sample}}
spec:
  hosts: [{FQDN}]
  http:
  - route:
    - {{destination: {{host: {FQDN}, subset: v1}}, weight: 50}}
    - {{destination: {{host: {FQDN}, subset: v2}}, weight: 50}}
"""


def failover_rule(max_ejection_percent: int) -> str:
    """Locality failover (lab 06's rule) with a given ``maxEjectionPercent``."""
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: helloworld, namespace: sample}}
spec:
  host: {FQDN}
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        enabled: true
        failover: [{{from: region1, to: region2}}]
    outlierDetection: {{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: {max_ejection_percent}}}
"""


def allow_rule(principal: str) -> str:
    """An AuthorizationPolicy that lets only ``principal`` call helloworld (and so denies everyone else)."""
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: helloworld-callers, namespace: sample}}
spec:
  selector: {{matchLabels: {{app: helloworld}}}}
  action: ALLOW
  rules:
  - from:
    - source: {{principals: ["{principal}"]}}
"""


def _deny_by_accident(lab: "Lab") -> str:
    td = lab.topology.trust_domain(next(iter(lab.topology.clusters)))
    lab.apply(allow_rule(f"{td}/ns/default/sa/curl"), lab.topology.control_planes[0])  # Istio's examples use ns/default
    return "apply an AuthorizationPolicy that allows only curl to call helloworld"


def _fix_authz(lab: "Lab") -> str:
    td = lab.topology.trust_domain(next(iter(lab.topology.clusters)))
    lab.apply(allow_rule(f"{td}/ns/sample/sa/curl"), lab.topology.control_planes[0])
    return f"principals: [{td}/ns/sample/sa/curl] (curl runs in namespace sample)"


def header_metric_plugin(lab: "Lab", sha256: str | None = None) -> dict[str, Any]:
    """Publish wasm-filters/header-metric to the hub as lab 08 does (pull secret in every cluster) and return
    the WasmPlugin counting helloworld's requests by ``x-user``, pinned to the image's manifest digest
    unless ``sha256`` says otherwise."""
    from .wasm.publish import publish, wasm_plugin

    pushed = publish(lab, "header-metric", "wasm/header-metric:v1", secret=HUB_USER)
    return wasm_plugin("requests-by-user", pushed, {"app": "helloworld"}, {"header": "x-user", "metric": "requests_by_user"}, sha256=sha256,
                       secret=HUB_USER)  # fmt: skip


def _wrong_digest(lab: "Lab") -> str:
    lab.apply(header_metric_plugin(lab, OLD_DIGEST), lab.topology.control_planes[0])
    return "apply a WasmPlugin for helloworld (header-metric, from the hub) with the sha256 of an older release"


def _right_digest(lab: "Lab") -> str:
    plugin = header_metric_plugin(lab)
    lab.apply(plugin, lab.topology.control_planes[0])
    return f"sha256: {plugin['spec']['sha256']} (the image's manifest digest: `meshlab wasm list`)"


def _typo_subset(lab: "Lab") -> str:
    lab.apply(subsets_rule('"2"'), lab.topology.control_planes[0])
    return "apply a DestinationRule with subsets v1 and v2, and a VirtualService splitting 50/50"


def _fix_subset(lab: "Lab") -> str:
    lab.apply(subsets_rule("v2"), lab.topology.control_planes[0])
    return "subset v2 selects version: v2"


def _crash_with_low_max_ejection(lab: "Lab") -> str:
    first = next(iter(lab.topology.clusters))
    lab.apply(failover_rule(10), lab.topology.control_planes[0])
    lab.crash("helloworld", first)  # the sidecar stays: the endpoint stays in EDS, only outlier detection can take it out
    return f"apply lab 06's failover rule with maxEjectionPercent: 10, then crash helloworld v1 in {first}"


def _fix_max_ejection(lab: "Lab") -> str:
    lab.apply(failover_rule(100), lab.topology.control_planes[0])
    return "maxEjectionPercent: 100"


def fails_over(lab: "Lab", max_ejection_percent: int) -> bool:
    """Apply the failover rule with ``max_ejection_percent`` and tell whether calls from the first cluster
    are all answered by the second once outlier detection has had its first failures to count."""
    first, second = list(lab.topology.clusters)[:2]
    lab.apply(failover_rule(max_ejection_percent), lab.topology.control_planes[0])
    url = f"http://{FQDN.split('.svc')[0]}:5000/hello"
    lab.call("curl", url, cluster=first, n=3)  # the first requests meet the crashed pod: its 5xx count
    r = lab.call("curl", url, cluster=first, n=10)
    return r.errors == 0 and r.clusters == {second}


def restore_v1(lab: "Lab") -> str:
    """Restart the helloworld v1 app the max-ejection fault crashed."""
    return lab.restore("helloworld", next(iter(lab.topology.clusters)))


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[["Lab"], str]  # returns what it did, as an operator's command or action
    repair: Callable[["Lab"], str]


FAULTS = {f.name: f for f in (
    Fault("network-label", _unlabel, _relabel),
    Fault("expose-services", _unexpose, _expose),
    Fault("subset-typo", _typo_subset, _fix_subset),
    Fault("max-ejection", _crash_with_low_max_ejection, _fix_max_ejection),
    Fault("authz-deny", _deny_by_accident, _fix_authz),
    Fault("two-roots", _second_root, _shared_root),
    Fault("wasm-digest", _wrong_digest, _right_digest),
)}


def _get(name: str) -> Fault:
    if name not in FAULTS:
        raise MeshlabError(f"no fault named {name!r}", f"faults: {', '.join(FAULTS)}")
    return FAULTS[name]


def inject(lab: "Lab", name: str) -> None:
    """Break the lab in one seeded way; prints what was done (a command), not what it breaks (the output of
    the steps, e.g. an agent's complaint on apply, is the learner's to find with the operator's views)."""
    fault = _get(name)
    with contextlib.redirect_stdout(io.StringIO()):
        done = fault.inject(lab)
    print(f"fault {name!r} injected: {done}")


def repair(lab: "Lab", name: str) -> None:
    """The operator's fix for fault ``name``."""
    print(f"fault {name!r} repaired: {_get(name).repair(lab)}")
