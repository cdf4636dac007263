"""``meshlab kind rehearse``: the dress rehearsal an instructor runs on their own laptop (and the kind
workflow runs) the day before a workshop.

It brings the smallest pattern that has every kind-only step the labs use up -- ``separate-networks``:
two networks (the faults of lab 10 need them), one control plane (lab 01b's rate-limit service needs it)
-- then runs each of those steps through the very code the labs call, times it and checks its effect:
every lab's bring-up plan, calls across clusters, a call from outside through the ingress gateway, the
rate-limit service (lab 01b) and crashed replicas (lab 01), Prometheus (lab 05), a Wasm module from the hub
(lab 08), each fault of lab 10 injected and repaired. It ends with a table and one verdict, and
removes everything it created (``down``). It needs nothing the labs don't: Docker, and what ``make
setup`` installed.

With ``--dry-run`` nothing runs: the same acts run against a dry-run lab and the commands each would
run are printed, act by act (the checks need a running lab, so they are only named).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LabStateError, MeshlabError

if TYPE_CHECKING:
    from .lab import Lab

PATTERN = "separate-networks"
URL = "http://helloworld.sample:5000/hello"
HOST = "hello.example.com"
# the faults lab 10 injects on this pattern; "two-roots" needs two control planes (separate-control-planes),
# whose cacerts and restart steps the rehearsal runs through lab 05's shared trust instead
FAULTS = ("network-label", "expose-services", "subset-typo", "max-ejection", "authz-deny", "wasm-digest")


@dataclass(frozen=True)
class Act:
    """One rehearsed step: what it is, which labs use it, and what runs it (returns what it observed)."""

    name: str
    labs: str
    run: Callable[["Lab"], str]


@dataclass
class Result:
    act: Act
    seconds: float
    ok: bool
    detail: str


def _both_clusters(lab: "Lab", what: str, r: object) -> str:
    clusters = getattr(r, "clusters")
    if getattr(r, "errors") or clusters != set(lab.topology.clusters):
        raise MeshlabError(f"{what}: answers from {sorted(clusters)}, {getattr(r, 'errors')} errors", "see the table's hint column")
    return f"{what}: answers from {', '.join(sorted(clusters))}, no errors"


def _plans(lab: "Lab") -> str:
    """Every lab's bring-up plan builds and passes its own check (manifests valid, placeholders set)."""
    from .lab import Lab
    from .labs import LABS

    patterns = sorted({info.start.pattern for info in LABS if info.start.pattern} | {PATTERN})
    with tempfile.TemporaryDirectory(prefix="meshlab-plan-") as d:
        for p in patterns:
            Lab.up(p, backend="kind", samples=True, dry_run=True, home_dir=d).check()  # type: ignore[union-attr]
    return f"{len(patterns)} bring-up plans valid: {', '.join(patterns)}"


def _calls(lab: "Lab") -> str:
    return _both_clusters(lab, "curl in cluster1 -> helloworld", lab.call("curl", URL, cluster="cluster1", n=10))


def _outside(lab: "Lab") -> str:
    lab.deploy("istio-ingressgateway", cluster="cluster1")
    lab.apply(f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: rehearsal, namespace: sample}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["{HOST}"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: rehearsal, namespace: sample}}
spec:
  hosts: ["{HOST}"]
  gateways: [rehearsal]
  http:
  - route:
    - destination: {{host: helloworld.sample.svc.cluster.local}}
""", cluster="cluster1")
    return _both_clusters(lab, "outside -> ingress gateway", lab.call_from_outside(f"http://{HOST}/hello", cluster="cluster1", n=10))


def _egress(lab: "Lab") -> str:
    ext = lab.external_https("external.meshlab.test")
    lab.apply(f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: sample}}
spec:
  hosts: ["{ext['hostname']}"]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {{number: 80, name: http, protocol: HTTP, targetPort: 443}}
  endpoints:
  - address: "{ext['address']}"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: external, namespace: sample}}
spec:
  host: "{ext['hostname']}"
  trafficPolicy:
    tls: {{mode: SIMPLE, credentialName: {ext['secret']}}}
""", cluster="cluster1")
    r = lab.call("curl", f"http://{ext['hostname']}/hello", cluster="cluster1", n=2)
    served = {a.headers.get("x-served-tls") for a in r.answers}
    if r.errors or served != {"TLSv1.3"}:
        raise MeshlabError(f"TLS origination: {r.errors} errors, the server saw {served}", "`docker logs meshlab-external`")
    return "the sidecar originated TLS 1.3 to the server outside the clusters"


def _rate_limit(lab: "Lab") -> str:
    from . import dataplane as dp

    dp.deploy_rate_limit_service(lab, "cluster1")
    return "ratelimit and redis rolled out; istiod pushed their endpoints"


def _crashed(lab: "Lab") -> str:
    from . import dataplane as dp

    crashed = dp.crash_replicas(lab, "cluster1", 2)
    r = lab.call("curl", URL, cluster="cluster1", n=10)
    dp.heal_replicas(lab, crashed, "cluster1")
    if not any(a.status == 503 for a in r.answers):
        raise MeshlabError("no 503 from the crashed replicas' sidecars", "`kubectl --context kind-cluster1 -n sample get pods`")
    return f"{len(crashed)} crashed pods answered 503 through their sidecars, then removed"


def _prometheus(lab: "Lab") -> str:
    lab.mesh.telemetry.enable()
    if lab.state.data.get("dry_run"):
        raise LabStateError("dry run: nothing to query", "run without --dry-run")
    deadline = time.monotonic() + 120  # the addon scrapes every 15 s, the global one federates every 15 s
    while not (up := lab.mesh.telemetry.total("up == 1")):
        if time.monotonic() > deadline:
            raise MeshlabError("the global Prometheus has no target up after 120 s",
                               "`kubectl --context kind-cluster1 -n istio-system logs deploy/prometheus-global`")
        time.sleep(5)
    return f"the addon in every cluster; the global Prometheus sees {up:.0f} targets up"


def _hub(lab: "Lab") -> str:
    from . import faults

    plugin = faults.header_metric_plugin(lab)
    lab.apply(plugin, lab.topology.control_planes[0])
    lab.call("curl", URL, cluster="cluster1", n=4, headers={"x-user": "alice"})
    counted = sum(lab.stats("helloworld", c, "requests_by_user").values() for c in lab.topology.clusters)
    lab.delete("WasmPlugin", plugin["metadata"]["name"], lab.topology.control_planes[0])
    if not counted:
        raise MeshlabError("the Wasm module was applied but counted no request", "`kubectl logs <helloworld pod> -c istio-proxy | grep wasm`")
    return f"header-metric from the hub ran in the sidecars: {counted} requests counted"


def _fault(name: str) -> Callable[["Lab"], str]:
    def run(lab: "Lab") -> str:
        from . import faults

        faults.inject(lab, name)
        works = faults.fixed(lab, name, faults.solution(lab, name))  # the operator's fix, judged by traffic
        if name == "max-ejection":
            faults.restore_v1(lab)
        faults.clean_up(lab, name)
        if not works:
            raise MeshlabError(f"fault {name!r}: the operator's fix did not bring the traffic back", "see lab 10's diagnosis for it")
        return _both_clusters(lab, "injected, fixed, cleaned up; then", lab.call("curl", URL, cluster="cluster1", n=10))

    return run


def acts() -> list[Act]:
    from .faults import INCIDENT_POOL  # lab 11's incident is one of these

    return [
        Act("every lab's bring-up plan", "02-11", _plans),
        Act("calls across clusters", "02-04, 06", _calls),
        Act("a call from outside through the ingress gateway", "09", _outside),
        Act("TLS origination to a server outside the clusters", "09", _egress),
        Act("the global rate-limit service", "01b", _rate_limit),
        Act("crashed replicas behind live sidecars", "01, 10", _crashed),
        Act("Prometheus: the addon per cluster and the global one", "05", _prometheus),
        Act("a Wasm module from the hub, run by the sidecars", "08, 11", _hub),
        *(Act(f"fault {f!r} injected and repaired", "10, 11" if f in INCIDENT_POOL else "10", _fault(f)) for f in FAULTS),
    ]


def rehearse(dry_run: bool = False, progress: Callable[[str], None] | None = print) -> int:
    """Run (or, dry, print) the rehearsal; 0 if every act passed."""
    from .display import Table
    from .lab import Lab

    from .wasm.hub import Hub

    say = progress or (lambda _line: None)
    hub_before = Hub.running() is not None  # lab 08's hub: started by the rehearsal if needed, then stopped again
    home = Path(tempfile.mkdtemp(prefix="meshlab-rehearsal-"))
    results: list[Result] = []
    t0 = time.monotonic()
    lab = None
    try:
        if dry_run:
            from .lab import dry_run_lab

            say(str(Lab.up(PATTERN, backend="kind", samples=True, dry_run=True, home_dir=home)))
            lab = dry_run_lab(PATTERN, home)
        else:
            start = time.monotonic()
            up = Act(f"bring {PATTERN} up (clusters, images, MetalLB, Istio, samples)", "all", lambda _l: "")
            try:
                lab = Lab.up(PATTERN, backend="kind", samples=True, home_dir=home)  # type: ignore[assignment]
                results.append(Result(up, time.monotonic() - start, True, "up"))
            except MeshlabError as e:  # nothing else can be rehearsed; Lab.up removed what it had created
                results.append(Result(up, time.monotonic() - start, False, f"{e.message} (fix: {e.hint})"))
        for act in acts() if lab is not None else []:
            before = len(lab.backend.recorded.steps) if dry_run else 0
            start = time.monotonic()
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # what the act prints is the table's detail
                    detail, ok = act.run(lab), True
                if dry_run:
                    detail = "recorded; checked when run for real"
            except LabStateError as e:
                if not dry_run:
                    detail, ok = f"{e.message} (fix: {e.hint})", False
                else:
                    detail, ok = "recorded; checked when run for real", True
            except Exception as e:  # a failed act is a finding: note it, go on with the next one
                detail, ok = (f"{e.message} (fix: {e.hint})" if isinstance(e, MeshlabError) else f"{type(e).__name__}: {e}"), False
            results.append(Result(act, time.monotonic() - start, ok, detail))
            if dry_run:
                say(f"\n## {act.name} (labs {act.labs})")
                for s in lab.backend.recorded.steps[before:]:
                    say(f"  $ {s.command_text().splitlines()[0] if s.argv else s.title}")
            else:
                say(f"{'ok  ' if ok else 'FAIL'} {act.name} ({results[-1].seconds:.0f}s): {detail}")
    finally:
        if lab is not None and not dry_run:
            start = time.monotonic()
            try:
                lab.down(quiet=True)
                results.append(Result(Act("remove everything (meshlab down)", "all", lambda _l: ""), time.monotonic() - start, True, "down"))
            except MeshlabError as e:
                results.append(Result(Act("remove everything (meshlab down)", "all", lambda _l: ""), time.monotonic() - start, False, e.message))
        if not hub_before:
            Hub.down_all()
        shutil.rmtree(home, ignore_errors=True)
    failed = [r for r in results if not r.ok]
    say("")
    say(str(Table([{"STEP": r.act.name, "LABS": r.act.labs, "SECONDS": "-" if dry_run else f"{r.seconds:.0f}",
                    "RESULT": ("ok: " if r.ok else "FAIL: ") + r.detail} for r in results],
                  title="meshlab kind rehearse" + (" (dry run: nothing ran)" if dry_run else ""))))
    minutes = (time.monotonic() - t0) / 60
    if dry_run:
        say(f"verdict: not rehearsed (dry run): {len(results)} steps planned; run `meshlab kind rehearse` to rehearse")
    elif failed:
        say(f"verdict: NOT READY: {len(failed)} of {len(results)} steps failed ({', '.join(r.act.name for r in failed)}); "
            f"fix them before the workshop ({minutes:.0f} min)")
    else:
        say(f"verdict: READY: every kind step the labs use ran and passed on this laptop in {minutes:.0f} min")
    return 1 if failed else 0
