"""The acknowledged-write ledger: did the cluster keep every write it said it made?

Writers record each write before sending it and again with its fate (records.WritePhase). After
recovery the ledger reads every object back and judges each name by its operations, in order:

- ACK (2xx): the write happened. The state after the last ACK is what must be read back.
- REJECTED (4xx): it did not happen; ignored. The client sends each write exactly once (it never
  replays a PUT or DELETE on a closed connection, see users.REPLAYABLE_METHODS), so a 4xx is the
  answer to the only copy, not to a replay of a write that was applied unanswered.
- MAYBE (no answer, 5xx, timeout, reset, or an attempt with no outcome because the process was
  stopped mid-request): it may or may not have been applied. Every state a MAYBE after the last
  ACK could leave is also accepted; a MAYBE is never flagged. Writers abandon a name after a
  MAYBE, so a MAYBE is only ever the last operation on its name and cannot be applied late
  over a newer acknowledged write (updates and deletes also carry resourceVersion preconditions).

Verdicts: a name whose acknowledged content cannot be read back (missing, or other content) is
LOST; a name whose acknowledged delete is undone (the object is back, and no later acknowledged
or maybe create explains it) is RESURRECTED. A ledger with no acknowledged write is an error,
not a pass: a verdict on nothing must not pass.

A 404 or 409 right after an acknowledged write on the same name contradicts that write: the
writer held the latest state, yet the API said the object was gone or had changed. That is not a
verdict by itself (the read-back decides), but it is listed with the verdict, because it is
where a lost write or a replayed request first shows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client as k8s

from harness.load.api import CONTENT_KEY, StoredObject, TrafficApi
from harness.load.errors import LedgerError
from harness.load.records import WriteOp, WritePhase, WriteRecord, read_dir
from harness.net.tls import TLSClient

log = logging.getLogger(__name__)

MAX_LIST_PAGES = 1000


class ObjectReader(Protocol):
    """Reads ConfigMaps back for the ledger."""

    def list_configmaps(self, namespace: str) -> dict[str, StoredObject]: ...
    def get_configmap(self, namespace: str, name: str) -> StoredObject | None: ...


class KubeClientReader:
    """ObjectReader over an official kubernetes ApiClient (e.g. the `kube` fixture)."""

    def __init__(self, api: k8s.ApiClient, timeout: float = 10.0) -> None:
        self.core = k8s.CoreV1Api(api)
        self.timeout = timeout

    def list_configmaps(self, namespace: str) -> dict[str, StoredObject]:
        out: dict[str, StoredObject] = {}
        token: str | None = None
        for _ in range(MAX_LIST_PAGES):
            kwargs: dict[str, Any] = {"limit": 500, "_request_timeout": self.timeout}
            if token:
                kwargs["_continue"] = token
            resp = self.core.list_namespaced_config_map(namespace, **kwargs)
            for item in resp.items or []:
                obj = _from_model(item)
                out[obj.name] = obj
            token = resp.metadata._continue if resp.metadata else None
            if not token:
                return out
        raise LedgerError(f"listing ConfigMaps in {namespace} did not finish within {MAX_LIST_PAGES} pages")

    def get_configmap(self, namespace: str, name: str) -> StoredObject | None:
        try:
            item = self.core.read_namespaced_config_map(name, namespace, _request_timeout=self.timeout)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _from_model(item)


def _from_model(item: Any) -> StoredObject:
    data = item.data or {}
    meta = item.metadata
    content = data.get(CONTENT_KEY)
    return StoredObject(
        str(meta.name if meta else ""),
        None if content is None else str(content),
        str((meta.resource_version if meta else "") or ""),
    )


@dataclass(frozen=True)
class State:
    """What a name should look like: absent, or present with this content."""

    present: bool
    content: str = ""

    def describe(self) -> str:
        return f"content {self.content!r}" if self.present else "deleted"


@dataclass(frozen=True)
class Operation:
    """One write with its outcome, as judged from its records."""

    writer: str
    seq: int
    op: WriteOp
    namespace: str
    name: str
    content: str
    outcome: WritePhase  # ACK, MAYBE or REJECTED (never ATTEMPT)
    resource_version: str
    time: float
    status: int = 0  # the HTTP status of the outcome, 0 without an answer

    def result(self) -> State:
        return State(False) if self.op is WriteOp.DELETE else State(True, self.content)


@dataclass(frozen=True)
class ObjectFinding:
    """A name whose read-back state contradicts its acknowledged history."""

    namespace: str
    name: str
    expected: str
    observed: str
    last_ack_op: WriteOp
    last_ack_resource_version: str
    last_ack_time: float

    def describe(self) -> str:
        return (
            f"{self.namespace}/{self.name}: expected {self.expected} (acknowledged {self.last_ack_op} "
            f"rv={self.last_ack_resource_version or '-'}), read {self.observed}"
        )


@dataclass(frozen=True)
class LedgerVerdict:
    checked: int
    acknowledged_writes: int
    acknowledged_deletes: int
    maybe: int
    rejected: int
    unverifiable: int
    lost: tuple[ObjectFinding, ...]
    resurrected: tuple[ObjectFinding, ...]
    # Rejections that contradict the acknowledged write before them (see the module docstring).
    contradicted: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.lost and not self.resurrected

    @property
    def lost_names(self) -> list[str]:
        return [f.name for f in self.lost]

    @property
    def resurrected_names(self) -> list[str]:
        return [f.name for f in self.resurrected]

    @property
    def message(self) -> str:
        head = (
            f"{self.checked} objects checked ({self.acknowledged_writes} acknowledged writes, "
            f"{self.acknowledged_deletes} acknowledged deletes, {self.maybe} maybe, {self.rejected} rejected)"
        )
        if self.passed:
            parts = [f"nothing lost: {head}"]
        else:
            parts = [f"{len(self.lost)} lost, {len(self.resurrected)} resurrected of {head}"]
            parts += [f"LOST {f.describe()}" for f in self.lost[:20]]
            parts += [f"RESURRECTED {f.describe()}" for f in self.resurrected[:20]]
        parts += [f"CONTRADICTED {c}" for c in self.contradicted[:20]]
        return "\n".join(parts)


def resolve(records: Iterable[WriteRecord]) -> list[Operation]:
    """Pair each write's ATTEMPT with its outcome; an attempt with no outcome is MAYBE."""
    attempts: dict[tuple[str, int], WriteRecord] = {}
    outcomes: dict[tuple[str, int], WriteRecord] = {}
    for r in records:
        key = (r.writer, r.seq)
        if r.phase is WritePhase.ATTEMPT:
            attempts[key] = r
        else:
            outcomes[key] = r
    ops = []
    for key, a in attempts.items():
        o = outcomes.get(key)
        outcome = o.phase if o is not None else WritePhase.MAYBE
        rv = o.resource_version if o is not None and o.phase is WritePhase.ACK else a.resource_version
        status = o.status if o is not None else 0
        ops.append(Operation(a.writer, a.seq, a.op, a.namespace, a.name, a.content, outcome, rv, a.time, status))
    # An outcome without its attempt (a torn attempt line) still says what happened.
    for key, o in outcomes.items():
        if key not in attempts:
            ops.append(
                Operation(
                    o.writer, o.seq, o.op, o.namespace, o.name, o.content, o.phase, o.resource_version, o.time, o.status
                )
            )
    ops.sort(key=lambda op: (op.namespace, op.name, op.writer, op.seq))
    return ops


def _contradictions(ns: str, name: str, ops: list[Operation]) -> list[str]:
    out = []
    for before, op in pairwise(ops):
        if op.outcome is WritePhase.REJECTED and op.status in (404, 409) and before.outcome is WritePhase.ACK:
            out.append(
                f"{ns}/{name}: {op.op} answered {op.status} right after the acknowledged {before.op} "
                f"(rv={before.resource_version or '-'}) the writer held"
            )
    return out


class Ledger:
    """Every write of a run and its outcome; `verify` reads the cluster back and judges."""

    def __init__(self, records: Iterable[WriteRecord]) -> None:
        self.operations = resolve(records)

    @classmethod
    def from_dir(cls, records_dir: Path) -> Ledger:
        return cls(read_dir(records_dir).writes)

    def by_object(self) -> dict[tuple[str, str], list[Operation]]:
        out: dict[tuple[str, str], list[Operation]] = {}
        for op in self.operations:
            out.setdefault((op.namespace, op.name), []).append(op)
        return out

    def count(self, outcome: WritePhase, op: WriteOp | None = None) -> int:
        return sum(1 for o in self.operations if o.outcome is outcome and (op is None or o.op is op))

    def acknowledged(self) -> list[Operation]:
        return [o for o in self.operations if o.outcome is WritePhase.ACK]

    def verify(
        self,
        api: k8s.ApiClient | ObjectReader | None = None,
        *,
        url: str | None = None,
        tls: TLSClient | None = None,
        timeout: float = 10.0,
    ) -> LedgerVerdict:
        """Read every object of the ledger back and judge it (see the module docstring).

        Pass an ApiClient (e.g. the `kube` fixture), any ObjectReader, or url= and tls=.
        """
        if isinstance(api, k8s.ApiClient):
            return self.verify_with(KubeClientReader(api, timeout))
        if api is not None:
            return self.verify_with(api)
        if url is None or tls is None:
            raise LedgerError("Ledger.verify needs an ApiClient, an ObjectReader, or both url= and tls=")
        with TrafficApi(url, tls, timeout=timeout) as http:
            return self.verify_with(http)

    def verify_with(self, reader: ObjectReader) -> LedgerVerdict:
        objects = self.by_object()
        acked_writes = sum(1 for o in self.operations if o.outcome is WritePhase.ACK and o.op is not WriteOp.DELETE)
        acked_deletes = self.count(WritePhase.ACK, WriteOp.DELETE)
        if acked_writes + acked_deletes == 0:
            raise LedgerError(
                f"the ledger holds no acknowledged write ({len(self.operations)} operations, "
                f"{self.count(WritePhase.MAYBE)} maybe, {self.count(WritePhase.REJECTED)} rejected): a verdict "
                "on nothing cannot pass; run writers (writer_weight > 0) long enough for the API to acknowledge writes"
            )
        listed: dict[str, dict[str, StoredObject]] = {}
        lost: list[ObjectFinding] = []
        resurrected: list[ObjectFinding] = []
        checked = unverifiable = 0
        contradicted: list[str] = []
        for (ns, name), ops in sorted(objects.items()):
            contradicted += _contradictions(ns, name, ops)
            judged = [o for o in ops if o.outcome is not WritePhase.REJECTED]
            last_ack = max((i for i, o in enumerate(judged) if o.outcome is WritePhase.ACK), default=None)
            if last_ack is None:
                unverifiable += 1  # only maybes: any state is possible, nothing to hold the cluster to
                continue
            ack = judged[last_ack]
            allowed = [ack.result()] + [o.result() for o in judged[last_ack + 1 :]]
            if ns not in listed:
                listed[ns] = reader.list_configmaps(ns)
            seen = listed[ns].get(name)
            observed = State(True, seen.content or "") if seen is not None else State(False)
            if observed not in allowed:
                # A list is one consistent snapshot; confirm a contradiction with a direct read
                # so one odd page never becomes a false "lost".
                again = reader.get_configmap(ns, name)
                observed = State(True, again.content or "") if again is not None else State(False)
            checked += 1
            if observed in allowed:
                continue
            finding = ObjectFinding(
                ns,
                name,
                " or ".join(s.describe() for s in allowed),
                observed.describe(),
                ack.op,
                ack.resource_version,
                ack.time,
            )
            if observed.present and not any(s.present for s in allowed):
                resurrected.append(finding)
            else:
                lost.append(finding)
        verdict = LedgerVerdict(
            checked=checked,
            acknowledged_writes=acked_writes,
            acknowledged_deletes=acked_deletes,
            maybe=self.count(WritePhase.MAYBE),
            rejected=self.count(WritePhase.REJECTED),
            unverifiable=unverifiable,
            lost=tuple(lost),
            resurrected=tuple(resurrected),
            contradicted=tuple(contradicted),
        )
        level = logging.ERROR if not verdict.passed else logging.WARNING if contradicted else logging.INFO
        log.log(level, "ledger: %s", verdict.message)
        return verdict
