"""Talking to the kind clusters with the ``kubernetes`` Python client (contexts ``kind-<cluster>``).

Used where a command's output would have to be scraped: exec in a pod (``lab.call`` runs curl in the
``curl`` pod, as Istio's verify guide does with ``kubectl exec``) and listing pods.
"""

from __future__ import annotations

from typing import Any

from ...errors import MeshlabError
from .clusters import context


def core_api(cluster: str) -> Any:
    from kubernetes import client, config

    try:
        api_client = config.new_client_from_config(context=context(cluster))
    except Exception as e:  # kubeconfig missing, or no such context
        raise MeshlabError(f"cannot use kubeconfig context {context(cluster)}: {e}",
                           f"is the cluster up? `kind get clusters`; `kubectl config get-contexts {context(cluster)}`") from e
    return client.CoreV1Api(api_client)


def pods(cluster: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    """Running pods as plain dicts: name, ip, labels, ready."""
    items = core_api(cluster).list_namespaced_pod(namespace, label_selector=selector).items
    out = []
    for p in items:
        statuses = p.status.container_statuses or []
        out.append({
            "name": p.metadata.name,
            "ip": p.status.pod_ip or "",
            "labels": dict(p.metadata.labels or {}),
            "phase": p.status.phase,
            "ready": bool(statuses) and all(s.ready for s in statuses),
            "deleting": p.metadata.deletion_timestamp is not None,
        })  # fmt: skip
    return out


def exec_in_pod(cluster: str, namespace: str, pod: str, container: str, command: list[str], timeout: float = 60) -> str:
    """stdout+stderr of ``command`` run in ``pod``'s ``container`` (like ``kubectl exec``)."""
    from kubernetes.stream import stream

    api = core_api(cluster)
    return str(stream(api.connect_get_namespaced_pod_exec, pod, namespace, container=container, command=command,
                      stderr=True, stdin=False, stdout=True, tty=False, _request_timeout=timeout))
