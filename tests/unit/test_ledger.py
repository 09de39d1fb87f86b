"""The acknowledged-write ledger's judgement, against an in-memory reader (pure logic).

The same verdicts against a real cluster, including one that must fail, are in
tests/integration/test_traffic.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.load.api import StoredObject
from harness.load.errors import LedgerError
from harness.load.ledger import Ledger, resolve
from harness.load.records import RecordWriter, WriteOp, WritePhase, WriteRecord

NS = "kq-load-test"
T0 = 1_800_000_000.0


class FakeReader:
    """What the cluster holds: name -> content. `list_lies` hides names from the list only."""

    def __init__(self, objects: dict[str, str], list_lies: frozenset[str] = frozenset()) -> None:
        self.objects = objects
        self.list_lies = list_lies
        self.gets: list[str] = []

    def list_configmaps(self, namespace: str) -> dict[str, StoredObject]:
        assert namespace == NS
        return {n: StoredObject(n, c, "1") for n, c in self.objects.items() if n not in self.list_lies}

    def get_configmap(self, namespace: str, name: str) -> StoredObject | None:
        self.gets.append(name)
        c = self.objects.get(name)
        return None if c is None else StoredObject(name, c, "1")


class Writer:
    """Builds the records a WriterUser would write: an attempt, then an outcome."""

    def __init__(self, writer: str = "w1") -> None:
        self.writer = writer
        self.seq = 0
        self.records: list[WriteRecord] = []

    def op(
        self, op: WriteOp, name: str, content: str = "", outcome: WritePhase | None = WritePhase.ACK, status: int = 200
    ) -> Writer:
        self.seq += 1
        t = T0 + self.seq
        self.records.append(WriteRecord(self.writer, self.seq, WritePhase.ATTEMPT, op, NS, name, content, "", t))
        if outcome is not None:
            rv = str(100 + self.seq) if outcome is WritePhase.ACK else ""
            self.records.append(
                WriteRecord(self.writer, self.seq, outcome, op, NS, name, content, rv, t + 0.01, status)
            )
        return self

    def create(self, name: str, content: str, outcome: WritePhase | None = WritePhase.ACK) -> Writer:
        return self.op(WriteOp.CREATE, name, content, outcome)

    def update(self, name: str, content: str, outcome: WritePhase | None = WritePhase.ACK) -> Writer:
        return self.op(WriteOp.UPDATE, name, content, outcome)

    def delete(self, name: str, outcome: WritePhase | None = WritePhase.ACK) -> Writer:
        return self.op(WriteOp.DELETE, name, "", outcome)

    def ledger(self) -> Ledger:
        return Ledger(self.records)


def test_acknowledged_latest_content_reads_back_clean() -> None:
    w = Writer().create("a", "a1").update("a", "a2").create("b", "b1").delete("b")
    v = w.ledger().verify(FakeReader({"a": "a2", "unrelated": "x"}))
    assert v.passed, v.message
    assert (v.checked, v.acknowledged_writes, v.acknowledged_deletes) == (2, 3, 1)
    assert "nothing lost" in v.message


def test_a_missing_acknowledged_object_is_lost_by_name() -> None:
    w = Writer().create("a", "a1").create("b", "b1")
    v = w.ledger().verify(FakeReader({"a": "a1"}))
    assert not v.passed
    assert v.lost_names == ["b"] and v.resurrected_names == []
    assert "LOST kq-load-test/b" in v.message and "content 'b1'" in v.message


def test_an_older_content_than_the_last_acknowledged_update_is_lost() -> None:
    w = Writer().create("a", "a1").update("a", "a2")
    v = w.ledger().verify(FakeReader({"a": "a1"}))
    assert v.lost_names == ["a"]
    assert v.lost[0].observed == "content 'a1'" and v.lost[0].last_ack_op is WriteOp.UPDATE


def test_an_acknowledged_delete_that_comes_back_is_resurrected() -> None:
    w = Writer().create("a", "a1").delete("a")
    v = w.ledger().verify(FakeReader({"a": "a1"}))
    assert v.resurrected_names == ["a"] and v.lost_names == []
    assert "RESURRECTED" in v.message


def test_a_later_acknowledged_create_makes_a_deleted_name_legitimately_present() -> None:
    w = Writer().create("a", "a1").delete("a").create("a", "a3")
    assert w.ledger().verify(FakeReader({"a": "a3"})).passed
    # ...and then the re-created content is what must be there.
    assert w.ledger().verify(FakeReader({})).lost_names == ["a"]


@pytest.mark.parametrize("outcome", [WritePhase.MAYBE, None])  # None: attempt with no outcome line
def test_an_unacknowledged_update_may_or_may_not_have_applied(outcome: WritePhase | None) -> None:
    w = Writer().create("a", "a1").update("a", "a2", outcome=outcome)
    assert w.ledger().verify(FakeReader({"a": "a1"})).passed
    assert w.ledger().verify(FakeReader({"a": "a2"})).passed
    # Neither the acknowledged nor the maybe content: lost.
    assert w.ledger().verify(FakeReader({"a": "zzz"})).lost_names == ["a"]
    assert w.ledger().verify(FakeReader({})).lost_names == ["a"]


def test_an_unacknowledged_delete_may_or_may_not_have_applied() -> None:
    w = Writer().create("a", "a1").delete("a", outcome=WritePhase.MAYBE)
    assert w.ledger().verify(FakeReader({"a": "a1"})).passed
    assert w.ledger().verify(FakeReader({})).passed


def test_an_unacknowledged_create_after_a_delete_explains_a_present_object() -> None:
    w = Writer().create("a", "a1").delete("a").create("a", "a3", outcome=WritePhase.MAYBE)
    assert w.ledger().verify(FakeReader({"a": "a3"})).passed
    assert w.ledger().verify(FakeReader({})).passed
    assert w.ledger().verify(FakeReader({"a": "a1"})).resurrected_names == []  # a1 is not a3: lost, not back
    assert w.ledger().verify(FakeReader({"a": "a1"})).lost_names == ["a"]


def test_names_with_only_maybe_writes_are_never_flagged() -> None:
    w = Writer().create("a", "a1").create("m", "m1", outcome=WritePhase.MAYBE)
    for held in ({"a": "a1"}, {"a": "a1", "m": "m1"}):
        v = w.ledger().verify(FakeReader(held))
        assert v.passed and v.unverifiable == 1 and v.maybe == 1


def test_rejected_writes_did_not_happen() -> None:
    w = Writer().create("a", "a1").op(WriteOp.UPDATE, "a", "a2", WritePhase.REJECTED, 409)
    v = w.ledger().verify(FakeReader({"a": "a1"}))
    assert v.passed and v.rejected == 1
    assert w.ledger().verify(FakeReader({"a": "a2"})).lost_names == ["a"]


def test_a_list_that_misses_an_object_is_confirmed_by_a_direct_read() -> None:
    reader = FakeReader({"a": "a1"}, list_lies=frozenset({"a"}))
    assert Writer().create("a", "a1").ledger().verify(reader).passed
    assert reader.gets == ["a"]


def test_an_empty_ledger_is_an_error_not_a_pass() -> None:
    with pytest.raises(LedgerError, match="no acknowledged write"):
        Ledger([]).verify(FakeReader({}))
    only_maybes = Writer().create("m", "m1", outcome=WritePhase.MAYBE).ledger()
    with pytest.raises(LedgerError, match="1 maybe"):
        only_maybes.verify(FakeReader({}))


def test_verify_needs_somewhere_to_read_from() -> None:
    with pytest.raises(LedgerError, match="url= and tls="):
        Writer().create("a", "a1").ledger().verify()


def test_resolve_pairs_attempts_with_outcomes_across_writers() -> None:
    w1 = Writer("w1").create("a", "a1").update("a", "a2", outcome=None)
    w2 = Writer("w2").create("b", "b1", outcome=WritePhase.REJECTED)
    ops = resolve(w1.records + w2.records)
    assert [(o.writer, o.seq, o.outcome) for o in ops] == [
        ("w1", 1, WritePhase.ACK),
        ("w1", 2, WritePhase.MAYBE),
        ("w2", 1, WritePhase.REJECTED),
    ]
    assert ops[0].resource_version == "101"


def test_ledger_from_record_files(tmp_path: Path) -> None:
    out = RecordWriter(tmp_path / "worker-h-7.jsonl")
    for r in Writer().create("a", "a1").update("a", "a2").records:
        out.write(r)
    out.close()
    ledger = Ledger.from_dir(tmp_path)
    assert len(ledger.acknowledged()) == 2
    assert ledger.verify(FakeReader({"a": "a2"})).passed


def test_a_rejection_right_after_an_acknowledged_write_is_listed_as_a_contradiction() -> None:
    # The shape of a replayed delete: applied, answer lost, the copy answered 404.
    w = Writer().create("a", "a1").op(WriteOp.DELETE, "a", "", WritePhase.REJECTED, 404)
    w.create("b", "b1").op(WriteOp.UPDATE, "b", "b2", WritePhase.MAYBE, 0).create("c", "c1")
    v = w.ledger().verify(FakeReader({"b": "b1", "c": "c1"}))
    assert v.lost_names == ["a"]
    assert v.contradicted == (
        f"{NS}/a: delete answered 404 right after the acknowledged create (rv=101) the writer held",
    )
    assert v.message.splitlines()[-1] == f"CONTRADICTED {v.contradicted[0]}"
    # Informational, not a verdict: the read-back decides, and a clean one still passes.
    clean = w.ledger().verify(FakeReader({"a": "a1", "b": "b1", "c": "c1"}))
    assert clean.passed and len(clean.contradicted) == 1
    assert clean.message.startswith("nothing lost: ") and "CONTRADICTED" in clean.message
