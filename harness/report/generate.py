"""Turn allure-results into the HTML report with the Allure 2 command line, and JUnit XML beside it.

The command line comes from the npm registry (package allure-commandline, pinned in
harness/report/npm/package-lock.json, installed by `make setup` with `npm ci`); the package
carries the Allure jar itself, so nothing is downloaded at install or run time. It runs on Java
(Debian: default-jre-headless). Allure's usage statistics are switched off for every run
(ALLURE_NO_ANALYTICS): neither generating the report nor opening it touches the network.

Two forms come out of one run:
- <out>/ the classic report directory (index.html + data/ + history/): what CI publishes and
  where the next run finds the history for its trends; browsers refuse to load its data from
  file://, so serve it (`allure open <out>`) or publish it.
- <out>.html a single self-contained file with the same content: open it in any browser.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.report import environment as envmod
from harness.report.errors import AllureNotInstalled, ReportError
from harness.report.junit import write_junit
from harness.report.redact import sanitize_results

log = logging.getLogger(__name__)

NPM_DIR = Path(__file__).resolve().parent / "npm"
ALLURE_BIN = NPM_DIR / "node_modules" / "allure-commandline" / "dist" / "bin" / "allure"
ALLURE_ENV = "KUBEQUAKE_ALLURE"
# A report of a few hundred results takes seconds; a minute more covers a cold JVM on a busy box.
GENERATE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class GeneratedReport:
    results: Path
    html_dir: Path
    single_file: Path | None
    junit: Path | None
    tests: int
    history_files: int
    redacted_files: tuple[Path, ...]

    @property
    def index(self) -> Path:
        return self.html_dir / "index.html"


def allure_command() -> list[str]:
    """argv prefix of the Allure 2 command line: $KUBEQUAKE_ALLURE, the project's npm install, or PATH."""
    override = os.environ.get(ALLURE_ENV)
    if override:
        if not Path(override).is_file():
            raise AllureNotInstalled(f"{ALLURE_ENV}={override} does not exist; point it at an Allure 2 `allure` script")
        return [override]
    if ALLURE_BIN.is_file():
        return [str(ALLURE_BIN)]
    found = shutil.which("allure")
    if found:
        return [found]
    raise AllureNotInstalled(
        f"the Allure command line is not installed (no {ALLURE_BIN}); run `make setup`, which runs "
        "`npm ci --prefix harness/report/npm`, or set KUBEQUAKE_ALLURE to an Allure 2 `allure` script"
    )


def check_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return
    if shutil.which("java") is None:
        raise AllureNotInstalled(
            "the Allure 2 command line runs on Java and no `java` is on PATH; install a JRE "
            "(Debian: apt-get install default-jre-headless) or set JAVA_HOME, then retry"
        )


def run_allure(args: list[str], timeout: float = GENERATE_TIMEOUT_S) -> str:
    """Run the Allure command line; return its output or raise ReportError with it."""
    argv = [*allure_command(), *args]
    check_java()
    # "true", not "1": the report template parses it with Boolean.parseBoolean, and anything else
    # leaves a Google Tag Manager script in index.html.
    env = {**os.environ, "ALLURE_NO_ANALYTICS": "true"}
    # A report run is a short-lived JVM: the quick compiler and serial GC use a third less CPU,
    # which matters on a 2-core machine that is still running a cluster.
    env.setdefault("JAVA_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    log.debug("running %s", argv)
    # Its own session, so a timeout kills the JVM and anything it started, not just the wrapper.
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        raise ReportError(
            f"`allure {' '.join(args[:1])}` did not finish within {timeout:.0f}s; last output:\n{(out or '')[-2000:]}"
        ) from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise
    if proc.returncode != 0:
        raise ReportError(f"`allure {' '.join(args)}` exited with {proc.returncode}:\n{out[-4000:]}")
    return out


def _newest_mtime(results: Path) -> float:
    return max((p.stat().st_mtime for p in results.glob("*-result.json")), default=0.0)


def generate(
    results: Path,
    out: Path,
    *,
    single_file: bool = True,
    junit: Path | None = None,
    env: envmod.ReportEnvironment | None = None,
    timeout: float = GENERATE_TIMEOUT_S,
) -> GeneratedReport:
    """Generate the HTML report of `results` into `out` (and `<out>.html`), keeping history.

    JUnit XML goes to `junit` (default: junit.xml beside `out`) unless pytest already wrote it
    for these results (a junit.xml newer than every result is kept as it is).
    """
    results, out = results.resolve(), out.resolve()
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise ReportError(
            f"no Allure results in {results}; run the suites with `--alluredir {results}` first "
            f"(e.g. `kubequake run -- --alluredir {results}`)"
        )
    redacted = sanitize_results(results)
    for path in redacted:
        log.warning("redacted key material from %s before generating the report", path)
    envmod.write_categories(results)
    if not (results / envmod.ENVIRONMENT_FILE).is_file():
        envmod.write_environment(results, env or envmod.ReportEnvironment())
    elif env is not None:
        envmod.write_environment(results, env)
    envmod.write_executor(results, envmod.executor_info(envmod.previous_build_order(out) + 1))
    history = envmod.carry_history(out, results)

    out.parent.mkdir(parents=True, exist_ok=True)
    # Generate next to the old report and swap at the end: a failed run keeps the old report
    # (and the history the next run needs).
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        run_allure(["generate", str(results), "-o", str(staging / "dir"), "--clean"], timeout)
        single: Path | None = None
        if single_file:
            run_allure(["generate", str(results), "-o", str(staging / "single"), "--clean", "--single-file"], timeout)
            single = out.parent / f"{out.name}.html"
            os.replace(staging / "single" / "index.html", single)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging / "dir", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    junit_path = junit if junit is not None else out.parent / "junit.xml"
    tests = 0
    if junit_path.is_file() and junit_path.stat().st_mtime >= _newest_mtime(results):
        log.info("keeping %s: pytest wrote it for these results", junit_path)
        from harness.report.junit import read_results

        tests = len(read_results(results))
    else:
        tests = write_junit(results, junit_path)
    return GeneratedReport(results, out, single, junit_path, tests, history, tuple(redacted))
