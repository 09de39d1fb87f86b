"""Session records and the provider registry: reading what runs left, and the choices around it.

Pure logic: records are written and read in a temporary run root; "dead" processes are real ones
that have exited, "alive" is this test process. No cluster is involved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness import config
from harness.errors import ClusterError, ConfigError
from harness.faults import heal
from harness.providers import registry, sessions
from harness.providers.sessions import SessionRecord


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def record(tmp_path: Path, *, created: bool = True, teardown: bool = True, name: str = "c1") -> SessionRecord:
    cfg = config.build({"name": name, "run_root": str(tmp_path)})
    return sessions.new_record(
        provider="local",
        cluster=name,
        run_dir=cfg.run_dir,
        created=created,
        teardown=teardown,
        options=registry.ProviderOptions("local", cfg).to_record(),
        command=["/venv/bin/kubequake", "run", "-k", "partition"],
    )


def test_a_record_round_trips_and_names_its_command_as_typed(tmp_path: Path) -> None:
    written = sessions.write(record(tmp_path), tmp_path)
    assert Path(written.path).parent == tmp_path / ".sessions"
    (back,) = sessions.read_all(tmp_path)
    assert back == written
    assert back.command_line == "kubequake run -k partition"
    assert back.alive(), "this process wrote it and still runs"
    options = registry.ProviderOptions.from_record(back.options)
    assert options.provider == "local" and options.config.run_dir == tmp_path / "c1"
    sessions.remove(back)
    assert sessions.read_all(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "orig", "shown"),
    [
        (["/v/bin/kubequake", "run", "-x"], ["/v/bin/python3", "/v/bin/kubequake", "run", "-x"], "kubequake run -x"),
        (["/r/harness/cli.py", "heal"], ["/v/bin/python3", "-m", "harness.cli", "heal"], "python -m harness.cli heal"),
        (["/v/lib/pytest/__main__.py", "-q"], ["python3", "-m", "pytest", "-q"], "python -m pytest -q"),
        (["-c"], ["python3", "-c", "..."], "python -c"),
    ],
)
def test_the_command_is_recorded_as_it_was_typed(argv: list[str], orig: list[str], shown: str) -> None:
    assert " ".join(sessions.describe_command(argv, orig)) == shown


def test_a_record_of_an_exited_or_reused_pid_is_not_alive(tmp_path: Path) -> None:
    rec = record(tmp_path)
    assert not replace(rec, pid=dead_pid()).alive()
    # Same pid, another start time: the pid was reused by another process.
    assert not replace(rec, pid_start=rec.pid_start + 1).alive()


def test_unreadable_files_are_skipped_not_fatal(tmp_path: Path) -> None:
    d = sessions.sessions_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "cut.json").write_text('{"provider": "lo')
    (d / "list.json").write_text("[1, 2]")
    (d / "fields.json").write_text(json.dumps({"provider": "local"}))
    good = sessions.write(record(tmp_path), tmp_path)
    assert [r.path for r in sessions.read_all(tmp_path)] == [good.path]


def test_records_are_matched_to_their_cluster(tmp_path: Path) -> None:
    a = sessions.write(record(tmp_path, name="a"), tmp_path)
    sessions.write(record(tmp_path, name="b"), tmp_path)
    found = sessions.for_cluster(sessions.read_all(tmp_path), "local", tmp_path / "a")
    assert [r.path for r in found] == [a.path]
    assert sessions.for_cluster(sessions.read_all(tmp_path), "existing", tmp_path / "a") == []


def test_plain_heal_leaves_clusters_whose_sessions_still_run(tmp_path: Path) -> None:
    sessions.write(record(tmp_path), tmp_path)  # this process: alive
    assert heal.heal_leftovers(tmp_path) == []
    assert len(sessions.read_all(tmp_path)) == 1


def test_plain_heal_forgets_an_attached_session_whose_cluster_is_gone(tmp_path: Path) -> None:
    rec = sessions.write(replace(record(tmp_path, created=False, teardown=False), pid=dead_pid()), tmp_path)
    (result,) = heal.heal_leftovers(tmp_path)
    assert result.missing and result.left_by == [rec] and result.ok
    assert sessions.read_all(tmp_path) == []
    assert not (tmp_path / "c1").exists(), "healing created the run directory of a cluster that is gone"


# --- the registry ----------------------------------------------------------------------------------


def test_every_provider_is_one_entry_with_an_importable_class() -> None:
    assert registry.names() == ["local", "existing", "vagrant"]
    for name in registry.names():
        assert registry.provider_class(name).name == name


@pytest.mark.parametrize(
    ("provider", "given", "problem"),
    [
        ("existing", [], "--provider existing needs --inventory FILE"),
        ("local", ["inventory"], "--inventory and --allow-disruptive apply to --provider existing only"),
        ("local", ["allow_disruptive"], "--inventory and --allow-disruptive apply to --provider existing only"),
        ("existing", ["inventory", "topology"], "--topology applies to --provider vagrant only"),
        ("existing", ["inventory", "allow_disruptive"], None),
        ("vagrant", ["topology"], None),
    ],
)
def test_provider_options_are_checked_against_the_registry(
    provider: str, given: list[str], problem: str | None
) -> None:
    found = registry.option_problem(provider, given)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_an_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="choose one of local, existing, vagrant"):
        registry.entry("cloud")


def write_state(cfg: config.ClusterConfig, **values: object) -> None:
    cfg.run_dir.mkdir(parents=True)
    recorded = replace(cfg, **values)
    (cfg.run_dir / "cluster.json").write_text(json.dumps({"config": recorded.to_dict()}))


def test_the_recorded_settings_of_a_cluster_win_unless_the_request_contradicts_them(tmp_path: Path) -> None:
    asked = config.build({"name": "c", "run_root": str(tmp_path)})
    assert registry.local_config(asked) == asked, "nothing recorded: the request as it is"
    write_state(asked, control_planes=5, address_block=9)
    ran = registry.local_config(asked)
    assert (ran.control_planes, ran.address_block, ran.run_dir) == (5, 9, asked.run_dir)
    other = config.build({"name": "c", "run_root": str(tmp_path), "control_planes": 1})
    assert registry.local_config(other) == other, "an explicit other value is the request's to make"


def test_an_unreadable_cluster_state_says_how_to_get_out(tmp_path: Path) -> None:
    asked = config.build({"name": "c", "run_root": str(tmp_path)})
    asked.run_dir.mkdir(parents=True)
    (asked.run_dir / "cluster.json").write_text("{")
    with pytest.raises(ClusterError, match="kubequake down --set name=c"):
        registry.local_config(asked)


def test_options_of_an_existing_cluster_record_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = registry.ProviderOptions("existing", inventory=Path("inv.toml"), allow_disruptive=True).to_record()
    assert data["inventory"] == str(tmp_path / "inv.toml")
    back = registry.ProviderOptions.from_record(data)
    assert back.inventory == tmp_path / "inv.toml" and back.allow_disruptive is True
    with pytest.raises(ConfigError, match="unreadable"):
        registry.ProviderOptions.from_record({"config": {}})
