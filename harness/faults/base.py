"""Reversible faults and the injector that guarantees their undo.

The injector registers a fault's undo *before* applying it (a half-applied partition is still
undone), journals it to disk, and undoes everything newest-first on exit, whether the block
ended normally, with a failure, a timeout or Ctrl-C. Guards refuse a fault that would exceed
the scenario's declared blast radius, e.g. losing etcd quorum without the quorum_loss marker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol

from harness.errors import BlastRadiusError, FaultError
from harness.faults.journal import FaultRecord, Journal

log = logging.getLogger(__name__)


class Fault(Protocol):
    kind: ClassVar[str]

    @property
    def target(self) -> str: ...
    def describe(self) -> str: ...
    def params(self) -> dict[str, Any]: ...
    def impaired_etcd_members(self) -> set[str]: ...
    # Raises UnsupportedCapability (harness.providers.base) when the cluster cannot take this
    # fault; called before anything is journaled or applied.
    def check_supported(self) -> None: ...
    def apply(self) -> None: ...
    def heal(self) -> None: ...
    # "" once the fault is seen in effect (process gone, rules matching packets, address silent)
    # or gone again, within `timeout`; otherwise what was not seen.
    def confirm_applied(self, timeout: float) -> str: ...
    def confirm_healed(self, timeout: float) -> str: ...


@dataclass(frozen=True)
class BlastRadius:
    """What a scenario declared it may break."""

    etcd_members: int
    allow_quorum_loss: bool = False
    max_active_faults: int = 6

    @property
    def quorum(self) -> int:
        return self.etcd_members // 2 + 1


@dataclass
class _Active:
    fault: Fault
    record: FaultRecord
    healed: bool = False


@dataclass
class FaultInjector:
    """Applies faults and undoes them newest-first; use as a context manager."""

    journal: Journal
    radius: BlastRadius
    scenario: str = ""
    heal_timeout_s: float = 120.0
    # How long a fault may take to show (a SIGKILLed process to be reaped, a rule to match a
    # packet) before it counts as not confirmed.
    confirm_timeout_s: float = 5.0
    _active: list[_Active] = field(default_factory=list)

    def __enter__(self) -> FaultInjector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.heal_all()

    # -- guards ------------------------------------------------------------------------------
    def impaired_members(self) -> set[str]:
        out: set[str] = set()
        for a in self._active:
            if not a.healed:
                out |= a.fault.impaired_etcd_members()
        return out

    def _guard(self, fault: Fault) -> None:
        fault.check_supported()
        live = [a for a in self._active if not a.healed]
        if len(live) >= self.radius.max_active_faults:
            raise BlastRadiusError(
                f"refusing {fault.describe()}: {len(live)} faults already active (limit "
                f"{self.radius.max_active_faults}); heal some first"
            )
        impaired = self.impaired_members() | fault.impaired_etcd_members()
        remaining = self.radius.etcd_members - len(impaired)
        if remaining < self.radius.quorum and not self.radius.allow_quorum_loss:
            raise BlastRadiusError(
                f"refusing {fault.describe()}: it would leave {remaining} of {self.radius.etcd_members} etcd members "
                f"(quorum needs {self.radius.quorum}), losing quorum; mark the scenario "
                "@pytest.mark.quorum_loss if that is the point"
            )

    # -- inject / heal -----------------------------------------------------------------------
    def inject(self, fault: Fault) -> FaultRecord:
        self._guard(fault)
        rec = FaultRecord(fault.kind, fault.target, fault.describe(), fault.params(), scenario=self.scenario)
        self.journal.write(rec)
        # Registered before apply: if apply fails halfway, heal still runs for what took effect.
        active = _Active(fault, rec)
        self._active.append(active)
        log.info("inject: %s", rec.description)
        rec.applied_at = time.time()
        try:
            fault.apply()
        except BaseException as exc:
            rec.status, rec.error = "apply_failed", f"{type(exc).__name__}: {exc}"
            self.journal.write(rec)
            self._heal_one(active)
            raise
        rec.status = "applied"
        self.journal.write(rec)
        missing = fault.confirm_applied(self.confirm_timeout_s)
        rec.confirmed_applied = not missing
        rec.confirmation = f"not seen applied: {missing}" if missing else "seen applied"
        self.journal.write(rec)
        if missing:
            log.warning("fault not confirmed applied: %s: %s", rec.description, missing)
        return rec

    def heal(self, rec: FaultRecord) -> None:
        """Undo one fault early (the rest stay until exit)."""
        for a in self._active:
            if a.record.id == rec.id:
                self._heal_one(a)
                if a.record.status == "heal_failed":
                    raise FaultError(f"could not heal {rec.description}: {a.record.error}")
                return
        raise FaultError(f"fault {rec.id} ({rec.description}) was not injected by this injector")

    def _heal_one(self, a: _Active) -> None:
        if a.healed:
            return
        a.healed = True
        log.info("heal: %s", a.record.description)
        try:
            a.fault.heal()
        except BaseException as exc:
            a.record.status, a.record.error = "heal_failed", f"{type(exc).__name__}: {exc}"
            a.record.healed_at = time.time()
            self.journal.write(a.record)
            if not isinstance(exc, Exception):
                raise
            log.error("heal of %s failed: %s", a.record.description, exc)
            return
        a.record.healed_at = time.time()
        if a.record.status != "apply_failed":
            a.record.status = "healed"
            missing = a.fault.confirm_healed(self.confirm_timeout_s)
            a.record.confirmed_healed = not missing
            a.record.confirmation += f"; not seen healed: {missing}" if missing else "; seen healed"
            if missing:
                log.warning("fault not confirmed healed: %s: %s", a.record.description, missing)
        self.journal.write(a.record)

    def heal_all(self) -> None:
        """Undo every active fault, newest first; one failed undo does not stop the others."""
        failures = []
        for a in reversed(self._active):
            self._heal_one(a)
            if a.record.status == "heal_failed":
                failures.append(f"{a.record.description}: {a.record.error}")
        if failures:
            raise FaultError(
                "some faults could not be undone: " + "; ".join(failures) + ". Run `kubequake heal` to retry, "
                "or `kubequake down` to remove the cluster"
            )

    def records(self) -> list[FaultRecord]:
        return [a.record for a in self._active]


def journal_path(run_dir: Path) -> Path:
    return run_dir / "faults.jsonl"
