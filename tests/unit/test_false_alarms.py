"""How benchmarks/false_alarms.py reads one run's Allure results into outcomes and pass rates.

The results here are written by hand in the shape allure-pytest writes them (a result per test,
attachments as files beside it, possibly inside nested steps); the benchmark itself runs the real
suite through `kubequake run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.false_alarms import (
    NonPass,
    PassRate,
    RunResult,
    non_passes,
    pass_rates,
    read_allure,
    read_junit,
    summary_figures,
)


def write_result(
    d: Path, uid: str, status: str, verdicts: list[dict[str, Any]] | None, *, nested: bool = False
) -> None:
    attachments = []
    if verdicts is not None:
        (d / f"{uid}-attachment.json").write_text(json.dumps(verdicts))
        attachments.append({"name": "verdicts", "source": f"{uid}-attachment.json", "type": "application/json"})
    result: dict[str, Any] = {
        "name": f"test_{uid}",
        "fullName": f"test_suite#test_{uid}",
        "status": status,
        "statusDetails": {"message": f"{uid} says {status}"},
        "start": 1000,
        "stop": 3500,
    }
    if nested:
        result["steps"] = [{"name": "verify", "steps": [{"name": "inner", "attachments": attachments}]}]
    else:
        result["attachments"] = attachments
    (d / f"{uid}-result.json").write_text(json.dumps(result))


def verdict(name: str, passed: bool, outcome: str | None = None) -> dict[str, Any]:
    v: dict[str, Any] = {"name": name, "measured": 1.0, "budget": 2.0, "unit": "s", "passed": passed, "message": name}
    if outcome is not None:
        v["outcome"] = outcome
    return v


def test_outcomes_from_status_and_verdicts(tmp_path: Path) -> None:
    write_result(tmp_path, "a", "passed", [verdict("x", True)])
    write_result(tmp_path, "b", "failed", [verdict("x", True), verdict("y", False)], nested=True)
    # A verdict that could not measure says so; the scenario is then INCONCLUSIVE, not FAIL.
    write_result(tmp_path, "c", "failed", [verdict("x", False, "INCONCLUSIVE"), verdict("y", True, "PASS")])
    write_result(tmp_path, "d", "broken", [verdict("x", True)])  # an exception after the verdicts
    write_result(tmp_path, "e", "skipped", None)
    got = {s.scenario: (s.outcome, [(v.name, v.outcome) for v in s.verdicts]) for s in read_allure(tmp_path)}
    assert got == {
        "test_suite.py::test_a": ("PASS", [("x", "PASS")]),
        "test_suite.py::test_b": ("FAIL", [("x", "PASS"), ("y", "FAIL")]),
        "test_suite.py::test_c": ("INCONCLUSIVE", [("x", "INCONCLUSIVE"), ("y", "PASS")]),
        "test_suite.py::test_d": ("ERROR", [("x", "PASS")]),
        "test_suite.py::test_e": ("SKIPPED", []),
    }


def run(index: int, tmp: Path, statuses: dict[str, str]) -> RunResult:
    d = tmp / f"run{index}"
    d.mkdir()
    for uid, status in statuses.items():
        write_result(d, uid, status, [verdict("v", status == "passed")])
    outcome = "PASS" if all(s == "passed" for s in statuses.values()) else "FAIL"
    return RunResult(index, "", 100.0 * index, 0, outcome, "", 1.0, 1.0, {}, read_allure(d))


def test_pass_rates_and_false_alarms(tmp_path: Path) -> None:
    runs = [run(1, tmp_path, {"a": "passed", "b": "passed"}), run(2, tmp_path, {"a": "passed", "b": "failed"})]
    whole = RunResult(3, "", 50.0, 4, "ERROR", "kubequake run exited 4", 1.0, 1.0, {}, [])
    runs.append(whole)
    rates = pass_rates([(s.scenario, s.outcome) for r in runs for s in r.scenarios])
    assert rates["test_suite.py::test_b"] == PassRate(
        results=2, passed=1, pass_rate=0.5, outcomes={"PASS": 1, "FAIL": 1}
    )
    assert rates["test_suite.py::test_a"].pass_rate == 1.0
    assert non_passes(runs) == [
        NonPass(2, "test_suite.py::test_b", "", "FAIL", "b says failed"),
        NonPass(2, "test_suite.py::test_b", "v", "FAIL", "v"),
        NonPass(3, "", "", "ERROR", "kubequake run exited 4"),
    ]
    figures = summary_figures(runs)
    assert (figures["runs"].value, figures["runs_all_pass"].value, figures["false_alarms"].value) == (3, 1, 2)
    assert (figures["suite_wall_min"].value, figures["suite_wall_max"].value) == (50.0, 200.0)


def test_junit_counts(tmp_path: Path) -> None:
    (tmp_path / "j.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1"></testsuite></testsuites>'
    )
    assert read_junit(tmp_path / "j.xml") == {"tests": 3, "failures": 1, "errors": 0, "skipped": 1}
    assert read_junit(tmp_path / "missing.xml") == {}
