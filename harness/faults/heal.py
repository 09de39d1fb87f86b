"""Undo what a crashed or interrupted run left in force, from its fault journal."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.faults.base import journal_path
from harness.faults.catalog import from_record
from harness.faults.journal import Journal

if TYPE_CHECKING:
    from harness.providers.base import Cluster

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealOutcome:
    description: str
    healed: bool
    error: str


def heal_from_journal(cluster: Cluster) -> list[HealOutcome]:
    """Undo every journaled fault not known to be healed, newest first; each outcome recorded."""
    journal = Journal(journal_path(cluster.run_dir))
    outcomes = []
    for rec in journal.unhealed():
        try:
            from_record(cluster, rec.kind, rec.params).heal()
        except Exception as exc:
            rec.status, rec.error = "heal_failed", f"{type(exc).__name__}: {exc}"
            outcomes.append(HealOutcome(rec.description, False, rec.error))
        else:
            rec.status, rec.healed_at = "healed", time.time()
            outcomes.append(HealOutcome(rec.description, True, ""))
        journal.write(rec)
    return outcomes
