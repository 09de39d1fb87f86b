"""The user's service-level objectives: one table, absolute, with what the configuration predicts beside it.

A verdict is measured against an objective the user states ("the control plane fails over
within 30 s"), never against whatever the cluster's own settings imply: a cluster configured
to be slow must fail, and the verdict then names the setting that makes it slow. So this
module keeps two things apart:

- `Objectives`: the SLO table. Defaults follow upstream defaults and what HA users expect of a
  3-node control plane behind one HAProxy; kubequake.toml `[slo]`, `--set slo.KEY=VALUE` and an
  existing cluster's inventory `[slo]` override them. Client objectives are per fault profile
  (`slo.<profile>.<key>`, e.g. `slo.etcd-member-loss.max_p99_after_heal_ms`).
- `Expectations`: what the configured timings predict for the same quantities, each with the
  settings it follows from. Shown beside every measurement ("expected"), never used to pass one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.config import ClusterConfig, flatten, read_file
from harness.errors import ConfigError

# Measurement resolution and scheduling noise on a busy 2-core machine, added to predictions.
MARGIN_S = 2.0
PREFIX = "slo."


@dataclass(frozen=True)
class ClientObjectives:
    """What clients going through the LB may see around one kind of fault. Latencies in ms, times in s."""

    max_error_ratio_during_fault: float
    max_unavailability_s: float
    max_p99_during_fault_ms: float
    max_p99_after_heal_ms: float
    max_time_to_steady_s: float
    # Throughput counts as steady again at this fraction of the pre-fault baseline...
    steady_fraction: float = 0.8
    # ...held for this many consecutive seconds without a failure.
    steady_hold_s: int = 3
    # How long after heal the "after" verdicts look.
    after_heal_window_s: float = 30.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{f.name}={value!r}: must be a number >= 0")
        if not 0 < self.steady_fraction <= 1:
            raise ConfigError(f"steady_fraction={self.steady_fraction!r}: must be above 0 and at most 1")
        if self.steady_hold_s < 1:
            raise ConfigError(f"steady_hold_s={self.steady_hold_s!r}: must be at least 1")
        if self.max_error_ratio_during_fault > 1:
            raise ConfigError(f"max_error_ratio_during_fault={self.max_error_ratio_during_fault!r}: a ratio, 0 to 1")


# Client objectives per fault profile, at what a 3-node control plane behind one HAProxy with
# upstream default timings delivers: an LB takes a dead apiserver out within 10 s (check inter
# 2 s, fall 3, plus a check in flight and margin); etcd re-elects within 4 s (election timeout
# 1 s, randomised up to 2x, plus margin); upstream e2e allows 60 s for recovery after an etcd
# failure. p99 after heal is 1 s everywhere: once healed, clients must be served normally.
DEFAULT_CLIENTS: Mapping[str, ClientObjectives] = MappingProxyType(
    {
        "steady-state": ClientObjectives(0.0, 2.0, 1000, 1000, 5.0),
        "apiserver-kill": ClientObjectives(0.35, 10.0, 5000, 1000, 20.0),
        # The apiserver beside a lost etcd member keeps taking requests until the LB marks it
        # down and holds each until its etcd client gives up: up to the mark-down time.
        "etcd-leader-kill": ClientObjectives(0.20, 6.0, 10000, 1000, 20.0),
        "etcd-member-loss": ClientObjectives(0.35, 12.0, 10000, 1000, 30.0),
        # A partitioned node's apiserver accepts requests its etcd member cannot answer: clients
        # wait until the LB takes it out or their own 10 s deadline ends the wait.
        "etcd-partition": ClientObjectives(0.35, 12.0, 10000, 1000, 30.0),
        "control-plane-node-loss": ClientObjectives(0.35, 12.0, 10000, 1500, 60.0),
        "lb-failover": ClientObjectives(0.50, 15.0, 10000, 1000, 30.0),
    }
)


@dataclass(frozen=True)
class Objectives:
    """The SLO table every verdict is judged by. Seconds unless the name says otherwise."""

    # First acknowledged write after the etcd leader dies.
    etcd_reelection_s: float = 5.0
    # First acknowledged write after quorum-losing members restart (upstream e2e: 60 s).
    etcd_recovery_s: float = 60.0
    # Longest time the API through the LB answers nothing successfully during a fault.
    api_unavailability_s: float = 10.0
    # HAProxy taking a dead apiserver out of rotation.
    lb_mark_down_s: float = 10.0
    # A controller-manager or scheduler lease held by a live instance again after its holder died.
    lease_handover_s: float = 30.0
    # A Deployment rollout finishing (kubectl rollout status).
    rollout_completion_s: float = 90.0
    # The whole cluster back in its steady state after heal.
    steady_state_s: float = 90.0
    # Without quorum, the API answers a write (with an error) instead of holding it.
    api_answer_without_quorum_s: float = 12.0
    clients: Mapping[str, ClientObjectives] = field(default_factory=lambda: DEFAULT_CLIENTS)

    def client(self, profile: str) -> ClientObjectives:
        try:
            return self.clients[profile]
        except KeyError:
            raise ConfigError(f"no client SLO profile {profile!r}; known: {', '.join(sorted(self.clients))}") from None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "clients"}
        out["clients"] = {k: dataclasses.asdict(v) for k, v in self.clients.items()}
        return out


# What each objective means, for `kubequake slo` and the README's table.
MEANINGS: Mapping[str, str] = MappingProxyType(
    {
        "etcd_reelection_s": "first acknowledged write after the etcd leader dies",
        "etcd_recovery_s": "first acknowledged write after quorum-losing members restart (upstream e2e: 60 s)",
        "api_unavailability_s": "longest time the API through the LB serves nothing during a fault",
        "lb_mark_down_s": "HAProxy taking a dead apiserver out of rotation",
        "lease_handover_s": "a controller-manager or scheduler lease held by a live instance again",
        "rollout_completion_s": "a Deployment rollout finishing",
        "steady_state_s": "the whole cluster back in its steady state after heal",
        "api_answer_without_quorum_s": "without quorum, the API answering a write (an error) instead of holding it",
        "max_error_ratio_during_fault": "share of client requests that may fail during the fault (0 to 1)",
        "max_unavailability_s": "longest time clients see no successful request",
        "max_p99_during_fault_ms": "p99 latency of requests sent during the fault",
        "max_p99_after_heal_ms": "p99 latency of requests sent after heal",
        "max_time_to_steady_s": "time from heal until throughput is steady again",
        "steady_fraction": "share of the pre-fault throughput that counts as steady",
        "steady_hold_s": "whole seconds throughput must stay steady",
        "after_heal_window_s": "how long after heal the after-heal verdicts look",
    }
)


def describe(objectives: Objectives | None = None) -> list[tuple[str, str, str]]:
    """(key, value, meaning) for every SLO key: the defaults, or the values in `objectives`."""
    obj = objectives or Objectives()
    rows = [
        (f"{PREFIX}{f.name}", f"{getattr(obj, f.name):g}", MEANINGS[f.name])
        for f in dataclasses.fields(Objectives)
        if f.name != "clients"
    ]
    for profile, client in obj.clients.items():
        for f in dataclasses.fields(ClientObjectives):
            rows.append((f"{PREFIX}{profile}.{f.name}", f"{getattr(client, f.name):g}", MEANINGS[f.name]))
    return rows


def known_keys() -> list[str]:
    """Every key `--set slo.KEY=VALUE` accepts, with the prefix."""
    top = [f"{PREFIX}{f.name}" for f in dataclasses.fields(Objectives) if f.name != "clients"]
    fields = [f.name for f in dataclasses.fields(ClientObjectives)]
    return sorted(top + [f"{PREFIX}{p}.{k}" for p in DEFAULT_CLIENTS for k in fields])


def _number(key: str, raw: Any, where: str, whole: bool) -> float | int:
    if isinstance(raw, bool):
        raise ConfigError(f"{key}{where}: expected a number, got {raw!r}")
    try:
        value = int(raw) if whole and not isinstance(raw, float) else float(raw)
    except (TypeError, ValueError):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(
            f"{key}{where}: expected {kind} of {'seconds' if key.endswith('_s') else 'units'}, got {raw!r}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key}{where}: must be 0 or more, got {raw!r}")
    return value


def build(values: Mapping[str, Any], source: Mapping[str, str] | None = None) -> Objectives:
    """Objectives from flat `slo.KEY` values over the defaults; unknown keys and bad values name the fix."""
    source = source or {}
    keys = set(known_keys())
    top: dict[str, Any] = {}
    clients: dict[str, dict[str, Any]] = {}
    int_fields = {f.name for f in dataclasses.fields(ClientObjectives) if f.type in (int, "int")}
    for key, raw in values.items():
        where = f" (from {source[key]})" if key in source else ""
        if key not in keys:
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            hint = f"; did you mean {close[0]}?" if close else "; `kubequake slo` lists every key with its default"
            raise ConfigError(f"unknown SLO {key!r}{where}{hint}")
        rest = key[len(PREFIX) :]
        profile, _, name = rest.rpartition(".")
        if profile:
            clients.setdefault(profile, {})[name] = _number(key, raw, where, name in int_fields)
        else:
            top[name] = float(_number(key, raw, where, False))
    merged = dict(DEFAULT_CLIENTS)
    for profile, changed in clients.items():
        try:
            merged[profile] = dataclasses.replace(DEFAULT_CLIENTS[profile], **changed)
        except ConfigError as exc:
            raise ConfigError(f"{PREFIX}{profile}.{exc}") from None
    return Objectives(**top, clients=MappingProxyType(merged))


def split(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cluster settings, SLO keys) of one flat mapping: SLOs are the user's, not the cluster's."""
    cluster = {k: v for k, v in values.items() if not k.startswith(PREFIX)}
    return cluster, {k: v for k, v in values.items() if k.startswith(PREFIX)}


def load(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    inventory: Mapping[str, Any] | None = None,
    inventory_source: str = "inventory",
) -> Objectives:
    """The SLO table from the config file's [slo] (kubequake.toml when present), an inventory's [slo], then --set.

    Later sources win: the file, then the inventory describing an existing cluster, then the
    command line.
    """
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    path, data = read_file(path)
    if path is not None:
        for k, v in split(flatten(data))[1].items():
            values[k], source[k] = v, str(path)
    for k, v in flatten({"slo": dict(inventory or {})}).items():
        values[k], source[k] = v, inventory_source
    for k, v in split(dict(overrides or {}))[1].items():
        values[k], source[k] = v, "--set"
    return build(values, source)


@dataclass(frozen=True)
class Prediction:
    """What the configured timings predict for one quantity, and the settings that prediction follows from."""

    value: float
    settings: Mapping[str, object]

    def names(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items())


@dataclass(frozen=True)
class Expectations:
    """Predictions from a cluster's configuration (its own, or what an inventory declares)."""

    predictions: Mapping[str, Prediction]

    def __getitem__(self, key: str) -> Prediction:
        return self.predictions[key]

    def get(self, key: str) -> Prediction | None:
        return self.predictions.get(key)


def expectations(cfg: ClusterConfig) -> Expectations:
    """What a correctly working cluster with these settings achieves, with the settings each follows from."""
    e, le, lb = cfg.etcd, cfg.leader_election, cfg.load_balancer
    # A follower waits one election timeout (randomised up to 2x) before campaigning.
    reelection = Prediction(
        2 * e.election_timeout_ms / 1000 + MARGIN_S, {"etcd.election_timeout_ms": e.election_timeout_ms}
    )
    lb_settings: dict[str, object] = {
        "load_balancer.check_interval_ms": lb.check_interval_ms,
        "load_balancer.fall": lb.fall,
    }
    if not lb.health_checks:
        # Without checks HAProxy never takes a dead backend out: every request it sends there fails.
        mark_down = Prediction(math.inf, {"load_balancer.health_checks": False})
    else:
        mark_down = Prediction((lb.fall + 1) * lb.check_interval_ms / 1000 + MARGIN_S, lb_settings)
    # A standby takes the lease once it has seen it unrenewed for a lease duration; it looks every
    # retry period (jittered up to 1.2x), its "last renewed" clock up to one retry period late.
    handover = Prediction(
        le.lease_duration_s + 2.2 * le.retry_period_s + 2 * MARGIN_S,
        {"leader_election.lease_duration_s": le.lease_duration_s, "leader_election.retry_period_s": le.retry_period_s},
    )
    if not le.enabled:
        handover = Prediction(math.inf, {"leader_election.enabled": False})
    unavailable = Prediction(
        max(mark_down.value, reelection.value), {**dict(mark_down.settings), **dict(reelection.settings)}
    )
    return Expectations(
        MappingProxyType(
            {
                "etcd_reelection_s": reelection,
                "lb_mark_down_s": mark_down,
                "api_unavailability_s": unavailable,
                "lease_handover_s": handover,
            }
        )
    )


def etcd_reconnect_window(outage_s: float) -> Prediction:
    """How long after quorum returns an apiserver may still hold requests on etcd connections in backoff.

    Measured, not assumed (45 kill-two-of-three cycles on the local cluster, 5 with slow requests):
    each kube-apiserver keeps one etcd client per resource type (66 here, k8s.io/apiserver
    storagebackend/factory/etcd3.go), and each retries with gRPC's default reconnect backoff,
    1 s x 1.6^n with +-20% jitter up to 120 s (google.golang.org/grpc backoff). After an outage
    of D seconds, a connection whose last attempt came just before etcd returned waits one more
    step. Requests for that resource wait for it (the etcd client's WaitForReady) and answer 200
    late, while /readyz, which uses clients of its own, already lets HAProxy send traffic. No
    kube-apiserver flag changes this backoff, so no cluster setting can make it shorter.
    The bound is the jittered upper end of the step etcd's return can fall into.
    """
    bound = min(144.0, 1.2 * (1 + 0.75 * max(0.0, outage_s)))
    return Prediction(
        bound,
        {"the apiserver's etcd client reconnect backoff (gRPC default, not configurable)": f"outage {outage_s:.1f}s"},
    )


def explain(slo: float, prediction: Prediction | None, unit: str = "s") -> str:
    """The sentence a failed verdict adds when the configuration itself predicts missing the SLO."""
    if prediction is None or prediction.value <= slo:
        return ""
    value = "never" if math.isinf(prediction.value) else f"{prediction.value:.1f}{unit}"
    return (
        f"the configuration predicts {value} ({prediction.names()}), over the {slo:g}{unit} SLO: "
        "that setting makes it slow"
    )
