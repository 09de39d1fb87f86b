"""Who holds the kube-controller-manager and kube-scheduler leases, and on which node.

Every local node shares one hostname, so the Lease's holderIdentity (`<hostname>_<uuid>`) does not
say which node leads. Each instance's own /metrics does: `leader_election_master_status` is 1
only on the instance that holds the lease. The Lease object still gives the identity and the
transitions count, which the handover measurements use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests
from kubernetes import client

from harness.net.http import loopback_session
from harness.net.tls import TLSClient

LEASED_COMPONENTS = ("kube-controller-manager", "kube-scheduler")
_MASTER = re.compile(r'^leader_election_master_status\{[^}]*name="([^"]+)"[^}]*\}\s+([0-9.e+-]+)', re.MULTILINE)


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    transitions: int
    renew_time: float | None
    lease_duration_s: int
    # Set by the new holder when it takes the lease: the exact moment of a handover.
    acquire_time: float | None = None


def leading_instances(metrics_urls: dict[str, str], tls: TLSClient, lease: str, timeout: float = 2.0) -> list[str]:
    """Nodes whose instance reports itself leader of `lease` (more than one means split brain)."""
    leaders = []
    for node, url in metrics_urls.items():
        for name, value in _MASTER.findall(_full_body(url, tls, timeout)):
            if name == lease and float(value) == 1.0:
                leaders.append(node)
    return leaders


def _full_body(url: str, tls: TLSClient, timeout: float) -> str:
    try:
        with loopback_session() as session:
            resp = session.get(url, verify=str(tls.ca), cert=(str(tls.cert), str(tls.key)), timeout=timeout)
    except requests.RequestException:
        return ""
    return resp.text if resp.status_code == 200 else ""


def read_lease(api: client.ApiClient, name: str) -> LeaseInfo | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, "kube-system")
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    spec = lease.spec
    if spec is None:
        return None
    renew = spec.renew_time.timestamp() if spec.renew_time else None
    return LeaseInfo(
        name=name,
        holder=spec.holder_identity or "",
        transitions=spec.lease_transitions or 0,
        renew_time=renew,
        lease_duration_s=spec.lease_duration_seconds or 0,
        acquire_time=spec.acquire_time.timestamp() if spec.acquire_time else None,
    )
