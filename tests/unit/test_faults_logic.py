"""Pure logic of faults, journal, guards, budgets and outage intervals (fakes allowed here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.checks.availability import Sample, TargetSeries
from harness.checks.budgets import Budgets
from harness.config import build
from harness.errors import BlastRadiusError, FaultError
from harness.faults.base import BlastRadius, FaultInjector
from harness.faults.journal import FaultRecord, Journal
from harness.providers.base import UnsupportedCapability
from harness.providers.netfilter import chain_name
from harness.verdicts import Outcome, within
from tests.unit.fakes import FakeFault


def test_a_fault_the_provider_cannot_take_is_refused_before_anything_happens(tmp_path: Path) -> None:
    log: list[str] = []
    inj = make(tmp_path)
    with pytest.raises(UnsupportedCapability, match="does not offer power-off"):
        inj.inject(FakeFault("a", log, unsupported=True))
    assert log == []
    assert inj.records() == []
    assert not (tmp_path / "faults.jsonl").exists() or (tmp_path / "faults.jsonl").read_text() == ""


def test_a_fault_not_seen_in_effect_is_recorded_as_unconfirmed(tmp_path: Path) -> None:
    log: list[str] = []
    inj = make(tmp_path)
    seen = inj.inject(FakeFault("a", log))
    unseen = inj.inject(FakeFault("b", log, unseen="b still runs"))
    inj.heal_all()
    assert seen.confirmed_applied is True and seen.confirmed_healed is True
    assert unseen.confirmed_applied is False and "b still runs" in unseen.confirmation
    journal = Journal(tmp_path / "faults.jsonl").records()
    assert any(r.id == unseen.id and r.confirmed_applied is False for r in journal)


def make(tmp_path: Path, members: int = 3, quorum_loss: bool = False) -> FaultInjector:
    return FaultInjector(Journal(tmp_path / "faults.jsonl"), BlastRadius(members, allow_quorum_loss=quorum_loss))


def test_heals_newest_first_on_exception(tmp_path: Path) -> None:
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt), make(tmp_path) as inj:
        inj.inject(FakeFault("a", log))
        inj.inject(FakeFault("b", log))
        raise KeyboardInterrupt
    assert log == ["apply a", "apply b", "heal b", "heal a"]


def test_failed_apply_is_still_healed_and_journaled(tmp_path: Path) -> None:
    log: list[str] = []
    inj = make(tmp_path)
    with pytest.raises(RuntimeError, match="half applied"):
        inj.inject(FakeFault("a", log, fail_apply=True))
    assert log == ["apply a", "heal a"]
    (rec,) = Journal(tmp_path / "faults.jsonl").records()
    assert rec.status == "apply_failed" and "half applied" in rec.error and rec.healed_at is not None


def test_one_failed_heal_does_not_stop_the_others(tmp_path: Path) -> None:
    log: list[str] = []
    inj = make(tmp_path)
    inj.inject(FakeFault("a", log))
    inj.inject(FakeFault("b", log, fail_heal=True))
    with pytest.raises(FaultError, match="kubequake heal"):
        inj.heal_all()
    assert log[-2:] == ["heal b", "heal a"]
    states = {r.target: r.status for r in Journal(tmp_path / "faults.jsonl").records()}
    assert states == {"a": "healed", "b": "heal_failed"}


def test_guard_counts_impaired_members(tmp_path: Path) -> None:
    log: list[str] = []
    inj = make(tmp_path, members=3)
    inj.inject(FakeFault("a", log, members={"cp1"}))
    with pytest.raises(BlastRadiusError, match=r"leave 1 of 3 etcd members \(quorum needs 2\)"):
        inj.inject(FakeFault("b", log, members={"cp2"}))
    assert "apply b" not in log
    # The same member twice is still one member down.
    inj.inject(FakeFault("c", log, members={"cp1"}))
    assert make(tmp_path, 3, quorum_loss=True).inject(FakeFault("d", log, members={"cp1", "cp2"})).status == "applied"


def test_five_members_tolerate_two(tmp_path: Path) -> None:
    inj = make(tmp_path, members=5)
    inj.inject(FakeFault("a", [], members={"cp1", "cp2"}))
    with pytest.raises(BlastRadiusError):
        inj.inject(FakeFault("b", [], members={"cp3"}))


def test_journal_lists_unhealed_newest_first_and_survives_a_torn_line(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    a = FaultRecord("kill", "cp1/etcd", "a", {}, status="applied")
    b = FaultRecord("kill", "cp2/etcd", "b", {}, status="applied")
    c = FaultRecord("kill", "cp3/etcd", "c", {}, status="applied")
    for r in (a, b, c):
        j.write(r)
    b.status = "healed"
    j.write(b)
    with open(j.path, "a") as fh:
        fh.write('{"kind": "kill", "tar')  # a crash mid-write
    assert [r.description for r in j.unhealed()] == ["c", "a"]


def test_slos_stay_the_users_and_a_slow_setting_is_named_in_the_verdict() -> None:
    default = Budgets.for_config(build({}))
    slow = Budgets.for_config(
        build(
            {
                "etcd.election_timeout_ms": 5000,
                "leader_election.lease_duration_s": 60,
                "leader_election.renew_deadline_s": 40,
                "load_balancer.fall": 6,
            }
        )
    )
    # The SLOs do not follow the configuration...
    assert slow.etcd_reelection_s == default.etcd_reelection_s == 5.0
    assert slow.lease_handover_s == default.lease_handover_s == 30.0
    # ...the predictions do, and waits watch long enough to measure the slow figure.
    assert slow.expected["etcd_reelection_s"].value == pytest.approx(12.0)
    assert slow.watch_s("lease_handover_s") == pytest.approx(60 + 2.2 * 2 + 4)
    assert default.watch_s("lease_handover_s") == 30.0
    slow_handover = slow.within("lease_handover_s", "lease handover", 63.0)
    assert not slow_handover.passed and slow_handover.expected == pytest.approx(68.4)
    assert "leader_election.lease_duration_s=60" in slow_handover.message
    fast_handover = default.within("lease_handover_s", "lease handover", 17.0)
    assert fast_handover.passed and "makes it slow" not in fast_handover.message
    # No data is inconclusive, never a pass or the cluster's failure.
    nothing = default.within("etcd_reelection_s", "write gap", None, missing="no probe")
    assert nothing.outcome is Outcome.INCONCLUSIVE


def test_within_fails_a_missing_measurement() -> None:
    assert not within("x", None, 1.0).passed
    assert "over the 1.00s SLO" in within("x", 1.5, 1.0).message
    assert within("x", 0.5, 1.0).passed


def test_outages_are_runs_of_failures_ended_by_a_success() -> None:
    s = TargetSeries("lb", "https://x")
    for t, ok in [(0.0, True), (1.0, False), (1.5, False), (3.0, True), (4.0, False)]:
        s.samples.append(Sample(t, ok, 0.01, "" if ok else "connection refused"))
    outs = s.outages()
    assert [(o.start, o.end, o.failed_samples) for o in outs] == [(1.0, 3.0, 2), (4.0, None, 1)]
    assert s.longest_outage_s() == pytest.approx(2.0)
    with pytest.raises(Exception, match="not all successful before the fault"):
        s.check_baseline(2.0)
    s.check_baseline(0.5)


def test_chain_names_fit_iptables() -> None:
    assert chain_name("kqtest") == "KQ-kqtest"
    long = chain_name("a-very-long-cluster-name-for-nightly-runs")
    assert len(long) <= 28 and long != chain_name("a-very-long-cluster-name-for-nightly-runz")
