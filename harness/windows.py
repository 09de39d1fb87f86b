"""Every window a scenario spends and every wait it makes, named, with why it lasts that long.

A window is time spent on purpose: probes sampling a baseline, a fault held long enough to be
measured, traffic kept going past the heal. A wait polls for a condition until a deadline that
comes from the cluster's budgets, so a slower configuration moves it with the verdicts it serves.
Scenarios name these instead of writing numbers: the reason for each second a suite takes is
here, in one file, and changing one changes every scenario that relies on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.checks.budgets import Budgets


@dataclass(frozen=True)
class Window:
    """A fixed stretch of time a scenario spends on purpose."""

    name: str
    seconds: float
    why: str


@dataclass(frozen=True)
class Wait:
    """A bounded wait for a condition: its deadline (from the budgets), how often it looks, and why."""

    name: str
    deadline: Callable[[Budgets], float]
    interval_s: float
    why: str

    def timeout(self, budgets: Budgets) -> float:
        return self.deadline(budgets)


# -- traffic around every disruptive scenario ------------------------------------------------
TRAFFIC_BASELINE = Window(
    "traffic baseline",
    5.0,
    "clients run before the first phase: time to steady throughput compares the throughput after heal with it",
)
POST_HEAL_TRAFFIC = Window(
    "traffic after heal",
    12.0,
    "clients keep going past the last heal: p99 after heal and time to steady throughput need traffic to judge",
)

# -- around a fault ----------------------------------------------------------------------------
SETTLE = Window(
    "settle before inject",
    1.0,
    "probes and samplers need a baseline of samples before the fault; inject checks they all succeeded",
)
HOLD_BEFORE_HEAL = Window(
    "hold before heal",
    1.0,
    "a last second under the fault after what was awaited happened, so the samples do not end on it",
)
AFTER_HEAL = Window(
    "samples after heal",
    1.0,
    "probes keep sampling past the heal: the timeline shows the recovery and the last write gap closes",
)
RECOVERY_AFTER_HEAL = Window(
    "recovery after heal",
    2.0,
    "probes keep running until the restarted component answers: 'first success after heal' needs that sample",
)

# -- etcd ----------------------------------------------------------------------------------------
MEMBERS_DOWN = Window(
    "observe with members down",
    4.0,
    "about 40 write probes (one per 0.1s) and several election timeouts: a stall would show as a long write gap",
)
NEW_LEADER_WRITES = Window(
    "writes on the new leader",
    2.0,
    "the probe lands writes on the new leader before the old one returns; re-election reads the first of them",
)
QUORUM_LOST_SETTLE = Window(
    "quorum lost, settle",
    2.0,
    "the survivors notice they lost quorum before the API write, so it meets no quorum, not an in-flight commit",
)
QUORUM_LOST_HOLD = Window(
    "quorum lost, hold",
    2.0,
    "more refused probe writes after the API write: 'writes fail without quorum' judges a window, not a sample",
)

# -- load balancer and apiservers -------------------------------------------------------------
LB_DEAD = Window(
    "observe with HAProxy dead",
    4.0,
    "about 80 samples per target at 20 Hz: 'API via LB down' and 'apiservers unaffected' judge all of them",
)
DRAIN_AFTER_MARK_DOWN = Window(
    "drain after mark-down",
    3.0,
    "requests sent to the dead apiserver before HAProxy marked it down finish or fail; later errors are the LB's",
)
ROUTED_AROUND = Window(
    "observe routed around",
    3.0,
    "the dead apiserver out of rotation: every failed request through the LB in this window counts against it",
)

# -- waits for a condition, bounded by the budgets ---------------------------------------------
LEASE_HANDOVER = Wait(
    "a leader lease changes hands",
    lambda b: b.watch_s("lease_handover_s") + 15.0,
    0.2,
    "15s past the later of the handover SLO and what the lease settings predict: an overrun is measured "
    "as a FAIL with its figure, not cut short as 'never'",
)
LB_MARK_DOWN = Wait(
    "HAProxy marks a backend down",
    lambda b: b.watch_s("lb_mark_down_s") + 2.0,
    0.1,
    "2s past the later of the mark-down SLO and what the check settings predict: a late mark-down is "
    "measured; polled at 0.1s, finer than one check interval",
)
NEW_ETCD_LEADER = Wait(
    "a new etcd leader",
    lambda b: b.etcd_recovery_s,
    0.1,
    "etcd recovery budget (60s, as upstream e2e); the re-election verdicts measure from the probes, not from this",
)
MEMBER_CATCH_UP = Wait(
    "a rejoined member catches up",
    lambda b: 30.0,
    0.25,
    "a member back from a partition replays the few seconds of writes it missed; 30s is far beyond that",
)
ROLLOUT_UNDER_FAILOVER = Wait(
    "a rollout completes under failover",
    lambda b: b.watch_s("lease_handover_s") + b.rollout_completion_s,
    0.5,
    "the rollout stalls until a standby controller-manager takes the lease, then has its normal budget",
)
