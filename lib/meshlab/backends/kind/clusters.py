"""kind clusters for a topology: configs, parallel creation, the local registry, image preloading,
routes between clusters on one network, and MetalLB address pools carved from the `kind` network.

Follows Istio's own kind CI (``common/scripts/kind_provisioner.sh``) and kind's docs
(``local-registry.md``, ``loadbalancer.md``); see ``shared/reference/istio-multicluster-on-kind.md``
sections A.3, C.3–C.7, F and G.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from ... import versions
from ...errors import MeshlabError
from ...topology import Cluster, Topology, kube_context
from . import ownership, tools
from .plan import Plan, var_name

# not `kind-registry`: `meshlab down` must only remove what meshlab started; both can be changed when
# something else on the laptop already uses them (`up` checks before it starts the container)
REGISTRY_NAME = os.environ.get("MESHLAB_REGISTRY_NAME", "meshlab-registry")
REGISTRY_HOST_PORT = int(os.environ.get("MESHLAB_REGISTRY_PORT", "5001"))  # localhost:<it> on the host and on every node
KIND_NETWORK = "kind"
LB_POOL_SIZE = 16  # addresses per cluster: the east-west gateway needs one, the rest is headroom
CREATE_WAIT = "180s"  # kind create cluster --wait (control plane Ready)


def _node_tag(pinned: str) -> str:
    name, _, digest = pinned.partition("@sha256:")
    return f"meshlab/kind-node:{name.rpartition(':')[2]}-{digest[:12]}"


# The node image is pinned by digest, but Docker's classic image store does not export digest references
# (``docker save`` drops them; the archive loads back as an unnamed image). So meshlab also tags the verified
# image (the pinned tag plus the digest's first 12 hex digits, in a ``meshlab/`` repository nothing is pulled
# from), saves it by that tag, and ``kind create`` runs that tag: an archive loaded on any store brings it back.
NODE_TAG = _node_tag(versions.KIND_NODE_IMAGE)


context = kube_context  # kind names the kubeconfig context of cluster ``c`` ``kind-c``


def node(cluster: str) -> str:
    """The single node (a Docker container) of a meshlab kind cluster."""
    return f"{cluster}-control-plane"


def kubectl(cluster: str, *args: str) -> list[str]:
    return ["kubectl", "--context", context(cluster), *args]


def node_ip_var(cluster: str) -> str:
    return var_name(cluster, "IP")


def kind_config(topology: Topology, c: Cluster) -> dict[str, Any]:
    """One single-node cluster: the pinned node image (by meshlab's tag of its digest), the topology's subnets, locality labels."""
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": c.name,
        "nodes": [
            {
                "role": "control-plane",
                "image": NODE_TAG,  # the pinned digest, tagged by meshlab (see add_node_image)
                "labels": {"topology.kubernetes.io/region": c.region, "topology.kubernetes.io/zone": c.zone},
            }
        ],
        "networking": {"podSubnet": str(c.pod_cidr), "serviceSubnet": str(c.service_cidr)},
        # containerd reads per-registry config from /etc/containerd/certs.d (kind's local-registry recipe)
        "containerdConfigPatches": ['[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"'],
    }


def lb_pool(subnets: str, index: int, count: int, size: int = LB_POOL_SIZE) -> str:
    """MetalLB range for cluster ``index`` of ``count``: disjoint slices at the top of the kind network.

    ``subnets`` is what ``docker network inspect kind`` lists (IPv4 and maybe IPv6, space separated).
    kind hands out node addresses from the bottom of the subnet, so the top is free; the slices are
    also kept out of the subnet's lower three quarters, so they never collide with containers.
    """
    nets = []
    for s in subnets.split():
        try:
            n = ipaddress.ip_network(s, strict=False)
        except ValueError:
            continue
        if n.version == 4:
            nets.append(n)
    if not nets:
        raise MeshlabError(f"the docker network {KIND_NETWORK!r} has no IPv4 subnet (it lists {subnets!r})",
                           f"check `docker network inspect {KIND_NETWORK}`; delete the network and let kind recreate it")
    net = nets[0]
    last = int(net.broadcast_address) - 1  # skip the broadcast address
    hi = last - index * size
    lo = hi - size + 1
    floor = int(net.network_address) + (net.num_addresses * 3) // 4
    if count * size > net.num_addresses // 4 or lo < floor:
        raise MeshlabError(
            f"the {KIND_NETWORK!r} docker network {net} is too small for {count} MetalLB pools of {size} addresses",
            "give docker a larger default address pool (e.g. a /16 per network in daemon.json), then recreate the network",
        )
    return f"{ipaddress.ip_address(lo)}-{ipaddress.ip_address(hi)}"


def metallb_pool(cluster: str) -> list[dict[str, Any]]:
    pool = "${%s}" % var_name(cluster, "LB_POOL")
    return [
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": "meshlab-pool", "namespace": "metallb-system"},
         "spec": {"addresses": [pool]}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
         "metadata": {"name": "meshlab-l2", "namespace": "metallb-system"},
         "spec": {"ipAddressPools": ["meshlab-pool"]}},
    ]  # fmt: skip


def registry_hosting_configmap() -> dict[str, Any]:
    """KEP-1755: tells tools which registry the cluster can pull from."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
        "data": {
            "localRegistryHosting.v1": f'host: "localhost:{REGISTRY_HOST_PORT}"\n'
            'help: "https://kind.sigs.k8s.io/docs/user/local-registry/"\n'
        },
    }


# ---- steps --------------------------------------------------------------------------------------

def add_node_image(plan: Plan, pull: bool = True) -> None:
    """The node image by digest, tagged :data:`NODE_TAG` (what ``kind create`` runs), unless Docker has that tag."""
    have = ["docker", "image", "inspect", "--format", "{{.Id}}", NODE_TAG]
    if pull:
        plan.run(f"pull the kind node image by its pinned digest, unless Docker has it as {NODE_TAG}",
                 ["docker", "pull", versions.KIND_NODE_IMAGE], unless=have, timeout=900, tags=("images", "node-image"),
                 hint="Docker Hub rate limits? `docker login`, or load the instructor's archive: `meshlab kind images load FILE`")
    plan.run(f"tag it {NODE_TAG}: the name survives `docker save`/`load` on every image store (a digest does not)",
             ["docker", "tag", versions.KIND_NODE_IMAGE, NODE_TAG], unless=have, tags=("images", "node-image"))


def add_registry(plan: Plan) -> None:
    plan.phase = "local registry (wasm modules, image cache)"
    plan.meshlab(
        f"check that the name {REGISTRY_NAME} is free or meshlab's, and (to start it) that 127.0.0.1:{REGISTRY_HOST_PORT} is free",
        "check_registry", f"refuse a container named {REGISTRY_NAME} without the label {ownership.OWNER_LABEL}, or a taken "
        f"port {REGISTRY_HOST_PORT}, saying how to choose another (MESHLAB_REGISTRY_NAME, MESHLAB_REGISTRY_PORT)",
        args={"name": REGISTRY_NAME, "port": REGISTRY_HOST_PORT}, tags=("registry", "safety"),
    )  # fmt: skip
    plan.run(
        f"start the local registry container {REGISTRY_NAME} ({tools.REGISTRY_IMAGE}) on 127.0.0.1:{REGISTRY_HOST_PORT}, "
        "unless it exists (kind's local-registry recipe; it joins the kind network after the first cluster exists)",
        ["docker", "run", "-d", "--restart=always", "-p", f"127.0.0.1:{REGISTRY_HOST_PORT}:5000", "--network", "bridge",
         "--label", ownership.OWNER_LABEL, "--name", REGISTRY_NAME, tools.REGISTRY_IMAGE],
        unless=["docker", "ps", "-aq", "--filter", f"name=^{REGISTRY_NAME}$"],
        timeout=300, tags=("registry",),
        hint=f"can Docker pull {tools.REGISTRY_IMAGE}? Port {REGISTRY_HOST_PORT} taken since the check? Choose another "
        "with MESHLAB_REGISTRY_PORT (and MESHLAB_REGISTRY_NAME for another container name)",
    )  # fmt: skip
    plan.run(f"make sure {REGISTRY_NAME} is running (a no-op if it already is)", ["docker", "start", REGISTRY_NAME], tags=("registry",))


def add_claim(plan: Plan, topology: Topology, state_dir: Path) -> None:
    """Before anything is created: the pattern's cluster names are free, or meshlab's own."""
    names = list(topology.clusters)
    plan.meshlab(
        f"make sure no kind cluster named {', '.join(names)} exists that meshlab did not create (it is never deleted)",
        "claim_clusters", f"`kind get clusters`; refuse any of these names that is not in meshlab's ledger "
        f"{state_dir / ownership.LEDGER}; then record them there before creating them",
        args={"state_dir": str(state_dir), "clusters": names}, tags=("safety", "claim"),
    )  # fmt: skip


def add_clusters(plan: Plan, topology: Topology, state_dir: Path) -> None:
    plan.phase = "kind clusters"
    names = list(topology.clusters)
    for c in topology.clusters.values():
        plan.run(f"remove meshlab's leftover kind cluster {c.name} from an earlier run (a no-op if there is none)",
                 ["kind", "delete", "cluster", "--name", c.name], cluster=c.name, timeout=300, tags=("cleanup",))
    add_node_image(plan)
    context_file = str(state_dir / "kind" / "kube-context")
    plan.meshlab("remember the current kubectl context (`kind create cluster` switches it to the new cluster)",
                 "kube_context", f"`kubectl config current-context` -> {context_file}", args={"op": "save", "file": context_file},
                 tags=("safety", "context"))
    with plan.parallel("create-clusters"):
        for c in topology.clusters.values():
            plan.run(
                f"create kind cluster {c.name}: node image pinned by digest, pod {c.pod_cidr} / service {c.service_cidr}, "
                f"node labels region={c.region} zone={c.zone} (context {context(c.name)})",
                ["kind", "create", "cluster", "--name", c.name, "--wait", CREATE_WAIT, "--config", "-"],
                manifests=[kind_config(topology, c)], cluster=c.name, timeout=900, tags=("create-cluster",),
                hint="check Docker's memory (`meshlab doctor`) and inotify limits; `kind export logs --name "
                f"{c.name}` shows why the node did not become Ready",
            )  # fmt: skip
    plan.meshlab("put the kubectl context back as it was: meshlab names --context on every command instead",
                 "kube_context", f"`kubectl config use-context` <the context in {context_file}> (or unset it if there was none), "
                 f"only if the current one is still the lab's ({', '.join(context(n) for n in names)}); then forget it",
                 args={"op": "restore", "file": context_file, "clusters": names}, tags=("safety", "context"))
    plan.meshlab("record the new clusters' node containers in meshlab's ledger (what `meshlab down` may delete)",
                 "record_clusters", f"docker inspect <cluster>-control-plane -> {state_dir / ownership.LEDGER}",
                 args={"state_dir": str(state_dir), "clusters": names}, tags=("safety", "claim"))
    for c in topology.clusters.values():
        plan.run(
            f"read {node(c.name)}'s IP on the kind network: its API server is https://${{{node_ip_var(c.name)}}}:6443 "
            "for other clusters (the kubeconfig's 127.0.0.1 only works from the host)",
            ["docker", "inspect", "-f", "{{.NetworkSettings.Networks.kind.IPAddress}}", node(c.name)],
            capture=node_ip_var(c.name), cluster=c.name, tags=("node-ip",),
        )  # fmt: skip

    plan.phase = "wire the local registry into every cluster"
    for c in topology.clusters.values():
        d = f"/etc/containerd/certs.d/localhost:{REGISTRY_HOST_PORT}"
        plan.run(f"containerd: localhost:{REGISTRY_HOST_PORT} means {REGISTRY_NAME}:5000 inside the node (1/2)",
                 ["docker", "exec", node(c.name), "mkdir", "-p", d], cluster=c.name, tags=("registry",))
        plan.run(f"containerd: localhost:{REGISTRY_HOST_PORT} means {REGISTRY_NAME}:5000 inside the node (2/2)",
                 ["docker", "exec", "-i", node(c.name), "cp", "/dev/stdin", f"{d}/hosts.toml"],
                 stdin=f'[host."http://{REGISTRY_NAME}:5000"]\n', cluster=c.name, tags=("registry",))
    plan.run(
        f"connect {REGISTRY_NAME} to the kind network, unless it already is",
        ["docker", "network", "connect", KIND_NETWORK, REGISTRY_NAME],
        unless=["docker", "inspect", "-f", "{{if .NetworkSettings.Networks.kind}}connected{{end}}", REGISTRY_NAME],
        tags=("registry",),
    )  # fmt: skip
    for c in topology.clusters.values():
        plan.run("document the local registry in the cluster (ConfigMap kube-public/local-registry-hosting, KEP-1755)",
                 kubectl(c.name, "apply", "--validate=strict", "-f", "-"), manifests=[registry_hosting_configmap()],
                 cluster=c.name, tags=("registry",))


def add_routes(plan: Plan, topology: Topology) -> None:
    """Flat network: each node routes the other clusters' pod and service CIDRs via their node (C.3)."""
    names = list(topology.clusters)
    pairs = [(a, b) for a in names for b in names if a != b and topology.same_network(a, b)]
    if not pairs:
        return
    plan.phase = "flat network: routes between the node containers"
    for a, b in pairs:
        cb = topology.clusters[b]
        for kind_, cidr in (("pod", cb.pod_cidr), ("service", cb.service_cidr)):
            plan.run(
                f"route {b}'s {kind_} CIDR {cidr} via {b}'s node (both clusters are on network {cb.network})",
                ["docker", "exec", node(a), "ip", "route", "replace", str(cidr), "via", "${%s}" % node_ip_var(b)],
                cluster=a, tags=("route",),
            )  # fmt: skip


def add_metallb(plan: Plan, topology: Topology, manifest: str) -> None:
    plan.phase = f"MetalLB {versions.METALLB_VERSION}: LoadBalancer addresses from the kind network"
    for c in topology.clusters.values():
        plan.run(f"install MetalLB {versions.METALLB_VERSION} (the verified metallb-native.yaml)",
                 kubectl(c.name, "apply", "-f", manifest), cluster=c.name, tags=("metallb",))
    for c in topology.clusters.values():
        for what in ("deployment/controller", "daemonset/speaker"):
            plan.run(
                f"wait until MetalLB's {what.split('/')[1]} is rolled out (its webhook must answer before pools are applied)",
                kubectl(c.name, "-n", "metallb-system", "rollout", "status", what, "--timeout=180s"),
                cluster=c.name, timeout=200, tags=("metallb", "wait"),
                hint=f"`kubectl --context {context(c.name)} -n metallb-system get pods`: are the images loaded?",
            )  # fmt: skip
    plan.run(
        "read the kind network's subnets (the MetalLB pools are carved from it)",
        ["docker", "network", "inspect", KIND_NETWORK, "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"],
        capture="KIND_SUBNETS", tags=("metallb",),
    )  # fmt: skip
    names = list(topology.clusters)
    for i, name in enumerate(names):
        example = lb_pool("172.18.0.0/16", i, len(names))
        plan.meshlab(
            f"choose {name}'s MetalLB range: slice {i + 1} of {len(names)} at the top of the kind network (disjoint per cluster)",
            "lb_pool", f"{var_name(name, 'LB_POOL')} = {LB_POOL_SIZE} addresses below the top of the IPv4 subnet in "
            f"${{KIND_SUBNETS}}, slice {i + 1} (with Docker's usual 172.18.0.0/16: {example})",
            args={"subnets": "${KIND_SUBNETS}", "index": i, "count": len(names)},
            capture=var_name(name, "LB_POOL"), cluster=name, tags=("metallb",),
        )  # fmt: skip
    for name in names:
        plan.run(
            "give MetalLB its address pool and announce it on the kind network (L2)",
            kubectl(name, "apply", "--validate=strict", "-f", "-"), manifests=metallb_pool(name),
            cluster=name, retries=5, tags=("metallb", "metallb-pool"),
            hint="MetalLB's webhook may still be starting: wait a few seconds and re-run the step",
        )  # fmt: skip


def add_delete(plan: Plan, clusters: list[str], registry: bool = True) -> None:
    plan.phase = "remove the lab"
    for name in clusters:
        plan.run(f"delete kind cluster {name} (its node, routes and MetalLB go with it; kubeconfig entry removed)",
                 ["kind", "delete", "cluster", "--name", name], cluster=name, timeout=300, tags=("delete",))
    if registry:
        plan.run(f"remove the local registry container {REGISTRY_NAME}, if it exists and meshlab started it",
                 ["docker", "rm", "-f", REGISTRY_NAME],
                 only_if=["docker", "ps", "-aq", "--filter", f"name=^{REGISTRY_NAME}$", "--filter", f"label={ownership.OWNER_LABEL}"],
                 tags=("delete",))
