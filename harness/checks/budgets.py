"""A run's SLOs and what the cluster's configuration predicts for them, in one place.

Scenarios judge by the user's objectives (harness.slo), never by what the settings imply: a
cluster configured to be slow fails, and its verdict names the setting that makes it so. The
prediction still matters twice: it is shown beside every measurement ("expected"), and waits
watch until the later of the SLO and the prediction, so an overrun is measured as a figure
instead of cut short as "never".
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config import ClusterConfig
from harness.slo import MARGIN_S, Expectations, Objectives, expectations, explain
from harness.verdicts import Verdict, inconclusive, within

__all__ = ["MARGIN_S", "Budgets"]


@dataclass(frozen=True)
class Budgets:
    objectives: Objectives
    expected: Expectations

    @classmethod
    def for_config(cls, cfg: ClusterConfig, objectives: Objectives | None = None) -> Budgets:
        return cls(objectives or Objectives(), expectations(cfg))

    # The SLOs scenarios and waits read, by name.
    @property
    def etcd_reelection_s(self) -> float:
        return self.objectives.etcd_reelection_s

    @property
    def etcd_recovery_s(self) -> float:
        return self.objectives.etcd_recovery_s

    @property
    def api_unavailability_s(self) -> float:
        return self.objectives.api_unavailability_s

    @property
    def lb_mark_down_s(self) -> float:
        return self.objectives.lb_mark_down_s

    @property
    def lease_handover_s(self) -> float:
        return self.objectives.lease_handover_s

    @property
    def rollout_completion_s(self) -> float:
        return self.objectives.rollout_completion_s

    @property
    def steady_state_s(self) -> float:
        return self.objectives.steady_state_s

    @property
    def api_answer_without_quorum_s(self) -> float:
        return self.objectives.api_answer_without_quorum_s

    def watch_s(self, key: str) -> float:
        """How long to watch for the quantity `key`: the later of its SLO and the configuration's prediction."""
        slo = float(getattr(self.objectives, key))
        prediction = self.expected.get(key)
        if prediction is None or prediction.value == float("inf"):
            return slo
        return max(slo, prediction.value)

    def within(
        self, key: str, name: str, measured: float | None, what: str = "", unit: str = "s", *, missing: str = ""
    ) -> Verdict:
        """A verdict of `measured` against the SLO `key`, with the prediction and, on failure, the slow setting.

        None is "never happened while watched" (a FAIL), unless `missing` is given: then None means
        the quantity could not be measured, and `missing` says why (INCONCLUSIVE).
        """
        slo = float(getattr(self.objectives, key))
        if measured is None and missing:
            return inconclusive(name, missing, slo, unit)
        prediction = self.expected.get(key)
        return within(
            name,
            measured,
            slo,
            unit,
            what,
            expected=prediction.value if prediction is not None else None,
            explanation=explain(slo, prediction, unit),
        )
