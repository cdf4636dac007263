"""Seeded faults for lab 10 (break and fix): each undoes one step of Istio's multi-cluster guides or
applies one plausible mistake, on either backend, through the same operations the course teaches.

    from meshlab import faults
    faults.inject(lab, "network-label")       # prints what was done, not what it breaks
    ...                                       # the learner diagnoses with endpoints, proxy status, logs, stats
    faults.fixed(lab, "network-label", "network2")  # applies the learner's fix, then asks traffic whether it works
    faults.repair(lab, "network-label")       # the operator's fix (the solution's value, applied)

    mystery = faults.Mystery(lab, seed)       # two or three faults, picked by seed and not named
    mystery.inject()
    mystery.grade({"subset-typo": {"version": "v2"}, ...})  # the learner's diagnoses and fixes, graded by traffic
    incident = faults.Mystery(lab, seed, faults.INCIDENT_POOL, sizes=(1,))  # lab 11's capstone: one, unnamed

Each fault takes the fix an operator writes: the Gateway (YAML), the network label's value, the labels of
subset v2, ``maxEjectionPercent``, the principal, the sha256, the root to cut ``cacerts`` from.

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
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from .errors import MeshlabError
from .exercises import learner_seed
from .federation import expose_services_gateway
from .resources import parse
from .topology import kube_context
from .wasm.publish import publish, wasm_plugin

if TYPE_CHECKING:
    from .lab import Lab
    from .traffic import CallResult

FQDN = "helloworld.sample.svc.cluster.local"
OTHER_ROOT = "other-root"
OLD_DIGEST = hashlib.sha256(b"header-metric, an older release").hexdigest()
HUB_USER = "alice"
GATEWAY = "cross-network-gateway"
URL = "http://helloworld.sample:5000/hello"
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
    return (f"kubectl --context {kube_context(c)} label namespace istio-system {NETWORK}-; "
            f"kubectl --context {kube_context(c)} -n sample label pods -l {INJECTED} {NETWORK}-")


def _relabel(lab: "Lab", network: Any) -> str:
    if not isinstance(network, str) or not network.strip() or "=" in network:
        raise MeshlabError(f"{network!r} is not a label value", 'give the value alone, e.g. "network7"')
    c = _remote(lab)
    net = network.strip()
    lab.backend.set_network_label(c, net)
    return (f"kubectl --context {kube_context(c)} label namespace istio-system {NETWORK}={net} --overwrite; "
            f"kubectl --context {kube_context(c)} -n sample label pods -l {INJECTED} {NETWORK}={net} --overwrite")


def _network_of_remote(lab: "Lab") -> str:
    return lab.topology.clusters[_remote(lab)].network


def _remote_reached_directly(lab: "Lab") -> bool:
    """Whether the first cluster's curl has a remote pod's IP among its helloworld endpoints (split horizon lost)."""
    first = next(iter(lab.topology.clusters))
    remote_ips = {p["ip"] for p in lab.pods() if p["cluster"] == _remote(lab) and p["app"] == "helloworld"}
    return any(e["ENDPOINT"].rsplit(":", 1)[0] in remote_ips for e in lab.endpoints("curl", first, service="helloworld"))


def _split_horizon_works(lab: "Lab") -> bool:
    # the endpoints view first: a pod IP across networks is a 5 s time-out per call on the traffic check
    return not _remote_reached_directly(lab) and _both_answer(lab, next(iter(lab.topology.clusters)))


def _unexpose(lab: "Lab") -> str:
    _remote(lab)
    for cp in lab.topology.control_planes:
        lab.delete("Gateway", GATEWAY, cp, namespace="istio-system")
    # a removed listener drains (Envoy's --drain-time-s: 45 s on Istio, 1 s here) before its connections
    # close: until then pooled connections through the gateway hide the change
    lab.backend.wait_drained("istio-eastwestgateway", list(lab.topology.clusters))
    return "; ".join(f"kubectl --context {kube_context(cp)} -n istio-system delete gateway {GATEWAY}" for cp in lab.topology.control_planes)


def _expose(lab: "Lab", gateway: Any) -> str:
    docs = parse(gateway)
    if [d.get("kind") for d in docs] != ["Gateway"]:
        raise MeshlabError(f"expected one Gateway, got {[d.get('kind') for d in docs]}",
                           "write one resource with kind: Gateway (apiVersion networking.istio.io/v1)")
    for cp in lab.topology.control_planes:
        lab.apply(docs, cp)
    return "; ".join(f"kubectl --context {kube_context(cp)} apply -f gateway.yaml" for cp in lab.topology.control_planes)


def _exposed_both_ways(lab: "Lab") -> bool:
    return all(_both_answer(lab, c) for c in list(lab.topology.clusters)[:2])


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


def _planned_root(lab: "Lab") -> str:
    return lab.topology.meshes[lab.topology.clusters[_second_primary(lab)].mesh].root_ca


def _shared_root(lab: "Lab", root: Any) -> str:
    c = _second_primary(lab)
    if not isinstance(root, str) or not root.strip():
        raise MeshlabError(f"{root!r} is not the name of a root", 'give a root\'s name, e.g. "some-root"')
    lab.backend.set_ca_root(c, root.strip())
    return (f"kubectl --context {kube_context(c)} -n istio-system create secret generic cacerts ... (from root {root!r}); "
            "rollout restart istiod and the workloads")


# ---- what traffic says --------------------------------------------------------------------------

def _both_answer(lab: "Lab", cluster: str, n: int = 10, headers: dict[str, str] | None = None) -> bool:
    """``n`` calls from curl in ``cluster``: no error, and both of the first two clusters answer (the
    answers are printed: the evidence a grade rests on)."""
    r = lab.call("curl", URL, cluster=cluster, n=n, headers=headers)
    print(r)
    return r.errors == 0 and r.clusters == set(list(lab.topology.clusters)[:2])


def call_until_one_fails(lab: "Lab", cluster: str, n: int = 4, at_most: int = 12) -> "CallResult":
    """``n`` calls from curl in ``cluster``, then one at a time until one fails (at most ``at_most`` in all):
    Istio's default load balancer (LEAST_REQUEST) picks between equally idle hosts at random, so a fault that
    breaks one host of two can hide for a few calls."""
    r = lab.call("curl", URL, cluster=cluster, n=n)
    while r.errors == 0 and len(r.answers) < at_most:
        r.answers += lab.call("curl", URL, cluster=cluster, n=1).answers
    return r


# ---- resources ---------------------------------------------------------------------------------

def _labels(value: Any) -> dict[str, str]:
    """A label selector as the learner writes it: a dict, or YAML text of one (``version: v2``)."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise MeshlabError(f"not valid YAML: {e}", 'write the labels as a dict, e.g. {"app": "x"}') from e
    if not isinstance(value, Mapping) or not value or not all(isinstance(k, str) for k in value):
        raise MeshlabError(f"{value!r} is not a set of labels", 'write the labels as a dict, e.g. {"app": "x"}')
    return {k: str(v) for k, v in value.items()}


def subsets_rule(v2_labels: Any) -> list[dict[str, Any]]:
    """A DestinationRule with subsets v1 (``version: v1``) and v2 (``v2_labels``) and a VirtualService
    splitting 50/50 between them."""
    dest = [{"destination": {"host": FQDN, "subset": s}, "weight": 50} for s in ("v1", "v2")]
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "helloworld", "namespace": "sample"},
         "spec": {"host": FQDN, "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": _labels(v2_labels)}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "helloworld", "namespace": "sample"},
         "spec": {"hosts": [FQDN], "http": [{"route": dest}]}},
    ]  # fmt: skip


def _subset_endpoints(lab: "Lab", subset: str) -> set[str]:
    first = next(iter(lab.topology.clusters))
    name = f"outbound|5000|{subset}|{FQDN}"
    return {e["ENDPOINT"] for e in lab.endpoints("curl", first, service="helloworld") if e["CLUSTER"] == name}


def _split_works(lab: "Lab") -> bool:
    """Subset v2 selects endpoints, none of v1's, and the split is answered by both clusters."""
    v1, v2 = _subset_endpoints(lab, "v1"), _subset_endpoints(lab, "v2")
    return bool(v1) and bool(v2) and not v1 & v2 and _both_answer(lab, next(iter(lab.topology.clusters)))


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


def _curl_principal(lab: "Lab") -> str:
    return f"{lab.topology.trust_domain(next(iter(lab.topology.clusters)))}/ns/sample/sa/curl"


def _fix_authz(lab: "Lab", principal: Any) -> str:
    if not isinstance(principal, str) or not principal.strip():
        raise MeshlabError(f"{principal!r} is not a principal", 'write it as <trust domain>/ns/<namespace>/sa/<service account>')
    if "*" in principal:
        raise MeshlabError(f"{principal!r} is a wildcard: it lets others than curl in", "name curl's identity exactly")
    lab.apply(allow_rule(principal.strip()), lab.topology.control_planes[0])
    return f"principals: [{principal.strip()}]"


def _curl_allowed(lab: "Lab") -> bool:
    return _both_answer(lab, next(iter(lab.topology.clusters)))


def header_metric_plugin(lab: "Lab", sha256: str | None = None) -> dict[str, Any]:
    """Publish wasm-filters/header-metric to the hub as lab 08 does (pull secret in every cluster) and return
    the WasmPlugin counting helloworld's requests by ``x-user``, pinned to the image's manifest digest
    unless ``sha256`` says otherwise."""
    pushed = publish(lab, "header-metric", "wasm/header-metric:v1", secret=HUB_USER)
    return wasm_plugin("requests-by-user", pushed, {"app": "helloworld"}, {"header": "x-user", "metric": "requests_by_user"}, sha256=sha256,
                       secret=HUB_USER)  # fmt: skip


def _wrong_digest(lab: "Lab") -> str:
    lab.apply(header_metric_plugin(lab, OLD_DIGEST), lab.topology.control_planes[0])
    return "apply a WasmPlugin for helloworld (header-metric, from the hub) with the sha256 of an older release"


def _manifest_digest(lab: "Lab") -> str:
    with contextlib.redirect_stdout(io.StringIO()):
        return str(header_metric_plugin(lab)["spec"]["sha256"])


def _right_digest(lab: "Lab", sha256: Any) -> str:
    if not isinstance(sha256, str) or not sha256.strip():
        raise MeshlabError(f"{sha256!r} is not a digest", "give the 64 hex digits of a sha256")
    with contextlib.redirect_stdout(io.StringIO()):  # publishing again is idempotent: nothing to tell
        plugin = header_metric_plugin(lab, sha256.strip())
    lab.apply(plugin, lab.topology.control_planes[0])
    return f"sha256: {plugin['spec']['sha256']}"


def _plugin_lets_through(lab: "Lab") -> bool:
    return _both_answer(lab, next(iter(lab.topology.clusters)), headers={"x-user": "alice"})


def _typo_subset(lab: "Lab") -> str:
    lab.apply(subsets_rule({"version": "2"}), lab.topology.control_planes[0])
    return "apply a DestinationRule with subsets v1 and v2, and a VirtualService splitting 50/50"


def _fix_subset(lab: "Lab", labels: Any) -> str:
    rule = subsets_rule(labels)
    lab.apply(rule, lab.topology.control_planes[0])
    return f"subset v2 selects {rule[0]['spec']['subsets'][1]['labels']}"


def _crash_with_low_max_ejection(lab: "Lab") -> str:
    first = next(iter(lab.topology.clusters))
    lab.apply(failover_rule(10), lab.topology.control_planes[0])
    lab.crash("helloworld", first)  # the sidecar stays: the endpoint stays in EDS, only outlier detection can take it out
    return f"apply lab 06's failover rule with maxEjectionPercent: 10, then crash helloworld v1 in {first}"


def _fix_max_ejection(lab: "Lab", max_ejection_percent: Any) -> str:
    if isinstance(max_ejection_percent, bool) or not isinstance(max_ejection_percent, int) or not 0 <= max_ejection_percent <= 100:
        raise MeshlabError(f"{max_ejection_percent!r} is not a percentage", "give an int from 0 to 100")
    lab.apply(failover_rule(max_ejection_percent), lab.topology.control_planes[0])
    return f"maxEjectionPercent: {max_ejection_percent}"


def _failed_over(lab: "Lab") -> bool:
    first, second = list(lab.topology.clusters)[:2]
    lab.call("curl", URL, cluster=first, n=3)  # the first requests meet the crashed pod: its 5xx count
    r = lab.call("curl", URL, cluster=first, n=10)
    return r.errors == 0 and r.clusters == {second}


def fails_over(lab: "Lab", max_ejection_percent: int) -> bool:
    """Apply the failover rule with ``max_ejection_percent`` and tell whether calls from the first cluster
    are all answered by the second once outlier detection has had its first failures to count."""
    return fixed(lab, "max-ejection", max_ejection_percent)


def restore_v1(lab: "Lab") -> str:
    """Restart the helloworld v1 app the max-ejection fault crashed."""
    return lab.restore("helloworld", next(iter(lab.topology.clusters)))


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[["Lab"], str]  # returns what it did, as an operator's command or action
    fix: Callable[["Lab", Any], str]  # applies an operator's fix (the value they write); returns what it did
    solution: Callable[["Lab"], Any]  # the right value for ``fix``
    works: Callable[["Lab"], bool]  # traffic (and the views) say the fault is gone
    cleanup: tuple[tuple[str, str, str], ...] = field(default=())  # (kind, name, namespace) its fix leaves applied


FAULTS = {f.name: f for f in (
    Fault("network-label", _unlabel, _relabel, _network_of_remote, _split_horizon_works),
    Fault("expose-services", _unexpose, _expose, lambda lab: expose_services_gateway(), _exposed_both_ways),
    Fault("subset-typo", _typo_subset, _fix_subset, lambda lab: {"version": "v2"}, _split_works,
          (("VirtualService", "helloworld", "sample"), ("DestinationRule", "helloworld", "sample"))),
    Fault("max-ejection", _crash_with_low_max_ejection, _fix_max_ejection, lambda lab: 100, _failed_over,
          (("DestinationRule", "helloworld", "sample"),)),
    Fault("authz-deny", _deny_by_accident, _fix_authz, _curl_principal, _curl_allowed,
          (("AuthorizationPolicy", "helloworld-callers", "sample"),)),
    Fault("two-roots", _second_root, _shared_root, _planned_root, lambda lab: _both_answer(lab, next(iter(lab.topology.clusters)))),
    Fault("wasm-digest", _wrong_digest, _right_digest, _manifest_digest, _plugin_lets_through,
          (("WasmPlugin", "requests-by-user", "sample"),)),
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


def solution(lab: "Lab", name: str) -> Any:
    """The fix an operator writes for fault ``name`` (the value :func:`fixed` takes)."""
    return _get(name).solution(lab)


def _works(lab: "Lab", fault: Fault, settle: float = 1.5) -> bool:
    """Whether traffic says ``fault`` is gone, asked again once after ``settle`` seconds: right after a change
    a pooled connection may still meet the old configuration (on a real cluster, the push takes longer)."""
    if fault.works(lab):
        return True
    time.sleep(settle)
    return fault.works(lab)


def fixed(lab: "Lab", name: str, fix: Any) -> bool:
    """Apply ``fix`` (the learner's value) to fault ``name`` and tell whether traffic says it works. What was
    applied is printed as the operator's command; a value that cannot be a fix raises MeshlabError."""
    fault = _get(name)
    with contextlib.redirect_stdout(io.StringIO()):
        done = fault.fix(lab, fix)
    print(f"applied: {done}")
    return _works(lab, fault)


def repair(lab: "Lab", name: str) -> None:
    """The operator's fix for fault ``name``."""
    fault = _get(name)
    with contextlib.redirect_stdout(io.StringIO()):
        done = fault.fix(lab, fault.solution(lab))
    print(f"fault {name!r} repaired: {done}")


def clean_up(lab: "Lab", name: str) -> None:
    """Delete what fault ``name``'s fix left applied (its DestinationRule, policy, plugin...), so the next
    section starts from the healthy mesh."""
    for kind, resource, namespace in _get(name).cleanup:
        lab.delete(kind, resource, lab.topology.control_planes[0], namespace=namespace)


# ---- the mystery round --------------------------------------------------------------------------

MYSTERY_POOL = ("expose-services", "network-label", "subset-typo", "authz-deny", "wasm-digest")
"""Faults that can break one separate-networks mesh together: none undoes another's resource (max-ejection
shares subset-typo's DestinationRule and needs a crash; two-roots needs two control planes)."""


INCIDENT_POOL = ("expose-services", "network-label", "subset-typo", "wasm-digest")
"""The capstone's incident (lab 11), one of these: faults that break a mesh already secured (STRICT mTLS, an ALLOW
policy for curl) and extended (a Wasm filter on helloworld) without touching what the learner wrote. authz-deny
is not one: beside the learner's ALLOW policy for curl a second ALLOW policy denies nothing."""


def pick(seed: object, pool: tuple[str, ...] = MYSTERY_POOL, sizes: tuple[int, ...] = (2, 3)) -> list[str]:
    """``sizes`` (one of them, by seed) faults of ``pool`` for ``seed`` (the same seed, the same faults), in
    injection order."""
    rng = random.Random(hashlib.sha256(f"mystery:{seed}".encode()).hexdigest())
    return rng.sample(list(pool), rng.choice(sizes))


class Mystery:
    """Two or three faults at once, not named: the learner finds them with the four views and writes
    ``{fault name: fix}``; graded by traffic like the named faults."""

    def __init__(self, lab: "Lab", seed: object = None, pool: tuple[str, ...] = MYSTERY_POOL,
                 sizes: tuple[int, ...] = (2, 3)) -> None:
        """``seed`` None: the learner's own (user@host, or $MESHLAB_LEARNER), as their quiz order. ``pool`` and
        ``sizes``: the faults it picks from and how many (lab 11's incident: one of :data:`INCIDENT_POOL`)."""
        unknown = [n for n in pool if n not in FAULTS]
        if unknown or not sizes or not all(1 <= n <= len(pool) for n in sizes):
            raise MeshlabError(f"cannot pick {sizes} of {pool}", f"pick 1..{len(pool)} of the faults {', '.join(FAULTS)}")
        self.lab = lab
        self.seed = learner_seed() if seed is None else seed
        self.pool = pool
        self.names = pick(self.seed, pool, sizes)

    def __repr__(self) -> str:  # never the names: that is the exercise
        return f"<mystery: {len(self.names)} fault{'s' if len(self.names) > 1 else ''}, seed {self.seed!r}>"

    def inject(self) -> None:
        """Break the lab; prints how many faults, not which."""
        for name in self.names:
            with contextlib.redirect_stdout(io.StringIO()):
                _get(name).inject(self.lab)
        n = len(self.names)
        print(f"{n} fault{'s' if n > 1 else ''} injected (seed {self.seed!r}). Which? The four views will tell.")

    def solution(self) -> dict[str, Any]:
        """The diagnoses and fixes that repair this mystery."""
        return {name: solution(self.lab, name) for name in self.names}

    def grade(self, fixes: Any) -> bool:
        """Apply the fixes of the faults the learner named right, then ask traffic whether every fault is
        gone. Prints how many diagnoses were right and what traffic says, never which fault is which."""
        if not isinstance(fixes, Mapping) or not fixes:
            raise MeshlabError(f"{fixes!r} is not a dict of diagnoses", 'write {"fault-name": fix, ...}')
        unknown = [n for n in fixes if n not in FAULTS]
        if unknown:
            raise MeshlabError(f"no fault named {', '.join(map(repr, unknown))}", f"faults: {', '.join(self.pool)}")
        right = [n for n in fixes if n in self.names]
        print(f"diagnoses: {len(right)} of your {len(fixes)} name a fault of this mystery, which has {len(self.names)}")
        for name in right:
            with contextlib.redirect_stdout(io.StringIO()):
                _get(name).fix(self.lab, fixes[name])
        # the network label first: its check reads the endpoints, while with a remote pod IP in them every
        # other check's calls would wait out their time-outs
        healthy = all(_works(self.lab, _get(name)) for name in sorted(self.names, key=lambda n: n != "network-label"))
        print("traffic:", "the mesh is healthy again" if healthy else "still broken somewhere")
        return healthy and len(right) == len(fixes) == len(self.names)

    def clean_up(self) -> None:
        """Delete what the fixes left applied (resources of the faults), back to the healthy mesh."""
        for name in self.names:
            clean_up(self.lab, name)
