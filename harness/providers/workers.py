"""Simulated worker nodes: Node objects that KWOK manages so pods get scheduled and become Ready.

Registered and read with plain HTTPS requests rather than the kubernetes client: these calls sit
on `kubequake up`'s path to Ready, and importing the client's API classes costs about a CPU
second on a machine whose cores the three apiservers are busy starting on.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from harness.errors import ClusterError
from harness.net.api import ApiHttp, ApiResponse
from harness.net.tls import TLSClient
from harness.net.wait import wait_until

log = logging.getLogger(__name__)

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
SIMULATED_LABEL = "kubequake.io/simulated"
REQUEST_TIMEOUT_S = 10.0


class AdminEndpoint(Protocol):
    """What registering and reading workers needs of a cluster: the API behind its LB, as admin.

    A Protocol rather than LocalCluster itself, so the provider can call in here without the
    two modules importing each other.
    """

    def lb_url(self) -> str: ...
    def admin_tls(self) -> TLSClient: ...


def worker_names(count: int) -> list[str]:
    return [f"worker{i}" for i in range(1, count + 1)]


def node_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                SIMULATED_LABEL: "true",
            },
        },
        # Pod and node IPs are data only: nothing ever connects to them.
        "spec": {},
    }


def _api(cluster: AdminEndpoint) -> ApiHttp:
    return ApiHttp(cluster.lb_url(), cluster.admin_tls(), timeout=REQUEST_TIMEOUT_S)


def _refused(what: str, resp: ApiResponse) -> ClusterError:
    return ClusterError(
        f"{what}: the API answered {resp.status} {resp.text[:300]!r}; "
        "check the apiserver logs with `kubequake logs cp1 kube-apiserver`"
    )


def ensure_workers(cluster: AdminEndpoint, count: int) -> None:
    """Register the worker Node objects through the LB; ones that exist already are kept."""
    with _api(cluster) as api:
        for name in worker_names(count):
            resp = api.request("POST", "/api/v1/nodes", node_manifest(name))
            if not resp.ok and resp.status != 409:  # 409: registered by an earlier `up`
                raise _refused(f"registering worker Node {name}", resp)


def node_is_ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _list_workers(api: ApiHttp) -> ApiResponse:
    return api.request("GET", "/api/v1/nodes", params={"labelSelector": f"{SIMULATED_LABEL}=true"})


def _ready_names(resp: ApiResponse) -> list[str]:
    items = resp.body.get("items") or []
    return sorted(n["metadata"]["name"] for n in items if node_is_ready(n))


def wait_workers_ready(cluster: AdminEndpoint, count: int, timeout: float, interval: float = 0.1) -> float:
    with _api(cluster) as api:

        def check() -> tuple[bool, str]:
            resp = _list_workers(api)
            if resp.status != 200:
                # While `up` starts the control plane, the LB answers 503 until an apiserver is
                # ready behind it: an answer that says "not yet", kept as the last state seen.
                return False, f"listing worker Nodes answered {resp.status} {resp.text[:200]!r}"
            ready = _ready_names(resp)
            return len(ready) >= count, f"{len(ready)}/{count} workers Ready: {ready}"

        return wait_until(f"{count} KWOK workers Ready", check, timeout, interval=interval)
