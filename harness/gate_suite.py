"""The gate's pytest side: its verdicts as Allure results, and the disruptive resilience suites.

harness/report is the only code that imports allure, and it writes results only inside an
allure-pytest session. So the gate runs its checks first (harness/gate.py, no pytest), then
replays the verdicts as a tiny in-process pytest session: one test per check, parametrized by a
plugin object that holds the verdicts, with `--alluredir`. Nothing is measured twice and the
replay cannot disagree with the table and JUnit the CLI wrote from the same verdicts.

`kubequake gate --disruptive` runs the installed scenario suites the way `kubequake run` does
(harness/suites.py), on the cluster the gate holds, and folds the outcome into one more verdict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import report, suites
from harness.gate import CheckOutcome
from harness.scenario import outcome_of_exception
from harness.verdicts import Outcome, Verdict, inconclusive

log = logging.getLogger(__name__)


class GateCheckNotJudged(Exception):
    """A gate check that is INCONCLUSIVE or ERROR: not a pass, and not the cluster's failure."""


@pytest.fixture
def gate_check() -> CheckOutcome:
    # Only reached when this module is run by hand: the gate parametrizes gate_check directly.
    pytest.skip("run through `kubequake gate`; this module replays the gate's verdicts")


def test_gate_check(gate_check: CheckOutcome) -> None:
    v = gate_check.verdict
    report.label_scenario("pre-upgrade gate", gate_check.group, v.name, severity="blocker", tags=["gate"])
    report.attach_verdicts([v])
    if v.outcome is Outcome.FAIL:
        pytest.fail(v.line(), pytrace=False)
    if not v.passed:
        # Broken in Allure, an error in JUnit: the check could not be made, the cluster did not fail it.
        raise GateCheckNotJudged(v.line())


class _GateVerdicts:
    """Plugin object that hands the gate's verdicts to test_gate_check, one test per check."""

    def __init__(self, outcomes: list[CheckOutcome]) -> None:
        self.outcomes = outcomes

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "gate_check" in metafunc.fixturenames:
            ids = [f"{o.group}: {o.verdict.name}" for o in self.outcomes]
            metafunc.parametrize("gate_check", self.outcomes, ids=ids)


def write_allure_results(outcomes: list[CheckOutcome], alluredir: Path) -> int:
    """Replay the verdicts into `alluredir`; returns pytest's exit code (0 all passed, 1 some failed)."""
    args = [
        *suites.pytest_base_args(),
        str(Path(__file__)),
        "-p",
        "no:cacheprovider",
        # The terminal shows the gate's own table; the replay's pytest output would only repeat it.
        "-p",
        "no:terminal",
        # -ra of the shipped addopts belongs to the terminal reporter, which the replay goes without.
        "-o",
        "addopts=",
        f"--alluredir={alluredir}",
    ]
    return int(pytest.main(args, plugins=[_GateVerdicts(outcomes)]))


@dataclass
class _Tally:
    """Each scenario's outcome as its test ended: PASS, FAIL, INCONCLUSIVE, ERROR, or skipped."""

    outcomes: dict[str, str] = field(default_factory=dict)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        rep = yield
        excinfo = call.excinfo
        if excinfo is not None and excinfo.errisinstance(pytest.skip.Exception):
            self.outcomes.setdefault(item.nodeid, "skipped")
        elif excinfo is not None:
            # Setup and teardown errors are the harness's or the environment's, whatever they raise.
            outcome = outcome_of_exception(excinfo.value) if call.when == "call" else Outcome.ERROR
            if self.outcomes.get(item.nodeid) in (None, Outcome.PASS.value):
                self.outcomes[item.nodeid] = outcome.value
        elif call.when == "call":
            self.outcomes.setdefault(item.nodeid, Outcome.PASS.value)
        return rep

    def named(self, outcome: str) -> list[str]:
        return [n for n, o in self.outcomes.items() if o == outcome]


@dataclass(frozen=True)
class SuiteOutcome:
    verdict: Verdict
    exit_code: int
    seconds: float
    # Set when pytest could not run the suites at all (usage error, interrupted, nothing collected).
    incomplete: str = ""


def run_resilience_suites(plugin_args: list[str], alluredir: Path, extra: list[str] | None = None) -> SuiteOutcome:
    """The scenario suites on the gate's cluster, chosen by kubequake plugin options (--kq-set, --provider...).

    The gate holds the cluster (brought up or attached); the suites only attach to it (--kq-attach).
    """
    import time

    args = [*suites.pytest_base_args(), *plugin_args, "--kq-attach", f"--alluredir={alluredir}"]
    args += extra or [str(suites.scenarios_dir())]
    tally = _Tally()
    start = time.monotonic()
    rc = int(pytest.main(args, plugins=[tally]))
    took = time.monotonic() - start
    name = "resilience suites (scenarios/)"
    counts = ", ".join(
        f"{len(tally.named(o))} {o.lower()}" for o in ("PASS", "FAIL", "INCONCLUSIVE", "ERROR", "skipped")
    )
    failed, skipped = tally.named("FAIL"), tally.named("skipped")
    unmade = tally.named("INCONCLUSIVE") + tally.named("ERROR")
    if rc not in (0, 1):
        why = f"pytest exited {rc} running the resilience suites ({counts}); see its output above"
        return SuiteOutcome(Verdict(name, len(failed), 0, "", Outcome.ERROR, why), rc, took, incomplete=why)
    if failed:
        return SuiteOutcome(Verdict(name, len(failed), 0, "", Outcome.FAIL, f"{counts}: {', '.join(failed)}"), rc, took)
    if tally.named("ERROR"):
        msg = f"{counts}: the harness or environment broke in {', '.join(tally.named('ERROR'))}"
        return SuiteOutcome(Verdict(name, 0, 0, "", Outcome.ERROR, msg), rc, took)
    if unmade or skipped:
        # A required scenario that was skipped or could not measure is not a pass of the gate.
        msg = f"{counts}: not judged: {', '.join(unmade + skipped)}"
        return SuiteOutcome(Verdict(name, 0, 0, "", Outcome.INCONCLUSIVE, msg), rc, took)
    if not tally.named("PASS"):
        return SuiteOutcome(inconclusive(name, "no scenario ran"), rc, took)
    return SuiteOutcome(Verdict(name, 0, 0, "", Outcome.PASS, counts), rc, took)
