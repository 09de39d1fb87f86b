"""Unit tests of harness.providers.process with real short-lived processes (sleep, tail, sh).

Nothing here talks to a cluster: the Supervisor is exercised on its own, including what the
kernel does for it (PR_SET_PDEATHSIG, pid start times) and what survives on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.errors import ClusterError
from harness.providers.process import (
    ComponentState,
    ProcessRecord,
    ProcessSpec,
    Supervisor,
    proc_start_ticks,
    record_alive,
    sweep,
)

pytestmark = pytest.mark.timeout(60)


def eventually(what: str, check: Callable[[], bool], timeout: float = 5.0) -> float:
    __tracebackhide__ = True
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    pytest.fail(f"{what} not reached within {timeout}s")


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


# A shell that records SIGTERM in its log and exits cleanly: proves TERM came before any KILL.
TERM_AWARE = sh('trap "echo got-term; exit 0" TERM; while :; do sleep 0.05; done')
TERM_IGNORING = sh('trap "" TERM; while :; do sleep 0.05; done')


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "run"
    d.mkdir()
    (d / "marker").touch()  # `tail -f` of it is the long-lived process that names the directory
    yield d
    # Whatever a failing test left behind goes here, never beyond this directory.
    sweep(d)


@pytest.fixture
def sup(run_dir: Path) -> Iterator[Supervisor]:
    s = Supervisor(run_dir / "processes.json", die_with_parent=True)
    yield s
    s.stop_all(timeout=1.0)


def spec(run_dir: Path, component: str, argv: list[str], node: str = "n1") -> ProcessSpec:
    # The run directory in argv lets sweep() find the process, as it finds real components.
    return ProcessSpec(node, component, argv, run_dir / node / "logs" / f"{component}.log")


def sleeper(run_dir: Path, component: str = "sleeper", node: str = "n1") -> ProcessSpec:
    return spec(run_dir, component, ["tail", "-f", str(run_dir / "marker")], node)


# --- start and states -------------------------------------------------------------------------


def test_start_records_a_running_process_with_its_kernel_start_time(run_dir: Path, sup: Supervisor) -> None:
    rec = sup.start(sleeper(run_dir))
    assert pid_alive(rec.pid)
    assert rec.start_ticks == proc_start_ticks(rec.pid)
    assert sup.state("n1", "sleeper") is ComponentState.RUNNING
    assert sup.pid("n1", "sleeper") == rec.pid
    saved = json.loads((run_dir / "processes.json").read_text())["processes"]
    assert [(p["node"], p["component"], p["pid"]) for p in saved] == [("n1", "sleeper", rec.pid)]
    assert "--- kubequake start" in (run_dir / "n1" / "logs" / "sleeper.log").read_text()


def test_unknown_component_is_stopped_and_has_no_pid(sup: Supervisor) -> None:
    assert sup.state("n1", "never-started") is ComponentState.STOPPED
    assert sup.pid("n1", "never-started") is None


def test_start_refuses_a_second_live_instance(run_dir: Path, sup: Supervisor) -> None:
    rec = sup.start(sleeper(run_dir))
    with pytest.raises(ClusterError, match=f"already running as pid {rec.pid}"):
        sup.start(sleeper(run_dir))
    assert sup.pid("n1", "sleeper") == rec.pid


def test_start_after_exit_replaces_the_record(run_dir: Path, sup: Supervisor) -> None:
    first = sup.start(sleeper(run_dir))
    sup.kill("n1", "sleeper")
    second = sup.start(sleeper(run_dir))
    assert second.pid != first.pid
    assert sup.state("n1", "sleeper") is ComponentState.RUNNING


def test_a_missing_binary_says_how_to_build_it(run_dir: Path, sup: Supervisor) -> None:
    missing = spec(run_dir, "etcd", [str(run_dir / "bin" / "etcd"), "--version"])
    with pytest.raises(ClusterError, match="kubequake binaries"):
        sup.start(missing)
    assert sup.state("n1", "etcd") is ComponentState.STOPPED


def test_freeze_and_thaw_show_as_frozen_and_running(run_dir: Path, sup: Supervisor) -> None:
    rec = sup.start(sleeper(run_dir))
    assert sup.signal("n1", "sleeper", signal.SIGSTOP)
    eventually("state FROZEN", lambda: sup.state("n1", "sleeper") is ComponentState.FROZEN)
    assert sup.signal("n1", "sleeper", signal.SIGCONT)
    eventually("state RUNNING", lambda: sup.state("n1", "sleeper") is ComponentState.RUNNING)
    assert sup.pid("n1", "sleeper") == rec.pid


def test_a_process_that_exits_on_its_own_is_exited(run_dir: Path, sup: Supervisor) -> None:
    sup.start(spec(run_dir, "short", ["true"]))
    eventually("state EXITED", lambda: sup.state("n1", "short") is ComponentState.EXITED)
    assert sup.pid("n1", "short") is None
    assert not sup.signal("n1", "short", signal.SIGTERM)


# --- stop, kill, stop_all ---------------------------------------------------------------------


def test_stop_sends_sigterm_first(run_dir: Path, sup: Supervisor) -> None:
    rec = sup.start(spec(run_dir, "polite", TERM_AWARE))
    time.sleep(0.2)  # let the shell install its trap
    sup.stop("n1", "polite", timeout=5.0)
    assert sup.state("n1", "polite") is ComponentState.EXITED
    assert not pid_alive(rec.pid)
    assert "got-term" in Path(rec.log_path).read_text()


def test_stop_escalates_to_sigkill_after_the_timeout(run_dir: Path, sup: Supervisor) -> None:
    rec = sup.start(spec(run_dir, "stubborn", TERM_IGNORING))
    time.sleep(0.2)
    start = time.monotonic()
    sup.stop("n1", "stubborn", timeout=0.5)
    took = time.monotonic() - start
    assert not pid_alive(rec.pid)
    assert took >= 0.5, f"stop returned after {took:.2f}s, before its SIGTERM grace period"


def test_stop_continues_a_frozen_process_so_it_can_handle_sigterm(run_dir: Path, sup: Supervisor) -> None:
    rec = sup.start(spec(run_dir, "polite", TERM_AWARE))
    time.sleep(0.2)
    sup.signal("n1", "polite", signal.SIGSTOP)
    eventually("frozen", lambda: sup.state("n1", "polite") is ComponentState.FROZEN)
    sup.stop("n1", "polite", timeout=5.0)
    assert not pid_alive(rec.pid)
    assert "got-term" in Path(rec.log_path).read_text()


def test_kill_ends_even_a_frozen_process_at_once(run_dir: Path, sup: Supervisor) -> None:
    rec = sup.start(spec(run_dir, "stubborn", TERM_IGNORING))
    sup.signal("n1", "stubborn", signal.SIGSTOP)
    sup.kill("n1", "stubborn", timeout=2.0)
    assert sup.state("n1", "stubborn") is ComponentState.EXITED
    assert not pid_alive(rec.pid)


def test_stop_and_kill_of_something_not_running_are_no_ops(sup: Supervisor) -> None:
    sup.stop("n1", "ghost")
    sup.kill("n1", "ghost")
    assert not sup.signal("n1", "ghost", signal.SIGTERM)


def test_stop_all_stops_groups_in_order_each_before_the_next(run_dir: Path, sup: Supervisor) -> None:
    events = run_dir / "events"
    for name in ("db", "api", "ctl", "extra"):
        # Each records when it got SIGTERM and when it finished; the pause makes overlap visible.
        script = f'trap "echo {name} start >> {events}; sleep 0.3; echo {name} end >> {events}; exit 0" TERM; '
        sup.start(spec(run_dir, name, sh(script + "while :; do sleep 0.05; done")))
    time.sleep(0.3)
    sup.stop_all(timeout=5.0, order=["ctl", "api", "db"])
    lines = events.read_text().split("\n")
    # Components not named in `order` go last.
    assert [line for line in lines if line] == [
        "ctl start",
        "ctl end",
        "api start",
        "api end",
        "db start",
        "db end",
        "extra start",
        "extra end",
    ]
    assert sup.records() == []
    assert json.loads((run_dir / "processes.json").read_text()) == {"processes": []}


def test_stop_all_kills_what_ignores_sigterm(run_dir: Path, sup: Supervisor) -> None:
    recs = [sup.start(spec(run_dir, f"stubborn{i}", TERM_IGNORING)) for i in range(3)]
    time.sleep(0.2)
    start = time.monotonic()
    sup.stop_all(timeout=0.5)
    assert time.monotonic() - start < 4.0, "one shared grace period, not one per process"
    assert not any(pid_alive(r.pid) for r in recs)


def test_stop_all_without_grace_kills_everything_at_once(run_dir: Path, sup: Supervisor) -> None:
    recs = [sup.start(spec(run_dir, f"stubborn{i}", TERM_IGNORING)) for i in range(4)]
    recs.append(sup.start(spec(run_dir, "polite", TERM_AWARE)))
    time.sleep(0.2)
    start = time.monotonic()
    sup.stop_all(timeout=0.0)
    took = time.monotonic() - start
    assert not any(pid_alive(r.pid) for r in recs)
    assert took < 2.0, f"stop_all(timeout=0) took {took:.2f}s for five processes"


def test_stop_all_after_the_run_directory_is_gone_is_safe(run_dir: Path, sup: Supervisor) -> None:
    sup.start(sleeper(run_dir))
    sup.stop_all(timeout=1.0)
    for p in sorted(run_dir.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    run_dir.rmdir()
    sup.stop_all(timeout=1.0)  # destroy twice: must neither raise nor recreate the directory
    assert not run_dir.exists()


# --- persistence, reattach, pid reuse ---------------------------------------------------------


def test_a_second_supervisor_reattaches_from_the_state_file(run_dir: Path, sup: Supervisor) -> None:
    rec = sup.start(sleeper(run_dir))
    other = Supervisor(run_dir / "processes.json", die_with_parent=False)
    assert other.records() == [rec]
    assert other.state("n1", "sleeper") is ComponentState.RUNNING
    assert other.pid("n1", "sleeper") == rec.pid
    assert other.signal("n1", "sleeper", signal.SIGSTOP)
    eventually("the first sees FROZEN", lambda: sup.state("n1", "sleeper") is ComponentState.FROZEN)
    other.stop_all(timeout=1.0)
    assert not pid_alive(rec.pid)
    # The state file is shared: what one supervisor stopped on purpose, the other sees as stopped.
    assert sup.state("n1", "sleeper") is ComponentState.STOPPED


def test_a_record_whose_pid_was_reused_is_not_alive_and_is_never_signalled(run_dir: Path) -> None:
    # An unrelated process that happens to hold the pid a crashed run recorded.
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        ticks = proc_start_ticks(bystander.pid)
        assert ticks is not None
        rec = ProcessRecord("n1", "etcd", bystander.pid, ticks + 1, ["etcd"], str(run_dir / "etcd.log"))
        assert not record_alive(rec)
        assert record_alive(ProcessRecord("n1", "etcd", bystander.pid, ticks, ["etcd"], rec.log_path))
        state = {"processes": [rec.__dict__]}
        (run_dir / "processes.json").write_text(json.dumps(state))
        stale = Supervisor(run_dir / "processes.json", die_with_parent=False)
        assert stale.state("n1", "etcd") is ComponentState.EXITED
        assert stale.pid("n1", "etcd") is None
        assert not stale.signal("n1", "etcd", signal.SIGKILL)
        stale.stop("n1", "etcd")
        stale.kill("n1", "etcd")
        stale.stop_all(timeout=0.5)
        assert bystander.poll() is None, "the bystander holding a reused pid was killed"
    finally:
        bystander.kill()
        bystander.wait(5)


def test_a_record_of_a_pid_that_no_longer_exists_is_exited(run_dir: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait(5)
    rec = ProcessRecord("n1", "etcd", gone.pid, 1, ["true"], str(run_dir / "x.log"))
    assert not record_alive(rec)


def test_unreadable_or_malformed_state_is_ignored(run_dir: Path) -> None:
    state = run_dir / "processes.json"
    state.write_text("{not json")
    assert Supervisor(state, die_with_parent=False).records() == []
    state.write_text(json.dumps({"processes": [{"node": "n1", "pid": 1}]}))
    assert Supervisor(state, die_with_parent=False).records() == []


# --- dying with the owner ---------------------------------------------------------------------

OWNER = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from harness.providers.process import ProcessSpec, Supervisor
    run = Path(sys.argv[1])
    sup = Supervisor(run / "processes.json", die_with_parent=sys.argv[2] != "detached")
    spec = ProcessSpec("n1", "sleeper", ["tail", "-f", str(run / "marker")], run / "sleeper.log")
    if sys.argv[2] == "owned-from-thread":
        box = []
        worker = threading.Thread(target=lambda: box.append(sup.start(spec)))
        worker.start()
        worker.join(10)
        rec = box[0]
    else:
        rec = sup.start(spec)
    print(rec.pid, flush=True)
    time.sleep(60)
    """
)


def start_owner(run_dir: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(run_dir), mode], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line.strip().isdigit(), f"owner printed {line!r}"
    return owner, int(line)


def test_owned_children_die_when_their_owner_is_sigkilled(run_dir: Path) -> None:
    owner, child = start_owner(run_dir, "owned")
    assert pid_alive(child)
    owner.kill()
    owner.wait(5)
    eventually("the child dies with its owner (PR_SET_PDEATHSIG)", lambda: not pid_alive(child), timeout=5)


def test_detached_children_outlive_their_owner(run_dir: Path) -> None:
    owner, child = start_owner(run_dir, "detached")
    try:
        owner.kill()
        owner.wait(5)
        time.sleep(0.5)
        assert pid_alive(child)
        # ...and a later supervisor finds and stops it from the state file alone.
        Supervisor(run_dir / "processes.json", die_with_parent=False).stop_all(timeout=1.0)
        assert not pid_alive(child)
    finally:
        sweep(run_dir)


def test_a_child_started_from_a_short_lived_thread_outlives_that_thread(run_dir: Path, sup: Supervisor) -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* exits: a component restarted from a timer
    # or a worker thread must not die when that thread returns.
    started: list[ProcessRecord] = []
    worker = threading.Thread(target=lambda: started.append(sup.start(sleeper(run_dir))))
    worker.start()
    worker.join(10)
    assert started, "start() from a thread did not return"
    time.sleep(0.5)
    assert pid_alive(started[0].pid)
    assert sup.state("n1", "sleeper") is ComponentState.RUNNING


def test_a_child_started_from_a_thread_still_dies_with_its_owner(run_dir: Path) -> None:
    owner, child = start_owner(run_dir, "owned-from-thread")
    time.sleep(0.3)
    assert pid_alive(child), "the child died when the thread that started it returned"
    owner.kill()
    owner.wait(5)
    eventually("the child dies with its owner", lambda: not pid_alive(child), timeout=5)


# --- sweep ------------------------------------------------------------------------------------


def test_sweep_kills_exactly_the_processes_that_name_the_directory(tmp_path: Path) -> None:
    run = tmp_path / "lc-run"
    sibling = tmp_path / "lc-run2"  # a name that merely starts with the same characters
    for d in (run, sibling):
        d.mkdir()
        (d / "f").touch()
    inside = subprocess.Popen(["tail", "-f", str(run / "f")])
    exact = subprocess.Popen(["tail", "-f", "/dev/null", str(run)])
    frozen = subprocess.Popen(["tail", "-f", str(run / "f")])
    other = subprocess.Popen(["tail", "-f", str(sibling / "f")])
    procs = [inside, exact, frozen, other]
    try:
        for p in procs:
            # Popen returns once exec has begun; the new command line shows a moment later.
            eventually(f"{p.args} visible in /proc", lambda p=p: b"tail" in Path(f"/proc/{p.pid}/cmdline").read_bytes())
        os.kill(frozen.pid, signal.SIGSTOP)
        left = sweep(run, timeout=5.0)
        assert left == []
        for p in (inside, exact, frozen):
            try:
                rc = p.wait(5)
            except subprocess.TimeoutExpired:
                status = Path(f"/proc/{p.pid}/status").read_text().splitlines()[:3]
                cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
                pytest.fail(f"{p.args} (pid {p.pid}) survived sweep: {status} cmdline={cmdline!r}")
            assert rc == -signal.SIGKILL
        assert other.poll() is None, "a process naming a different directory was killed"
        assert pid_alive(os.getpid())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(5)


def test_sweep_spares_its_own_ancestors(tmp_path: Path) -> None:
    run = tmp_path / "lc-run"
    run.mkdir()
    # A shell naming the run directory that runs sweep() as its child, as `sh -c "kubequake down; ls DIR"`.
    code = f"from pathlib import Path; from harness.providers.process import sweep; print(sweep(Path({str(run)!r})))"
    script = f'{sys.executable} -c "{code}"; echo survived {run}'
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert "survived" in out.stdout
