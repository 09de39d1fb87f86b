"""The SLO table: absolute defaults, overrides from file, inventory and --set, bad input, predictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import slo
from harness.config import build
from harness.errors import ConfigError


def test_defaults_are_absolute_and_do_not_follow_the_configuration() -> None:
    obj = slo.load(Path("/dev/null"))
    assert obj.lease_handover_s == 30.0
    assert obj.etcd_reelection_s == 5.0
    assert obj.client("etcd-member-loss").max_p99_after_heal_ms == 1000


def test_every_default_prediction_is_within_its_slo() -> None:
    # A healthy cluster at default settings must be predicted to meet the default SLOs;
    # otherwise every nightly run would be red on a healthy cluster.
    obj, exp = slo.Objectives(), slo.expectations(build({}))
    for key, prediction in exp.predictions.items():
        assert prediction.value <= getattr(obj, key), key


@pytest.mark.parametrize(
    ("setting", "value", "key", "named"),
    [
        ("leader_election.lease_duration_s", 60, "lease_handover_s", "leader_election.lease_duration_s=60"),
        ("etcd.election_timeout_ms", 5000, "etcd_reelection_s", "etcd.election_timeout_ms=5000"),
        ("load_balancer.check_interval_ms", 10000, "lb_mark_down_s", "load_balancer.check_interval_ms=10000"),
    ],
)
def test_a_slow_setting_is_named_when_it_predicts_missing_the_slo(
    setting: str, value: int, key: str, named: str
) -> None:
    values: dict[str, object] = {setting: value}
    if setting == "leader_election.lease_duration_s":
        values["leader_election.renew_deadline_s"] = 40
    exp = slo.expectations(build(values))
    text = slo.explain(getattr(slo.Objectives(), key), exp[key])
    assert named in text and "makes it slow" in text
    assert slo.explain(getattr(slo.Objectives(), key), slo.expectations(build({}))[key]) == ""


def test_sources_in_order_file_inventory_then_set(tmp_path: Path) -> None:
    f = tmp_path / "kubequake.toml"
    f.write_text(
        "control_planes = 3\n"
        "[slo]\nlease_handover_s = 40\netcd_reelection_s = 6\n"
        "[slo.apiserver-kill]\nmax_p99_during_fault_ms = 7000\n"
    )
    obj = slo.load(f, {"slo.etcd_reelection_s": "7", "control_planes": "5"}, inventory={"lease_handover_s": 45})
    assert obj.lease_handover_s == 45.0
    assert obj.etcd_reelection_s == 7.0
    assert obj.client("apiserver-kill").max_p99_during_fault_ms == 7000
    assert obj.client("apiserver-kill").max_error_ratio_during_fault == 0.35  # untouched keys keep defaults


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("slo.lease_handover", "30", "did you mean slo.lease_handover_s"),
        ("slo.nope_s", "1", "unknown SLO 'slo.nope_s'"),
        ("slo.lease_handover_s", "-1", "must be 0 or more"),
        ("slo.lease_handover_s", "soon", "expected a number"),
        ("slo.lease_handover_s", "nan", "must be 0 or more"),
        ("slo.etcd-partition.max_error_ratio_during_fault", "1.5", "a ratio, 0 to 1"),
        ("slo.etcd-partition.steady_hold_s", "2.5", "expected a whole number"),
        ("slo.no-such-profile.max_p99_after_heal_ms", "1", "unknown SLO"),
    ],
)
def test_bad_input_names_the_key_and_what_is_allowed(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        slo.build({key: value}, {key: "--set"})
    assert key.split(".")[1] in str(err.value)


def test_unknown_profile_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"known: .*apiserver-kill"):
        slo.Objectives().client("nope")


def test_every_key_is_described_with_its_value() -> None:
    rows = slo.describe(slo.build({"slo.lease_handover_s": "45"}))
    assert sorted(k for k, _, _ in rows) == slo.known_keys()
    assert ("slo.lease_handover_s", "45", slo.MEANINGS["lease_handover_s"]) in rows
    assert all(meaning for _, _, meaning in rows)
