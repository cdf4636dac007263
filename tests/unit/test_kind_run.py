"""The whole kind bring-up plan of each pattern, executed — not just recorded — against stand-ins for
`docker`, `kind`, `kubectl` and `istioctl` that record every call (argv and stdin) and answer like the
real tools do (a node IP, a MetalLB address, a remote secret ...).

What a dry run cannot show, this does: every placeholder is filled at run time with what an earlier
step captured, probes and captures behave, manifests reach the tools with real values, meshlab's own
actions (prerequisites, PKI, MetalLB slices, the cluster ledger, the kubectl context) run, and the
steps reach the tools in the plan's order."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from meshlab.backends.kind import images, ownership, tools, up_plan
from meshlab.backends.kind.executor import Executor
from meshlab.topology import load_topology

FAKE = r"""#!/bin/sh
# A stand-in for docker, kind, kubectl and istioctl: records argv and stdin, answers like the real tool.
tool=$(basename "$0")
d="$WORLD/calls/$(date +%s%N)-$$"
mkdir -p "$d"
printf '%s\n' "$tool" "$@" > "$d/argv"
[ -t 0 ] || cat > "$d/stdin"
eval last=\${$#}
case "$tool $1 $2" in
  "docker version"*) echo amd64 ;;
  "docker info"*) echo '{"ServerVersion": "29.1.2", "MemTotal": 17179869184, "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}' ;;
  "docker image inspect") exit 1 ;;  # not in Docker yet: pulled
  "docker save"*) echo archive > "$5" ;;
  "docker network inspect") echo "172.18.0.0/16 fc00:f853:ccd:e793::/64 " ;;
  "docker inspect"*)
    case "$2 $3" in
      *IPAddress*) case "$last" in cluster1-*) echo 172.18.0.2 ;; cluster2-*) echo 172.18.0.3 ;; esac ;;
      *"{{.Id}}"*) echo "id-$last" ;;
    esac ;;
  "kubectl config current-context") echo the-learners-context ;;
  "kubectl version --client") echo "Client Version: v1.36.4" ;;
  "kubectl --context"*)
    case "$*" in
      *"jsonpath={.status.loadBalancer.ingress[0].ip}"*)
        case "$2" in kind-cluster1) echo 172.18.255.239 ;; kind-cluster2) echo 172.18.255.223 ;; esac ;;
    esac ;;
  "istioctl create-remote-secret"*)
    while [ "$1" != --name ]; do shift; done
    printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: istio-remote-secret-%s\n  namespace: istio-system\n' "$2" ;;
esac
exit 0
"""


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "fake"
    fake.write_text(FAKE)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    for name in ("docker", "kind", "kubectl", "istioctl"):
        (bin_dir / name).symlink_to(fake)
    monkeypatch.setenv("WORLD", str(tmp_path))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MESHLAB_TOOLS", str(tmp_path / "tools"))
    # meshlab looks for kubectl next to Python first (the wheel's): there, it finds the stand-in
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    for a in (tools.kind_artifact(), tools.istioctl_artifact(), tools.metallb_artifact()):  # "downloaded and verified"
        a.program.parent.mkdir(parents=True, exist_ok=True)
        if a.program.suffix == ".yaml":
            a.program.write_text("# metallb-native.yaml\n")
        else:
            a.program.symlink_to(fake)
    monkeypatch.setattr(tools, "installed", lambda a: True)
    return tmp_path


def calls(world: Path) -> list[dict]:
    """Every call, in the order they were made: tool, args, stdin."""
    out = []
    for d in sorted((world / "calls").iterdir(), key=lambda p: int(p.name.split("-")[0])):
        tool, *args = (d / "argv").read_text().split("\n")[:-1]
        stdin = (d / "stdin").read_text() if (d / "stdin").exists() else ""
        out.append({"tool": tool, "args": args, "stdin": stdin})
    return out


@pytest.mark.parametrize("pattern", ["flat-network", "separate-networks", "separate-control-planes"])
def test_the_whole_plan_runs(world: Path, pattern: str) -> None:
    home = world / "home"
    plan = up_plan(load_topology(pattern), home)
    lines: list[str] = []
    ex = Executor(False, progress=lines.append)
    ex.execute(plan)
    v = ex.variables

    # every capture got a real value, and every step reported
    assert {v["CLUSTER1_IP"], v["CLUSTER2_IP"]} == {"172.18.0.2", "172.18.0.3"}
    assert v["CLUSTER1_EW_IP"] == "172.18.255.239" and v[images.ARCH_VAR] == "amd64"
    assert v["CLUSTER1_LB_POOL"] == "172.18.255.239-172.18.255.254" and v["CLUSTER2_LB_POOL"] == "172.18.255.223-172.18.255.238"
    assert len(lines) == len(plan) and not [x for x in lines if "FAILED" in x]

    log = calls(world)
    # the tools saw no placeholder: every ${NAME} was filled in, in argv and in the manifests on stdin
    assert not [c for c in log if "${" in " ".join(c["args"]) + c["stdin"]]
    # the run steps reached the tools in the plan's order (probes and meshlab's own calls in between)
    planned = [(s.argv[0], s.argv[1:]) for s in plan if s.action == "run" and not s.group]  # groups run concurrently
    ran = [(c["tool"], c["args"]) for c in log]
    it = iter(ran)
    for tool, args in planned:
        if tool in ("mv", "mkdir", "sh"):
            continue
        assert any((t, a) == (tool, [x.replace("${DOCKER_ARCH}", "amd64") for x in _filled(args, v)]) for t, a in it), \
            f"{tool} {' '.join(args)} did not run in order"

    # values that only exist at run time reached the manifests
    pools = [yaml.safe_load_all(c["stdin"]) for c in log if c["tool"] == "kubectl" and "IPAddressPool" in c["stdin"]]
    assert sorted(next(iter(docs))["spec"]["addresses"][0] for docs in pools) == sorted([v["CLUSTER1_LB_POOL"], v["CLUSTER2_LB_POOL"]])
    if pattern != "separate-control-planes":
        [remote] = [c for c in log if c["tool"] == "istioctl" and c["args"][:1] == ["install"] and "profile: remote" in c["stdin"]]
        assert yaml.safe_load(remote["stdin"])["spec"]["values"]["global"]["remotePilotAddress"] == "172.18.255.239"
        [secret] = [c for c in log if c["args"][:1] == ["create-remote-secret"]]
        assert secret["args"][secret["args"].index("--server") + 1] == f"https://{v['CLUSTER2_IP']}:6443"
        [applied] = [c for c in log if c["tool"] == "kubectl" and "istio-remote-secret-cluster2" in c["stdin"]]
        assert applied["args"][:2] == ["--context", "kind-cluster1"], "the remote secret piped into the primary"
    else:
        fed = [c for c in log if c["tool"] == "kubectl" and "ServiceEntry" in c["stdin"]]
        addresses = {d["spec"]["endpoints"][0]["address"] for c in fed for d in yaml.safe_load_all(c["stdin"]) if d["kind"] == "ServiceEntry"}
        assert addresses == {v["CLUSTER1_EW_IP"], v["CLUSTER2_EW_IP"]}

    # meshlab's own actions did their work
    assert json.loads((home / ownership.LEDGER).read_text()) == {"cluster1": "id-cluster1-control-plane", "cluster2": "id-cluster2-control-plane"}
    assert not (home / "kind" / "kube-context").exists(), "saved, put back (or left as the learner chose), then forgotten"
    assert [c["args"] for c in log if c["tool"] == "kubectl" and c["args"][:1] == ["config"]] == [["config", "current-context"]] * 2
    assert sorted(p.name for p in (home / "kind" / "pki").rglob("cacerts/*")) == sorted(
        ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"] * 2)
    archive = Path(images.cluster_archive().replace("${DOCKER_ARCH}", "amd64"))
    assert archive.read_text() == "archive\n" and not Path(f"{archive}.part").exists()
    loads = [c["args"] for c in log if c["tool"] == "kind" and c["args"][:2] == ["load", "image-archive"]]
    assert loads == [["load", "image-archive", str(archive), "--name", c] for c in ("cluster1", "cluster2")]


def _filled(args: list[str], variables: dict[str, str]) -> list[str]:
    from meshlab.backends.kind.plan import substitute

    return list(substitute(args, variables))
