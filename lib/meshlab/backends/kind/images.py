"""Images: every pinned image is pulled once on the host (for the Docker engine's own platform), kept
there as the cache, and loaded into each kind node from one archive.

Why an archive: with Docker's containerd image store (the default on new Docker 29 installs) an image
keeps all its platforms, and ``kind load docker-image`` then fails on multi-platform images
(kind issue 3795). ``docker save --platform linux/<arch>`` writes exactly one platform, and
``kind load image-archive`` imports that; it works with the classic store too.

The cache, for a room of laptops behind one address (Docker Hub rate limits):

- ``meshlab kind images pull``: pull every pinned image once (the node image, Istio, MetalLB, the
  samples, the registry) and write the cluster archive;
- ``meshlab kind images save FILE`` / ``load FILE``: one archive an instructor hands out
  (``docker save`` / ``docker load``);
- ``up`` pulls only what Docker does not already have, and reuses the cluster archive when present.

The cluster archive lives in the tools folder, named by a hash of the image list (a new pin makes a
new archive) and the platform.

The node image also travels under meshlab's own tag (:data:`.clusters.NODE_TAG`, what ``kind create``
runs): Docker's classic image store does not export digest references.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ... import exec as mexec, versions
from ...errors import MeshlabError
from . import tools
from .clusters import NODE_TAG, add_node_image
from .executor import Executor
from .plan import Plan

ARCH_VAR = "DOCKER_ARCH"  # the Docker engine's architecture (amd64, arm64): kind nodes run linux/<it>
PLATFORM = "linux/${%s}" % ARCH_VAR


def cluster_images() -> list[str]:
    """What runs inside the clusters (loaded into every node)."""
    return tools.preload_images()


def host_images() -> list[str]:
    """Everything a lab pulls: the node image (``kind create``), the registry container, and the cluster images."""
    return [versions.KIND_NODE_IMAGE, tools.REGISTRY_IMAGE, *cluster_images()]


def archived_images() -> list[str]:
    """What ``images save`` writes: every pulled image, and the node image by meshlab's tag as well."""
    return [NODE_TAG, *host_images()]


def cache_dir() -> Path:
    return tools.tools_dir() / "images"


def cluster_archive() -> str:
    """The archive ``kind load image-archive`` reads; ``${DOCKER_ARCH}`` is filled in at run time."""
    key = hashlib.sha256("\n".join(cluster_images()).encode()).hexdigest()[:12]
    return str(cache_dir() / f"cluster-images-{key}-linux-${{{ARCH_VAR}}}.tar")


def _missing_probe(path: str) -> list[str]:
    """Prints something when ``path`` is missing or empty (an ``only_if`` probe)."""
    return ["sh", "-c", 'test -s "$1" || echo missing', "sh", path]


def add_arch(plan: Plan) -> None:
    plan.run("read the Docker engine's architecture: images are pulled and saved for linux/<it> only",
             ["docker", "version", "--format", "{{.Server.Arch}}"], capture=ARCH_VAR, tags=("images", "arch"),
             hint="is the Docker engine running? `meshlab doctor --backend kind`")


def add_pulls(plan: Plan, images: list[str], skip_if_archived: bool = True) -> None:
    """``docker pull --platform`` each image that Docker does not already have (the host cache)."""
    with plan.parallel("pull-images"):
        for img in images:
            plan.run(f"pull {img} for {PLATFORM}, unless Docker already has it",
                     ["docker", "pull", "--platform", PLATFORM, img],
                     unless=["docker", "image", "inspect", "--format", "{{.Id}}", img],
                     only_if=_missing_probe(cluster_archive()) if skip_if_archived else None,
                     timeout=900, tags=("images", "pull"),
                     hint="Docker Hub rate limits? `docker login`, or load the instructor's archive: "
                     "`meshlab kind images load FILE`")  # fmt: skip


def add_save(plan: Plan, images: list[str], dest: str, only_if_missing: bool = False) -> None:
    """``docker save --platform linux/<arch> -o DEST REFS``: written next to DEST, then renamed (never half a file)."""
    probe = _missing_probe(dest) if only_if_missing else None
    plan.run(f"save {len(images)} images for {PLATFORM} into one archive",
             ["docker", "save", "--platform", PLATFORM, "-o", f"{dest}.part", *images],
             only_if=probe, timeout=900, tags=("images", "save"),
             hint="`docker save --platform` needs Docker 28 or newer (API 1.48): `docker version`")
    plan.run("the archive is complete: give it its name", ["mv", f"{dest}.part", dest],
             only_if=probe, tags=("images", "save"))


def add_images(plan: Plan, clusters: list[str]) -> None:
    """``up``: pull what is missing, write the cluster archive unless cached, load it into every node."""
    plan.phase = "images: pulled once on the host (the cache), loaded into every cluster from one archive"
    add_arch(plan)
    plan.run(f"make the image cache folder {cache_dir()}", ["mkdir", "-p", str(cache_dir())], tags=("images",))
    add_pulls(plan, cluster_images())
    add_save(plan, cluster_images(), cluster_archive(), only_if_missing=True)
    for c in clusters:
        plan.run(
            f"load the images into {c}'s node from the archive, so no pod pulls from a registry (imagePullPolicy IfNotPresent)",
            ["kind", "load", "image-archive", cluster_archive(), "--name", c], cluster=c, timeout=900,
            tags=("images", "load"),
            hint="the archive holds one platform (docker save --platform), which `kind load image-archive` needs "
            "with Docker's containerd image store; if it is damaged, delete it and re-run: "
            f"`rm {cluster_archive()}`",
        )  # fmt: skip


def pull_plan() -> Plan:
    """``meshlab kind images pull``: every pinned image once, and the cluster archive ``up`` loads."""
    plan = Plan("meshlab plan: pull every pinned image once (the image cache)")
    plan.phase = "image cache"
    add_arch(plan)
    plan.run(f"make the image cache folder {cache_dir()}", ["mkdir", "-p", str(cache_dir())], tags=("images",))
    add_pulls(plan, host_images(), skip_if_archived=False)
    add_node_image(plan, pull=False)
    add_save(plan, cluster_images(), cluster_archive())
    return plan


def save_plan(dest: Path) -> Plan:
    """``meshlab kind images save FILE``: one archive of every pinned image (pulled first if missing)."""
    plan = Plan(f"meshlab plan: save every pinned image into {dest}")
    plan.phase = "image cache"
    add_arch(plan)
    add_pulls(plan, host_images(), skip_if_archived=False)
    add_node_image(plan, pull=False)
    add_save(plan, archived_images(), str(dest))
    return plan


def load_plan(src: Path) -> Plan:
    """``meshlab kind images load FILE``: the instructor's archive into Docker; ``up`` then pulls nothing."""
    plan = Plan(f"meshlab plan: load the images in {src} into Docker")
    plan.phase = "image cache"
    plan.run(f"load {src.name} into Docker (the images `up` would otherwise pull)", ["docker", "load", "-i", str(src)],
             timeout=900, tags=("images", "docker-load"),
             hint="was the archive written by `meshlab kind images save` for this machine's architecture?")
    return plan


def _in_docker(docker: str, image: str) -> bool:
    return mexec.run([docker, "image", "inspect", "--format", "{{.Id}}", image], check=False, timeout=60).returncode == 0


def run_images(action: str, file: str | None, dry_run: bool = False) -> int:
    """``meshlab kind images pull|save FILE|load FILE``: build the plan, then print it (dry run) or run it."""
    if action != "pull" and not file:
        raise MeshlabError(f"`meshlab kind images {action}` needs a FILE", f"e.g. `meshlab kind images {action} meshlab-images.tar`")
    path = Path(file).resolve() if file else None
    if action == "load" and path is not None and not path.is_file():
        raise MeshlabError(f"no archive at {path}", "give the file `meshlab kind images save FILE` wrote")
    plan = pull_plan() if action == "pull" else save_plan(path) if action == "save" else load_plan(path)  # type: ignore[arg-type]
    if dry_run:
        print(plan)
        return 0
    ex = Executor(False, progress=print)
    ex.execute(plan)
    if action == "load":
        docker = ex.resolve("docker")
        # the node image counts by meshlab's tag (a classic store drops the digest reference)
        missing = [img for img in host_images() if not _in_docker(docker, NODE_TAG if img == versions.KIND_NODE_IMAGE else img)]
        if missing:
            print(f"the archive lacks {len(missing)} pinned image(s), which `up` will pull: {', '.join(missing)}")
    done = {"pull": f"the pinned images are in Docker, and the cluster archive is in {cache_dir()}",
            "save": f"wrote {path} (for linux/{ex.variables.get(ARCH_VAR, '?')} only: laptops of another CPU architecture need "
                    f"their own): hand it out, then `meshlab kind images load {path.name if path else ''}` on each laptop",
            "load": "the images are in Docker: `meshlab up --backend kind` pulls nothing from Docker Hub"}[action]
    print(done)
    return 0
