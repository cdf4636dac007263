"""The hand-written Envoy baseline of ``meshlab bench``: the same sidecar -> gateway -> sidecar path as
meshlab's cross-network call, written by hand (``backends/local/envoy-path.yaml``) instead of generated.

It runs inside a local lab: the client Envoy in the caller's pod, the gateway in the server cluster's
node namespace on the gateway address, the server Envoy in the app's pod, each on a port of its own,
with the lab's certificates and the same Envoy flags. Its processes are recorded in the lab's state,
so ``meshlab down`` stops them with the lab.
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import yaml

from ...runtime import envoy as E
from ...runtime import procs
from ...registry import GATEWAY_APP, Workload, sni
from ...state import write_atomic

if TYPE_CHECKING:
    from .backend import LocalBackend

TEMPLATE = Path(__file__).with_name("envoy-path.yaml")
CLIENT_PORT, GATEWAY_PORT, SERVER_PORT = 16001, 16443, 16000


def start(be: "LocalBackend", client: Workload, server: Workload, app_port: int = 5000) -> str:
    """Start the three hand-written Envoys; returns the URL the client Envoy listens on."""
    gw = next(w for w in be.workloads if w.app == GATEWAY_APP and w.cluster == server.cluster)
    ccert, scert = be._cert(client), be._cert(server)
    run = be.run_dir / "baseline"
    values = {
        "admin_dir": run, "client_ip": client.outbound, "client_port": CLIENT_PORT,
        "gateway_ip": gw.ip, "gateway_port": GATEWAY_PORT, "server_ip": server.ip, "server_port": SERVER_PORT,
        "app_host": server.app_host, "app_port": app_port, "sni": sni(app_port, server.fqdn),
        "client_cert": ccert.cert_chain, "client_key": ccert.key, "server_cert": scert.cert_chain, "server_key": scert.key,
        "root_cert": ccert.root_cert, "server_san": scert.spiffe_id, "trust_prefix": ccert.spiffe_id.split("/ns/")[0] + "/",
    }  # fmt: skip
    docs = [d for d in yaml.safe_load_all(Template(TEMPLATE.read_text()).substitute(values)) if d]
    for (role, netns), boot in zip((("client", client.netns), ("gateway", gw.netns), ("server", server.netns)), docs):
        path = run / f"{role}.json"
        write_atomic(path, json.dumps(boot))
        argv = be.network.exec_prefix(netns) + E.envoy_argv(path, run / f"{role}.log")
        p = procs.spawn(f"baseline/{role}", argv, run / f"{role}.stdout")
        be.state.record("processes", p.record())
        admin = E.Admin(run / f"{role}.sock")
        procs.wait_until(admin.ready, p, "Envoy's /ready answered 200")
    return f"http://{client.outbound}:{CLIENT_PORT}/hello"
