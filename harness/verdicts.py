"""Verdicts and their four outcomes: what a measurement says about the cluster, or why it says nothing.

- PASS: measured, and within the user's SLO.
- FAIL: measured, and the cluster broke the SLO (or did not do what was awaited at all).
- INCONCLUSIVE: the measurement could not be made (no samples, probes failing before the fault,
  too little baseline traffic, a fault nobody saw applied). Never a pass, never the cluster's fault.
- ERROR: the harness or the environment broke; raised as an exception, never a verdict of the cluster.

Scenarios, the gate and the reports all speak this vocabulary, so a nightly job, a JUnit reader
and a retrospective see the same four words.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


class Outcome(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"


# Which outcome a set of verdicts adds up to: a broken SLO is news even beside a measurement that
# could not be made, and an unmade measurement keeps a scenario from passing.
_RANK = {Outcome.PASS: 0, Outcome.INCONCLUSIVE: 1, Outcome.ERROR: 2, Outcome.FAIL: 3}


def overall(outcomes: Iterable[Outcome]) -> Outcome:
    """FAIL if any failed, else ERROR, else INCONCLUSIVE; PASS only with at least one PASS and nothing else.

    No outcome at all is INCONCLUSIVE: nothing passes on no data.
    """
    seen = list(outcomes)
    if not seen:
        return Outcome.INCONCLUSIVE
    return max(seen, key=_RANK.__getitem__)


@dataclass(frozen=True)
class Verdict:
    """One measured verdict: the value, the user's SLO, what the configuration predicts, the outcome."""

    name: str
    measured: float | None
    slo: float | None
    unit: str
    outcome: Outcome
    message: str
    # What the cluster's configured timings predict for the same quantity (None: no prediction).
    expected: float | None = None

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    def line(self) -> str:
        exp = "" if self.expected is None else f", expected {_fmt(self.expected, self.unit)}"
        return (
            f"{self.outcome.value} {self.name}: measured {_fmt(self.measured, self.unit)}, "
            f"SLO {_fmt(self.slo, self.unit)}{exp}. {self.message}"
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """A verdict read back from to_dict() (a report attachment, a progress event), or from the
        results of earlier releases, which carry only "passed"."""
        outcome = data.get("outcome")
        if outcome is None:
            outcome = Outcome.PASS if data.get("passed") else Outcome.FAIL
        return cls(
            name=str(data.get("name", "")),
            measured=data.get("measured"),
            slo=data.get("slo", data.get("budget")),
            unit=str(data.get("unit", "")),
            outcome=Outcome(outcome),
            message=str(data.get("message", "")),
            expected=data.get("expected"),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["passed"] = self.passed  # readers of earlier results know only this field
        return data


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "never"
    return f"{value:.2f}{unit}"


def outcome_of(ok: bool) -> Outcome:
    """PASS or FAIL for a measurement that was made."""
    return Outcome.PASS if ok else Outcome.FAIL


def within(
    name: str,
    measured: float | None,
    slo: float,
    unit: str = "s",
    what: str = "",
    *,
    expected: float | None = None,
    explanation: str = "",
) -> Verdict:
    """measured <= slo. None means the awaited event never happened while it was watched: a FAIL.

    A measurement that could not be made is not None here: build it with `inconclusive()`.
    `explanation` (which setting makes it slow) is added to a failure only.
    """
    label = what or name
    if measured is None:
        msg = f"{label} never happened within the observation"
        return Verdict(name, None, slo, unit, Outcome.FAIL, _join(msg, explanation), expected)
    ok = measured <= slo
    msg = f"{label} took {measured:.2f}{unit}" + ("" if ok else f", over the {slo:.2f}{unit} SLO")
    return Verdict(
        name, measured, slo, unit, Outcome.PASS if ok else Outcome.FAIL, _join(msg, "" if ok else explanation), expected
    )


def check(name: str, ok: bool, message: str) -> Verdict:
    """A yes/no verdict: the cluster did (PASS) or did not (FAIL) do what it must."""
    return Verdict(name, None, None, "", Outcome.PASS if ok else Outcome.FAIL, message)


def inconclusive(name: str, why: str, slo: float | None = None, unit: str = "") -> Verdict:
    """The measurement could not be made; `why` says what was missing and how to get it."""
    return Verdict(name, None, slo, unit, Outcome.INCONCLUSIVE, f"no verdict possible: {why}")


def _join(message: str, explanation: str) -> str:
    return f"{message}; {explanation}" if explanation else message
