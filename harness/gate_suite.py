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

import pytest

from harness import report, suites
from harness.gate import CheckOutcome
from harness.verdicts import Verdict, outcome_of

log = logging.getLogger(__name__)


@pytest.fixture
def gate_check() -> CheckOutcome:
    # Only reached when this module is run by hand: the gate parametrizes gate_check directly.
    pytest.skip("run through `kubequake gate`; this module replays the gate's verdicts")


def test_gate_check(gate_check: CheckOutcome) -> None:
    v = gate_check.verdict
    report.label_scenario("pre-upgrade gate", gate_check.group, v.name, severity="blocker", tags=["gate"])
    report.attach_verdicts([v])
    if not v.passed:
        pytest.fail(v.line(), pytrace=False)


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
    """Counts the resilience suites' outcomes per test as pytest reports them."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and report.nodeid not in self.failed:
            self.failed.append(report.nodeid)
        elif report.when == "call" and report.passed:
            self.passed.append(report.nodeid)


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
    counts = f"{len(tally.passed)} passed, {len(tally.failed)} failed"
    if rc == 0:
        return SuiteOutcome(Verdict(name, 0, 0, "", outcome_of(True), counts), rc, took)
    if rc == 1:
        msg = f"{counts}: {', '.join(tally.failed)}"
        return SuiteOutcome(Verdict(name, len(tally.failed), 0, "", outcome_of(False), msg), rc, took)
    why = f"pytest exited {rc} running the resilience suites ({counts}); see its output above"
    return SuiteOutcome(Verdict(name, len(tally.failed), 0, "", outcome_of(False), why), rc, took, incomplete=why)
