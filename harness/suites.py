"""Where the scenario suites users run are, and how pytest is started for a user's run.

`kubequake run`, `kubequake gate --disruptive` and `make demo` run pytest the same way: with the
settings file shipped in this package (never the settings of whatever project the current
directory holds, this repository's own test settings included), the current directory as
rootdir (relative paths, `.pytest_cache` and reports land where the user is), and the installed
scenario suites as the default when no path is given.
"""

from __future__ import annotations

import glob
import shlex
from pathlib import Path

from harness.errors import HarnessError

PACKAGE_DIR = Path(__file__).resolve().parent
USER_RUNS_INI = PACKAGE_DIR / "user-runs.ini"


def scenarios_dir() -> Path:
    """The scenario suites as installed.

    A regular install maps the repository's scenarios/ into the package (harness/scenarios);
    a checkout, used as it is or installed in editable mode, has them beside the package.
    """
    for candidate in (PACKAGE_DIR / "scenarios", PACKAGE_DIR.parent / "scenarios"):
        if any(candidate.glob("test_*.py")):
            return candidate
    raise HarnessError(
        f"no scenario suites in {PACKAGE_DIR / 'scenarios'} or {PACKAGE_DIR.parent / 'scenarios'}; "
        "this kubequake install is incomplete: reinstall it (pip install kubequake, or make setup in a checkout)"
    )


def pytest_base_args(*, cwd: Path | None = None) -> list[str]:
    """The options every user run starts with: the shipped settings, the rootdir, the default suites.

    testpaths applies only when no path is given and pytest runs from its rootdir, which is
    exactly `kubequake run -m etcd`; a path given on the command line replaces it. glob.escape:
    pytest expands testpaths as glob patterns.
    """
    root = (cwd or Path.cwd()).resolve()
    return [
        "-c",
        str(USER_RUNS_INI),
        f"--rootdir={root}",
        # conftest.py files above the shipped settings (a checkout's own root conftest) are not
        # the user's: pytest loads none from the directories that contain this one.
        f"--confcutdir={PACKAGE_DIR}",
        "-o",
        f"testpaths={shlex.quote(glob.escape(str(scenarios_dir())))}",
        # harness is imported before pytest starts, so pytest cannot rewrite its asserts; it need not.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]


def report_args(alluredir: Path, *, clean: bool = True) -> list[str]:
    """Allure results where `kubequake report` looks by default.

    JUnit XML is written from these results afterwards (write_junit), not by pytest's
    --junitxml: pytest files every exception in a test body as a <failure>, while an
    INCONCLUSIVE scenario or a broken harness must reach CI as an <error>, never as the
    cluster failing.
    """
    args = [f"--alluredir={alluredir}"]
    if clean:
        # Results of the last run only: `kubequake report` carries the trend from the previous report.
        args.append("--clean-alluredir")
    return args


def write_junit(alluredir: Path, junit: Path) -> int:
    """JUnit XML of a run from its Allure results: FAIL a <failure>, INCONCLUSIVE and ERROR an <error>."""
    from harness.report.junit import write_junit as from_results

    return from_results(alluredir, junit)
