"""`make demo`: a local HA cluster, the resilience suites under traffic, the report, teardown.

    python -m harness.demo [--config FILE] [--set KEY=VALUE ...] [--keep-cluster] [-- PYTEST ARGS]

A newcomer's first command, so it shows everything and leaves nothing behind: it checks that
the report tools are installed before spending a quarter of an hour, starts the cluster, runs
the default suites (scenarios/) in a pytest subprocess with Allure results and JUnit XML,
shows a line per test and phase while they run, generates the HTML report, prints a short
verdict table, and tears the cluster down whatever happens (failure, Ctrl-C, SIGTERM).

The cluster gets its own name and address block (kubequake-demo, 127.0.200.0/24) so a cluster
started with `kubequake up` is never reused and then torn down by the demo.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from harness import binaries, config, suites
from harness.errors import HarnessError
from harness.report.environment import categorize
from harness.report.progress import Event, ProgressReader
from harness.report.tables import key_verdict, render
from harness.verdicts import Outcome, Verdict, overall

DEMO_SETTINGS = ["name=kubequake-demo", "address_block=200"]
EXIT_OK, EXIT_FAIL, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
# Silence longer than this during a long step prints a "still ..." line, so the run never looks hung.
HEARTBEAT_S = 20.0
POLL_S = 0.5
# After Ctrl-C pytest heals faults and stops the cluster; give it this long before killing it.
INTERRUPT_GRACE_S = 120.0


class Display:
    """Line-per-event progress on stderr, with a heartbeat during long silent steps."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.start = time.monotonic()
        self.last = self.start
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            elapsed = int(time.monotonic() - self.start)
            self.last = time.monotonic()
            # Best effort: a closed terminal or pipe (Ctrl-C also kills `| tee`) must never stop
            # the demo from healing faults and tearing the cluster down.
            with contextlib.suppress(OSError, ValueError):
                self.stream.write(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}\n")
                self.stream.flush()

    @contextlib.contextmanager
    def working(self, what: str) -> Iterator[None]:
        """Announce a step; while it runs, say so every HEARTBEAT_S of silence."""
        began = time.monotonic()
        self.line(what + " ...")
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(1.0):
                if time.monotonic() - self.last >= HEARTBEAT_S:
                    self.line(f"    still {what[0].lower() + what[1:]} ({time.monotonic() - began:.0f}s)")

        t = threading.Thread(target=beat, name="demo-heartbeat", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(2.0)
        self.line(f"    done in {time.monotonic() - began:.0f}s")


@dataclass
class TestRow:
    nodeid: str
    name: str
    outcome: str = "running"
    message: str = ""
    duration: float = 0.0
    verdicts: list[Verdict] = field(default_factory=list)


@dataclass
class RunState:
    """What the progress events said so far."""

    total: int = 0
    rows: dict[str, TestRow] = field(default_factory=dict)
    current: str = ""
    exitstatus: int | None = None

    def apply(self, ev: Event, show: Display) -> None:
        if ev.kind == "session":
            self.total = int(ev.get("total", 0))
            show.line(f"collected {self.total} scenario(s)")
        elif ev.kind == "test":
            nodeid = str(ev.get("nodeid"))
            self.current = nodeid
            self.rows[nodeid] = TestRow(nodeid, str(ev.get("name", nodeid)))
            show.line(f"[{ev.get('index')}/{self.total or '?'}] {ev.get('name')}  ({nodeid.split('::')[0]})")
        elif ev.kind == "step":
            depth = int(ev.get("depth", 0))
            if depth <= 1:
                show.line(f"      {'  ' * depth}{ev.get('title')}")
        elif ev.kind == "result":
            nodeid = str(ev.get("nodeid"))
            row = self.rows.setdefault(nodeid, TestRow(nodeid, nodeid.split("::")[-1]))
            row.outcome = str(ev.get("outcome", "unknown"))
            row.message = str(ev.get("message", ""))
            row.duration = float(ev.get("duration", 0.0))
            row.verdicts = [Verdict.from_dict(v) for v in ev.get("verdicts", []) if isinstance(v, dict)]
            first = _first_failure(row.message)
            show.line(f"      -> {row.outcome.upper()} in {row.duration:.0f}s" + (f": {first[:110]}" if first else ""))
        elif ev.kind == "finish":
            self.exitstatus = int(ev.get("exitstatus", EXIT_ERROR))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _first_failure(message: str) -> str:
    """The line that says what failed: the first FAIL verdict of a ScenarioFailed, else line one."""
    lines = message.splitlines()
    first = next((ln for ln in lines if ln.startswith("FAIL ")), lines[0] if lines else "")
    # "harness.errors.HarnessError: cluster not ..." -> "cluster not ...": the words matter, not the type.
    return re.sub(r"^[A-Za-z_][\w.]*(Error|Exception|Expired|Failed): ", "", first)


def _result(r: TestRow) -> str:
    """The scenario's outcome word: a failed test whose verdicts hold no FAIL was not the cluster's failure."""
    if r.outcome == "failed" and ("ScenarioInconclusive" in r.message or r.message.startswith("inconclusive:")):
        return Outcome.INCONCLUSIVE.value
    if r.outcome == "failed" and r.verdicts and all(v.outcome is not Outcome.FAIL for v in r.verdicts):
        return overall(v.outcome for v in r.verdicts).value
    return {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}.get(r.outcome, r.outcome)


def verdict_table(rows: Sequence[TestRow]) -> str:
    """scenario | result | key verdict | measured | SLO | verdicts passed | category of a failure."""
    body = []
    for r in rows:
        result = _result(r)
        key = key_verdict(r.verdicts)
        measured = budget = "-"
        if key is None:
            what = _first_failure(r.message) or "-"
        elif key.measured is None and key.slo is None:
            what = f"{key.name}: {'ok' if key.passed else key.message}"
        else:
            what = key.name
            measured = "never" if key.measured is None else f"{key.measured:.2f}{key.unit}"
            budget = "-" if key.slo is None else f"{key.slo:.2f}{key.unit}"
        passed = f"{sum(v.passed for v in r.verdicts)}/{len(r.verdicts)}" if r.verdicts else "-"
        status = "broken" if r.outcome == "error" or result in ("INCONCLUSIVE", "ERROR") else r.outcome
        category = (categorize(r.message, status) or "") if r.outcome in ("failed", "error") else ""
        body.append([_short(r.name, 48), result, _short(what, 44), measured, budget, passed, category])
    return render(["scenario", "result", "key verdict", "measured", "SLO", "verdicts", "category"], body)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.demo",
        description="start a local HA cluster, run the resilience suites under traffic, report, tear down",
    )
    p.add_argument("--config", type=Path, help="kubequake.toml with cluster settings")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--suites", type=Path, default=None, help="suites to run (default: the installed scenarios)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="where results and the report go")
    p.add_argument("--keep-cluster", action="store_true", help="leave the cluster running afterwards")
    p.add_argument("--max-minutes", type=float, default=90.0, help="stop the suites after this long")
    return p


class _Interrupt:
    """Where an interrupt came from: Ctrl-C reaches pytest too (same process group), SIGTERM only us."""

    by_signal = False


def _stop_pytest(proc: subprocess.Popen[bytes], show: Display, *, ask: bool) -> None:
    """Let pytest heal its faults and tear down, then insist.

    With `ask`, pytest is sent one SIGINT; without, it already has one from the terminal, and a
    second would cut its teardown short.
    """
    if proc.poll() is not None:
        return
    show.line("stopping the suites (faults are healed first) ...")
    if ask:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        show.line(f"the suites did not stop within {INTERRUPT_GRACE_S:.0f}s; killing them (teardown cleans up)")
        proc.kill()
        proc.wait(timeout=30)
    except KeyboardInterrupt:
        # A second Ctrl-C: stop waiting; the cluster teardown that follows removes what is left.
        proc.kill()
        proc.wait(timeout=30)


def run_suites(
    argv: list[str], progress: Path, log_path: Path, deadline_s: float, show: Display
) -> tuple[int, RunState]:
    """Run pytest in a subprocess, relaying its progress events; return its exit code and what it said."""
    state = RunState()
    reader = ProgressReader(progress)
    with log_path.open("wb") as log_file:
        # Same process group as the demo: Ctrl-C in the terminal reaches pytest directly.
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + deadline_s
            with show.working("running the suites"):
                while proc.poll() is None:
                    for ev in reader.poll():
                        state.apply(ev, show)
                    if time.monotonic() > deadline:
                        show.line(f"the suites ran longer than {deadline_s / 60:.0f} minutes")
                        _stop_pytest(proc, show, ask=True)
                        break
                    time.sleep(POLL_S)
        except BaseException as exc:
            # Ctrl-C reached pytest already; SIGTERM or an error of ours did not.
            _stop_pytest(proc, show, ask=_Interrupt.by_signal or not isinstance(exc, KeyboardInterrupt))
            raise
        finally:
            for ev in reader.poll():
                state.apply(ev, show)
    return proc.wait(timeout=30), state


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    _Interrupt.by_signal = True
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from harness.providers.registry import ClusterSession, ProviderOptions, open_session
    from harness.report.generate import allure_command, check_java, generate

    parser = _parser()
    args, pytest_args = parser.parse_known_args(argv)
    pytest_args = [a for a in pytest_args if a != "--"]
    # The library logs; the demo's own lines are the terminal output. Warnings still show.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    show = Display()
    sets = [*DEMO_SETTINGS, *args.sets]
    reports: Path = args.reports.resolve()
    results, html, junit = reports / "allure-results", reports / "allure-report", reports / "junit.xml"
    progress, pytest_log = reports / "demo-progress.jsonl", reports / "demo-pytest.log"
    session: ClusterSession | None = None
    code = EXIT_ERROR
    state = RunState()
    rep = None
    try:
        cfg = config.load(args.config, config.parse_set(sets))
        # Fail in the first second, not after the suites: the report needs these at the end.
        allure_command()
        check_java()
        with show.working("checking the pinned Kubernetes, etcd and KWOK builds"):
            binaries.ensure()
        with show.working(f"starting the local HA cluster {cfg.name!r} ({cfg.control_planes} control planes)"):
            # Recorded as the demo's (brought up, torn down after unless kept): a demo killed
            # outright leaves what `kubequake heal` removes.
            session = open_session(ProviderOptions("local", cfg), keep=args.keep_cluster)
            # The suites' own process attaches and runs the watchdog while they run: two
            # watchdogs would race to restart the same component.
            session.cluster.detach()
        cluster = session.cluster
        show.line(f"API through the load balancer: {cluster.lb_url()}")
        reports.mkdir(parents=True, exist_ok=True)
        progress.unlink(missing_ok=True)
        suite_paths = str(args.suites or suites.scenarios_dir())
        cmd = [sys.executable, "-m", "pytest", *suites.pytest_base_args(), suite_paths, "-p", "no:cacheprovider", "-q"]
        cmd += [*suites.report_args(results), f"--kq-progress={progress}"]
        if args.config:
            cmd += ["--kq-config", str(args.config)]
        for s in sets:
            cmd += ["--kq-set", s]
        # The demo holds the cluster; the suites use it as it runs and never tear it down.
        cmd.append("--kq-attach")
        pytest_code, state = run_suites([*cmd, *pytest_args], progress, pytest_log, args.max_minutes * 60, show)
        # pytest: 0 all passed, 1 some failed, 2 interrupted, 3-5 internal/usage/no tests.
        code = {0: EXIT_OK, 1: EXIT_FAIL, 2: EXIT_INTERRUPTED}.get(pytest_code, EXIT_ERROR)
        if pytest_code not in (0, 1):
            show.line(f"pytest exited with code {pytest_code}; its output is in {pytest_log}")
        if any(results.glob("*-result.json")):
            with show.working("generating the Allure report"):
                rep = generate(results, html, junit=junit)
        else:
            show.line(f"no results to report; see {pytest_log}")
    except KeyboardInterrupt:
        show.line("interrupted")
        code = EXIT_INTERRUPTED
    except HarnessError as exc:
        show.line(f"error: {exc}")
        code = exc.exit_code
    finally:
        if session is not None and session.teardown:
            with show.working("tearing the cluster down"):
                try:
                    session.close()
                except HarnessError as exc:
                    show.line(f"teardown failed: {exc}")
                    code = EXIT_ERROR
        elif session is not None:
            session.close()
            show.line(
                f"cluster {session.cluster.cfg.name!r} left running; stop it with "
                f"`kubequake down --set name={session.cluster.cfg.name}`"
            )
    out = sys.stdout
    if state.rows:
        out.write("\n" + verdict_table(list(state.rows.values())) + "\n\n")
    if rep is not None:
        out.write(f"report (open in a browser): {rep.single_file or rep.index}\n")
        out.write(f"report for CI or `allure open`: {rep.html_dir}\n")
        out.write(f"JUnit XML: {rep.junit}\n")
    if pytest_log.is_file():
        out.write(f"pytest output: {pytest_log}\n")
    if code == EXIT_INTERRUPTED:
        out.write(
            "interrupted; the cluster was torn down. Re-run `make demo`, or make a report of what ran "
            f"with `kubequake report --results {results}`\n"
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
