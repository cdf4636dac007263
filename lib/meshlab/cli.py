"""`meshlab` command line: the Lab facade from a shell. The lab lives in the state file, so each
command attaches to the lab that ``meshlab up`` left running until ``meshlab down``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .backends import backend_class
from .backends import names as backend_names
from .errors import MeshlabError, report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshlab", description="Multi-cluster service mesh lab on real Envoy.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="`meshlab COMMAND -h` explains one")
    cluster_help = "the cluster it runs in (cluster1, cluster2, ...: see `meshlab status`)"

    s = sub.add_parser("up", help="bring up a pattern (and the sample apps)")
    s.add_argument("pattern", help="built-in pattern name (flat-network, ...) or a path to a pattern YAML")
    s.add_argument("--backend", choices=["local", "kind"], default="local",
                   help="local: Envoy processes in network namespaces (default); kind: kind clusters with Istio")
    s.add_argument("--no-samples", action="store_true", help="do not deploy helloworld and curl")
    s.add_argument("--dry-run", action="store_true",
                   help="kind backend: print every command and manifest it would run, in order; run nothing")

    s = sub.add_parser("status", help="what is running: pattern, network mode, control planes, workloads")
    s.add_argument("--json", action="store_true", help="print lab.status() as JSON instead of a table")

    s = sub.add_parser("deploy", help="run a sample app with its sidecar")
    s.add_argument("app", choices=["helloworld", "curl"], help="the sample app")
    s.add_argument("--cluster", required=True, help=cluster_help)
    s.add_argument("--version", default="v1", help="helloworld's version label (v1, v2, ...); default v1")
    s.add_argument("--replicas", type=int, default=1, help="how many pods (default 1)")

    s = sub.add_parser("call", help="send requests from a workload through its sidecar")
    s.add_argument("workload", help="the calling workload, e.g. curl")
    s.add_argument("url", help="e.g. http://helloworld.sample:5000/hello")
    s.add_argument("--cluster", required=True, help=cluster_help)
    s.add_argument("-n", type=int, default=1, help="number of requests (default 1)")
    s.add_argument("-v", "--verbose", action="store_true", help="print every answer")

    s = sub.add_parser("endpoints", help="endpoints a sidecar knows (like istioctl proxy-config endpoints)")
    s.add_argument("workload", help="whose sidecar, e.g. curl")
    s.add_argument("--cluster", required=True, help=cluster_help)
    s.add_argument("--service", help="only this service's endpoints, e.g. helloworld")

    s = sub.add_parser("logs", help="a sidecar's access log (JSON lines, newest last)")
    s.add_argument("workload", help="whose sidecar, e.g. helloworld")
    s.add_argument("--cluster", required=True, help=cluster_help)
    s.add_argument("-n", type=int, default=10, help="how many of the newest entries (default 10)")

    s = sub.add_parser("apply", help="apply Istio resources (YAML) to a cluster's control plane")
    s.add_argument("-f", "--filename", required=True, help="YAML file with one or more resources ('-' for stdin)")
    s.add_argument("--cluster", required=True, help="the cluster whose control plane gets them")

    s = sub.add_parser("delete", help="delete an applied Istio resource")
    s.add_argument("kind", help="DestinationRule, ServiceEntry or VirtualService (any Istio kind on the kind backend)")
    s.add_argument("name", help="metadata.name of the resource")
    s.add_argument("--cluster", required=True, help="the cluster it was applied to")
    s.add_argument("--namespace", default="sample", help="metadata.namespace (default sample)")

    s = sub.add_parser("federate", help="form a VirtualMesh: publish each mesh's services to the others")
    s.add_argument("--dry-run", action="store_true", help="print the generated resources, apply nothing")

    sub.add_parser("discover", help="meshes, clusters and their services")

    # ---- the management plane (lab 05): `meshlab mesh ...` mirrors lab.mesh, meshctl-like ----
    s = sub.add_parser("mesh", help="the management plane: discover, apply VirtualMesh/TrafficPolicy/AccessPolicy, check ...")
    msub = s.add_subparsers(dest="mesh_cmd", required=True, metavar="ACTION", help="what to do (meshlab mesh ACTION -h)")
    msub.add_parser("discover", help="Mesh, Workload and Destination objects (Gloo Mesh v1 shapes)")
    msub.add_parser("check", help="like meshctl check: meshes, control planes, trust, controller, Prometheus")
    m = msub.add_parser("describe", help="one discovered or applied object as YAML (like meshctl describe)")
    m.add_argument("kind", help="Mesh, Workload, Destination, VirtualMesh, TrafficPolicy or AccessPolicy")
    m.add_argument("name", help="the object's metadata.name")
    m = msub.add_parser("apply", help="apply a VirtualMesh, TrafficPolicy or AccessPolicy (YAML)")
    m.add_argument("-f", "--filename", required=True, help="YAML file ('-' for stdin)")
    m.add_argument("--dry-run", action="store_true", help="print the Istio objects it would generate, per cluster")
    m = msub.add_parser("delete", help="delete a management-plane object; its generated objects go too")
    m.add_argument("kind", help="VirtualMesh, TrafficPolicy or AccessPolicy")
    m.add_argument("name", help="the object's metadata.name")
    m = msub.add_parser("generated", help="the Istio objects the management plane wrote, per cluster")
    m.add_argument("--cluster", help="only this cluster's")
    m = msub.add_parser("controller", help="the reconcile loop: start, stop, or show its events")
    m.add_argument("action", choices=["start", "stop", "events"], help="start or stop the process, or print what it did")
    m = msub.add_parser("restart", help="bounce a cluster's pods so they get certificates from the current CA")
    m.add_argument("cluster", help="the cluster whose pods restart")
    m = msub.add_parser("telemetry", help="Prometheus per cluster + a global one; or run a PromQL query on the global one")
    m.add_argument("action", choices=["enable", "query"], help="start the Prometheus tier, or query the global one")
    m.add_argument("promql", nargs="?", default="", help="the PromQL query (default: istio_requests_total)")

    s = sub.add_parser("undeploy", help="remove an app's pods from a cluster")
    s.add_argument("app", help="the app (helloworld, curl) or a deployment name (helloworld-v2)")
    s.add_argument("--cluster", required=True, help="the cluster it runs in")
    s.add_argument("--namespace", default="sample", help="its namespace (default: sample)")

    for verb, text in (("kill", "crash a workload's app (its sidecar stays)"), ("restore", "restart a killed app")):
        s = sub.add_parser(verb, help=text)
        s.add_argument("workload", help="e.g. helloworld")
        s.add_argument("--cluster", required=True, help=cluster_help)

    s = sub.add_parser("control-plane", help="stop or start the control plane running in a cluster")
    s.add_argument("action", choices=["stop", "start"], help="stop: proxies keep their last config; start: push again")
    s.add_argument("cluster", help="a cluster that runs a control plane (a primary)")

    s = sub.add_parser("remote-clusters", help="the clusters a cluster's istiod reads (like istioctl remote-clusters)")
    s.add_argument("cluster", help="a cluster that runs a control plane (a primary)")
    s = sub.add_parser("remote-secret", help="grant or revoke an istiod's read access to another cluster (multi-primary)")
    s.add_argument("action", choices=["create", "delete"], help="create: istioctl create-remote-secret | kubectl apply; delete: ... | kubectl delete")
    s.add_argument("cluster", help="the cluster to be read")
    s.add_argument("--in", dest="in_cluster", required=True, help="the primary whose istiod reads it")
    sub.add_parser("tracing", help="start the trace backend (local: meshlab's OTLP collector; kind: Istio's Jaeger addon)")
    s = sub.add_parser("traces", help="the traces received so far: one row per span, grouped by trace id")
    s.add_argument("--last", type=int, default=5, help="how many of the newest traces (default 5)")
    sub.add_parser("validate", help="envoy --mode validate on every proxy's full config")
    sub.add_parser("down", help="remove everything the lab created (processes, namespaces, files)")
    s = sub.add_parser("doctor", help="check prerequisites; exit status 1 unless every backend asked for is ready")
    s.add_argument("--backend", choices=["local", "kind", "both"], default="both", help="which backend to check (default: both)")

    s = sub.add_parser("admin", help="host set-up an administrator runs once (as root): the AppArmor profile")
    asub = s.add_subparsers(dest="admin_cmd", required=True, metavar="WHAT", help="apparmor: Ubuntu's user-namespace restriction")
    s = asub.add_parser("apparmor", help="install/remove the profile that lets meshlab's namespace holder create user namespaces")
    s.add_argument("action", choices=["status", "install", "remove"],
                   help="status: is the restriction on, is the profile there; install/remove it (root)")
    s.add_argument("--group", help="install: only this group's members may use the holder (e.g. the learners)")

    # ---- instructor tools: the course catalogue (meshlab.labs) -----------------------------------
    s = sub.add_parser("labs", help="the labs: time per backend, and the state each starts from")
    s.add_argument("--backend", choices=["local", "kind"], help="show the times of one backend only")
    s = sub.add_parser("goto", help="bring the environment to the state lab N starts from (reset first)")
    s.add_argument("lab", help="lab number (6, 06) or notebook name")
    s.add_argument("--backend", choices=["local", "kind"], default="local", help="where the lab will run (default local)")
    s = sub.add_parser("reset", help="back to a fresh clone: stop everything, remove every lab, scratch lab and hub "
                                     "data; offers to restore your edited copies of the notebooks (my-labs/)")
    s.add_argument("--notebooks", action="store_true", help="restore every edited notebook in my-labs/ without asking")
    sub.add_parser("my-labs", help="make your working copy of the labs in my-labs/ (what `make lab` opens; "
                                   "copies you already have are kept)")
    s = sub.add_parser("export", help="render executed notebooks to HTML for a handout (after `make labs`)")
    s.add_argument("notebooks", nargs="*", type=Path,
                   help="executed notebooks (default: every lab in --from)")
    s.add_argument("--from", dest="source", type=Path, default=Path("build/labs"),
                   help="where `make labs` put the executed notebooks (default build/labs)")
    s.add_argument("--out", type=Path, default=Path("build/handout"), help="where the HTML goes (default build/handout)")

    s = sub.add_parser("bench", help="bring-up, mesh paths with wrk against direct and a hand-written Envoy config, failover")
    s.add_argument("--runs", type=int, default=5, help="rounds over every path (medians and spread)")
    s.add_argument("--seconds", type=float, default=2.0, help="wrk duration per path, mode and round")
    s.add_argument("--paths-only", action="store_true", help="only the path measurements (no bring-up, no failover)")
    s.add_argument("--requests", type=int, default=2000, help="with --wasm: requests per measurement")
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    s.add_argument("--wasm", action="store_true", help="Envoy with each wasm filter against without, and build times")

    s = sub.add_parser("kind", help="kind backend tools: the image cache (meshlab kind images pull|save FILE|load FILE), "
                       "the instructor's dress rehearsal (meshlab kind rehearse)")
    ks = s.add_subparsers(dest="kind_cmd", required=True, metavar="WHAT", help="images: the image cache; rehearse: the dress rehearsal")
    r = ks.add_parser("rehearse", help="the day before a workshop: bring a pattern up, run every kind step the labs use "
                      "(timed and checked), print a table and a verdict, remove everything")
    r.add_argument("--dry-run", action="store_true", help="print what each step would run, run nothing")
    s = ks.add_parser("images", help="pull every pinned image once; save them into one archive; load that archive")
    s.add_argument("action", choices=["pull", "save", "load"],
                   help="pull: every pinned image, for this Docker engine's platform; save FILE: one archive to hand out; "
                   "load FILE: that archive into Docker (then `up` pulls nothing)")
    s.add_argument("file", nargs="?", help="the archive (save, load)")
    s.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")

    sub.add_parser("wasm", help="WebAssembly filters: build, inspect, the module hub, push/pull ... (meshlab wasm -h)")
    sub.add_parser("room", help="a room of learners on one VM: accounts, logins, the JupyterHub (meshlab room -h)")
    sub.add_parser("version", help="print versions")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["wasm"]:  # its own parser: build, inspect, ... (`meshlab wasm -h`)
            from .wasm.cli import main as wasm_main

            return wasm_main(argv[1:])
        if argv[:1] == ["room"]:  # the instructor's commands for a hub on one VM (`meshlab room -h`)
            from .room.cli import main as room_main

            return room_main(argv[1:])
        args = _parser().parse_args(argv)
        try:
            return _run(args)
        except MeshlabError as e:
            return report(e)
        except KeyboardInterrupt:
            print("interrupted; `meshlab down` removes whatever was started", file=sys.stderr)
            return 130
    except BrokenPipeError:  # `meshlab logs ... | head`: the reader is gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # 128 + SIGPIPE, as a shell command killed by it


def _run(args: argparse.Namespace) -> int:
    from .lab import Lab

    if args.cmd == "version":
        from . import versions

        print(f"meshlab {__version__} (envoy {versions.ENVOY_VERSION}, kind {versions.KIND_VERSION}, istio {versions.ISTIO_VERSION})")
    elif args.cmd == "up" and args.dry_run:
        print(Lab.up(args.pattern, backend=args.backend, samples=not args.no_samples, dry_run=True))
    elif args.cmd == "up":
        lab = Lab.up(args.pattern, backend=args.backend, samples=not args.no_samples, keep=True)
        print(lab.pods())
        print("next: meshlab call curl http://helloworld.sample:5000/hello --cluster", next(iter(lab.topology.clusters)), "-n 20")
    elif args.cmd == "down":
        from .wasm.hub import Hub
        from .wasm.standalone import down_all as wasm_down

        Lab.down_all()
        scratch = Lab.down_scratch()  # an interrupted `meshlab bench`'s labs, a notebook's Lab.workdir files
        if scratch:
            print(f"removed {scratch} scratch {'directory' if scratch == 1 else 'directories'} "
                  "(an interrupted meshlab bench's labs, a notebook's files)")
        wasm_down()  # standalone Envoys from the wasm labs
        stopped = Hub.down_all()  # the wasm module hub (registry)
        if stopped:
            print(f"wasm hub stopped ({stopped} processes)")
    elif args.cmd == "doctor":
        from .prereqs import doctor, readiness
        from .prereqs import report as checks_report

        checks, ready = doctor(args.backend)
        print(checks_report(checks))
        print()
        print(readiness(ready, checks))
        return 0 if all(ready.values()) else 1
    elif args.cmd == "admin":
        from . import apparmor

        if args.action == "status":
            print(apparmor.status())
        else:
            print("\n".join(apparmor.install(args.group) if args.action == "install" else apparmor.remove()))
    elif getattr(args, "kind_cmd", None) == "rehearse":  # runs the labs' own code: a tool above the facade
        from .rehearse import rehearse

        return rehearse(dry_run=args.dry_run)
    elif args.cmd in backend_names():
        return int(backend_class(args.cmd).command(args))  # a backend's own tools (`meshlab kind images ...`)
    elif args.cmd in ("labs", "goto", "reset", "my-labs", "export"):
        from . import labs

        if args.cmd == "labs":
            print(labs.table(args.backend))
        elif args.cmd == "goto":
            info = labs.goto(args.lab, backend=args.backend)
            print(f"next: open labs/{info.notebook} and run it from the top"
                  + (f" (its Lab.up uses this {info.start.pattern} lab)" if info.start.pattern else ""))
        elif args.cmd == "reset":
            labs.reset()
            if args.notebooks:
                mine = labs.learner_labs()
                restored = labs.restore_copies(dest=mine)
                print(f"restored {len(restored)} notebooks in {mine}" if restored else f"no edited notebooks in {mine}")
            else:
                labs.offer_restore(input if sys.stdin.isatty() else None)
        elif args.cmd == "my-labs":
            copied = labs.learner_copy()
            print(f"your labs: {labs.MY_LABS}" + (f" ({len(copied)} notebooks copied from labs/)" if copied else ""))
        else:
            from .handout import export

            for line in export(args.notebooks, source=args.source, out=args.out):
                print(line)
    elif args.cmd == "bench" and args.wasm:
        from .wasm.bench import main as wasm_bench

        return wasm_bench(requests=args.requests, as_json=args.json)
    elif args.cmd == "bench":
        from .bench import main as bench_main

        return bench_main(runs=args.runs, seconds=args.seconds, as_json=args.json, only_paths=args.paths_only)
    else:
        lab = Lab.attach()
        if args.cmd == "status":
            from .display import status_table

            print(json.dumps(lab.status(), indent=1) if args.json else status_table(lab.status()))
        elif args.cmd == "deploy":
            print(lab.deploy(args.app, args.cluster, version=args.version, replicas=args.replicas))
        elif args.cmd == "call":
            r = lab.call(args.workload, args.url, cluster=args.cluster, n=args.n)
            if args.verbose:
                for a in r.answers:
                    print(a.body.strip() if a.ok else f"error: {a.status or a.error}")
            print(r)
            return 0 if r.errors == 0 else 1
        elif args.cmd == "endpoints":
            print(lab.endpoints(args.workload, cluster=args.cluster, service=args.service))
        elif args.cmd == "logs":
            for entry in lab.access_log(args.workload, args.cluster, last=args.n):
                print(json.dumps(entry))
        elif args.cmd == "apply":
            text = sys.stdin.read() if args.filename == "-" else open(args.filename).read()
            lab.apply(text, cluster=args.cluster)
        elif args.cmd == "delete":
            lab.delete(args.kind, args.name, cluster=args.cluster, namespace=args.namespace)
            print(f"{args.kind.lower()}/{args.name} deleted")
        elif args.cmd == "federate":
            import yaml

            vm = lab.federate(apply=not args.dry_run)
            print(yaml.safe_dump_all(vm.all(), sort_keys=False) if args.dry_run else vm.summary())
        elif args.cmd == "discover":
            print(lab.discover())
        elif args.cmd == "mesh":
            return _mesh(lab, args)
        elif args.cmd == "undeploy":
            print("removed " + ", ".join(lab.undeploy(args.app, args.cluster, namespace=args.namespace)))
        elif args.cmd == "kill":
            print(f"killed the app of {lab.kill(args.workload, args.cluster)}")
        elif args.cmd == "restore":
            print(f"restarted the app of {lab.restore(args.workload, args.cluster)}")
        elif args.cmd == "control-plane":
            (lab.stop_control_plane if args.action == "stop" else lab.start_control_plane)(args.cluster)
            print(f"control plane in {args.cluster}: {'stopped' if args.action == 'stop' else 'running'}")
        elif args.cmd == "remote-clusters":
            print(lab.remote_clusters(args.cluster))
        elif args.cmd == "remote-secret":
            (lab.create_remote_secret if args.action == "create" else lab.delete_remote_secret)(args.cluster, in_cluster=args.in_cluster)
            print(f"remote secret for {args.cluster} in {args.in_cluster}: {'created' if args.action == 'create' else 'deleted'}")
        elif args.cmd == "tracing":
            print(lab.enable_tracing())
        elif args.cmd == "traces":
            from .display import Table
            from .tracing import rows

            for trace in list(lab.traces(expect=0, timeout=0).values())[-args.last:]:
                print(Table(rows(trace), title=f"trace {trace[0].trace_id}"), end="\n\n")
        elif args.cmd == "validate":
            print(f"{lab.validate()} proxy configs passed envoy --mode validate")
    return 0


def _mesh(lab: Any, args: argparse.Namespace) -> int:
    m = lab.mesh
    if args.mesh_cmd == "discover":
        print(m.discover())
    elif args.mesh_cmd == "check":
        table = m.check()
        print(table)
        return 0 if all(r["STATUS"] != "FAIL" for r in table) else 1
    elif args.mesh_cmd == "describe":
        print(m.describe(args.kind, args.name), end="")
    elif args.mesh_cmd == "apply":
        text = sys.stdin.read() if args.filename == "-" else open(args.filename).read()
        if args.dry_run:
            applied = m.preview(text)
            for cluster in sorted(applied.produced):
                print(f"# ---- {cluster}\n" + applied.yaml(cluster))
        else:
            applied = m.apply(text)
            if applied.trust:
                print(applied.trust)
            print(applied)
    elif args.mesh_cmd == "delete":
        for line in m.delete(args.kind, args.name):
            print(line)
    elif args.mesh_cmd == "generated":
        print(m.generated(args.cluster))
    elif args.mesh_cmd == "controller":
        if args.action == "start":
            print(m.controller.start())
        elif args.action == "stop":
            print(f"mesh controller stopped ({m.controller.stop()} process)")
        else:
            print("\n".join(m.controller.events()))
    elif args.mesh_cmd == "restart":
        print("restarted: " + ", ".join(m.restart(args.cluster)))
    elif args.mesh_cmd == "telemetry":
        if args.action == "enable":
            print(m.telemetry.enable())
        else:
            for r in m.telemetry.query(args.promql or "istio_requests_total"):
                print(json.dumps(r["metric"], sort_keys=True), r["value"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
