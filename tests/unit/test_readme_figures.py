"""README's performance figures are the ones the benchmarks wrote to benchmarks/results/*.json.

The rule, also in benchmarks/README.md ("Figures in README"):
- The table checked is the first one under "## Performance" in README.md. Its "measured"
  column holds the figures; its "from" column names, in backticks, the file(s) in
  benchmarks/results/ they come from and the names of those figures in the files (`*` matches
  any run of characters: `ha_up_*`). Every name must exist in the files.
- A figure is a number followed by its unit (`6.35 s`, `1.51x`, `1409 MiB`, `0 failures`), or
  a host load written `load 15.4`. A range `5.8-7.9 s` is two figures sharing the unit.
- A figure matches one of the figures the row names (`"figures": {name: {"value", "unit"}}`)
  whose unit is the same, or of the same kind and converted (ms, s, min; KiB, MiB, GiB), when
  that value printed with as many decimals as README shows gives README's number exactly:
  `6.35 s` and `6.4 s` match 6.3512 s, `1.37 GiB` matches 1407.5 MiB, `6.36 s` does not match 6.3512 s.
- Any other number in the measured column (one without a unit) fails: a figure that no file
  can back does not belong in that column. A row whose measured cell holds no number ("not yet
  measured") needs no file.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"

NUMBER = r"\d+(?:\.\d+)?"
RANGE = rf"(?P<a>{NUMBER})(?:\s*[-–]\s*(?P<b>{NUMBER}))?"
# Written unit -> the unit results files use. Longest first, so "scenarios" is never read as "s".
UNITS = {
    "false alarms": "false alarms",
    "false alarm": "false alarms",
    "scenarios": "scenarios",
    "scenario": "scenarios",
    "failures": "failures",
    "failure": "failures",
    "starts": "starts",
    "start": "starts",
    "cores": "core",
    "core": "core",
    "runs": "runs",
    "run": "runs",
    "rps": "rps",
    "min": "min",
    "KiB": "KiB",
    "MiB": "MiB",
    "GiB": "GiB",
    "ms": "ms",
    "s": "s",
    "x": "x",
    "%": "%",
}
SUFFIX_FIGURE = re.compile(
    rf"(?<![\w.]){RANGE}\s*(?P<unit>{'|'.join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))})(?!\w)"
)
LOAD_FIGURE = re.compile(rf"\bload\s+{RANGE}(?![\w.])")
BARE_NUMBER = re.compile(rf"(?<![\w.]){NUMBER}(?![\w.])")
# Units of one kind, in a common base: a figure may be written in any of them.
SCALES = {
    "ms": ("time", 0.001),
    "s": ("time", 1.0),
    "min": ("time", 60.0),
    "KiB": ("memory", 1.0),
    "MiB": ("memory", 1024.0),
    "GiB": ("memory", 1024.0**2),
}


@dataclass(frozen=True)
class Written:
    """A figure as README writes it: the number's text (its decimals matter) and the unit."""

    number: str
    unit: str


@dataclass(frozen=True)
class Stored:
    name: str
    value: float
    unit: str


@dataclass(frozen=True)
class Row:
    measure: str
    measured: str
    files: tuple[str, ...]
    names: tuple[str, ...]  # figure names or patterns in those files


def performance_table(readme: str) -> list[Row]:
    section = readme.split("\n## Performance\n", 1)
    assert len(section) == 2, "README.md has no '## Performance' section"
    body = section[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in body.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    assert start is not None, "no table under '## Performance' in README.md"
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    header = [h.lower() for h in table[0]]
    assert "measured" in header and "from" in header, f"the performance table needs 'measured' and 'from': {header}"
    measured, source = header.index("measured"), header.index("from")
    rows = []
    for cells in table[2:]:  # after the header and its --- line
        quoted = re.findall(r"`([^`]+)`", cells[source])
        files = tuple(q for q in quoted if q.endswith(".json"))
        rows.append(Row(cells[0], cells[measured], files, tuple(q for q in quoted if not q.endswith(".json"))))
    return rows


def figures_in(cell: str) -> tuple[list[Written], list[str]]:
    """The figures of a cell, and the numbers in it that have no unit."""
    text = cell.replace("**", "").replace("`", "")
    found: list[Written] = []

    def take(m: re.Match[str], unit: str) -> str:
        found.extend(Written(n, unit) for n in (m.group("a"), m.group("b")) if n is not None)
        return " " * len(m.group(0))

    text = LOAD_FIGURE.sub(lambda m: take(m, "load"), text)
    text = SUFFIX_FIGURE.sub(lambda m: take(m, UNITS[m.group("unit")]), text)
    return found, BARE_NUMBER.findall(text)


def stored_figures(path: Path) -> list[Stored]:
    doc = json.loads(path.read_text())
    return [Stored(name, float(f["value"]), str(f["unit"])) for name, f in doc["figures"].items()]


def in_units(stored: Stored, unit: str) -> float | None:
    """The stored value expressed in `unit`, or None when the two units are not of one kind."""
    if stored.unit == unit:
        return stored.value
    a, b = SCALES.get(stored.unit), SCALES.get(unit)
    if a is None or b is None or a[0] != b[0]:
        return None
    return stored.value * a[1] / b[1]


def matches(written: Written, stored: Stored) -> bool:
    value = in_units(stored, written.unit)
    if value is None:
        return False
    decimals = len(written.number.partition(".")[2])
    return f"{value:.{decimals}f}" == written.number


def problems(readme: str, results: Path) -> list[str]:
    out = []
    for row in performance_table(readme):
        written, bare = figures_in(row.measured)
        out += [f"{row.measure!r}: {n} has no unit, so no results file can back it" for n in bare]
        if not written:
            continue
        if not row.files:
            out.append(f"{row.measure!r}: figures {[f'{w.number} {w.unit}' for w in written]} but no file in 'from'")
            continue
        missing = [f for f in row.files if not (results / f).is_file()]
        if missing:
            out.append(f"{row.measure!r}: {missing} not in {results}")
            continue
        in_files = [s for f in row.files for s in stored_figures(results / f)]
        if not row.names:
            out.append(f"{row.measure!r}: 'from' names no figure of {list(row.files)}")
            continue
        stale = [n for n in row.names if not any(fnmatch.fnmatchcase(s.name, n) for s in in_files)]
        out += [f"{row.measure!r}: no figure named {n!r} in {list(row.files)}" for n in stale]
        stored = [s for s in in_files if any(fnmatch.fnmatchcase(s.name, n) for n in row.names)]
        out += [
            f"{row.measure!r}: {w.number} {w.unit} is in none of {list(row.names)} of {list(row.files)}"
            for w in written
            if not any(matches(w, s) for s in stored)
        ]
    return out


def test_every_measured_figure_in_readme_is_in_a_results_file() -> None:
    readme = README.read_text()
    counted = sum(len(figures_in(r.measured)[0]) for r in performance_table(readme))
    assert counted, "README's performance table has no figure at all: the check below would pass on nothing"
    found = problems(readme, RESULTS)
    assert not found, "README's performance figures that benchmarks/results/*.json do not hold:\n" + "\n".join(found)


def test_a_changed_figure_is_caught() -> None:
    readme = README.read_text()
    row = next(r for r in performance_table(readme) if figures_in(r.measured)[0])
    m = SUFFIX_FIGURE.search(row.measured)
    assert m is not None, row.measured
    number = m.group("a")
    changed = number[:-1] + str((int(number[-1]) + 1) % 10)
    cell = row.measured[: m.start("a")] + changed + row.measured[m.end("a") :]
    found = problems(readme.replace(row.measured, cell, 1), RESULTS)
    assert any(f"{changed} {UNITS[m.group('unit')]} is in none of" in p for p in found), found


def test_a_number_without_unit_is_refused() -> None:
    readme = README.read_text()
    row = next(r for r in performance_table(readme) if figures_in(r.measured)[0])
    found = problems(readme.replace(row.measured, row.measured + " over 42 attempts", 1), RESULTS)
    assert any("42 has no unit" in p for p in found), found


def test_matching_rule() -> None:
    assert figures_in("**6.35 s** median of 3 runs (5.8-7.9 s), load 15.0-26.0, 1.51x, 98%") == (
        [
            Written("15.0", "load"),
            Written("26.0", "load"),
            Written("6.35", "s"),
            Written("3", "runs"),
            Written("5.8", "s"),
            Written("7.9", "s"),
            Written("1.51", "x"),
            Written("98", "%"),
        ],
        [],
    )
    assert figures_in("0 false alarms in 3 scenarios, 2 workers") == (
        [Written("0", "false alarms"), Written("3", "scenarios")],
        ["2"],
    )
    assert matches(Written("6.35", "s"), Stored("up", 6.3512, "s"))
    assert matches(Written("6.4", "s"), Stored("up", 6.3512, "s"))
    assert not matches(Written("6.36", "s"), Stored("up", 6.3512, "s"))
    assert not matches(Written("6.3", "s"), Stored("up", 6.3512, "s"))
    assert matches(Written("1.37", "GiB"), Stored("peak", 1407.5, "MiB"))
    assert matches(Written("5.2", "min"), Stored("wall", 312.0, "s"))
    assert matches(Written("350", "ms"), Stored("down", 0.35, "s"))
    assert not matches(Written("1.37", "x"), Stored("peak", 1.37, "s"))
    assert not matches(Written("0.35", "s"), Stored("ratio", 0.35, "x"))


def test_every_results_file_says_when_where_and_how_busy() -> None:
    files = sorted(RESULTS.glob("*.json"))
    assert files, f"no results in {RESULTS}"
    for path in files:
        doc = json.loads(path.read_text())
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["date"]), (path.name, doc["date"])
        assert {"cores", "memory_bytes", "kernel", "cpu_model"} <= set(doc["machine"]), path.name
        for when in ("start", "end"):
            assert {"one_min", "five_min", "fifteen_min"} <= set(doc["load"][when]), path.name
        assert re.fullmatch(r"[0-9a-f]{40}", doc["git"]["revision"]), path.name
        assert doc["command"].split()[1].startswith("benchmarks/"), path.name
        assert doc["figures"] and all({"value", "unit"} <= set(f) for f in doc["figures"].values()), path.name
