"""pytest hooks for reports: the scenario's verdicts judged and its story attached when a test
ends, its docstring as the description, Allure's side files, and progress events for a live display.

- A test that used the `scenario` fixture is finished (harness.scenario.ScenarioRun.finish: client
  verdicts, the verdict table, one failure naming every failed verdict) when its body returns or
  ends through `run.stop()`, still in the call phase: a failed verdict is the test's FAILED
  result, not an error of its teardown, and the traffic and cluster the verdicts read are still
  there. A body that raised keeps its own error.
- A test function's docstring (a scenario's hypothesis, fault, measurements and SLO) becomes its
  Allure description, dedented so Markdown renders it as prose.
- When a test that used the `scenario` fixture finishes its call phase (passed, failed or
  broken), its timeline plot, fault journal table, etcd members and leaders before/after and
  log excerpts around each fault are attached, so a scenario that broke halfway still tells
  what it did. The scenario's traffic (ScenarioRun.traffic or the `traffic` fixture) and
  sources passed to `report.observe` are drawn on the timeline.
- With --alluredir, the session writes categories.json and environment.properties (versions and
  topology of the cluster the session used) into the results.
- With --kq-progress FILE, every test start, step and result is appended to FILE as JSON lines.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from harness import report
from harness.report import environment as envmod
from harness.report.progress import ProgressWriter

log = logging.getLogger(__name__)

PROGRESS = pytest.StashKey["_Progress | None"]()
ENVIRONMENT = pytest.StashKey[envmod.ReportEnvironment]()


class _Progress:
    """Progress events of one session; registered as a plugin only when --kq-progress is given."""

    def __init__(self, writer: ProgressWriter) -> None:
        self.writer = writer
        self.current = ""
        self.index = 0
        self.outcomes: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.durations: dict[str, float] = {}
        self.verdicts: dict[str, list[dict[str, Any]]] = {}

    def on_step(self, title: str, depth: int) -> None:
        self.writer.emit("step", nodeid=self.current, title=title, depth=depth)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.writer.emit("session", total=len(session.items))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.index += 1
        self.current = item.nodeid
        self.writer.emit("test", nodeid=item.nodeid, name=item.name, index=self.index)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        outcome = self.outcomes.get(nodeid, "passed")
        if report.when == "call":
            outcome = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
        elif report.failed:
            outcome = "error"
        elif report.skipped and report.when == "setup":
            outcome = "skipped"
        self.outcomes[nodeid] = outcome
        self.durations[nodeid] = self.durations.get(nodeid, 0.0) + report.duration
        if (report.failed or outcome == "skipped") and nodeid not in self.messages:
            self.messages[nodeid] = _first_line(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.writer.emit(
            "result",
            nodeid=nodeid,
            outcome=self.outcomes.get(nodeid, "unknown"),
            duration=round(self.durations.get(nodeid, 0.0), 3),
            message=self.messages.get(nodeid, ""),
            verdicts=self.verdicts.get(nodeid, []),
        )
        self.current = ""

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.writer.emit("finish", exitstatus=int(exitstatus))


def _first_line(report: pytest.TestReport) -> str:
    """The failure's message as pytest shows it in its short summary."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if isinstance(message, str) and message:
        return message
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2])  # a skip: (file, line, reason)
    lines = report.longreprtext.strip().splitlines()
    return lines[-1] if lines else ""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubequake")
    group.addoption(
        "--kq-progress",
        default=None,
        metavar="FILE",
        help="append progress events (test start, steps, results with verdicts) to FILE as JSON lines",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--kq-progress", default=None)
    progress = _Progress(ProgressWriter(Path(path))) if path else None
    config.stash[PROGRESS] = progress
    if progress is not None:
        config.pluginmanager.register(progress, "kubequake-progress")
        report.add_step_listener(progress.on_step)


def pytest_unconfigure(config: pytest.Config) -> None:
    progress = config.stash.get(PROGRESS, None)
    if progress is not None:
        report.remove_step_listener(progress.on_step)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    result = yield
    # The session's cluster: its versions and topology become the report's environment.
    if fixturedef.argname == "cluster" and result is not None:
        try:
            request.config.stash[ENVIRONMENT] = envmod.from_cluster(result)
        except Exception as exc:  # the environment page is informative; never fail a session over it
            log.warning("could not describe the cluster for the report: %s", exc)
    return result


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    report.take_observed()  # sources of an earlier test never leak onto this one's timeline


def _scenario_of(item: pytest.Item) -> Any:
    run = getattr(item, "funcargs", {}).get("scenario")
    return run if hasattr(run, "injector") and hasattr(run, "phases") else None


class _Finishable(Protocol):
    """What the finish hook needs of a scenario's run (harness.scenario.ScenarioRun)."""

    def finish(self) -> None: ...
    def stopped_by(self, error: BaseException) -> bool: ...


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    __tracebackhide__ = True
    run = _scenario_of(pyfuncitem)
    if run is None or not hasattr(run, "stopped_by"):
        return (yield)
    ending: _Finishable = run
    try:
        result = yield
    except BaseException as exc:
        if not ending.stopped_by(exc):
            raise
        result = True
    # Outside the except clause: a failed verdict is not reported as raised "during handling" of the stop.
    ending.finish()
    return result


def _plain(obj: Any) -> dict[str, Any]:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return dict(getattr(obj, "__dict__", {}))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    doc = getattr(getattr(item, "function", None), "__doc__", None)
    if call.when == "setup" and doc:
        # After setup, so it replaces the raw docstring allure-pytest sets during setup.
        report.describe(doc)
    if call.when == "call":
        run = _scenario_of(item)
        sources = report.take_observed()
        # The scenario's own traffic (ScenarioRun.traffic) or the `traffic` fixture's: either is drawn.
        for traffic in (getattr(item, "funcargs", {}).get("traffic"), getattr(run, "traffic", None)):
            if traffic is not None and traffic not in sources:
                sources.insert(0, traffic)
        if run is not None:
            try:
                report.attach_scenario(run, sources)
            except Exception as exc:  # the report must never change a test's outcome
                log.warning("could not attach the scenario's story to the report: %s", exc)
            progress = item.config.stash.get(PROGRESS, None)
            if progress is not None:
                progress.verdicts[item.nodeid] = [_plain(v) for v in getattr(run, "verdicts", [])]
    return (yield)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    alluredir = getattr(config.option, "allure_report_dir", None)
    if alluredir and not getattr(config.option, "collectonly", False):
        results = Path(alluredir)
        try:
            envmod.write_categories(results)
            envmod.write_environment(results, config.stash.get(ENVIRONMENT, envmod.ReportEnvironment()))
        except OSError as exc:
            log.warning("could not write categories and environment into %s: %s", results, exc)
