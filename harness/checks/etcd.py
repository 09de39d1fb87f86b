"""Direct etcd member access over etcd's JSON gateway (the v3 API over HTTPS with client certs).

Used for the member table, leader and raft term/index, quorum write probes and hash agreement.
Each call targets one member with a short timeout, so a dead or frozen member shows as an
error in its row instead of stalling the whole table.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass

import requests

from harness.providers.base import TLSClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EtcdEndpoint:
    name: str
    url: str  # https://addr:2379


@dataclass(frozen=True)
class MemberStatus:
    name: str
    url: str
    reachable: bool
    member_id: str = ""
    leader_id: str = ""
    raft_term: int = 0
    raft_index: int = 0
    db_size: int = 0
    version: str = ""
    error: str = ""

    @property
    def is_leader(self) -> bool:
        return self.reachable and bool(self.member_id) and self.member_id == self.leader_id


@dataclass(frozen=True)
class WriteProbe:
    ok: bool
    latency_s: float
    revision: int
    error: str


def _b64(s: str | bytes) -> str:
    raw = s.encode() if isinstance(s, str) else s
    return base64.b64encode(raw).decode()


class EtcdClient:
    """Talks to the members of one etcd cluster."""

    def __init__(self, endpoints: list[EtcdEndpoint], tls: TLSClient, timeout: float = 2.0) -> None:
        self.endpoints = endpoints
        self.tls = tls
        self.timeout = timeout

    def _post(self, url: str, path: str, body: dict[str, object], timeout: float | None = None) -> dict[str, object]:
        resp = requests.post(
            f"{url}{path}",
            json=body,
            verify=str(self.tls.ca),
            cert=(str(self.tls.cert), str(self.tls.key)),
            timeout=timeout or self.timeout,
        )
        data: dict[str, object] = resp.json() if resp.content else {}
        if resp.status_code != 200:
            raise requests.HTTPError(f"{path}: HTTP {resp.status_code}: {data.get('message') or resp.text[:200]}")
        return data

    def status(self, ep: EtcdEndpoint) -> MemberStatus:
        try:
            data = self._post(ep.url, "/v3/maintenance/status", {})
        except (requests.RequestException, ValueError) as exc:
            return MemberStatus(ep.name, ep.url, False, error=f"{type(exc).__name__}: {exc}"[:300])
        header = data.get("header") or {}
        assert isinstance(header, dict)
        return MemberStatus(
            name=ep.name,
            url=ep.url,
            reachable=True,
            member_id=str(header.get("member_id", "")),
            leader_id=str(data.get("leader", "")),
            raft_term=int(str(data.get("raftTerm", header.get("raft_term", 0)))),
            raft_index=int(str(data.get("raftIndex", 0))),
            db_size=int(str(data.get("dbSize", 0))),
            version=str(data.get("version", "")),
        )

    def statuses(self) -> list[MemberStatus]:
        return [self.status(ep) for ep in self.endpoints]

    def leader(self) -> str | None:
        """Name of the member that the reachable members agree is leader, if any."""
        rows = self.statuses()
        ids = {r.member_id: r.name for r in rows if r.reachable}
        for r in rows:
            if r.is_leader:
                return r.name
        leaders = {r.leader_id for r in rows if r.reachable and r.leader_id and r.leader_id != "0"}
        if len(leaders) == 1:
            return ids.get(leaders.pop())
        return None

    def health(self, ep: EtcdEndpoint) -> bool:
        """A linearizable read through the member: true only if it is part of a working quorum."""
        try:
            self._post(ep.url, "/v3/kv/range", {"key": _b64("kubequake/health")})
        except (requests.RequestException, ValueError):
            return False
        return True

    def put(self, key: str, value: str, ep: EtcdEndpoint | None = None, timeout: float | None = None) -> WriteProbe:
        """A quorum write through one member (the first reachable by default)."""
        targets = [ep] if ep else self.endpoints
        start = time.monotonic()
        last = "no endpoint"
        for target in targets:
            try:
                data = self._post(target.url, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)}, timeout)
            except (requests.RequestException, ValueError) as exc:
                last = f"{target.name}: {type(exc).__name__}: {exc}"[:300]
                continue
            header = data.get("header") or {}
            assert isinstance(header, dict)
            return WriteProbe(True, time.monotonic() - start, int(str(header.get("revision", 0))), "")
        return WriteProbe(False, time.monotonic() - start, 0, last)

    def get(self, key: str, ep: EtcdEndpoint | None = None, serializable: bool = False) -> str | None:
        target = ep or self.endpoints[0]
        data = self._post(target.url, "/v3/kv/range", {"key": _b64(key), "serializable": serializable})
        kvs = data.get("kvs") or []
        assert isinstance(kvs, list)
        if not kvs:
            return None
        return base64.b64decode(kvs[0]["value"]).decode()

    def hash_kv(self, ep: EtcdEndpoint, revision: int = 0) -> tuple[int, int]:
        """(hash, compact_revision) of the key space up to `revision` on one member."""
        data = self._post(ep.url, "/v3/maintenance/hashkv", {"revision": revision}, timeout=10)
        return int(str(data.get("hash", 0))), int(str(data.get("compact_revision", 0)))

    def members(self) -> list[str]:
        """Member names as the cluster itself reports them (from any reachable member)."""
        for ep in self.endpoints:
            try:
                data = self._post(ep.url, "/v3/cluster/member/list", {})
            except (requests.RequestException, ValueError):
                continue
            members = data.get("members") or []
            assert isinstance(members, list)
            return sorted(str(m.get("name", "")) for m in members)
        return []
