"""The only code that talks to Allure: steps, attachments, labels.

Everything else reports through these functions, so the harness runs (and its unit tests pass)
without an Allure run in progress: outside an allure-pytest session the calls are no-ops, and
the costly ones (plots, log excerpts) are skipped altogether.

Every text attached passes through `redact.redact`: a report is shared widely and must never
carry key material.

Public API:
    step(title)                                   context manager; also tells step listeners
    add_step_listener(fn) / remove_step_listener(fn)
    enabled()                                     is an Allure run recording?
    attach_text / attach_json / attach_html / attach_csv / attach_png / attach_svg
    label_scenario(epic, feature, story, severity, tags)
    attach_fault_journal(records, t0=None)        table and JSON
    attach_verdicts(verdicts)                     budgets vs measured, text and HTML
    attach_member_table(before, after)            etcd members, leaders and apiservers before/after
    attach_leader_changes(before, after)
    attach_timeline(timeline=None, faults=(), *, phases=(), availability=None, ...)
    attach_availability(sampler, faults, phases=())
    attach_log_excerpts(cluster, records, seconds=10.0)
    observe(source) / take_observed()             traffic or probes to draw on the test's timeline
    attach_scenario(run, sources=())              all of the above for a ScenarioRun
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import allure
from allure_commons._core import plugin_manager

from harness.providers.base import Capability
from harness.report.redact import redact as redact_text

if TYPE_CHECKING:
    from harness.faults.journal import FaultRecord
    from harness.report.logs import FaultLike, LogSource
    from harness.report.plots import FaultWindow, PhaseSpan, ProbeSample, SecondRow
    from harness.status import ClusterStatus
    from harness.verdicts import Verdict

log = logging.getLogger(__name__)

StepListener = Callable[[str, int], None]
_listeners: list[StepListener] = []
_depth = 0
# Traffic and availability sources of the running test, drawn on its timeline when it ends.
_observed: list[Any] = []


def enabled() -> bool:
    """True while an allure-pytest run records results (pytest with --alluredir)."""
    return bool(plugin_manager.hook.attach_data.get_hookimpls())


def add_step_listener(fn: StepListener) -> None:
    """Call fn(title, depth) at the start of every step (progress displays use it)."""
    _listeners.append(fn)


def remove_step_listener(fn: StepListener) -> None:
    with contextlib.suppress(ValueError):
        _listeners.remove(fn)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    global _depth
    for fn in list(_listeners):
        try:
            fn(title, _depth)
        except Exception as exc:  # a progress display must never break a scenario
            log.debug("step listener failed: %s", exc)
    _depth += 1
    try:
        with allure.step(title):
            yield
    finally:
        _depth -= 1


# -- raw attachments -------------------------------------------------------------------------
def attach_text(name: str, text: str) -> None:
    allure.attach(redact_text(text), name=name, attachment_type=allure.attachment_type.TEXT)


def attach_json(name: str, data: Any) -> None:
    text = json.dumps(data, indent=2, default=str)
    allure.attach(redact_text(text), name=name, attachment_type=allure.attachment_type.JSON)


def attach_html(name: str, html: str) -> None:
    allure.attach(redact_text(html), name=name, attachment_type=allure.attachment_type.HTML)


def attach_csv(name: str, rows: Sequence[Mapping[str, object]]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    allure.attach(redact_text(buf.getvalue()), name=name, attachment_type=allure.attachment_type.CSV)


def attach_png(name: str, png: bytes) -> None:
    allure.attach(png, name=name, attachment_type=allure.attachment_type.PNG)


def attach_svg(name: str, svg: str) -> None:
    allure.attach(svg, name=name, attachment_type=allure.attachment_type.SVG)


def describe(text: str) -> None:
    """The running test's description: a docstring, dedented so Markdown renders prose, not code."""
    allure.dynamic.description(inspect.cleandoc(text))  # type: ignore[no-untyped-call]


def label_scenario(
    epic: str, feature: str, story: str, severity: str = "critical", tags: list[str] | None = None
) -> None:
    allure.dynamic.epic(epic)  # type: ignore[no-untyped-call]
    allure.dynamic.feature(feature)  # type: ignore[no-untyped-call]
    allure.dynamic.story(story)  # type: ignore[no-untyped-call]
    allure.dynamic.severity(severity)  # type: ignore[no-untyped-call]
    for tag in tags or []:
        allure.dynamic.tag(tag)  # type: ignore[no-untyped-call]


# -- the scenario's story --------------------------------------------------------------------
def attach_fault_journal(records: Sequence[FaultRecord], t0: float | None = None) -> None:
    """The faults of a scenario as a table (what, where, applied, healed, lasted) and as JSON."""
    if not enabled():
        return
    from harness.report.tables import fault_journal

    attach_text("fault journal (table)", fault_journal(records, t0))
    attach_json("fault journal", [r.__dict__ for r in records])


def attach_verdicts(verdicts: Sequence[Verdict]) -> None:
    """Budgets vs measured: a fixed-width table and a coloured HTML table."""
    if not enabled():
        return
    from harness.report.tables import verdicts_html, verdicts_text

    attach_html("budgets vs measured (table)", verdicts_html(verdicts))
    attach_text("budgets vs measured", verdicts_text(verdicts))


def attach_member_table(before: ClusterStatus | None, after: ClusterStatus | None) -> None:
    """etcd members (health, leader, term, index), leaders and apiservers, before vs after."""
    if not enabled():
        return
    from harness.report.tables import member_table

    attach_text("etcd members before/after", member_table(before, after))


def attach_leader_changes(before: ClusterStatus | None, after: ClusterStatus | None) -> None:
    if not enabled():
        return
    from harness.report.tables import leader_changes

    changes = leader_changes(before, after)
    if changes:
        attach_text("leader changes", "\n".join(c.line() for c in changes))


def fault_windows(records: Iterable[FaultRecord]) -> list[FaultWindow]:
    """Shaded windows for the plot: every fault that was applied, open-ended if never healed."""
    from harness.report.plots import FaultWindow

    return [FaultWindow(r.description, r.applied_at, r.healed_at) for r in records if r.applied_at is not None]


def _probe_samples(availability: Any) -> dict[str, Sequence[ProbeSample]]:
    """name -> samples from an AvailabilitySampler, its .series mapping, or a mapping of sample lists."""
    series = getattr(availability, "series", availability)
    out: dict[str, Sequence[ProbeSample]] = {}
    for name, s in dict(series or {}).items():
        samples: Iterable[ProbeSample] = s.samples if hasattr(s, "samples") else s
        out[str(name)] = list(samples)
    return out


def _timeline_rows(timeline: Any) -> Sequence[SecondRow]:
    """Per-second rows from a harness.load.timeline.Timeline (or already a list of rows)."""
    if timeline is None:
        return []
    rows = timeline.rows() if hasattr(timeline, "rows") else timeline
    return list(rows)


def attach_timeline(
    timeline: Any = None,
    faults: Iterable[FaultRecord] = (),
    *,
    phases: Sequence[PhaseSpan] = (),
    availability: Any = None,
    name: str = "timeline",
    title: str = "",
    fmt: str = "png",
) -> None:
    """The scenario timeline plot: traffic (rps, errors, p50/p99), probes, phases, faults shaded.

    `timeline` is a harness.load.timeline.Timeline (or its rows); `availability` an
    AvailabilitySampler (or name -> samples). The per-second rows are attached as CSV too.
    """
    if not enabled():
        return
    from harness.report.plots import scenario_timeline

    rows = _timeline_rows(timeline)
    try:
        image = scenario_timeline(
            faults=fault_windows(faults),
            phases=phases,
            rows=rows,
            probes=_probe_samples(availability),
            title=title,
            fmt="svg" if fmt == "svg" else "png",
        )
    except Exception as exc:  # a plot that fails must not fail the scenario it illustrates
        log.warning("could not draw the timeline %r: %s", name, exc)
        attach_text(f"{name} (plot failed)", f"{type(exc).__name__}: {exc}")
        return
    if fmt == "svg":
        attach_svg(name, image.decode())
    else:
        attach_png(name, image)
    if rows and hasattr(rows[0], "to_dict"):
        attach_csv(f"{name} per second", [r.to_dict() for r in rows])  # type: ignore[attr-defined]


def attach_availability(
    availability: Any, faults: Iterable[FaultRecord] = (), phases: Sequence[PhaseSpan] = ()
) -> None:
    """Availability probe samples (green ok, red failed) with the faults shaded."""
    attach_timeline(None, faults, phases=phases, availability=availability, name="API availability")


def attach_log_excerpts(cluster: LogSource, records: Iterable[FaultLike], seconds: float = 10.0) -> None:
    """For each applied fault, the affected components' logs from `seconds` before to after it."""
    if not enabled():
        return
    from harness.report.logs import iter_fault_excerpts

    try:
        for fault, text in iter_fault_excerpts(cluster, records, seconds):
            attach_text(f"logs around: {fault.description}", text)
    except OSError as exc:
        log.warning("could not read component logs for the report: %s", exc)


def phase_spans(run: Any) -> list[PhaseSpan]:
    """The phases of a harness.scenario.ScenarioRun as plot spans."""
    from harness.report.plots import PhaseSpan

    return [PhaseSpan(p.name, p.started, p.ended) for p in getattr(run, "phases", [])]


def observe(source: Any) -> None:
    """Put a traffic or availability source on the current test's timeline plot.

    `source` is a harness.load.traffic.Traffic or a harness.checks.availability.AvailabilitySampler.
    The pytest hooks draw the timeline when the test ends (also when it fails or breaks), so a
    scenario only says what it watched: `report.observe(sampler)`.
    """
    _observed.append(source)


def take_observed() -> list[Any]:
    """The sources observed since the last call (the pytest hooks call it once per test)."""
    out = list(_observed)
    _observed.clear()
    return out


def _split_sources(sources: Iterable[Any]) -> tuple[Any, dict[str, Sequence[ProbeSample]]]:
    """The first traffic timeline and every probe series among the sources (names kept unique)."""
    timeline = None
    probes: dict[str, Sequence[ProbeSample]] = {}
    for src in sources:
        if hasattr(src, "series"):
            for name, samples in _probe_samples(src).items():
                key, n = name, 2
                while key in probes:
                    key, n = f"{name} ({n})", n + 1
                probes[key] = samples
        elif timeline is None and callable(getattr(src, "timeline", None)):
            try:
                timeline = src.timeline()
            except Exception as exc:  # the rest of the story is still worth attaching
                log.warning("could not read the traffic timeline: %s", exc)
    return timeline, probes


def attach_scenario(run: Any, sources: Iterable[Any] = (), log_seconds: float = 10.0) -> None:
    """Everything a retrospective needs about one ScenarioRun, attached at the test's top level.

    The timeline plot (phases, faults, and the per-second traffic and probe samples of the
    observed sources), the fault journal table, etcd members and leaders before/after, and log
    excerpts around each fault. Works on a run that ended early: whatever exists is attached.
    """
    if not enabled():
        return
    records: list[FaultRecord] = list(run.injector.records())
    phases = phase_spans(run)
    timeline, probes = _split_sources(sources)
    attach_timeline(timeline, records, phases=phases, availability=probes, title=f"{run.name}: timeline")
    from harness.report.tables import fault_journal

    t0 = phases[0].start if phases else None
    attach_text("fault journal (table)", fault_journal(records, t0))
    verdicts = getattr(run, "verdicts", [])
    if verdicts:
        # finish() attaches the text table; the coloured one reads better on a shared screen.
        from harness.report.tables import verdicts_html

        attach_html("budgets vs measured (table)", verdicts_html(verdicts))
    if run.before is not None or run.after is not None:
        attach_member_table(run.before, run.after)
        attach_leader_changes(run.before, run.after)
    if Capability.COMPONENT_LOGS in run.cluster.capabilities:
        attach_log_excerpts(run.cluster, records, log_seconds)
