"""Direct etcd member access over etcd's JSON gateway (the v3 API over HTTPS with client certs).

Used for the member table, leader and raft term/index, quorum write probes and hash agreement.
Each call targets one member with a short timeout, so a dead or frozen member shows as an
error in its row instead of stalling the whole table.
"""

from __future__ import annotations

import base64
import itertools
import logging
import time
from dataclasses import dataclass

import requests

from harness.net.http import loopback_session
from harness.net.tls import TLSClient
from harness.verdicts import Verdict, check, inconclusive

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
class PutResult:
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
        with loopback_session() as session:
            resp = session.post(
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

    def put(self, key: str, value: str, ep: EtcdEndpoint | None = None, timeout: float | None = None) -> PutResult:
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
            return PutResult(True, time.monotonic() - start, int(str(header.get("revision", 0))), "")
        return PutResult(False, time.monotonic() - start, 0, last)

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


@dataclass(frozen=True)
class AckedWrite:
    key: str
    value: str
    revision: int
    t: float


class WriteProbe:
    """Quorum writes at a fixed rate in a thread; every acknowledged write is kept for verification.

    Writes go to each given member in turn with a short timeout, as a client with several
    endpoints fails over. The acknowledged list is the ground truth of "nothing lost": after
    recovery every key must read back with its value from every member.
    """

    def __init__(
        self,
        client: EtcdClient,
        endpoints: list[EtcdEndpoint],
        prefix: str,
        interval_s: float = 0.1,
        timeout_s: float = 1.0,
        max_duration_s: float = 600.0,
    ) -> None:
        import threading

        self.client = client
        self.endpoints = endpoints
        self.prefix = prefix.rstrip("/")
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_duration_s = max_duration_s
        self.acked: list[AckedWrite] = []
        self.attempts: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="etcd-write-probe", daemon=True)

    def __enter__(self) -> WriteProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout_s * 2 + 2)

    def set_endpoints(self, endpoints: list[EtcdEndpoint]) -> None:
        self.endpoints = list(endpoints)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_duration_s
        seq = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            eps = self.endpoints
            ep = eps[seq % len(eps)]
            key, value = f"{self.prefix}/{seq:06d}", f"v{seq}-{time.time():.3f}"
            t = time.time()
            try:
                res = self.client.put(key, value, ep, timeout=self.timeout_s)
            except Exception as exc:
                log.warning("write probe: unexpected %s: %s", type(exc).__name__, exc)
                res = PutResult(False, 0.0, 0, str(exc))
            self.attempts.append((t, res.ok))
            if res.ok:
                self.acked.append(AckedWrite(key, value, res.revision, t))
            seq += 1
            self._stop.wait(self.interval_s)

    def longest_gap_s(self, start: float = 0.0, end: float = float("inf")) -> float | None:
        """Longest time between consecutive successful writes within [start, end].

        None when no write was attempted in the window (nothing to judge); infinity when writes
        were attempted but fewer than two succeeded (they stopped).
        """
        attempted = [(t, ok) for t, ok in self.attempts if start <= t <= end]
        if not attempted:
            return None
        times = [t for t, ok in attempted if ok]
        if len(times) < 2:
            return float("inf")
        return max(b - a for a, b in itertools.pairwise(times))

    def first_success_after(self, t: float) -> float | None:
        return next((a for a, ok in self.attempts if ok and a >= t), None)

    def failures(self, start: float = 0.0, end: float = float("inf")) -> int:
        return sum(1 for t, ok in self.attempts if not ok and start <= t <= end)

    def successes(self, start: float = 0.0, end: float = float("inf")) -> int:
        return sum(1 for t, ok in self.attempts if ok and start <= t <= end)

    def lost(self, endpoints: list[EtcdEndpoint] | None = None) -> list[str]:
        """Acknowledged keys that some member does not return with the acknowledged value."""
        missing: list[str] = []
        for ep in endpoints or self.client.endpoints:
            for w in self.acked:
                try:
                    got = self.client.get(w.key, ep, serializable=True)
                except (requests.RequestException, ValueError) as exc:
                    missing.append(f"{w.key}@{ep.name} (unreadable: {type(exc).__name__})")
                    continue
                if got != w.value:
                    missing.append(f"{w.key}@{ep.name}")
        return missing


def hash_agreement(client: EtcdClient) -> tuple[bool, dict[str, int], int]:
    """Do all members hash the key space identically at a revision they all have?"""
    revs = {}
    for ep in client.endpoints:
        data = client._post(ep.url, "/v3/kv/range", {"key": _b64("kubequake/none"), "serializable": True})
        header = data.get("header") or {}
        assert isinstance(header, dict)
        revs[ep.name] = int(str(header.get("revision", 0)))
    common = min(revs.values())
    hashes = {ep.name: client.hash_kv(ep, common)[0] for ep in client.endpoints}
    return len(set(hashes.values())) == 1, hashes, common


def no_acknowledged_write_lost(probe: WriteProbe) -> Verdict:
    """Every write the probe saw acknowledged is on every member; inconclusive when none was acknowledged."""
    name = "no acknowledged write lost"
    if not probe.acked:
        return inconclusive(name, "the write probe had no write acknowledged, so none could be checked")
    lost = probe.lost()
    return check(name, not lost, f"{len(probe.acked)} acknowledged writes checked on every member; lost: {lost[:10]}")
