"""Budgets in one place, derived from the cluster's configured timings, and measured verdicts.

A budget is what a correctly configured HA cluster with these settings must achieve, plus a
stated margin for this harness's measurement resolution and a loaded 2-core machine. Change a
timing in the config and the budgets move with it: a scenario never hard-codes a number.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config import ClusterConfig

# Sampling resolution and scheduling noise on a busy small machine.
MARGIN_S = 2.0


@dataclass(frozen=True)
class Budgets:
    etcd_reelection_s: float
    etcd_recovery_s: float
    api_unavailability_via_lb_s: float
    lb_mark_down_s: float
    lease_handover_s: float
    rollout_completion_s: float
    steady_state_s: float

    @classmethod
    def for_config(cls, cfg: ClusterConfig) -> Budgets:
        e, le, lb = cfg.etcd, cfg.leader_election, cfg.load_balancer
        # A follower waits one election timeout (randomised up to 2x) before campaigning.
        reelection = 2 * e.election_timeout_ms / 1000 + MARGIN_S
        mark_down = lb.fall * lb.check_interval_ms / 1000 + lb.check_interval_ms / 1000
        return cls(
            etcd_reelection_s=reelection,
            # Upstream e2e expects etcd-failure recovery within 60 s.
            etcd_recovery_s=60.0,
            # Clients see errors through the LB at most until the checks mark the backend down.
            api_unavailability_via_lb_s=mark_down + MARGIN_S,
            lb_mark_down_s=mark_down + MARGIN_S,
            # A standby takes the lease once it has seen it unrenewed for a lease duration. It only
            # looks every retry period (jittered up to 1.2x), and its clock of "last renewed" starts
            # when it first saw the last renewal, up to one retry period late.
            lease_handover_s=le.lease_duration_s + 2.2 * le.retry_period_s + 2 * MARGIN_S,
            rollout_completion_s=90.0,
            steady_state_s=90.0,
        )


@dataclass(frozen=True)
class Verdict:
    name: str
    measured: float | None
    budget: float | None
    unit: str
    passed: bool
    message: str

    def line(self) -> str:
        m = "n/a" if self.measured is None else f"{self.measured:.2f}{self.unit}"
        b = "n/a" if self.budget is None else f"{self.budget:.2f}{self.unit}"
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: measured {m}, budget {b}. {self.message}"


def within(name: str, measured: float | None, budget: float, unit: str = "s", what: str = "") -> Verdict:
    """measured <= budget; a measurement that never happened (None) fails."""
    if measured is None:
        return Verdict(name, None, budget, unit, False, f"{what or name} never happened within the observation")
    ok = measured <= budget
    msg = f"{what or name} took {measured:.2f}{unit}" + ("" if ok else f", over the {budget:.2f}{unit} budget")
    return Verdict(name, measured, budget, unit, ok, msg)


def check(name: str, ok: bool, message: str) -> Verdict:
    return Verdict(name, None, None, "", ok, message)
