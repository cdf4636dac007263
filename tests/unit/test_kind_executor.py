"""The executor: the same code records a plan (dry run) or runs it. Here it runs for real, with
harmless commands instead of kind/kubectl (no Docker needed), to prove captures, placeholders,
probes, retries, polling, pipes, stdin manifests and parallel groups behave as the plan says."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

from meshlab.backends.kind.executor import Executor
from meshlab.backends.kind.plan import Plan, Step
from meshlab.errors import MeshlabError, RunError

PY = sys.executable


def live(progress: list[str] | None = None) -> Executor:
    ex = Executor(dry_run=False, progress=(progress.append if progress is not None else None))
    ex.resolve = lambda name: name  # plain commands; no tool downloads
    return ex


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def test_dry_run_records_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    plan = Plan("t")
    plan.run("would create a file", ["touch", str(marker)])
    plan.run("would read it", ["cat", str(marker)], capture="X")
    ex = Executor(dry_run=True)
    ex.execute(plan)
    assert not marker.exists()
    assert [s.title for s in ex.recorded] == ["would create a file", "would read it"]
    assert ex.variables == {}
    assert ex.run(["rm", "-rf", str(tmp_path)]) is None and tmp_path.exists()
    assert ex.recorded.steps[-1].argv == ["rm", "-rf", str(tmp_path)]


def test_capture_then_use_placeholder_in_argv_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "manifest.yaml"
    plan = Plan("t")
    plan.run("read an address", sh("echo 172.18.255.200"), capture="GW_IP")
    plan.run("use it in argv", sh('test "$1" = "https://172.18.255.200:6443"') + ["_", "https://${GW_IP}:6443"])
    plan.run("use it in a manifest on stdin", ["tee", str(out)],
             manifests=[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"gw": "${GW_IP}"}}])
    assert plan.problems() == []
    lines: list[str] = []
    ex = live(lines)
    ex.execute(plan)
    assert ex.variables == {"GW_IP": "172.18.255.200"}
    assert yaml.safe_load(out.read_text())["data"] == {"gw": "172.18.255.200"}
    assert len(lines) == 3 and all(" ... ok " in line for line in lines)


def test_unset_placeholder_is_an_error_not_a_guess() -> None:
    plan = Plan("t")
    plan.run("uses a value nobody set", ["echo", "${NOPE}"])
    assert plan.problems() == ["step 1 (uses a value nobody set) uses ${NOPE}, never set by any step"]
    with pytest.raises(MeshlabError, match="inconsistent"):
        live().execute(plan)
    with pytest.raises(MeshlabError, match=r"needs \$\{NOPE\}"):
        live().step(plan.steps[0])


def test_failure_names_the_exact_command_and_hint() -> None:
    plan = Plan("t")
    plan.run("fails", sh("echo boom >&2; exit 3"), hint="check the thing")
    with pytest.raises(RunError) as e:
        live().execute(plan)
    assert e.value.returncode == 3 and e.value.argv == ["sh", "-c", "echo boom >&2; exit 3"]
    assert "boom" in e.value.message and e.value.hint == "check the thing"


def test_unless_and_only_if_probes(tmp_path: Path) -> None:
    f = tmp_path / "f"
    plan = Plan("t")
    plan.run("skipped: probe prints something", ["touch", str(f)], unless=["echo", "exists"])
    plan.run("runs: probe prints nothing", ["touch", str(f)], unless=["true"])
    plan.run("skipped: only if the probe prints", ["rm", str(f)], only_if=["true"])
    lines: list[str] = []
    live(lines).execute(plan)
    assert f.exists()
    assert "already done, skipped" in lines[0] and " ok " in lines[1] and "nothing to do, skipped" in lines[2]


def test_retries_then_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("meshlab.backends.kind.executor.time.sleep", lambda s: None)
    counter = tmp_path / "n"
    counter.write_text("0")
    script = f'n=$(cat {counter}); echo $((n+1)) > {counter}; [ "$n" -ge 2 ]'
    plan = Plan("t")
    plan.run("a webhook that needs a moment", sh(script), retries=5)
    live().execute(plan)
    assert counter.read_text().strip() == "3"


def test_poll_waits_for_output_and_times_out_with_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("meshlab.backends.kind.executor.time.sleep", lambda s: None)
    counter = tmp_path / "n"
    counter.write_text("0")
    script = f'n=$(cat {counter}); echo $((n+1)) > {counter}; [ "$n" -ge 2 ] && echo 10.0.0.7; true'
    plan = Plan("t")
    plan.run("wait for an address", sh(script), capture="ADDR", poll=True, timeout=30)
    ex = live()
    ex.execute(plan)
    assert ex.variables["ADDR"] == "10.0.0.7"
    never = Plan("t")
    never.run("an address that never comes", ["true"], capture="X", poll=True, timeout=0, hint="is MetalLB running?")
    with pytest.raises(MeshlabError) as e:
        live().execute(never)
    assert "no result within 0s" in e.value.message and e.value.hint == "is MetalLB running?"


def test_pipe_feeds_the_second_command() -> None:
    plan = Plan("t")
    plan.run("generate | consume", ["echo", "secret-yaml"], pipe_to=["tr", "a-z", "A-Z"], capture="OUT")
    assert plan.steps[0].command_text() == "OUT=$(echo secret-yaml | tr a-z A-Z)"
    ex = live()
    ex.execute(plan)
    assert ex.variables["OUT"] == "SECRET-YAML"


def test_parallel_group_runs_concurrently() -> None:
    plan = Plan("t")
    with plan.parallel("sleepers"):
        for i in range(3):
            plan.run(f"sleep {i}", [PY, "-c", "import time; time.sleep(0.6)"])
    plan.run("after the group", ["true"])
    t0 = time.perf_counter()
    live().execute(plan)
    assert time.perf_counter() - t0 < 1.5, "three 0.6 s steps of one group must overlap"
    assert "runs in parallel with steps 2, 3" in str(plan)


def test_parallel_group_failure_is_raised() -> None:
    plan = Plan("t")
    with plan.parallel("g"):
        plan.run("ok", ["true"])
        plan.run("fails", ["false"])
    with pytest.raises(RunError):
        live().execute(plan)


def test_meshlab_actions_lb_pool_and_pki(tmp_path: Path) -> None:
    plan = Plan("t")
    plan.run("subnets", ["echo", "fc00:f853:ccd:e793::/64 172.18.0.0/16"], capture="KIND_SUBNETS")
    plan.meshlab("pool 2 of 2", "lb_pool", "carve", args={"subnets": "${KIND_SUBNETS}", "index": 1, "count": 2}, capture="POOL")
    plan.meshlab("certs", "pki", "generate", args={"pki_dir": str(tmp_path), "clusters": {"cluster1": "root", "cluster2": "root"}})
    ex = live()
    ex.execute(plan)
    assert ex.variables["POOL"] == "172.18.255.223-172.18.255.238"
    for c in ("cluster1", "cluster2"):
        assert sorted(p.name for p in (tmp_path / "root" / c / "cacerts").iterdir()) == [
            "ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]


def test_on_capture_hook_sees_values() -> None:
    seen: dict[str, str] = {}
    plan = Plan("t")
    plan.run("x", ["echo", "v"], capture="X")
    ex = live()
    ex.on_capture = seen.__setitem__
    ex.execute(plan)
    assert seen == {"X": "v"}


def test_step_requires_a_command_or_an_action() -> None:
    with pytest.raises(ValueError):
        Step("nothing")
    with pytest.raises(ValueError):
        Step("no action", "meshlab")
    with pytest.raises(ValueError):
        Step("bad", "teleport", ["x"])


def test_shell_rendering_keeps_placeholders_expandable() -> None:
    from meshlab.backends.kind.plan import shell_join

    assert shell_join(["--server", "https://${A_IP}:6443"]) == "--server https://${A_IP}:6443"
    assert shell_join(["echo", "a ${B} c"]) == 'echo "a ${B} c"'
    assert shell_join(["echo", "it's"]) == "echo 'it'\"'\"'s'"
    assert shell_join(["-o", "jsonpath={.x}"]) == "-o 'jsonpath={.x}'"
