"""`kubequake run` as typed: how its command line becomes pytest's (no cluster, no pytest run)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from harness import cli, suites


def parse(*argv: str) -> tuple[argparse.Namespace, list[str]]:
    args, rest = cli._parser().parse_known_args(["run", *argv])
    return args, rest


def assembled(*argv: str, cwd: Path = Path("/home/u/project")) -> list[str]:
    args, rest = parse(*argv)
    return cli.run_pytest_args(args, rest, cwd=cwd)


def option_value(argv: list[str], prefix: str) -> str:
    values = [a[len(prefix) :] for a in argv if a.startswith(prefix)]
    assert len(values) == 1, (prefix, argv)
    return values[0]


def test_options_only_leave_the_suites_to_the_shipped_testpaths() -> None:
    argv = assembled("-m", "etcd and not quorum_loss")
    # No path of the user's: pytest runs its testpaths, the installed suites, from the current directory.
    assert argv[-2:] == ["-m", "etcd and not quorum_loss"]
    assert argv[:2] == ["-c", str(suites.USER_RUNS_INI)]
    assert option_value(argv, "--rootdir=") == str(Path("/home/u/project").resolve())
    testpaths = argv[argv.index("-o") + 1]
    assert testpaths.startswith("testpaths=")
    assert shlex.split(testpaths.removeprefix("testpaths=")) == [str(suites.scenarios_dir())]
    assert not any(a.endswith(".py") or a == str(suites.scenarios_dir()) for a in argv)


def test_reports_go_to_the_current_directory_by_default_and_can_be_moved() -> None:
    argv = assembled("-x")
    assert option_value(argv, "--alluredir=") == "reports/allure-results"
    # JUnit is written from the Allure results after the run (an INCONCLUSIVE scenario is an
    # <error> there), not by pytest's --junitxml, which would file it as a <failure>.
    assert not any(a.startswith("--junitxml") for a in argv)
    assert "--clean-alluredir" in argv
    moved = assembled("--alluredir", "out/results", "--junit", "out/j.xml", "-x")
    assert option_value(moved, "--alluredir=") == "out/results"


def test_cluster_settings_become_plugin_options_and_user_arguments_come_last() -> None:
    argv = assembled("--set", "name=kq1", "-k", "partition", "--config", "kq.toml", "--set", "address_block=7")
    assert argv[-2:] == ["-k", "partition"]
    i = argv.index("--kq-config")
    assert argv[i : i + 6] == ["--kq-config", "kq.toml", "--kq-set", "name=kq1", "--kq-set", "address_block=7"]
    # A pytest option the user gives wins over a default it repeats: it comes after every default.
    later = assembled("--clean-alluredir", "-p", "no:warnings")
    assert later[-3:] == ["--clean-alluredir", "-p", "no:warnings"]


def test_paths_are_passed_through_unchanged() -> None:
    argv = assembled("scenarios/test_partition.py::test_isolate_etcd_leader", "-q")
    assert argv[-2:] == ["scenarios/test_partition.py::test_isolate_etcd_leader", "-q"]


def test_a_leading_double_dash_is_dropped() -> None:
    assert assembled("--", "-m", "rollout")[-2:] == ["-m", "rollout"]


@pytest.mark.parametrize("short", ["--co", "--conf", "--se", "--al", "--ju"])
def test_pytest_options_are_never_taken_for_abbreviated_run_options(short: str) -> None:
    args, rest = parse(short)
    assert rest == [short]
    assert args.config is None and args.sets == []


def test_testpaths_survive_awkward_install_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    odd = tmp_path / "my [venv] dir" / "scenarios"
    odd.mkdir(parents=True)
    (odd / "test_x.py").write_text("")
    monkeypatch.setattr(suites, "scenarios_dir", lambda: odd)
    argv = suites.pytest_base_args(cwd=tmp_path)
    value = argv[argv.index("-o") + 1].removeprefix("testpaths=")
    (pattern,) = shlex.split(value)
    # pytest expands testpaths as globs: the brackets must match themselves.
    assert sorted(Path(p) for p in __import__("glob").glob(pattern)) == [odd]


def test_the_shipped_settings_exist_and_are_the_users_not_the_projects() -> None:
    text = suites.USER_RUNS_INI.read_text()
    assert text.lstrip().startswith("#") and "[pytest]" in text
    assert "kq-set" not in text and "testpaths" not in text.split("[pytest]")[1]
