"""Simulated worker nodes: Node objects that KWOK manages so pods get scheduled and become Ready."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.checks.http import wait_until
from harness.kube import api_client

if TYPE_CHECKING:
    from harness.providers.local import LocalCluster

log = logging.getLogger(__name__)

KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def worker_names(count: int) -> list[str]:
    return [f"worker{i}" for i in range(1, count + 1)]


def ensure_workers(cluster: LocalCluster, count: int) -> None:
    with api_client(cluster.lb_url(), cluster.admin_tls()) as api:
        core = client.CoreV1Api(api)
        for name in worker_names(count):
            body = client.V1Node(
                metadata=client.V1ObjectMeta(
                    name=name,
                    annotations={KWOK_ANNOTATION: "fake"},
                    labels={
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        "kubequake.io/simulated": "true",
                    },
                ),
                # Pod and node IPs are data only: nothing ever connects to them.
                spec=client.V1NodeSpec(),
            )
            try:
                core.create_node(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise


def ready_workers(cluster: LocalCluster) -> list[str]:
    with api_client(cluster.lb_url(), cluster.admin_tls()) as api:
        nodes = client.CoreV1Api(api).list_node(label_selector="kubequake.io/simulated=true").items
    ready: list[str] = []
    for n in nodes:
        conditions = (n.status.conditions if n.status else None) or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions) and n.metadata and n.metadata.name:
            ready.append(n.metadata.name)
    return sorted(ready)


def wait_workers_ready(cluster: LocalCluster, count: int, timeout: float) -> float:
    def check() -> tuple[bool, str]:
        ready = ready_workers(cluster)
        return len(ready) >= count, f"{len(ready)}/{count} workers Ready: {ready}"

    return wait_until(f"{count} KWOK workers Ready", check, timeout, interval=0.25)
