"""The scenario timeline picture: what clients saw, second by second, with the faults shaded.

One figure tells a retrospective the whole story: requests per second (successes and failures
stacked), p50/p99 latency, each availability probe's samples as a strip (green ok, red failed),
and the scenario's phases, all on one wall-clock axis with every fault window shaded and named.
Panels without data are left out. Rendering uses matplotlib's Agg canvas on a private Figure
(never pyplot's global state), so it is safe from any thread and needs no display.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Format = Literal["png", "svg"]

FAULT_COLOR = "#f4a261"
OK_COLOR = "#2a9d8f"
FAIL_COLOR = "#e63946"
LATENCY_COLOR = "#264653"
PHASE_COLORS = ("#8ecae6", "#bde0fe", "#a2d2ff", "#cdb4db", "#ffc8dd", "#caffbf")


@dataclass(frozen=True)
class FaultWindow:
    """A shaded interval: a fault from applied to healed (end None: still in force at the end)."""

    label: str
    start: float
    end: float | None


@dataclass(frozen=True)
class PhaseSpan:
    name: str
    start: float
    end: float | None


class SecondRow(Protocol):
    """One second of traffic (harness.load.timeline.Second)."""

    @property
    def t(self) -> int: ...
    @property
    def successes(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def p50_ms(self) -> float | None: ...
    @property
    def p99_ms(self) -> float | None: ...


class ProbeSample(Protocol):
    """One availability sample (harness.checks.availability.Sample)."""

    @property
    def t(self) -> float: ...
    @property
    def ok(self) -> bool: ...
    @property
    def latency_s(self) -> float: ...


def _span(
    faults: Sequence[FaultWindow],
    phases: Sequence[PhaseSpan],
    rows: Sequence[SecondRow],
    probes: Mapping[str, Sequence[ProbeSample]],
) -> tuple[float, float] | None:
    starts = [f.start for f in faults] + [p.start for p in phases] + [float(r.t) for r in rows[:1]]
    starts += [s[0].t for s in probes.values() if s]
    ends = [f.end for f in faults if f.end is not None] + [p.end for p in phases if p.end is not None]
    ends += [float(r.t + 1) for r in rows[-1:]] + [s[-1].t for s in probes.values() if s]
    ends += starts
    if not starts:
        return None
    return min(starts), max(ends)


def _runs(samples: Sequence[ProbeSample]) -> list[tuple[float, float, bool]]:
    """Consecutive samples with the same outcome as (start, end, ok); a run lasts until the next
    sample with the other outcome, so an outage shows as one red band."""
    out: list[tuple[float, float, bool]] = []
    for i, s in enumerate(samples):
        nxt = samples[i + 1].t if i + 1 < len(samples) else s.t + 0.05
        if out and out[-1][2] == s.ok:
            out[-1] = (out[-1][0], nxt, s.ok)
        else:
            out.append((s.t, nxt, s.ok))
    return out


def scenario_timeline(
    *,
    faults: Sequence[FaultWindow] = (),
    phases: Sequence[PhaseSpan] = (),
    rows: Sequence[SecondRow] = (),
    probes: Mapping[str, Sequence[ProbeSample]] | None = None,
    title: str = "",
    fmt: Format = "png",
) -> bytes:
    """Render the timeline; returns PNG bytes or SVG text encoded as UTF-8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    probes = {k: v for k, v in (probes or {}).items() if v}
    span = _span(faults, phases, rows, probes)
    t0, t1 = span if span is not None else (time.time(), time.time() + 1)
    if t1 - t0 < 1:
        t1 = t0 + 1
    panels: list[str] = []
    if rows:
        panels += ["rps", "latency"]
    if probes:
        panels.append("probes")
    if phases or not panels:
        panels.append("phases")
    heights = {"rps": 3.0, "latency": 2.0, "probes": 0.5 + 0.45 * len(probes), "phases": 0.9}
    fig = Figure(figsize=(12, 1.2 + sum(heights[p] for p in panels)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        len(panels), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": [heights[p] for p in panels]}
    )[:, 0]
    clock0 = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0))
    fig.suptitle(title or "scenario timeline", fontsize=12, x=0.01, ha="left")

    def x(t: float) -> float:
        return t - t0

    for ax, panel in zip(axes, panels, strict=True):
        for f in faults:
            # Drawn over the data (zorder) so a window stays visible across solid bars.
            ax.axvspan(x(f.start), x(f.end if f.end is not None else t1), color=FAULT_COLOR, alpha=0.3, lw=0, zorder=5)
        ax.grid(axis="x", alpha=0.3)
        if panel == "rps":
            xs = [x(r.t) for r in rows]
            ok = [r.successes for r in rows]
            bad = [r.failed for r in rows]
            ax.bar(xs, ok, width=1.0, align="edge", color=OK_COLOR, label="successes/s")
            ax.bar(xs, bad, width=1.0, align="edge", bottom=ok, color=FAIL_COLOR, label="failures/s")
            ax.set_ylabel("requests/s")
            ax.legend(loc="upper right", fontsize=8)
        elif panel == "latency":
            xs = [x(r.t) for r in rows]
            p99 = [math.nan if r.p99_ms is None else r.p99_ms for r in rows]
            p50 = [math.nan if r.p50_ms is None else r.p50_ms for r in rows]
            # Steps, not slopes: each value belongs to one whole second.
            ax.step(xs, p99, where="post", color=LATENCY_COLOR, lw=1.5, label="p99")
            ax.step(xs, p50, where="post", color=LATENCY_COLOR, lw=1, ls="--", label="p50")
            ax.set_ylabel("latency ms")
            if any(not math.isnan(v) and v > 0 for v in p99):
                ax.set_yscale("log")
            ax.legend(loc="upper right", fontsize=8)
        elif panel == "probes":
            names = list(probes)
            for i, name in enumerate(names):
                for start, end, ok_state in _runs(probes[name]):
                    ax.broken_barh(
                        [(x(start), max(end - start, 0.01))],
                        (i - 0.35, 0.7),
                        color=OK_COLOR if ok_state else FAIL_COLOR,
                        lw=0,
                    )
            ax.set_yticks(range(len(names)), names)
            ax.set_ylim(-0.6, len(names) - 0.4)
            ax.set_ylabel("API probes", fontsize=8)
        else:
            for i, p in enumerate(phases):
                end = p.end if p.end is not None else t1
                ax.broken_barh(
                    [(x(p.start), max(end - p.start, 0.01))],
                    (0, 1),
                    color=PHASE_COLORS[i % len(PHASE_COLORS)],
                    lw=0.5,
                    edgecolor="#555",
                )
                # Alternate heights so the names of short neighbouring phases do not overlap.
                ax.text(
                    x(p.start) + 0.1, 0.72 if i % 2 else 0.28, p.name, va="center", ha="left", fontsize=7, clip_on=True
                )
            ax.set_yticks([])
            ax.set_ylim(0, 1)
            ax.set_ylabel("phases", fontsize=8)
    top = axes[0]
    for f in faults:
        top.annotate(
            f.label,
            xy=(x(f.start), 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, 2),
            textcoords="offset points",
            fontsize=8,
            color="#b5541c",
            va="bottom",
            ha="left",
            annotation_clip=False,
        )
    axes[-1].set_xlim(0, x(t1))
    axes[-1].set_xlabel(f"seconds since {clock0} (local time); shaded: faults in force")
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else None
    fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()
