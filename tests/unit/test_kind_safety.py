"""The kind backend on a learner's laptop: it never deletes a kind cluster or a container it did not
create, checks the registry's name and port before using them, leaves the current kubectl context
alone, and its image cache (pull / save FILE / load FILE) round-trips.

Stand-ins for `docker` and `kind` on PATH record their argv and keep a tiny image store and cluster
list in files, so the real plan steps run here without Docker."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from meshlab.backends.kind import KindBackend, images, ownership, up_plan
from meshlab.backends.kind.executor import Executor
from meshlab.cli import main
from meshlab.errors import MeshlabError
from meshlab.state import State
from meshlab.topology import load_topology

DOCKER = r"""#!/bin/sh
# a stand-in docker: records argv; images in $WORLD/images (one ref a line); node IDs in $WORLD/node-<name>
echo "docker $*" >> "$WORLD/argv.log"
case "$1" in
  version) echo amd64 ;;
  info) echo '{"ServerVersion": "29.1.2", "MemTotal": 17179869184, "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}' ;;
  pull) eval img=\${$#}; echo "$img" >> "$WORLD/images" ;;
  tag) grep -qxF "$2" "$WORLD/images" && echo "$3" >> "$WORLD/images" ;;
  image) grep -qxF "$5" "$WORLD/images" 2>/dev/null && echo "sha256:1d" ;;
  save) out="$5"; shift 5
        for r in "$@"; do grep -qxF "$r" "$WORLD/images" || { echo "no such image: $r" >&2; exit 1; }; done
        # Docker's classic image store exports no digest reference: the image loads back without that name
        if [ -n "$CLASSIC_STORE" ]; then printf '%s\n' "$@" | grep -v '@sha256:' > "$out"; else printf '%s\n' "$@" > "$out"; fi ;;
  load) cat "$3" >> "$WORLD/images"; echo "Loaded image" ;;
  inspect) n="${4%-control-plane}"; [ -f "$WORLD/node-$n" ] && cat "$WORLD/node-$n" || { echo "no such object" >&2; exit 1; } ;;
  ps) cat "$WORLD/ps" 2>/dev/null; true ;;
esac
"""

KIND = r"""#!/bin/sh
echo "kind $*" >> "$WORLD/argv.log"
case "$1 $2" in
  "get clusters") cat "$WORLD/clusters" 2>/dev/null ;;
  "delete cluster") grep -vxF "$4" "$WORLD/clusters" > "$WORLD/c.tmp"; mv "$WORLD/c.tmp" "$WORLD/clusters"; rm -f "$WORLD/node-$4" ;;
esac
"""


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from meshlab.backends.kind import tools

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("WORLD", str(tmp_path))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MESHLAB_TOOLS", str(tmp_path / "tools"))
    kind = tools.kind_artifact().program  # the stand-in kind sits where meshlab keeps the verified one
    kind.parent.mkdir(parents=True)
    for f, text in ((bin_dir / "docker", DOCKER), (kind, KIND), (bin_dir / "kind", KIND)):
        f.write_text(text)
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr("meshlab.backends.kind.tools.installed", lambda a: True)
    (tmp_path / "home").mkdir()
    return tmp_path


def argv_log(world: Path) -> list[str]:
    f = world / "argv.log"
    return f.read_text().splitlines() if f.exists() else []


def live() -> Executor:
    ex = Executor(False, progress=None)
    ex.resolve = lambda name: name  # the stand-ins on PATH
    return ex


# ---- kind clusters -------------------------------------------------------------------------------

def test_up_refuses_to_replace_a_cluster_meshlab_did_not_create(world: Path) -> None:
    """The real plan's first cluster steps, run against a laptop that already has its own `cluster1`."""
    (world / "clusters").write_text("cluster1\nmy-dev-cluster\n")
    home = world / "home"
    plan = up_plan(load_topology("flat-network"), home)
    claim = plan.first(tag="claim")
    cleanup = plan.find(tag="cleanup")
    assert n_of(claim) < min(n_of(s) for s in cleanup) < n_of(plan.first(tag="create-cluster")), "claim before any delete"
    assert n_of(claim) < n_of(plan.first(tag="registry")), "and before anything is created"
    with pytest.raises(MeshlabError, match="cluster1 already exists and meshlab did not create it") as e:
        live().execute(_sub(plan, [claim, *cleanup]))
    assert "kind delete cluster --name cluster1" in (e.value.hint or "")
    assert not [a for a in argv_log(world) if "delete" in a], "nothing was deleted"
    assert (world / "clusters").read_text() == "cluster1\nmy-dev-cluster\n"


def test_up_replaces_its_own_leftover_and_records_what_it_created(world: Path) -> None:
    home = world / "home"
    (world / "clusters").write_text("cluster1\n")
    (world / "node-cluster1").write_text("old-node\n")
    (home / ownership.LEDGER).write_text(json.dumps({"cluster1": "old-node"}))
    plan = up_plan(load_topology("flat-network"), home)
    live().execute(_sub(plan, [plan.first(tag="claim"), *plan.find(tag="cleanup")]))
    assert "kind delete cluster --name cluster1" in argv_log(world), "meshlab's own leftover is replaced"
    assert json.loads((home / ownership.LEDGER).read_text()) == {"cluster1": None, "cluster2": None}, "claimed"
    for c in ("cluster1", "cluster2"):  # what `kind create` would leave
        (world / f"node-{c}").write_text(f"{c}-new\n")
    [_, record] = plan.find(tag="claim")
    live().execute(_sub(plan, [record]))
    assert json.loads((home / ownership.LEDGER).read_text()) == {"cluster1": "cluster1-new", "cluster2": "cluster2-new"}


def test_down_deletes_only_clusters_meshlab_created(world: Path) -> None:
    home = world / "home"
    (world / "clusters").write_text("cluster1\ncluster2\ncluster3\n")
    for c, node in (("cluster1", "ours"), ("cluster2", "someone-elses"), ("cluster3", "x")):
        (world / f"node-{c}").write_text(node + "\n")
    # cluster1: ours; cluster2: ours once, but deleted and re-created by someone else since; cluster3: never ours;
    # cluster4: ours, and its node is gone already (deleting it only tidies kind's kubeconfig entry)
    (home / ownership.LEDGER).write_text(json.dumps({"cluster1": "ours", "cluster2": "the-node-meshlab-made", "cluster4": "gone"}))
    st = State(home)
    st.data = {"backend": "kind", "clusters": ["cluster1", "cluster2", "cluster3", "cluster4"], "containers": [],
               "run_dir": str(home / "kind")}
    lines: list[str] = []
    assert KindBackend.destroy(st, progress=lines.append)["clusters"] == 2
    deletes = [a for a in argv_log(world) if a.startswith("kind delete")]
    assert deletes == ["kind delete cluster --name cluster1", "kind delete cluster --name cluster4"]
    assert sum("was not created by meshlab" in line for line in lines) == 2
    assert json.loads((home / ownership.LEDGER).read_text()) == {"cluster2": "the-node-meshlab-made"}


def test_down_removes_only_a_registry_container_meshlab_labelled(world: Path) -> None:
    st = State(world / "home")
    st.data = {"clusters": [], "containers": ["meshlab-registry"]}
    step = KindBackend.down_plan(st).last(tag="delete")
    assert step.argv[:3] == ["docker", "rm", "-f"]
    assert step.only_if and f"label={ownership.OWNER_LABEL}" in step.only_if


# ---- the registry: name and port ------------------------------------------------------------------

def test_registry_name_taken_by_another_container(world: Path) -> None:
    (world / "ps").write_text("\n")  # a container of that name, without meshlab's label
    with pytest.raises(MeshlabError, match="exists that meshlab did not start") as e:
        ownership.check_registry("meshlab-registry", 5001)
    assert "MESHLAB_REGISTRY_NAME=" in (e.value.hint or "")


def test_registry_port_in_use(world: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(MeshlabError, match=f"port {port} on 127.0.0.1 is in use") as e:
            ownership.check_registry("meshlab-registry", port)
        assert f"MESHLAB_REGISTRY_PORT={port + 1}" in (e.value.hint or "")
    ownership.check_registry("meshlab-registry", port)  # free again: fine
    (world / "ps").write_text("meshlab\n")  # meshlab's own registry is running: reused, its port is expected to be taken
    ownership.check_registry("meshlab-registry", port)


def test_registry_step_is_checked_and_labelled(tmp_path: Path) -> None:
    plan = up_plan(load_topology("flat-network"), tmp_path)
    check, run = plan.find(tag="registry")[:2]
    assert check.call == "check_registry" and check.args == {"name": "meshlab-registry", "port": 5001}
    assert run.argv[:2] == ["docker", "run"] and ownership.OWNER_LABEL in run.argv
    assert n_of(check) < n_of(run)


# ---- the current kubectl context -----------------------------------------------------------------

def test_the_current_context_is_put_back_after_kind_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real kubectl on a throwaway kubeconfig: `kind create cluster` switches the context; meshlab switches it back."""
    kubeconfig = tmp_path / "config"
    contexts = [{"name": n, "context": {"cluster": n, "user": n}} for n in ("mine", "kind-cluster1")]
    kubeconfig.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "mine", "contexts": contexts,
                                      "clusters": [{"name": n, "cluster": {"server": "https://127.0.0.1:1"}} for n in ("mine", "kind-cluster1")],
                                      "users": [{"name": n, "user": {}} for n in ("mine", "kind-cluster1")]}))  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    plan = up_plan(load_topology("flat-network"), tmp_path / "home")
    save, restore = plan.find(tag="context")
    creates = plan.find(tag="create-cluster")
    assert n_of(save) < min(n_of(s) for s in creates) and max(n_of(s) for s in creates) < n_of(restore)
    live().execute(_sub(plan, [save]))
    from meshlab.exec import run, which

    run([which("kubectl"), "config", "use-context", "kind-cluster1"])  # what kind create does
    live().execute(_sub(plan, [restore]))
    assert run([which("kubectl"), "config", "current-context"]).stdout.strip() == "mine"


# ---- the image cache -----------------------------------------------------------------------------

def test_images_pull_save_load_round_trip(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = world / "meshlab-images.tar"
    assert main(["kind", "images", "pull"]) == 0
    pulled = (world / "images").read_text().splitlines()
    assert sorted(pulled) == sorted(images.archived_images()), "every pinned image, once (and the node image's tag)"
    assert all(a.startswith("docker pull --platform linux/amd64 ") for a in argv_log(world) if a.startswith("docker pull"))
    cache = Path(images.cluster_archive().replace("${DOCKER_ARCH}", "amd64"))
    assert cache.read_text().splitlines() == images.cluster_images(), "the archive `up` loads into the clusters"

    assert main(["kind", "images", "save", str(archive)]) == 0
    saves = [a for a in argv_log(world) if a.startswith("docker save")]
    assert saves[-1] == f"docker save --platform linux/amd64 -o {archive}.part " + " ".join(images.archived_images())
    assert archive.read_text().splitlines() == images.archived_images() and not Path(f"{archive}.part").exists()

    (world / "images").unlink()  # another laptop: an empty Docker
    (world / "argv.log").unlink()
    assert main(["kind", "images", "load", str(archive)]) == 0
    assert argv_log(world)[0] == f"docker load -i {archive}"
    assert not [a for a in argv_log(world) if a.startswith(("docker pull", "docker save"))]
    assert sorted((world / "images").read_text().splitlines()) == sorted(images.archived_images())
    assert "pulls nothing" in capsys.readouterr().out

    # now `up` pulls nothing: each pull step's probe finds the image in Docker
    plan = up_plan(load_topology("flat-network"), world / "home")
    cache.unlink()
    live().execute(_sub(plan, [plan.setter(images.ARCH_VAR), *plan.find(tag="pull"), *plan.find(tag="save")]))
    assert not [a for a in argv_log(world) if a.startswith("docker pull")]
    assert cache.read_text().splitlines() == images.cluster_images()


def test_an_archive_saved_on_a_classic_image_store_brings_the_node_image_back(world: Path, monkeypatch: pytest.MonkeyPatch,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Docker's classic store does not export a digest reference: the node image travels by meshlab's tag, which
    is what `kind create` runs, so a laptop that loaded the archive pulls nothing for it."""
    monkeypatch.setenv("CLASSIC_STORE", "1")
    archive = world / "meshlab-images.tar"
    assert main(["kind", "images", "save", str(archive)]) == 0
    saved = archive.read_text().splitlines()
    assert images.NODE_TAG in saved and not [r for r in saved if "@sha256:" in r], "only the tag survives"
    (world / "images").unlink()
    assert main(["kind", "images", "load", str(archive)]) == 0
    assert "lacks" not in capsys.readouterr().out, "the node image counts as loaded (by its tag)"
    (world / "argv.log").unlink()
    plan = up_plan(load_topology("flat-network"), world / "home")
    live().execute(_sub(plan, plan.find(tag="node-image")))
    assert not [a for a in argv_log(world) if a.startswith(("docker pull", "docker tag"))], "kind create finds it by its tag"
    assert all(s.manifests[0]["nodes"][0]["image"] == images.NODE_TAG for s in plan.find(tag="create-cluster"))


def test_up_reuses_a_cached_cluster_archive(world: Path) -> None:
    plan = up_plan(load_topology("flat-network"), world / "home")
    cache = Path(images.cluster_archive().replace("${DOCKER_ARCH}", "amd64"))
    cache.parent.mkdir(parents=True)
    cache.write_text("cached\n")
    live().execute(_sub(plan, [plan.setter(images.ARCH_VAR), *plan.find(tag="pull"), *plan.find(tag="save")]))
    assert not [a for a in argv_log(world) if a.startswith(("docker pull", "docker save"))], "the archive is reused"
    assert cache.read_text() == "cached\n"


def test_images_load_needs_an_existing_file(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kind", "images", "load", str(world / "nope.tar")]) == 1
    assert "no archive at" in capsys.readouterr().err
    assert main(["kind", "images", "save"]) == 1


# ---- helpers -------------------------------------------------------------------------------------

def n_of(step: object) -> int:
    return int(getattr(step, "number"))


def _sub(plan: object, steps: list) -> object:
    from dataclasses import replace

    from meshlab.backends.kind.plan import Plan

    sub = Plan("part of the up plan")
    for s in steps:
        sub.add(replace(s, group=None))
    return sub


def test_down_after_a_failed_create_puts_the_context_back(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meshlab.exec import run, which

    kubeconfig = world / "config"
    names = ("mine", "kind-cluster1")
    kubeconfig.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "kind-cluster1",
                                      "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in names],
                                      "clusters": [{"name": n, "cluster": {"server": "https://127.0.0.1:1"}} for n in names],
                                      "users": [{"name": n, "user": {}} for n in names]}))  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    home = world / "home"
    (home / "kind").mkdir()
    (home / "kind" / "kube-context").write_text("mine\n")  # saved before `kind create`, never restored: it failed
    st = State(home)
    st.data = {"backend": "kind", "clusters": ["cluster1"], "containers": [], "run_dir": str(home / "kind")}
    KindBackend.destroy(st)
    assert run([which("kubectl"), "config", "current-context"]).stdout.strip() == "mine"
    assert not (home / "kind").exists()


def test_the_context_is_put_back_only_from_a_lab_context_and_then_forgotten(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A learner who switched to another context since `up` keeps it; the saved context is forgotten either way."""
    from meshlab.exec import run, which

    kubeconfig = world / "config"
    names = ("mine", "theirs", "kind-cluster1")
    kubeconfig.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "theirs",
                                      "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in names],
                                      "clusters": [{"name": n, "cluster": {"server": "https://127.0.0.1:1"}} for n in names],
                                      "users": [{"name": n, "user": {}} for n in names]}))  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    saved = world / "kube-context"
    saved.write_text("mine\n")
    ownership.kube_context("restore", str(saved), ["cluster1"])
    assert run([which("kubectl"), "config", "current-context"]).stdout.strip() == "theirs", "the learner's choice stays"
    assert not saved.exists(), "and the saved context is forgotten"
    run([which("kubectl"), "config", "use-context", "kind-cluster1"])
    ownership.kube_context("restore", str(saved), ["cluster1"])  # nothing saved any more: nothing to put back
    assert run([which("kubectl"), "config", "current-context"]).stdout.strip() == "kind-cluster1"


def test_a_claimed_name_never_bound_to_a_node_is_not_proof_of_ownership(world: Path) -> None:
    """`up` claimed cluster1 and was stopped before binding it; a cluster1 that exists now may be anyone's."""
    home = world / "home"
    (world / "clusters").write_text("cluster1\n")
    (world / "node-cluster1").write_text("someones-node\n")
    (home / ownership.LEDGER).write_text(json.dumps({"cluster1": None, "cluster2": None}))
    assert not ownership.owned(home, "cluster1")
    assert ownership.owned(home, "cluster2"), "no node: nothing to protect (delete only tidies kind's kubeconfig)"
    st = State(home)
    st.data = {"backend": "kind", "clusters": ["cluster1"], "containers": [], "run_dir": str(home / "kind")}
    lines: list[str] = []
    assert KindBackend.destroy(st, progress=lines.append)["clusters"] == 0
    assert not [a for a in argv_log(world) if a.startswith("kind delete")]
    assert any("kind delete cluster --name cluster1" in line for line in lines), "says how, if it is the lab's"


def test_images_load_says_what_the_archive_lacks(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = world / "partial.tar"
    partial.write_text("docker.io/istio/pilot:1.31.0\n")
    assert main(["kind", "images", "load", str(partial)]) == 0
    out = capsys.readouterr().out
    assert f"the archive lacks {len(images.host_images()) - 1} pinned image(s), which `up` will pull" in out
    assert "docker.io/istio/proxyv2" in out and "docker.io/istio/pilot:1.31.0," not in out


def test_lab_up_on_kind_refuses_and_leaves_the_laptop_as_it_was(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Lab.up(..., backend="kind")` for real (stand-in docker and kind): the learner's own `cluster2` stops it
    before anything is created or deleted, and the failed up's cleanup deletes nothing either."""
    from meshlab.backends.kind import clusters
    from meshlab.lab import Lab

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(clusters, "REGISTRY_HOST_PORT", port)
    (world / "clusters").write_text("cluster2\n")
    (world / "node-cluster2").write_text("the-learners-node\n")
    with pytest.raises(MeshlabError, match="cluster2 already exists and meshlab did not create it"):
        Lab.up("flat-network", backend="kind", home_dir=world / "home", quiet=True)
    log = argv_log(world)
    assert "docker info --format {{json .}}" in log, "the prerequisites were checked"
    assert not [a for a in log if a.startswith(("kind delete", "kind create", "docker rm", "docker run"))], log
    assert (world / "clusters").read_text() == "cluster2\n"
    assert not (world / "home" / "state.json").exists()
