"""Unit tests of harness.config: defaults, addresses, file loading, --set overrides, validation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from harness.config import CONFIG_FILE_NAME, ClusterConfig, build, known_keys, load, parse_set
from harness.errors import ConfigError, HarnessError


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load() picks up ./kubequake.toml when no path is given; never let the caller's one leak in.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def write(tmp_path: Path, text: str, name: str = "cluster.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- defaults and addresses --------------------------------------------------------------------


def test_defaults() -> None:
    cfg = load()
    assert cfg == ClusterConfig()
    assert (cfg.control_planes, cfg.workers) == (3, 3)
    assert (cfg.etcd.heartbeat_ms, cfg.etcd.election_timeout_ms) == (100, 1000)
    le = cfg.leader_election
    assert le.enabled and (le.lease_duration_s, le.renew_deadline_s, le.retry_period_s) == (15, 10, 2)
    lb = cfg.load_balancer
    assert lb.health_checks and (lb.check_interval_ms, lb.fall, lb.rise) == (2000, 3, 2)
    assert (lb.retries, lb.redispatch) == (0, False)
    assert cfg.apiserver.etcd_servers == "local"


def test_addresses_and_names() -> None:
    cfg = build({"control_planes": 5, "address_block": 7})
    assert cfg.lb_address == "127.0.7.10"
    assert [cfg.node_address(i) for i in range(1, 6)] == [f"127.0.7.{10 + i}" for i in range(1, 6)]
    assert cfg.node_names() == ["cp1", "cp2", "cp3", "cp4", "cp5"]
    assert ClusterConfig().lb_address == "127.0.0.10"


def test_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build({"run_root": str(tmp_path), "name": "c1"}).run_dir == tmp_path / "c1"
    monkeypatch.setenv("KUBEQUAKE_RUN_ROOT", str(tmp_path / "env"))
    assert build({}).run_dir == tmp_path / "env" / "kubequake"


def test_known_keys_cover_every_section() -> None:
    keys = known_keys()
    assert keys == sorted(keys)
    for key in ("control_planes", "etcd.heartbeat_ms", "leader_election.enabled", "load_balancer.fall"):
        assert key in keys
    assert "etcd" not in keys and "load_balancer" not in keys


def test_to_dict_round_trips_through_build() -> None:
    cfg = build({"control_planes": 5, "load_balancer.retries": 2})
    flat: dict[str, object] = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    assert build(flat) == cfg


# --- TOML files --------------------------------------------------------------------------------


def test_toml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name = "lab-1"
        control_planes = 5
        workers = 0

        [etcd]
        heartbeat_ms = 50
        election_timeout_ms = 500

        [load_balancer]
        health_checks = false
        retries = 2
        redispatch = true
        """,
    )
    cfg = load(path)
    assert (cfg.name, cfg.control_planes, cfg.workers) == ("lab-1", 5, 0)
    assert (cfg.etcd.heartbeat_ms, cfg.etcd.election_timeout_ms) == (50, 500)
    assert (cfg.load_balancer.health_checks, cfg.load_balancer.retries, cfg.load_balancer.redispatch) == (
        False,
        2,
        True,
    )
    # Keys the file does not set keep their defaults.
    assert cfg.load_balancer.fall == 3 and cfg.leader_election == ClusterConfig().leader_election


def test_config_file_in_cwd_is_used_by_default() -> None:
    Path(CONFIG_FILE_NAME).write_text("control_planes = 5\n")
    assert load().control_planes == 5


def test_overrides_win_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "control_planes = 5\n[load_balancer]\nfall = 4\n")
    cfg = load(path, overrides=parse_set(["control_planes=1", "load_balancer.rise=3"]))
    assert (cfg.control_planes, cfg.load_balancer.fall, cfg.load_balancer.rise) == (1, 4, 3)


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "control_planes = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as exc:
        load(path)
    assert str(path) in str(exc.value)


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="does not exist") as exc:
        load(path)
    assert str(path) in str(exc.value) and "--config" in str(exc.value)


def test_file_type_error_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[load_balancer]\nfall = "three"\n')
    with pytest.raises(ConfigError, match=r"load_balancer\.fall") as exc:
        load(path)
    assert str(path) in str(exc.value) and "'three'" in str(exc.value)


def test_file_unknown_key_names_file_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "[etcdd]\nheartbeat_ms = 50\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'etcdd\.heartbeat_ms'") as exc:
        load(path)
    assert str(path) in str(exc.value) and "did you mean etcd.heartbeat_ms?" in str(exc.value)


def test_config_path_is_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path)


# --- --set parsing -----------------------------------------------------------------------------


def test_parse_set() -> None:
    assert parse_set(["control_planes=5", " load_balancer.health_checks = false ", "name=a=b"]) == {
        "control_planes": "5",
        "load_balancer.health_checks": "false",
        "name": "a=b",
    }
    assert parse_set([]) == {}


@pytest.mark.parametrize("item", ["control_planes", "=5", " =5"])
def test_parse_set_rejects_malformed(item: str) -> None:
    with pytest.raises(ConfigError, match="expected key=value") as exc:
        parse_set([item])
    assert "--set control_planes=5" in str(exc.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("false", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("0", False),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("1", True),
    ],
)
def test_set_bools(raw: str, expected: bool) -> None:
    cfg = load(overrides=parse_set([f"load_balancer.health_checks={raw}", f"load_balancer.redispatch={raw}"]))
    assert cfg.load_balancer.health_checks is expected
    assert cfg.load_balancer.redispatch is expected


def test_set_ints_and_strings() -> None:
    cfg = load(
        overrides=parse_set(
            ["control_planes=5", "etcd.heartbeat_ms=200", "etcd.election_timeout_ms=2000", "name=lab_2", "workers=0"]
        )
    )
    assert (cfg.control_planes, cfg.etcd.heartbeat_ms, cfg.etcd.election_timeout_ms) == (5, 200, 2000)
    assert (cfg.name, cfg.workers) == ("lab_2", 0)
    assert isinstance(cfg.control_planes, int) and isinstance(cfg.name, str)


def test_unknown_key_names_key_and_suggestion() -> None:
    with pytest.raises(ConfigError) as exc:
        load(overrides=parse_set(["fall=2"]))
    msg = str(exc.value)
    assert "unknown setting 'fall'" in msg and "--set" in msg and "did you mean load_balancer.fall?" in msg


def test_unknown_key_without_close_match_lists_known_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'load_balancer\.healthchecks'") as exc:
        load(overrides=parse_set(["load_balancer.healthchecks=false"]))
    assert "known keys:" in str(exc.value) and "load_balancer.health_checks" in str(exc.value)


@pytest.mark.parametrize(
    ("item", "key", "expected"),
    [
        ("control_planes=three", "control_planes", "whole number"),
        ("control_planes=3.5", "control_planes", "whole number"),
        ("etcd.heartbeat_ms=", "etcd.heartbeat_ms", "whole number"),
        ("load_balancer.health_checks=maybe", "load_balancer.health_checks", "true or false"),
        ("leader_election.enabled=2", "leader_election.enabled", "true or false"),
    ],
)
def test_set_type_errors_name_key(item: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as exc:
        load(overrides=parse_set([item]))
    assert str(exc.value).startswith(f"{key} (from --set)")


def test_toml_bool_for_int_rejected(tmp_path: Path) -> None:
    # bool is an int subclass in Python; it must not slip through as 1.
    with pytest.raises(ConfigError, match=r"control_planes .*whole number, got True"):
        load(write(tmp_path, "control_planes = true\n"))


# --- validation --------------------------------------------------------------------------------


def test_election_timeout_below_5x_heartbeat_rejected() -> None:
    with pytest.raises(ConfigError, match=r"etcd\.election_timeout_ms=499 must be at least 5x") as exc:
        build({"etcd.heartbeat_ms": 100, "etcd.election_timeout_ms": 499})
    assert "500" in str(exc.value)
    assert build({"etcd.heartbeat_ms": 100, "etcd.election_timeout_ms": 500}).etcd.election_timeout_ms == 500


@pytest.mark.parametrize("renew", [15, 16])
def test_renew_deadline_not_below_lease_rejected(renew: int) -> None:
    with pytest.raises(ConfigError, match=r"lease_duration_s=15 must exceed leader_election\.renew_deadline_s"):
        build({"leader_election.renew_deadline_s": renew})


def test_retry_period_not_below_renew_deadline_rejected() -> None:
    with pytest.raises(ConfigError, match=r"renew_deadline_s=10 must exceed 1\.2 x leader_election\.retry_period_s=10"):
        build({"leader_election.retry_period_s": 10})


def test_leader_election_timings_ignored_when_disabled() -> None:
    cfg = build({"leader_election.enabled": False, "leader_election.renew_deadline_s": 20})
    assert not cfg.leader_election.enabled


def test_renew_deadline_must_exceed_jittered_retry_period() -> None:
    with pytest.raises(ConfigError):
        build({"leader_election.renew_deadline_s": 6, "leader_election.retry_period_s": 5})


@pytest.mark.parametrize("n", [2, 4, 6])
def test_even_control_planes_allowed_with_warning(n: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="harness.config"):
        cfg = build({"control_planes": n})
    assert cfg.control_planes == n
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "harness.config"]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert f"control_planes={n} is even" in msg and f"needs {n // 2 + 1} of {n}" in msg


@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_odd_control_planes_no_warning(n: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="harness.config"):
        build({"control_planes": n})
    assert not [r for r in caplog.records if r.name == "harness.config"]


@pytest.mark.parametrize("n", [0, -1, 8])
def test_control_planes_out_of_range_rejected(n: int) -> None:
    with pytest.raises(ConfigError, match=rf"control_planes={n}: choose 1 to 7"):
        build({"control_planes": n})


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"name": "bad name"}, r"name 'bad name'"),
        ({"name": ""}, r"name ''"),
        ({"workers": -1}, r"workers=-1"),
        ({"address_block": 256}, r"address_block=256"),
        ({"etcd.heartbeat_ms": 5}, r"etcd\.heartbeat_ms=5"),
        ({"etcd.election_timeout_ms": 50001}, r"at most 50000"),
        ({"load_balancer.check_interval_ms": 99}, r"check_interval_ms=99"),
        ({"load_balancer.fall": 0}, r"fall and load_balancer\.rise"),
        ({"load_balancer.rise": 0}, r"fall and load_balancer\.rise"),
        ({"load_balancer.retries": 11}, r"retries=11"),
        ({"load_balancer.port": 0}, r"load_balancer\.port=0"),
        ({"apiserver.port": 65536}, r"apiserver\.port=65536"),
        ({"etcd.client_port": 2380}, r"collide on each node.s address"),
        ({"apiserver.port": 2379}, r"collide on each node.s address"),
        ({"load_balancer.stats_port": 6443}, r"load_balancer\.port and load_balancer\.stats_port must differ"),
        ({"apiserver.etcd_servers": "some"}, r"choose 'local' or 'all'"),
        ({"leader_election.retry_period_s": 0}, r"at least 1 second"),
    ],
)
def test_invalid_values_rejected(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build(values)


def test_config_error_is_a_harness_error() -> None:
    with pytest.raises(HarnessError) as exc:
        build({"control_planes": 0})
    assert exc.value.exit_code == 2
