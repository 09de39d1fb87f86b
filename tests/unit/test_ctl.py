"""Unit tests of `kubequake ctl`: request checking and the exit codes of its error paths, no cluster running."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.ctl import ACTIONS, COMPONENT_ACTIONS, NODE_ACTIONS, build_request, parse_peers
from harness.errors import ConfigError
from harness.providers.base import Component


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI reads ./kubequake.toml when no --config is given; never let the caller's one leak in.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def run_root(tmp_path: Path) -> Path:
    """A run root holding a run directory for `kqctl-unit` and no process: attachable, nothing runs."""
    root = tmp_path / "runs"
    (root / "kqctl-unit").mkdir(parents=True)
    return root


def ctl(capsys: pytest.CaptureFixture[str], *args: str, root: Path | None = None) -> tuple[int, str, str]:
    sets = ["--set", "name=kqctl-unit", "--set", "address_block=61"]
    if root is not None:
        sets += ["--set", f"run_root={root}"]
    rc = main(["ctl", *sets, *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


# --- build_request -----------------------------------------------------------------------------


def test_actions_are_split_into_component_and_node_actions() -> None:
    assert set(COMPONENT_ACTIONS).isdisjoint(NODE_ACTIONS)
    assert set(ACTIONS) == set(COMPONENT_ACTIONS) | set(NODE_ACTIONS)


@pytest.mark.parametrize("action", COMPONENT_ACTIONS)
def test_component_actions_take_a_component(action: str) -> None:
    req = build_request("cp1", action, "kube-scheduler")
    assert (req.node, req.action, req.component) == ("cp1", action, Component.SCHEDULER)
    assert req.target == "cp1/kube-scheduler"
    with pytest.raises(ConfigError, match=rf"{action} needs a component: `kubequake ctl cp1 {action} COMPONENT`"):
        build_request("cp1", action)


@pytest.mark.parametrize("action", NODE_ACTIONS)
def test_node_actions_refuse_a_component(action: str) -> None:
    with pytest.raises(ConfigError, match=rf"{action} acts on the whole node and takes no component: drop 'etcd'"):
        build_request("cp1", action, "etcd", peers="127.0.61.12" if action == "partition" else None)


def test_timeouts_default_per_action_and_can_be_set() -> None:
    assert build_request("cp1", "start", "etcd").timeout == 90.0
    assert build_request("cp1", "stop", "etcd").timeout == 10.0
    assert build_request("cp1", "power-on").timeout == 90.0
    assert build_request("cp1", "kill", "etcd").timeout is None
    assert build_request("cp1", "start", "etcd", timeout=5).timeout == 5
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"--timeout .*: give a number of seconds above 0"):
            build_request("cp1", "start", "etcd", timeout=bad)


def test_unknown_component_and_action_are_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown component 'kube-schedular'; choose one of etcd, kube-apiserver"):
        build_request("cp1", "kill", "kube-schedular")
    with pytest.raises(ConfigError, match=r"unknown action 'reboot'; choose one of start, stop"):
        build_request("cp1", "reboot")
    with pytest.raises(ConfigError, match="empty node name"):
        build_request(" ", "power-on")


@pytest.mark.parametrize(
    ("action", "component", "options", "message"),
    [
        ("kill", "etcd", {"blackhole": True}, r"--blackhole does not apply to kill \(only to power-off\)"),
        ("power-on", None, {"one_way": True}, r"--one-way does not apply to power-on \(only to partition\)"),
        ("heal-partition", None, {"one_way": True}, "--one-way does not apply to heal-partition"),
        ("freeze", "etcd", {"timeout": 3.0}, r"--timeout does not apply to freeze \(only to start, stop, power-on\)"),
        ("power-off", None, {"peers": "127.0.61.12"}, r"--peers does not apply to power-off"),
    ],
)
def test_options_are_refused_where_they_do_not_apply(
    action: str, component: str | None, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_request("cp1", action, component, **options)  # type: ignore[arg-type]


def test_partition_needs_peers_and_heal_may_name_them() -> None:
    with pytest.raises(ConfigError, match=r"partition needs .*`kubequake ctl cp1 partition --peers ADDR\[,ADDR...\]`"):
        build_request("cp1", "partition")
    req = build_request("cp1", "partition", peers="127.0.61.12,127.0.61.13", one_way=True)
    assert req.peers == ("127.0.61.12", "127.0.61.13") and req.one_way
    assert build_request("cp1", "heal-partition").peers is None, "None heals from every other node"
    assert build_request("cp1", "heal-partition", peers="127.0.61.12").peers == ("127.0.61.12",)
    assert build_request("cp1", "power-off", blackhole=True).blackhole


def test_parse_peers_normalises_and_drops_repeats() -> None:
    assert parse_peers(" 127.0.61.12 ,127.0.61.13,127.0.61.12") == ("127.0.61.12", "127.0.61.13")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has an empty address"),
        ("127.0.61.12,", "has an empty address"),
        ("127.0.61.12,,127.0.61.13", "has an empty address"),
        ("cp2", "'cp2' is not an IPv4 address"),
        ("127.0.61.300", "'127.0.61.300' is not an IPv4 address"),
        ("127.0.61.12/32", "is not an IPv4 address"),
        ("::1", "'::1' is not an IPv4 address"),
    ],
)
def test_malformed_peers_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_peers(text)


# --- the command line: exit codes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cp1", "kill"], "kill needs a component"),
        (["cp1", "power-on", "etcd"], "power-on acts on the whole node and takes no component"),
        (["cp1", "kill", "nope"], "unknown component 'nope'"),
        (["cp1", "partition"], "partition needs the addresses"),
        (["cp1", "partition", "--peers", "127.0.61.12,,127.0.61.13"], "has an empty address"),
        (["cp1", "partition", "--peers", "127.0.61.x"], "'127.0.61.x' is not an IPv4 address"),
        (["cp1", "kill", "etcd", "--one-way"], "--one-way does not apply to kill"),
        (["cp1", "start", "etcd", "--timeout", "-1"], "--timeout -1: give a number of seconds above 0"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # Checked before the cluster is attached: no cluster exists and the message is still about the command.
    rc, out, err = ctl(capsys, *args)
    assert rc == 2
    assert out == ""
    assert err.startswith("kubequake ctl: error: ") and message in err
    assert err.count("\n") == 1, err


def test_unknown_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ctl", "--set", "name=kqctl-unit", "cp1", "reboot"])
    assert exc.value.code == 2
    assert "argument ACTION: invalid choice: 'reboot'" in capsys.readouterr().err


def test_missing_cluster_exits_2_and_says_how_to_start_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, err = ctl(capsys, "cp1", "kill", "etcd", root=tmp_path / "empty")
    assert rc == 2 and out == ""
    assert "no cluster 'kqctl-unit'" in err and "start it with `kubequake up --set name=kqctl-unit`" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cp9", "power-on"], "no node 'cp9'; this cluster has lb, cp1, cp2, cp3, workers"),
        (["cp1", "kill", "haproxy"], "cp1 does not run haproxy; it runs etcd, kube-apiserver"),
        (["lb", "running", "kubelet"], "lb does not run kubelet; it runs haproxy"),
        # The KWOK node reports the LB's address: rules on it would silence the LB too.
        (["workers", "power-off", "--blackhole"], "which workers shares with lb"),
        (["workers", "partition", "--peers", "127.0.61.11"], "which workers shares with lb"),
        (["cp1", "partition", "--peers", "127.0.61.11"], "cannot partition a node from its own address 127.0.61.11"),
    ],
)
def test_requests_the_cluster_refuses_exit_2(
    capsys: pytest.CaptureFixture[str], run_root: Path, args: list[str], message: str
) -> None:
    rc, out, err = ctl(capsys, *args, root=run_root)
    assert rc == 2 and out == ""
    assert err.startswith("kubequake ctl: error: ") and message in err, err


@pytest.mark.parametrize("action", ["running", "ready"])
def test_queries_on_a_component_that_never_ran_exit_1(
    capsys: pytest.CaptureFixture[str], run_root: Path, action: str
) -> None:
    rc, out, _ = ctl(capsys, "cp1", action, "kube-scheduler", root=run_root)
    assert rc == 1
    assert out == ("stopped\n" if action == "running" else "cp1/kube-scheduler is stopped\n")
