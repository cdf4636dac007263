"""Check-cell helpers: where the backends differ, the difference lives here, so a check cell reads as
the sentence it teaches (``assert_backend_ready(backend)``, ``assert_nothing_left(footprint)``).

Each helper names what it looks at on each backend -- the local backend's namespaces and processes,
the kind backend's clusters; its Envoy config as the translator writes it (inline routes, one
transport socket) or as istiod sends it (RDS, ``transport_socket_matches``) -- so a learner who opens
it sees both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends import backend_class
from .errors import LabStateError
from .lab import Lab
from .prereqs import check_kind, check_local


# ---- prerequisites (lab 00) ---------------------------------------------------------------------
def assert_backend_ready(backend: str) -> str:
    """Every required check of ``backend`` passes on this machine; else an AssertionError lists the fixes."""
    checkers = {"local": check_local, "kind": check_kind}
    if backend not in checkers:
        raise AssertionError(f"backend must be 'local' or 'kind', not {backend!r}")
    checks = checkers[backend]()
    failed = [c for c in checks if c.required and not c.ok]
    assert not failed, f"the {backend} backend is not usable yet; fix:\n" + "\n".join(f"  - {c.name}: {c.fix}" for c in failed)
    mode = next((c.detail for c in checks if c.name == "network mode"), None)
    return f"{backend} backend: ready" + (f" ({mode})" if mode else "")


# ---- addresses -----------------------------------------------------------------------------------
def pods_have_own_addresses(lab: Lab) -> bool:
    """Whether pod IPs are real addresses in the cluster's pod CIDR (netns, userns, kind), or 127.x
    stand-ins that share the host network (the local backend's loopback fallback)."""
    return str(lab.status()["network_mode"]) != "loopback"


def isolation_missing(lab: Lab, lesson: str) -> str | None:
    """None where every pod has a network of its own (netns, userns, kind). In the loopback mode, the
    sentence a check cell prints instead of its assertion: what ``lesson`` would have shown, why this
    mode cannot show it, and how to get the mode that can."""
    if pods_have_own_addresses(lab):
        return None
    return (f"NOT SHOWN in the loopback mode: {lesson}. Here every pod is a 127.x address in this host's "
            "network, so any process reaches any pod's address, and can bypass its sidecar. To see it, run the "
            "lab as root (netns mode) or as a user allowed to create user namespaces (userns mode): "
            "`meshlab doctor --backend local` says what blocks them on this machine and the fix.")


def gateway_addresses(lab: Lab) -> dict[str, str]:
    """Each cluster's east-west gateway address (local: its node's underlay IP; kind: its MetalLB IP)."""
    return dict(lab.status()["gateways"])


# ---- Envoy config, as either control plane writes it ----------------------------------------------
def upstream_tls(envoy_cluster: dict[str, Any]) -> dict[str, Any]:
    """The client TLS an Envoy cluster uses towards mesh endpoints: ``{"sni": ..., "sans": [...]}``.

    Auto-mTLS is the ``tlsMode-istio`` entry of ``transport_socket_matches`` (a cluster without it has
    one ``transport_socket``). istiod puts the SANs under ``combined_validation_context`` as
    ``match_subject_alt_names``; meshlab's translator under ``validation_context`` as typed matchers.
    """
    matches = {m["name"]: m for m in envoy_cluster.get("transport_socket_matches", [])}
    socket = matches["tlsMode-istio"]["transport_socket"] if "tlsMode-istio" in matches else envoy_cluster["transport_socket"]
    tls = socket["typed_config"]
    ctx = tls["common_tls_context"]
    if "combined_validation_context" in ctx:
        validation = ctx["combined_validation_context"]["default_validation_context"]
    else:
        validation = ctx["validation_context"]
    sans = [{"exact": m["exact"]} for m in validation.get("match_subject_alt_names", [])]
    sans += [m["matcher"] for m in validation.get("match_typed_subject_alt_names", [])]
    return {"sni": tls.get("sni"), "sans": sans}


def originated_sni(envoy_cluster: dict[str, Any]) -> dict[str, Any]:
    """How a cluster that originates TLS (DestinationRule ``tls.mode: SIMPLE``) names the server, as both
    control planes write it: ``{"sni": <fixed SNI or "">, "auto_sni": ..., "auto_san_validation": ...}``.
    Without ``sni`` in the DestinationRule Istio sets no SNI but ``auto_sni`` (Envoy sends each request's
    Host) and, without ``subjectAltNames``, ``auto_san_validation`` (the certificate must match that name)."""
    tls = envoy_cluster["transport_socket"]["typed_config"]
    options = envoy_cluster.get("typed_extension_protocol_options", {}).get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {})
    upstream = options.get("upstream_http_protocol_options", {})
    return {"sni": tls.get("sni", ""), "auto_sni": bool(upstream.get("auto_sni")), "auto_san_validation": bool(upstream.get("auto_san_validation"))}


def inbound_port_chains(lab: Lab, workload: str, cluster: str, port: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The listener that serves ``workload``'s inbound ``port`` and its filter chains for that port (see
    :func:`inbound_tls`: ``virtualInbound`` on kind, ``<pod IP>_<port>`` on the local backend)."""
    listeners = [x["active_state"]["listener"] for x in lab.envoy_config(workload, cluster, "dynamic_listeners")["configs"]]
    shared = lab.backend.capabilities.inbound_listener
    if shared:
        listener = next(x for x in listeners if x["name"] == shared)
        return listener, [c for c in listener["filter_chains"] if c.get("filter_chain_match", {}).get("destination_port") == port]
    listener = next(x for x in listeners if x["name"].endswith(f"_{port}") and x["name"] != "virtualOutbound" and not x["name"].startswith("0.0.0.0"))
    return listener, listener["filter_chains"]


def inbound_tls(lab: Lab, workload: str, cluster: str, port: int) -> dict[str, Any]:
    """The mTLS filter chain ``workload``'s sidecar accepts on ``port``:
    ``{"listener": ..., "require_client_certificate": ..., "sans": [...]}``.

    On kind, iptables hands every inbound port to one listener, ``virtualInbound`` (15006), with a
    filter chain per port; meshlab's translator binds one listener per port, ``<pod IP>_<port>``.
    """
    listener, chains = inbound_port_chains(lab, workload, cluster, port)
    chain = next(c for c in chains if c.get("filter_chain_match", {}).get("transport_protocol", "tls") == "tls")
    tls = chain["transport_socket"]["typed_config"]
    ctx = tls["common_tls_context"]
    validation = ctx["combined_validation_context"]["default_validation_context"] if "combined_validation_context" in ctx \
        else ctx["validation_context"]
    sans = [{"exact": m["exact"]} for m in validation.get("match_subject_alt_names", [])]
    sans += [m["matcher"] for m in validation.get("match_typed_subject_alt_names", [])]
    return {"listener": listener["name"], "require_client_certificate": tls.get("require_client_certificate"), "sans": sans}


def inbound_client_sans(lab: Lab, trust_domain: str = "cluster.local") -> list[dict[str, str]]:
    """The client SAN matchers a sidecar's inbound mTLS chain carries (compare :func:`inbound_tls`): none
    from istiod -- any certificate under the mesh root passes, names are AuthorizationPolicy's job; meshlab's
    translator also pins the trust domain as a ``spiffe://<trust domain>/`` prefix."""
    return [{"prefix": f"spiffe://{trust_domain}/"}] if lab.backend.capabilities.client_san_prefix else []


def sidecar_captures_every_port(lab: Lab) -> bool:
    """kind: iptables sends every inbound port to the sidecar, so a raw connect to an unused port still
    connects; local: the sidecar binds only the service's ports, so the pod refuses the others."""
    return lab.backend.capabilities.captures_every_port


def callers_keep_their_pod_ip(lab: Lab) -> bool:
    """local: the server sees the calling pod's IP; kind: kindnet SNATs traffic that leaves a node, so a
    caller in another cluster arrives as its node's address."""
    return lab.backend.capabilities.preserves_caller_ip


def killed_app_is_ejected(lab: Lab) -> bool:
    """local: ``lab.kill`` crashes the app, its sidecar answers 503 (UF) and outlier detection ejects the
    host for ``baseEjectionTime``; kind: the Deployment is scaled to zero, the endpoint leaves EDS, so
    there is nothing to eject (and nothing to retry)."""
    return lab.backend.capabilities.kill_leaves_sidecar


def virtual_host(lab: Lab, workload: str, cluster: str, name: str) -> dict[str, Any]:
    """The route configuration's virtual host ``name`` (e.g. ``helloworld.sample.svc.cluster.local:5000``)
    in ``workload``'s sidecar: from RDS on kind, inline in the ``virtualOutbound`` listener on local."""
    if lab.backend.capabilities.routes_over_rds:
        configs = lab.envoy_config(workload, cluster, "dynamic_route_configs")["configs"]
        hosts = [v for r in configs for v in r["route_config"].get("virtual_hosts", [])]
    else:
        listeners = lab.envoy_config(workload, cluster, "dynamic_listeners")["configs"]
        outbound = next(x["active_state"]["listener"] for x in listeners if x["name"] == "virtualOutbound")
        hosts = outbound["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
    found = [v for v in hosts if v["name"] == name]
    assert found, f"{workload}@{cluster} has no virtual host {name!r}; it has {sorted(v['name'] for v in hosts)}"
    return found[0]


# ---- nothing left behind (every lab's Cleanup) ----------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    """What a lab created, taken before ``lab.down()`` (afterwards its state is gone)."""

    backend: str
    prefix: str  # every network namespace of the lab starts with it
    run_dir: str  # every process of the lab runs from below it
    clusters: tuple[str, ...]  # kind clusters named after the pattern's clusters
    home: str  # the state directory (Lab.attach looks there)


def footprint(lab: Lab) -> Footprint:
    d = lab.state.data
    return Footprint(lab.backend.name, str(d.get("prefix", "")), str(d.get("run_dir", "")), tuple(lab.topology.clusters),
                     str(lab.state.dir))


def leftovers(fp: Footprint) -> list[str]:
    """What of ``fp`` still exists: namespaces, processes, a recorded lab, kind clusters."""
    left = []
    netns = Path("/run/netns")
    if fp.prefix and netns.is_dir():
        left += [f"network namespace {n}" for n in sorted(os.listdir(netns)) if n.startswith(fp.prefix + "-")]
    if fp.run_dir:
        left += [f"process {pid} ({cmd[:60]})" for pid, cmd in _processes() if fp.run_dir in cmd]
    try:
        Lab.attach(fp.home)
        left.append(f"a lab is still recorded in {fp.home}")
    except LabStateError:
        pass
    left += backend_class(fp.backend).leftover_clusters(fp.clusters)
    return left


def assert_nothing_left(fp: Footprint) -> str:
    """No namespace, process, recorded lab or kind cluster of the lab remains; else says what and the fix."""
    left = leftovers(fp)
    assert not left, "left behind: " + "; ".join(left) + " — run `meshlab down`"
    return f"clean: {backend_class(fp.backend).footprint}, no lab recorded"


def _processes() -> list[tuple[int, str]]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out.append((int(pid), Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
            except OSError:
                continue  # gone meanwhile
    return out



def outbound_clusters(lab: Lab, workload: str, cluster: str) -> list[str]:
    """The ``outbound|...`` clusters in ``workload``'s sidecar (``istioctl proxy-config clusters``): the services
    its proxy was told about -- what a Sidecar's egress hosts and exportTo decide."""
    configs = lab.envoy_config(workload, cluster, "dynamic_active_clusters")["configs"]
    return sorted(c["cluster"]["name"] for c in configs if c["cluster"]["name"].startswith("outbound|"))


def config_bytes(lab: Lab, workload: str, cluster: str) -> int:
    """The size of ``workload``'s proxy configuration (its whole ``/config_dump`` with endpoints, as JSON): what
    every push sends and every proxy holds in memory, growing with the services it is told about."""
    import json

    return len(json.dumps(lab.envoy_config(workload, cluster)))
