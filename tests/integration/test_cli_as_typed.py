"""The command line as users type it: the `kubequake` console script in a subprocess, real clusters.

- `kubequake run -m rollout` runs the installed scenario suites, not this project's tests, and
  never this project's test settings (pyproject's addopts name another cluster).
- `kubequake run` then `kubequake report` works: results land in reports/ of the current directory.
- `kubequake run` uses the cluster `kubequake up` started and leaves it running.
- `kubequake run -k partition` killed with SIGKILL while the partition is in force, then plain
  `kubequake heal`: no DROP/REJECT rule of the cluster is left, and no process of a cluster the
  run had brought up; a cluster `up` started keeps running, healed.
- A regular install into a fresh venv outside the checkout runs `kubequake run -m rollout`.

Each test gets its own cluster name and address block (from the session's --kq-set name and
address_block: `<name>-cliN` on block +N) and its own run root, so plain `kubequake heal` sees only
what the test left, and nothing here meets another test's cluster. The current directory of every
command is a fresh temporary directory, as a user's project would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.providers.netfilter import chain_name
from harness.pytest_plugin import BASE_CONFIG

pytestmark = pytest.mark.timeout(1500)

REPO = Path(__file__).resolve().parents[2]
KUBEQUAKE = Path(sys.executable).parent / "kubequake"
RUN_TIMEOUT_S = 900
CLI_TIMEOUT_S = 240
# A killed run's processes die with it (parent-death signal); the machine's PID 1 reaps them late.
GONE_WITHIN_S = 10.0


@dataclass(frozen=True)
class Slot:
    """One test's cluster: name, loopback block and a run root of its own (short: HAProxy's socket path)."""

    name: str
    block: int
    run_root: Path

    @property
    def sets(self) -> list[str]:
        return ["--set", f"name={self.name}", "--set", f"address_block={self.block}"]

    @property
    def run_dir(self) -> Path:
        return self.run_root / self.name

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env["KUBEQUAKE_RUN_ROOT"] = str(self.run_root)
        return env


def make_slot(config: pytest.Config, index: int) -> Slot:
    base = config.stash[BASE_CONFIG]
    return Slot(f"{base.name}-cli{index}", base.address_block + index, Path(tempfile.mkdtemp(prefix="kq-")))


def kq(
    slot: Slot, *args: str, cwd: Path, timeout: float = CLI_TIMEOUT_S, exe: Path = KUBEQUAKE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *args], cwd=cwd, env=slot.env, capture_output=True, text=True, timeout=timeout, check=False
    )


def release(slot: Slot) -> None:
    """Whatever a test left of its cluster goes: processes, rules, cgroups, run root."""
    subprocess.run(
        [str(KUBEQUAKE), "down", *slot.sets],
        env=slot.env,
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
        cwd=slot.run_root,
    )
    shutil.rmtree(slot.run_root, ignore_errors=True)


@contextlib.contextmanager
def own_slot(request: pytest.FixtureRequest, index: int) -> Iterator[Slot]:
    s = make_slot(request.config, index)
    try:
        yield s
    finally:
        release(s)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-4000:]}"


def junit_cases(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")]


def collected(slot: Slot, cwd: Path, *selection: str, exe: Path = KUBEQUAKE) -> list[str]:
    """The node ids `kubequake run` selects, by the same command with --collect-only."""
    reports = ["--alluredir", str(cwd / "co-results"), "--junit", str(cwd / "co-junit.xml")]
    proc = kq(slot, "run", *slot.sets, *reports, "--co", "-q", *selection, cwd=cwd, exe=exe)
    assert proc.returncode == 0, output(proc)
    return [line for line in proc.stdout.splitlines() if "::" in line]


def cluster_rules(slot: Slot) -> list[str]:
    """iptables rules (filter and nat) in the cluster's chain or naming its addresses with DROP/REJECT."""
    found = []
    chain = chain_name(slot.name)
    prefix = f"127.0.{slot.block}."
    for table in ("filter", "nat"):
        res = subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        for line in res.stdout.splitlines():
            dropping = ("-j DROP" in line or "-j REJECT" in line) and prefix in line
            if chain in line.split() or dropping:
                found.append(f"{table}: {line}")
    return found


def live_processes(marker: str) -> list[str]:
    """Processes (not zombies) whose command line names `marker`: the run directory of a cluster."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat[stat.rfind(")") + 2 :].split()[0]
        if marker in cmdline and state not in ("Z", "X"):
            found.append(f"{entry.name} [{state}] {cmdline[:160]}")
    return found


def wait_until_gone(marker: str) -> list[str]:
    deadline = time.monotonic() + GONE_WITHIN_S
    left = live_processes(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = live_processes(marker)
    return left


def session_records(slot: Slot) -> list[Path]:
    return sorted((slot.run_root / ".sessions").glob("*.json"))


# --- run selects the installed suites; report right after ---------------------------------------


@dataclass(frozen=True)
class RolloutRun:
    slot: Slot
    cwd: Path
    proc: subprocess.CompletedProcess[str]
    expected: list[str]


@pytest.fixture(scope="module")
def rollout_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RolloutRun]:
    s = make_slot(request.config, 1)
    cwd = tmp_path_factory.mktemp("user-project")
    try:
        expected = collected(s, cwd, "-m", "rollout")
        proc = kq(s, "run", *s.sets, "-m", "rollout", cwd=cwd, timeout=RUN_TIMEOUT_S)
        yield RolloutRun(s, cwd, proc, expected)
    finally:
        release(s)


def test_run_with_a_marker_runs_the_installed_scenarios_not_the_project_tests(rollout_run: RolloutRun) -> None:
    r = rollout_run
    assert r.proc.returncode == 0, output(r.proc)
    assert r.expected, "`kubequake run --co -m rollout` selected nothing"
    assert not [n for n in r.expected if n.startswith("tests/")], r.expected
    assert all("test_rollout" in n for n in r.expected), r.expected
    cases = junit_cases(r.cwd / "reports" / "junit.xml")
    assert len(cases) == len(r.expected), (cases, r.expected)
    assert all("rollout" in c for c in cases), cases
    # The run brought this test's cluster up and tore it down, leaving nothing.
    assert not r.slot.run_dir.exists(), "the run left its cluster's run directory behind"
    assert live_processes(str(r.slot.run_dir)) == []
    assert session_records(r.slot) == []


def test_report_works_right_after_run(rollout_run: RolloutRun) -> None:
    r = rollout_run
    results = r.cwd / "reports" / "allure-results"
    assert len(list(results.glob("*-result.json"))) == len(r.expected), output(r.proc)
    assert "kubequake report" in r.proc.stdout, output(r.proc)
    rep = kq(r.slot, "report", cwd=r.cwd, timeout=300)
    assert rep.returncode == 0, output(rep)
    assert (r.cwd / "reports" / "allure-report" / "index.html").is_file(), output(rep)
    assert f"{len(r.expected)} tests" in rep.stdout, output(rep)


# --- run on the cluster `up` started ---------------------------------------------------------------


def test_run_attaches_to_the_cluster_up_started_and_leaves_it_running(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with own_slot(request, 2) as slot:
        run_on_the_up_cluster(slot, tmp_path)


def run_on_the_up_cluster(slot: Slot, tmp_path: Path) -> None:
    up = kq(slot, "up", *slot.sets, "--set", "workers=1", cwd=tmp_path)
    assert up.returncode == 0, output(up)
    # As a user types it after `up --set name=...`: the name is enough, the rest is the cluster's own.
    run = kq(
        slot, "run", "--set", f"name={slot.name}", "-m", "rollout", "-k", "history", cwd=tmp_path, timeout=RUN_TIMEOUT_S
    )
    assert run.returncode == 0, output(run)
    assert len(junit_cases(tmp_path / "reports" / "junit.xml")) == 1
    st = kq(slot, "status", "--set", f"name={slot.name}", "--json", cwd=tmp_path)
    data = json.loads(st.stdout)
    assert data["running"] is True and data["healthy"] is True, output(st)
    assert session_records(slot) == [], "the run did not let go of the cluster"


# --- SIGKILL mid-partition, then heal ----------------------------------------------------------------


def start_run_and_kill_it_mid_partition(slot: Slot, cwd: Path, sets: list[str]) -> str:
    """`kubequake run -k partition`, SIGKILLed once the journal says the partition is in force."""
    journal = slot.run_dir / "faults.jsonl"
    log = cwd / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(KUBEQUAKE), "run", *sets, "-k", "partition"],
            cwd=cwd,
            env=slot.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            text = journal.read_text() if journal.is_file() else ""
            applied = [json.loads(line) for line in text.splitlines() if '"applied"' in line]
            if any(rec["kind"] == "partition" and rec["status"] == "applied" for rec in applied):
                break
            assert proc.poll() is None, "the run ended before its partition was in force:\n" + log.read_text()[-4000:]
            assert time.monotonic() < deadline, "no partition in force within 300s:\n" + log.read_text()[-4000:]
            time.sleep(0.2)
        rules = [r for r in cluster_rules(slot) if "DROP" in r or "REJECT" in r]
        assert rules, "the partition is journaled but no DROP rule is installed"
    finally:
        # The run alone, as `kill -9 PID` does: what it started must go with it by itself.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return log.read_text()


def test_heal_after_sigkill_mid_partition_tears_down_the_cluster_the_run_brought_up(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with own_slot(request, 3) as slot:
        kill_owned_run_then_heal(slot, tmp_path)


def kill_owned_run_then_heal(slot: Slot, tmp_path: Path) -> None:
    start_run_and_kill_it_mid_partition(slot, tmp_path, slot.sets)
    assert len(session_records(slot)) >= 1, "the run recorded no session"
    heal = kq(slot, "heal", cwd=tmp_path)
    assert heal.returncode == 0, output(heal)
    assert f"cluster {slot.name!r} (local): left by `kubequake run" in heal.stdout, output(heal)
    assert "removed with the cluster: partition" in heal.stdout, output(heal)
    assert f"torn down: cluster {slot.name!r}" in heal.stdout, output(heal)
    assert cluster_rules(slot) == []
    assert wait_until_gone(str(slot.run_dir)) == []
    assert not slot.run_dir.exists()
    assert session_records(slot) == []
    again = kq(slot, "heal", cwd=tmp_path)
    assert again.returncode == 0 and "nothing to heal" in again.stdout, output(again)


def test_heal_after_sigkill_mid_partition_leaves_the_up_cluster_running_healed(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with own_slot(request, 4) as slot:
        kill_attached_run_then_heal(slot, tmp_path)


def kill_attached_run_then_heal(slot: Slot, tmp_path: Path) -> None:
    up = kq(slot, "up", *slot.sets, cwd=tmp_path)
    assert up.returncode == 0, output(up)
    start_run_and_kill_it_mid_partition(slot, tmp_path, ["--set", f"name={slot.name}"])
    heal = kq(slot, "heal", cwd=tmp_path, timeout=300)
    assert heal.returncode == 0, output(heal)
    assert "which had attached to it" in heal.stdout and "healed: partition" in heal.stdout, output(heal)
    assert "torn down" not in heal.stdout, output(heal)
    assert [r for r in cluster_rules(slot) if "DROP" in r or "REJECT" in r] == []
    assert session_records(slot) == []
    # The run's own processes (its Locust load) went with it; the cluster's keep running.
    assert [p for p in live_processes(str(slot.run_dir)) if "locust" in p] == []
    deadline = time.monotonic() + 120
    while True:
        st = kq(slot, "status", "--set", f"name={slot.name}", "--json", cwd=tmp_path)
        data = json.loads(st.stdout)
        if data.get("healthy"):
            break
        assert time.monotonic() < deadline, "the healed cluster did not return to healthy:\n" + output(st)
        time.sleep(2)
    assert data["running"] is True


# --- an install outside the checkout -----------------------------------------------------------------

# Build and editor leftovers that a copy of the checkout does not need.
COPY_IGNORE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "reports",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "*.egg-info",
    "node_modules",
    "build",
)


def test_a_regular_install_in_a_fresh_venv_runs_the_scenarios(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with own_slot(request, 5) as slot:
        install_and_run(slot, tmp_path)


def install_and_run(slot: Slot, tmp_path: Path) -> None:
    source, venv, work = tmp_path / "src", tmp_path / "venv", tmp_path / "work"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)
    work.mkdir()
    base_python = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    env = {k: v for k, v in slot.env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    made = subprocess.run([base_python, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(source)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    python = venv / "bin" / "python"
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, harness.suites, harness.fixtures.cluster\n"
            "print(harness.suites.scenarios_dir())\n"
            "print(importlib.util.find_spec('fixtures'))",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    suites_dir, fixtures_spec = probe.stdout.splitlines()
    assert Path(suites_dir).is_relative_to(venv), f"scenarios from {suites_dir}, not from the install"
    assert fixtures_spec == "None", "the install put a top-level `fixtures` package on the path"
    exe = venv / "bin" / "kubequake"
    expected = collected(slot, work, "-m", "rollout", exe=exe)
    assert expected and all("test_rollout" in n for n in expected), expected
    run = subprocess.run(
        [str(exe), "run", *slot.sets, "-m", "rollout"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert run.returncode == 0, output(run)
    assert len(junit_cases(work / "reports" / "junit.xml")) == len(expected)
    assert not slot.run_dir.exists() and session_records(slot) == []
