"""False alarms: the default scenario suite run N times on a healthy local cluster.

A harness that goes red on a healthy cluster gets muted by the people on call, so this counts
how often it does. Each run is `kubequake run` exactly as a user types it (a subprocess, with
its own Allure results and JUnit XML), on a local cluster with default settings that the run
brings up and tears down itself, as `kubequake run` does when no cluster of that name runs:
one run's after-effects cannot turn the next one red, and the wall time is what a user waits.

Every scenario result that is not PASS on a healthy cluster counts as a false alarm: FAIL,
INCONCLUSIVE and ERROR all turn a gate red, and a skipped scenario leaves it unproven. The
outcome of each verdict comes from the "verdicts" JSON attachment each scenario leaves in its
Allure result (harness/scenario.py, ScenarioRun.finish): its "outcome" (PASS, FAIL,
INCONCLUSIVE, ERROR) where the verdict has one, otherwise PASS or FAIL from "passed".

    .venv/bin/python benchmarks/false_alarms.py [--runs 10] [--stop-after-failures K] [-m EXPR] [-k EXPR]

Writes benchmarks/results/false_alarms.json (--json PATH to write elsewhere) after every run, so
an interrupted benchmark still leaves what it measured ("complete": false). Target (issue 11):
0 false alarms in 10 consecutive runs on the 2-core reference machine. Prints figures; never
asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.result_file import Figure, ResultRecorder, add_json_option, rounded  # noqa: E402
from harness import config as kqconfig  # noqa: E402

PASS = "PASS"
# Most severe last: a scenario with several non-PASS verdicts is reported by the worst of them.
SEVERITY = ("PASS", "SKIPPED", "INCONCLUSIVE", "FAIL", "ERROR")
ALLURE_OUTCOMES = {"passed": "PASS", "failed": "FAIL", "broken": "ERROR", "skipped": "SKIPPED"}
DOWN_TIMEOUT_S = 180.0
HEAL_TIMEOUT_S = 300.0
INTERRUPT_GRACE_S = 180.0  # a run told to stop still heals its faults and tears its cluster down
OUTPUT_TAIL = 3000


@dataclass(frozen=True)
class VerdictResult:
    name: str
    outcome: str
    message: str
    measured: float | None
    budget: float | None
    unit: str


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str  # module::test name, with its parameters
    status: str  # Allure's: passed, failed, broken, skipped
    outcome: str
    message: str
    duration_s: float | None
    verdicts: tuple[VerdictResult, ...]


@dataclass
class RunResult:
    index: int
    started: str
    wall_s: float
    exit_code: int | None  # None: killed after the timeout
    outcome: str
    message: str
    load_before: float
    load_after: float
    junit: dict[str, int] = field(default_factory=dict)
    scenarios: list[ScenarioResult] = field(default_factory=list)


@dataclass(frozen=True)
class NonPass:
    run: int
    scenario: str  # "" for a run that failed as a whole (no scenario to blame)
    verdict: str  # "" for the scenario's own outcome
    outcome: str
    message: str


# --- reading one run's results ------------------------------------------------------------------


def verdict_outcome(v: dict[str, Any]) -> str:
    outcome = v.get("outcome")
    if isinstance(outcome, str) and outcome:
        return outcome.upper()
    return PASS if v.get("passed") else "FAIL"


def worst(outcomes: Sequence[str]) -> str:
    return max(outcomes, key=lambda o: SEVERITY.index(o) if o in SEVERITY else len(SEVERITY))


def attachments(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every attachment of an Allure result, also those inside (nested) steps."""
    yield from node.get("attachments") or []
    for step in node.get("steps") or []:
        yield from attachments(step)


def read_verdicts(result: dict[str, Any], alluredir: Path) -> tuple[VerdictResult, ...]:
    out: list[VerdictResult] = []
    for att in attachments(result):
        if att.get("name") != "verdicts" or not att.get("source"):
            continue
        try:
            items = json.loads((alluredir / att["source"]).read_text())
        except (OSError, ValueError):
            continue
        for v in items if isinstance(items, list) else []:
            if isinstance(v, dict):
                out.append(
                    VerdictResult(
                        name=str(v.get("name", "?")),
                        outcome=verdict_outcome(v),
                        message=str(v.get("message", "")),
                        measured=v.get("measured"),
                        budget=v.get("budget"),
                        unit=str(v.get("unit", "")),
                    )
                )
    return tuple(out)


def scenario_outcome(status: str, verdicts: Sequence[VerdictResult]) -> str:
    """PASS only when pytest passed and no verdict says otherwise.

    A failed test whose verdicts name their outcomes is reported by the worst of those (a
    scenario that fails because it could not measure is INCONCLUSIVE, not FAIL); a broken test
    whose verdicts all passed is an ERROR (the harness or the environment broke, after them).
    """
    non_pass = [v.outcome for v in verdicts if v.outcome != PASS]
    if status == "skipped":
        return "SKIPPED"
    if non_pass:
        return worst(non_pass)
    return ALLURE_OUTCOMES.get(status, status.upper() or "ERROR")


def scenario_name(result: dict[str, Any]) -> str:
    # fullName is "package.module#function"; name carries the parameters ("test_x[5]").
    module = str(result.get("fullName", "")).split("#")[0].rsplit(".", 1)[-1]
    name = str(result.get("name", "?"))
    return f"{module}.py::{name}" if module else name


def read_allure(alluredir: Path) -> list[ScenarioResult]:
    out = []
    for path in sorted(alluredir.glob("*-result.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        status = str(result.get("status", ""))
        verdicts = read_verdicts(result, alluredir)
        start, stop = result.get("start"), result.get("stop")
        details = result.get("statusDetails") or {}
        out.append(
            ScenarioResult(
                scenario=scenario_name(result),
                status=status,
                outcome=scenario_outcome(status, verdicts),
                message=str(details.get("message") or "").strip(),
                duration_s=(stop - start) / 1000 if isinstance(start, int) and isinstance(stop, int) else None,
                verdicts=verdicts,
            )
        )
    return sorted(out, key=lambda s: s.scenario)


def read_junit(path: Path) -> dict[str, int]:
    """pytest's own counts: a cross-check that every test it ran left an Allure result."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        for key in counts:
            with contextlib.suppress(ValueError):
                counts[key] += int(s.get(key, "0"))
    return counts


# --- running `kubequake run` ----------------------------------------------------------------------


def kubequake_argv() -> list[str]:
    script = Path(sys.executable).parent / "kubequake"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "harness.cli"]


def cluster_sets(args: argparse.Namespace) -> list[str]:
    return ["--set", f"name={args.name}", "--set", f"address_block={args.address_block}"]


def quiet(label: str, argv: list[str], timeout: float) -> str:
    """Run a clean-up command; its failure is reported, never raised (the benchmark goes on)."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{label}: {exc}"
    return "" if res.returncode == 0 else f"{label} exited {res.returncode}: {res.stderr.strip()[-300:]}"


def tear_down(args: argparse.Namespace) -> list[str]:
    """Remove the benchmark's cluster and the variant clusters scenarios made from it (NAME-vN)."""
    kq = kubequake_argv()
    problems = [quiet(f"kubequake heal --set name={args.name}", [*kq, "heal", *cluster_sets(args)], HEAL_TIMEOUT_S)]
    root = kqconfig.build({"name": args.name, "address_block": args.address_block}).run_dir.parent
    names = [args.name, *sorted(p.name for p in root.glob(f"{args.name}-v*") if p.is_dir())]
    problems += [
        quiet(f"kubequake down --set name={n}", [*kq, "down", "--set", f"name={n}"], DOWN_TIMEOUT_S) for n in names
    ]
    return [p for p in problems if p]


def stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Ctrl-C the run's whole process group (pytest heals faults and tears down on it), then kill."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def user_args(args: argparse.Namespace) -> list[str]:
    out = []
    if args.markers:
        out += ["-m", args.markers]
    if args.keyword:
        out += ["-k", args.keyword]
    return out


def one_run(index: int, args: argparse.Namespace, reports: Path) -> RunResult:
    where = reports / f"run-{index:02d}"
    where.mkdir(parents=True, exist_ok=True)
    alluredir, junit, log = where / "allure-results", where / "junit.xml", where / "kubequake-run.log"
    argv = [
        *kubequake_argv(),
        "run",
        *cluster_sets(args),
        "--alluredir",
        str(alluredir),
        "--junit",
        str(junit),
        *user_args(args),
    ]
    load_before = os.getloadavg()[0]
    started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    start = time.monotonic()
    code: int | None
    message = ""
    with log.open("wb") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        # Its own process group: a timeout or Ctrl-C here reaches pytest and the Locust processes
        # it started, and nothing of it is left running.
        proc = subprocess.Popen(argv, cwd=where, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=args.run_timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc, INTERRUPT_GRACE_S)
            code, message = None, f"kubequake run did not finish within {args.run_timeout:.0f} s; stopped"
        except KeyboardInterrupt:
            stop_group(proc, INTERRUPT_GRACE_S)
            raise
    wall = time.monotonic() - start
    scenarios = read_allure(alluredir)
    counts = read_junit(junit)
    outcomes = [s.outcome for s in scenarios]
    if code == 0 and scenarios and all(o == PASS for o in outcomes):
        outcome = PASS
    elif outcomes and any(o != PASS for o in outcomes):
        outcome = worst(outcomes)
    else:
        # The command failed with every scenario passing, or left no results at all: pytest
        # exit 2-5 (interrupted, internal error, usage, nothing selected) or a timeout.
        outcome = "ERROR"
        tail = log.read_bytes()[-OUTPUT_TAIL:].decode(errors="replace").strip()
        message = message or f"kubequake run exited {code} with {len(scenarios)} scenario result(s): ...{tail}"
    if counts and counts.get("tests", 0) != len(scenarios):
        message = (message + "; " if message else "") + (
            f"JUnit counts {counts.get('tests')} tests but Allure holds {len(scenarios)} results"
        )
        outcome = worst([outcome, "ERROR"])
    return RunResult(
        index=index,
        started=started,
        wall_s=round(wall, 1),
        exit_code=code,
        outcome=outcome,
        message=message,
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
        junit=counts,
        scenarios=scenarios,
    )


# --- summary ---------------------------------------------------------------------------------------


def non_passes(runs: Sequence[RunResult]) -> list[NonPass]:
    out = []
    for r in runs:
        if r.outcome != PASS and (r.message or not r.scenarios):
            out.append(NonPass(r.index, "", "", r.outcome, r.message))
        for s in r.scenarios:
            if s.outcome != PASS:
                out.append(NonPass(r.index, s.scenario, "", s.outcome, s.message))
            out += [NonPass(r.index, s.scenario, v.name, v.outcome, v.message) for v in s.verdicts if v.outcome != PASS]
    return out


@dataclass
class PassRate:
    results: int = 0
    passed: int = 0
    pass_rate: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)


def pass_rates(keyed: Sequence[tuple[str, str]]) -> dict[str, PassRate]:
    """Per key (a scenario, or a scenario's verdict): how often it passed, and every outcome counted."""
    out: dict[str, PassRate] = {}
    for key, outcome in keyed:
        entry = out.setdefault(key, PassRate())
        entry.results += 1
        entry.passed += outcome == PASS
        entry.outcomes[outcome] = entry.outcomes.get(outcome, 0) + 1
        entry.pass_rate = round(entry.passed / entry.results, 4)
    return dict(sorted(out.items()))


def summary_figures(runs: Sequence[RunResult]) -> dict[str, Figure]:
    scenario_results = [s for r in runs for s in r.scenarios]
    false_alarms = sum(s.outcome != PASS for s in scenario_results) + sum(
        1 for r in runs if r.outcome != PASS and not any(s.outcome != PASS for s in r.scenarios)
    )
    out = {
        "runs": Figure(len(runs), "runs", "runs of the suite"),
        "runs_all_pass": Figure(sum(r.outcome == PASS for r in runs), "runs", "runs in which every scenario passed"),
        "false_alarms": Figure(false_alarms, "false alarms", "non-PASS scenario results, plus runs that failed whole"),
    }
    if scenario_results:
        out["scenarios_per_run"] = Figure(
            rounded(statistics.median(len(r.scenarios) for r in runs), 1), "scenarios", "scenario results per run"
        )
    walls = [r.wall_s for r in runs]
    if walls:
        out["suite_wall_median"] = Figure(rounded(statistics.median(walls), 1), "s", "wall time of one run, median")
        out["suite_wall_min"] = Figure(min(walls), "s", "wall time of the fastest run")
        out["suite_wall_max"] = Figure(max(walls), "s", "wall time of the slowest run")
    return out


def details(args: argparse.Namespace, runs: Sequence[RunResult], complete: bool) -> dict[str, Any]:
    return {
        "complete": complete,
        "runs_requested": args.runs,
        "cluster": {"name": args.name, "address_block": args.address_block},
        "pytest_args": user_args(args),
        "runs": [
            {k: v for k, v in asdict(r).items() if k != "scenarios"}
            | {"scenarios": {s.scenario: s.outcome for s in r.scenarios}}
            for r in runs
        ],
        "scenario_pass_rates": {
            k: asdict(v) for k, v in pass_rates([(s.scenario, s.outcome) for r in runs for s in r.scenarios]).items()
        },
        "verdict_pass_rates": {
            k: asdict(v)
            for k, v in pass_rates(
                [(f"{s.scenario} :: {v.name}", v.outcome) for r in runs for s in r.scenarios for v in s.verdicts]
            ).items()
        },
        "non_pass": [asdict(n) for n in non_passes(runs)],
    }


def describe(r: RunResult) -> str:
    counts: dict[str, int] = {}
    for s in r.scenarios:
        counts[s.outcome] = counts.get(s.outcome, 0) + 1
    shown = ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "no scenario results"
    return (
        f"run {r.index:>2}: {r.outcome:<12} {r.wall_s:7.1f} s  ({shown}; exit {r.exit_code}; "
        f"load {r.load_before:.1f} -> {r.load_after:.1f})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="runs of the suite (default 10)")
    p.add_argument(
        "--stop-after-failures",
        type=int,
        default=0,
        metavar="K",
        help="stop once K runs had a non-PASS result (default 0: never stop early)",
    )
    p.add_argument("-m", dest="markers", default="", metavar="EXPR", help="pytest -m: only these scenarios")
    p.add_argument("-k", dest="keyword", default="", metavar="EXPR", help="pytest -k: only these scenarios")
    p.add_argument("--name", default="kqfa", help="cluster name (default kqfa)")
    p.add_argument("--address-block", type=int, default=98, help="loopback block 127.0.N.x (default 98)")
    p.add_argument("--run-timeout", type=float, default=3600.0, help="seconds one run may take (default 3600)")
    p.add_argument(
        "--reports",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each run's Allure results, JUnit XML and output in DIR/run-NN (default: a temporary "
        "directory, removed at the end)",
    )
    add_json_option(p, "false_alarms")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    recorder = ResultRecorder("false_alarms", argv=[sys.argv[0], *(sys.argv[1:] if argv is None else argv)])

    reports = args.reports or Path(tempfile.mkdtemp(prefix=f"{args.name}-false-alarms-"))
    runs: list[RunResult] = []
    failed_runs = 0
    print(
        f"{args.runs} run(s) of `kubequake run {' '.join(user_args(args))}` on cluster {args.name}, reports {reports}"
    )
    try:
        for problem in tear_down(args):  # a leftover of an interrupted benchmark is not a healthy cluster
            print(f"before the runs: {problem}")
        for i in range(1, args.runs + 1):
            r = one_run(i, args, reports)
            runs.append(r)
            print(describe(r), flush=True)
            for n in non_passes([r]):
                where = " :: ".join(x for x in (n.scenario, n.verdict) if x) or "the run"
                print(f"        {n.outcome} {where}: {n.message.splitlines()[0][:300] if n.message else ''}")
            for problem in tear_down(args):
                print(f"        after the run: {problem}")
            recorder.write(args.json, summary_figures(runs), details(args, runs, complete=False))
            failed_runs += r.outcome != PASS
            if args.stop_after_failures and failed_runs >= args.stop_after_failures:
                print(f"stopping: {failed_runs} run(s) with a non-PASS result")
                break
    finally:
        tear_down(args)
        if args.reports is None:
            shutil.rmtree(reports, ignore_errors=True)
    complete = len(runs) == args.runs
    figures = summary_figures(runs)
    written = recorder.write(args.json, figures, details(args, runs, complete=complete))
    print(
        f"\n{figures['runs_all_pass'].value:.0f}/{len(runs)} runs all PASS; "
        f"{figures['false_alarms'].value:.0f} false alarm(s)  (target: 0 in 10 consecutive runs)"
    )
    if "suite_wall_median" in figures:
        print(
            f"suite wall time: median {figures['suite_wall_median'].value:.0f} s "
            f"({figures['suite_wall_min'].value:.0f}-{figures['suite_wall_max'].value:.0f} s)"
        )
    print(f"results: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
