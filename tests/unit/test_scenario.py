"""The scenario skeleton's pure logic: fault blocks, named windows and waits, finish run by the hooks.

Faults here are fakes recording what was applied and healed; the injector is the real one, so
its guarantees (undo registered before apply, newest-first) are the ones exercised.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import windows
from harness.checks.budgets import Budgets
from harness.config import ClusterConfig
from harness.errors import BlastRadiusError, FaultError, HarnessError
from harness.faults.base import BlastRadius, FaultInjector
from harness.faults.journal import Journal
from harness.scenario import ScenarioInconclusive, ScenarioRun, ScenarioStopped
from harness.verdicts import Outcome
from harness.windows import Wait, Window
from tests.unit.fakes import FakeFault

pytest_plugins = ["pytester"]

BUDGETS = Budgets.for_config(ClusterConfig())


@dataclass
class FakeSeries:
    ok: bool
    checked: list[float] = field(default_factory=list)

    def check_baseline(self, before: float) -> None:
        self.checked.append(before)
        if not self.ok:
            raise HarnessError("probes failing before the fault")


@dataclass
class FakeSampler:
    series: dict[str, FakeSeries]


def make_run(tmp_path: Path, members: int = 3) -> ScenarioRun:
    injector = FaultInjector(Journal(tmp_path / "faults.jsonl"), BlastRadius(members))
    return ScenarioRun("test_x", cluster=None, budgets=BUDGETS, injector=injector)  # type: ignore[arg-type]


def phase_names(run: ScenarioRun) -> list[str]:
    return [p.name for p in run.phases]


def journal_states(tmp_path: Path) -> list[tuple[str, str]]:
    """Each change of a fault's status in the journal, in order (a line may repeat a status)."""
    states: list[tuple[str, str]] = []
    for line in (tmp_path / "faults.jsonl").read_text().splitlines():
        d = json.loads(line)
        if (d["target"], d["status"]) not in states[-1:]:
            states.append((d["target"], d["status"]))
    return states


# -- the fault block ---------------------------------------------------------------------------
def test_fault_block_injects_observes_and_heals_in_named_phases(tmp_path: Path) -> None:
    log: list[str] = []
    run = make_run(tmp_path)
    with run.fault(FakeFault("a", log)) as f:
        assert log == ["apply a"]
        assert phase_names(run) == ["inject", "observe"]
        assert f.record.status == "applied"
        with pytest.raises(HarnessError, match="not healed yet"):
            _ = f.healed_at
    assert log == ["apply a", "heal a"]
    assert phase_names(run) == ["inject", "observe", "heal"]
    assert all(p.ended is not None and not p.error for p in run.phases)
    rec = f.record
    assert rec.status == "healed" and rec.applied_at is not None and rec.healed_at is not None
    assert f.applied_at == rec.applied_at and f.healed_at == rec.healed_at
    assert run.phases[2].started == f.heal_started <= rec.healed_at
    # Journaled before apply (pending), then applied, then healed.
    assert journal_states(tmp_path) == [("a", "pending"), ("a", "applied"), ("a", "healed")]


def test_several_faults_heal_newest_first_and_their_window_is_when_all_were_in_force(tmp_path: Path) -> None:
    log: list[str] = []
    run = make_run(tmp_path)
    with run.fault(FakeFault("a", log), FakeFault("b", log), observe="observe: both down") as f:
        pass
    assert log == ["apply a", "apply b", "heal b", "heal a"]
    assert phase_names(run) == ["inject", "observe: both down", "heal"]
    _, b = f.records
    assert f.applied_at == b.applied_at and f.healed_at == b.healed_at
    assert f.target == "a, b"
    with pytest.raises(HarnessError, match="holds 2 faults"):
        _ = f.record


def test_an_error_in_the_block_propagates_after_the_heal(tmp_path: Path) -> None:
    log: list[str] = []
    run = make_run(tmp_path)
    with pytest.raises(RuntimeError, match="probe crashed"), run.fault(FakeFault("a", log), FakeFault("b", log)):
        log.append("observe")
        raise RuntimeError("probe crashed")
    assert log == ["apply a", "apply b", "observe", "heal b", "heal a"]
    observe, heal = run.phases[1], run.phases[2]
    assert "probe crashed" in observe.error and heal.name == "heal" and not heal.error


def test_an_interrupt_in_the_block_heals_too(tmp_path: Path) -> None:
    log: list[str] = []
    run = make_run(tmp_path)
    with pytest.raises(KeyboardInterrupt), run.fault(FakeFault("a", log)):
        raise KeyboardInterrupt
    assert log == ["apply a", "heal a"]
    assert journal_states(tmp_path)[-1] == ("a", "healed")


def test_a_failed_heal_does_not_mask_the_blocks_own_error(tmp_path: Path) -> None:
    log: list[str] = []
    run = make_run(tmp_path)
    with (
        pytest.raises(RuntimeError, match="probe crashed"),
        run.fault(FakeFault("a", log), FakeFault("b", log, fail_heal=True)),
    ):
        raise RuntimeError("probe crashed")
    # One failed undo does not stop the others.
    assert log == ["apply a", "apply b", "heal b", "heal a"]
    assert "could not heal fake b" in run.phases[-1].error
    # The journal keeps it failed, so the fixture's final heal_all reports it.
    with pytest.raises(FaultError, match="fake b"):
        run.injector.heal_all()


def test_a_failed_heal_fails_a_block_that_ended_well(tmp_path: Path) -> None:
    log: list[str] = []
    run = make_run(tmp_path)
    with pytest.raises(FaultError, match="could not heal fake a"), run.fault(FakeFault("a", log, fail_heal=True)):
        pass
    assert run.phases[-1].name == "heal" and "could not heal fake a" in run.phases[-1].error


def test_a_refused_second_fault_heals_the_first_and_never_observes(tmp_path: Path) -> None:
    log: list[str] = []
    run = make_run(tmp_path)
    observed = False
    with (
        pytest.raises(BlastRadiusError),
        run.fault(FakeFault("a", log, members={"cp1"}), FakeFault("b", log, members={"cp2"})),
    ):
        observed = True
    assert not observed
    assert log == ["apply a", "heal a"]
    assert phase_names(run) == ["inject", "heal"]
    assert "BlastRadiusError" in run.phases[0].error


def test_the_baseline_is_proved_once_before_the_first_fault(tmp_path: Path) -> None:
    log: list[str] = []
    run = make_run(tmp_path)
    good = FakeSampler({"lb": FakeSeries(ok=True)})
    with run.fault(FakeFault("a", log), FakeFault("b", log), baseline=good):
        pass
    assert len(good.series["lb"].checked) == 1
    broken = FakeSampler({"lb": FakeSeries(ok=False)})
    log.clear()
    with pytest.raises(ScenarioStopped, match="probes failing"), run.fault(FakeFault("c", log), baseline=broken):
        pass
    assert log == []  # nothing applied on a meaningless measurement
    # The scenario ends inconclusive, saying why: never a pass, never the cluster's failure.
    assert run.verdicts[-1].outcome is Outcome.INCONCLUSIVE and "probes failing" in run.verdicts[-1].message
    with pytest.raises(ScenarioInconclusive, match="probes failing"):
        run.finish()


def test_no_fault_still_gives_the_phases_and_no_window(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with run.fault() as f:
        pass
    assert phase_names(run) == ["inject", "observe", "heal"]
    with pytest.raises(HarnessError, match="not healed yet"):
        _ = f.healed_at
    with pytest.raises(HarnessError, match="no fault of this block"):
        _ = f.applied_at


# -- windows, waits and stopping early ---------------------------------------------------------
def test_wait_spends_the_window(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    start = time.monotonic()
    run.wait(Window("short", 0.05, "a test"))
    assert time.monotonic() - start >= 0.05


def test_wait_for_gives_seconds_or_none_at_the_deadline(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    quick = Wait("quick", lambda b: b.etcd_reelection_s / 50, 0.01, "a test")
    assert quick.timeout(BUDGETS) == pytest.approx(0.1)
    assert run.wait_for(quick, lambda: (False, "not yet")) is None
    took = run.wait_for(quick, lambda: (True, "done"))
    assert took is not None and took < 0.1


def test_wait_for_does_not_swallow_a_bug_in_the_check(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    empty: dict[str, bool] = {}
    with pytest.raises(KeyError):
        run.wait_for(Wait("bug", lambda b: 1.0, 0.01, "a test"), lambda: (empty["missing"], ""))


def test_stop_raises_what_the_hooks_recognise(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with pytest.raises(ScenarioStopped) as info:
        run.stop("nothing to hand over")
    assert run.stopped_by(info.value) and run.stopped == "nothing to hand over"
    assert not run.stopped_by(RuntimeError("probe crashed"))


def test_every_window_and_wait_is_named_once_and_says_why() -> None:
    named = [v for v in vars(windows).values() if isinstance(v, Window | Wait)]
    assert len(named) >= 10
    assert len({n.name for n in named}) == len(named)
    for n in named:
        assert n.why and n.name, n
        seconds = n.seconds if isinstance(n, Window) else n.timeout(BUDGETS)
        assert seconds > 0, n


# -- finish() run by the hooks, in a pytest of its own -----------------------------------------
SUITE = '''
import pytest
from harness.verdicts import check
from harness.scenario import ScenarioRun


class Injector:
    def records(self):
        return []


@pytest.fixture
def scenario():
    return ScenarioRun("fake", None, None, Injector())


def test_failed_verdict_without_finish(scenario):
    """A failed verdict fails the test.

    Hypothesis: nobody has to remember finish().
    """
    scenario.verdict(check("write gap", False, "writes stalled"))


def test_passed_verdict_without_finish(scenario):
    scenario.verdict(check("write gap", True, "writes kept going"))


def test_no_verdict(scenario):
    pass


def test_body_error_is_not_masked(scenario):
    scenario.verdict(check("write gap", False, "writes stalled"))
    raise RuntimeError("probe crashed")


def test_stopped_early_with_a_failed_verdict(scenario):
    scenario.verdict(check("one lease holder", False, "leader election is off"))
    scenario.stop("nothing to hand over")
    raise AssertionError("never reached")


def test_stopped_early_with_passed_verdicts(scenario):
    scenario.verdict(check("one lease holder", True, "one"))
    scenario.stop("the rest does not apply here")


def test_explicit_finish_still_works(scenario):
    scenario.verdict(check("write gap", True, "writes kept going"))
    scenario.finish()
'''


def section(out: str, test: str) -> str:
    """The failure section pytest printed for one test."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("_") and f" {test} " in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("_", "="))), len(lines))
    return "\n".join(lines[start + 1 : end])


def test_finish_runs_after_the_body_and_fails_the_test_not_its_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    results = pytester.path / "results"
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", f"--alluredir={results}")
    res.assert_outcomes(passed=3, failed=4, errors=0)
    out = res.stdout.str()
    res.stdout.fnmatch_lines(
        [
            "PASSED test_suite.py::test_passed_verdict_without_finish",
            "PASSED test_suite.py::test_stopped_early_with_passed_verdicts",
            "PASSED test_suite.py::test_explicit_finish_still_works",
        ],
        consecutive=False,
    )
    failed = section(out, "test_failed_verdict_without_finish")
    assert "ScenarioFailed: 1 verdict(s) failed:" in failed and "FAIL write gap" in failed
    assert "reached no verdict" in section(out, "test_no_verdict")
    masked = section(out, "test_body_error_is_not_masked")
    assert "RuntimeError: probe crashed" in masked and "ScenarioFailed" not in masked
    stopped = section(out, "test_stopped_early_with_a_failed_verdict")
    assert "FAIL one lease holder" in stopped
    assert "never reached" not in out and "ScenarioStopped" not in out
    # The docstring, dedented, is the report's description (Markdown would read indentation as code).
    described = {}
    for path in results.glob("*-result.json"):
        data = json.loads(path.read_text())
        described[data["name"]] = data.get("description")
    assert described["test_failed_verdict_without_finish"] == inspect.cleandoc(
        """A failed verdict fails the test.

        Hypothesis: nobody has to remember finish().
        """
    )
