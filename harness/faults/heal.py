"""Clean up after runs that ended without cleaning up (SIGKILL, a crash, a lost machine).

What is left is found from what the runs recorded, never by guessing names: the session records
(harness/providers/sessions.py) say which process held which cluster and whether it had brought
it up; the fault journal of each cluster lists the faults still in force.

- A cluster a dead process had brought up, and would have torn down, is torn down: its faults
  go with it (for the local provider, whose processes died with their owner, undoing a fault one
  by one on a dead cluster would only start lone components).
- Any other cluster (started by `kubequake up`, kept, existing) stays running: every fault the
  journal lists in force is undone, newest first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.faults.base import journal_path
from harness.faults.catalog import from_record
from harness.faults.journal import Journal
from harness.providers import registry, sessions
from harness.providers.sessions import SessionRecord

if TYPE_CHECKING:
    from harness.providers.base import Cluster

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealOutcome:
    description: str
    healed: bool
    error: str


@dataclass
class ClusterHeal:
    """What `heal` found and did for one cluster."""

    name: str
    provider: str
    # Sessions that ended without letting go of the cluster, and those still running on it.
    left_by: list[SessionRecord] = field(default_factory=list)
    in_use_by: list[SessionRecord] = field(default_factory=list)
    outcomes: list[HealOutcome] = field(default_factory=list)
    torn_down: bool = False
    # Faults in force when the cluster was torn down, gone with it.
    removed_with_cluster: list[str] = field(default_factory=list)
    # Nothing of the cluster exists (no run directory and no record that it was brought up).
    missing: bool = False
    # Why nothing was done, when something was deliberately left alone.
    skipped: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and all(o.healed for o in self.outcomes)


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


def _owner(dead: list[SessionRecord]) -> SessionRecord | None:
    """The ended session that had brought the cluster up and would have torn it down, if any."""
    return next((r for r in dead if r.created and r.teardown), None)


def _heal(
    result: ClusterHeal, cluster: Cluster, dead: list[SessionRecord], *, journal_despite_live: bool
) -> ClusterHeal:
    owner = _owner(dead)
    if owner is not None:
        in_force = [r.description for r in Journal(journal_path(cluster.run_dir)).unhealed()]
        try:
            cluster.destroy()
        except HarnessError as exc:
            result.error = f"tearing down cluster {result.name!r} failed: {exc}"
            return result  # the records stay: the next `heal` tries again
        result.torn_down, result.removed_with_cluster = True, in_force
    elif result.in_use_by and not journal_despite_live:
        # The faults in force may be the live session's own, in the middle of a scenario.
        live = result.in_use_by[0]
        result.skipped = (
            f"left alone while `{live.command_line}` (pid {live.pid}) uses it; once it ends, run "
            f"`kubequake heal` again (or `kubequake heal --set name={result.name}` to heal it now)"
        )
        return result
    else:
        try:
            result.outcomes = heal_from_journal(cluster)
        finally:
            cluster.detach()
        if not result.ok:
            return result
    for rec in dead:
        sessions.remove(rec)
    return result


def heal_target(options: registry.ProviderOptions) -> ClusterHeal:
    """Heal the one cluster these options name (`kubequake heal --set name=...` / `--inventory F`).

    Asked for by name, its journal is healed even while another session uses it.
    """
    records = sessions.read_all(options.run_root())
    if options.provider == "local" and not options.config.run_dir.is_dir():
        # Nothing on disk: only a record that the cluster was brought up (and so rules and cgroups
        # may be left, keyed by its name) gives a reason to build it; building creates the directory.
        mine = sessions.for_cluster(records, "local", options.config.run_dir)
        dead = [r for r in mine if not r.alive()]
        if _owner(dead) is None:
            return ClusterHeal(options.config.name, "local", missing=True)
    cluster = registry.build(options)
    mine = sessions.for_cluster(records, options.provider, cluster.run_dir)
    dead = [r for r in mine if not r.alive()]
    result = ClusterHeal(cluster.cfg.name, options.provider, left_by=dead, in_use_by=[r for r in mine if r.alive()])
    if not cluster.run_dir.exists() and _owner(dead) is None:
        result.missing = True
        return result
    return _heal(result, cluster, dead, journal_despite_live=True)


def heal_leftovers(run_root: Path) -> list[ClusterHeal]:
    """Heal every cluster under the run root that a session left behind when it ended (plain `kubequake heal`)."""
    records = sessions.read_all(run_root)
    by_cluster: dict[tuple[str, str], list[SessionRecord]] = {}
    for rec in records:
        by_cluster.setdefault((rec.provider, rec.run_dir), []).append(rec)
    results = []
    for (provider, _), recs in by_cluster.items():
        dead = [r for r in recs if not r.alive()]
        if not dead:
            continue  # every session on it is still running: nothing was left behind
        live = [r for r in recs if r.alive()]
        result = ClusterHeal(dead[0].cluster, provider, left_by=dead, in_use_by=live)
        if not Path(dead[0].run_dir).exists() and _owner(dead) is None:
            # Gone already (`kubequake down`): no journal to heal, nothing to tear down.
            for rec in dead:
                sessions.remove(rec)
            result.missing = True
            results.append(result)
            continue
        try:
            cluster = registry.reopen(dead[0])
        except HarnessError as exc:
            result.error = (
                f"cannot reach cluster {result.name!r} as its run recorded it: {exc}; make that reachable again, "
                f"or delete {dead[0].path} once the cluster is known to be clean"
            )
            results.append(result)
            continue
        results.append(_heal(result, cluster, dead, journal_despite_live=False))
    return results
