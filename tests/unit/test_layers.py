"""Imports point one way: down the layer table below, and never round in a cycle.

Every module of harness/ and fixtures/ is parsed (not imported), and every import counts as an
arrow: at module level, inside a function, under `if TYPE_CHECKING:`, or a literal
`importlib.import_module("...")`. A lazy or type-only import is still a dependency a reader
must know about, and the one that turns into a real import one refactoring later.

A package is `harness.X` (a module directly under harness/ is a package of its own), `fixtures`
or `scenarios`. A package may import itself, and any package in an earlier tier of LAYERS;
packages that share a tier may not import each other.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Tier:
    layer: str
    packages: tuple[str, ...]
    why: str


# Bottom to top. A change here is a change of architecture: say why in `why`.
LAYERS: tuple[Tier, ...] = (
    Tier("L0", ("harness", "harness.errors"), "the one error root; harness/__init__.py imports nothing"),
    Tier(
        "L0",
        (
            "harness.config",
            "harness.spawn",
            "harness.pki",
            "harness.binaries",
            "harness.transport",
            "harness.net",
        ),
        "settings, processes, certificates, pinned binaries, commands on nodes, and the helpers every "
        "layer above uses (TLS files, HTTP sessions and probes, the small API client, waits with deadlines)",
    ),
    Tier(
        "L0",
        ("harness.slo", "harness.verdicts"),
        "the user's objectives, read from the configuration, and the verdicts with four outcomes every layer reports",
    ),
    Tier("L1", ("harness.providers",), "the cluster contract and the providers that implement it"),
    Tier("L2", ("harness.checks",), "observations of a cluster; load's SLOs are judged with their verdicts"),
    Tier(
        "L2",
        ("harness.faults", "harness.load"),
        "what is done to a cluster and the traffic sent through it: independent of each other",
    ),
    Tier(
        "L3",
        ("harness.status", "harness.ctl", "harness.windows"),
        "status snapshots, cross-process control, the named windows and waits scenarios spend",
    ),
    Tier("L3", ("harness.report",), "reports render statuses, verdicts and fault journals"),
    Tier("L3", ("harness.scenario", "harness.gate"), "the experiment skeleton and the release gate"),
    Tier("L3", ("harness.suites",), "where the installed scenario suites are; the pytest settings of user runs"),
    Tier("L3", ("harness.gate_suite",), "the gate's suite runner, reporting gate outcomes"),
    Tier("L4", ("harness.cli", "harness.demo", "harness.pytest_plugin"), "entry points"),
    Tier("L4", ("fixtures", "scenarios"), "pytest fixtures build on the plugin's settings; scenarios on everything"),
)

# Top-level names that are this project's own code; everything else is a third-party import.
PROJECT_ROOTS = ("harness", "fixtures", "scenarios")


@dataclass(frozen=True)
class Arrow:
    """One import in one file: module `importer` depends on `imported`.

    `imported` is the dotted name as the statement names it: a module (`import a.b`), or a name
    inside one (`from a.b import c` gives `a.b.c`, which may be a submodule or a class).
    """

    path: Path
    line: int
    statement: str
    importer: str
    imported: str

    @property
    def where(self) -> str:
        return f"{self.path.as_posix()}:{self.line}: `{self.statement}`"


def module_name(path: Path) -> str:
    """harness/providers/local.py -> harness.providers.local; a package's __init__ is the package."""
    parts = list(path.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in PROJECT_ROOTS:
        return None
    if parts[0] == "harness":
        return ".".join(parts[:2])
    return parts[0]


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    # In a package's __init__, `.` is the package itself; in a module, its parent.
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _statement(source: str, node: ast.AST) -> str:
    return re.sub(r"\s+", " ", ast.get_source_segment(source, node) or "").replace("( ", "(").replace(", )", ")")


def _dynamic_import(node: ast.Call) -> str | None:
    """The module of `importlib.import_module("a.b")` / `import_module("a.b")` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name != "import_module" or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def arrows_in(path: Path, source: str) -> Iterator[Arrow]:
    """Every import of project code in one file, wherever in the file it sits."""
    importer = module_name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(source, filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, importer, is_package)
            targets = [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and (dynamic := _dynamic_import(node)) is not None:
            targets = [dynamic]
        else:
            continue
        for target in targets:
            if package_of(target) is not None:
                yield Arrow(path, node.lineno, _statement(source, node), importer, target)


def project_files(root: Path = ROOT) -> list[Path]:
    return sorted(
        p.relative_to(root)
        for p in [*root.glob("harness/**/*.py"), *root.glob("fixtures/**/*.py")]
        if "__pycache__" not in p.parts
    )


@functools.cache
def tree_arrows(root: Path = ROOT) -> tuple[Arrow, ...]:
    return tuple(a for rel in project_files(root) for a in arrows_in(rel, (root / rel).read_text()))


def _tier_of(layers: Iterable[Tier]) -> dict[str, tuple[int, Tier]]:
    return {pkg: (i, tier) for i, tier in enumerate(layers) for pkg in tier.packages}


def layer_violations(arrows: Iterable[Arrow], layers: tuple[Tier, ...] = LAYERS) -> list[str]:
    """Each import that points up or sideways in the table, or involves a package the table lacks."""
    tiers = _tier_of(layers)
    out: list[str] = []
    for a in arrows:
        src, dst = package_of(a.importer), package_of(a.imported)
        assert src is not None and dst is not None
        if src == dst:
            continue
        missing = [p for p in (src, dst) if p not in tiers]
        if missing:
            problem = (
                f"{a.where}: {' and '.join(missing)} has no place in the layer table; "
                "add it to LAYERS in tests/unit/test_layers.py with why it sits there"
            )
            if problem not in out:  # one line per statement, not per imported name
                out.append(problem)
            continue
        (si, st), (di, dt) = tiers[src], tiers[dst]
        if di >= si:
            direction = "beside it in the same tier" if di == si else "above it"
            problem = (
                f"{a.where}: {src} ({st.layer}) imports {dst} ({dt.layer}), which sits {direction}; "
                "move what both need down (small shared helpers belong in harness.net), or have the "
                "lower side declare a Protocol of what it needs and take it as an argument"
            )
            if problem not in out:
                out.append(problem)
    return out


def _strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: components of more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _cycle_in(component: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """One concrete cycle through the component's first node, as [a, b, ..., a]."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return [*paths[node], start]
                if child not in paths:
                    paths[child] = [*paths[node], child]
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {component}")


def _module_imported(name: str, modules: set[str]) -> str | None:
    """The module an imported name lives in: `a.b.c` is module a.b.c if there is one, else a name in a.b."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def cycles(arrows: Iterable[Arrow], key: str, modules: Iterable[str] = ()) -> list[str]:
    """Import cycles between packages (`key="package"`) or `modules` (`key="module"`), naming the imports."""
    arrows = list(arrows)
    known = set(modules) | {a.importer for a in arrows}
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], list[Arrow]] = defaultdict(list)
    for a in arrows:
        if key == "package":
            src, dst = package_of(a.importer), package_of(a.imported)
        else:
            src, dst = a.importer, _module_imported(a.imported, known)
        if src is None or dst is None or src == dst:
            continue
        graph[src].add(dst)
        graph.setdefault(dst, set())
        where[(src, dst)].append(a)
    out = []
    for component in _strongly_connected(graph):
        cycle = _cycle_in(component, graph)
        steps = [
            f"  {src} -> {dst}: " + "; ".join(dict.fromkeys(a.where for a in where[(src, dst)]))
            for src, dst in itertools.pairwise(cycle)
        ]
        out.append(f"import cycle {' -> '.join(cycle)}:\n" + "\n".join(steps))
    return out


# -- the tree as it is -----------------------------------------------------------------------------


def test_every_package_on_disk_has_a_place_in_the_layer_table() -> None:
    tiers = _tier_of(LAYERS)
    on_disk = {package_of(module_name(rel)) for rel in project_files()}
    missing = sorted(p for p in on_disk if p is not None and p not in tiers)
    assert not missing, f"add {missing} to LAYERS in tests/unit/test_layers.py, in the tier that says why"
    listed = [p for tier in LAYERS for p in tier.packages]
    assert len(listed) == len(set(listed)), "a package is listed in two tiers"


def test_imports_point_down_the_layers() -> None:
    arrows = tree_arrows()
    # Parsing nothing would pass everything: the tree has hundreds of imports of its own code.
    assert len(arrows) > 200, f"only {len(arrows)} imports found under {ROOT}/harness and fixtures"
    violations = layer_violations(arrows)
    assert not violations, "imports against the layers:\n" + "\n".join(violations)


def test_no_import_cycle_between_harness_packages() -> None:
    found = cycles(tree_arrows(), key="package")
    assert not found, "\n".join(found)


def test_no_import_cycle_between_modules() -> None:
    # Within a package too: a cycle of modules (even through TYPE_CHECKING) is a tangle that a
    # Protocol of what one side needs would cut.
    found = cycles(tree_arrows(), key="module", modules=[module_name(rel) for rel in project_files()])
    assert not found, "\n".join(found)


# -- the checker itself, on made-up sources: it must be able to fail -------------------------------


def _arrows(files: Mapping[str, str]) -> list[Arrow]:
    return [a for name, src in files.items() for a in arrows_in(Path(name), src)]


def test_an_upward_import_under_type_checking_is_named_with_file_line_and_statement() -> None:
    files = {
        "harness/providers/thing.py": (
            "from __future__ import annotations\n"
            "from typing import TYPE_CHECKING\n"
            "from harness.net.wait import wait_until\n"
            "if TYPE_CHECKING:\n"
            "    from harness.checks.etcd import EtcdClient\n"
        )
    }
    violations = layer_violations(_arrows(files))
    assert len(violations) == 1, violations
    assert violations[0].startswith(
        "harness/providers/thing.py:5: `from harness.checks.etcd import EtcdClient`: "
        "harness.providers (L1) imports harness.checks (L2), which sits above it"
    )


def test_sideways_lazy_and_dynamic_imports_count() -> None:
    files = {
        "harness/faults/thing.py": "def f():\n    from harness.load import traffic\n",
        "harness/load/thing.py": "import importlib\nM = importlib.import_module('harness.faults.base')\n",
        "harness/checks/thing.py": "from harness import status\n",
    }
    violations = layer_violations(_arrows(files))
    assert any(v.startswith("harness/faults/thing.py:2:") and "same tier" in v for v in violations), violations
    assert any(v.startswith("harness/load/thing.py:2:") and "same tier" in v for v in violations), violations
    assert any(v.startswith("harness/checks/thing.py:1:") and "imports harness.status" in v for v in violations)


def test_a_package_missing_from_the_table_is_reported() -> None:
    violations = layer_violations(_arrows({"harness/newthing/a.py": "from harness.errors import HarnessError\n"}))
    assert len(violations) == 1 and "harness.newthing has no place in the layer table" in violations[0]


def test_a_package_cycle_is_reported_with_both_imports() -> None:
    files = {
        "harness/providers/local.py": "from harness.faults.netfilter import Netfilter\n",
        "harness/faults/netfilter.py": "import os\n\n\ndef f():\n    import harness.providers.base\n",
    }
    found = cycles(_arrows(files), key="package")
    assert len(found) == 1, found
    assert "harness.faults -> harness.providers -> harness.faults" in found[0]
    assert "harness/providers/local.py:1: `from harness.faults.netfilter import Netfilter`" in found[0]
    assert "harness/faults/netfilter.py:5: `import harness.providers.base`" in found[0]


def test_a_module_cycle_inside_one_package_is_reported() -> None:
    files = {
        "harness/providers/local.py": "from harness.providers.watchdog import Watchdog\n",
        "harness/providers/watchdog.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from harness.providers import local\n"
        ),
        "harness/providers/__init__.py": "",
    }
    found = cycles(_arrows(files), key="module", modules=[module_name(Path(f)) for f in files])
    assert len(found) == 1, found
    assert "harness.providers.local -> harness.providers.watchdog -> harness.providers.local" in found[0]
    assert cycles(_arrows(files), key="package") == []


def test_relative_imports_resolve_against_the_importing_module() -> None:
    arrows = _arrows(
        {
            "harness/load/a.py": "from .errors import LoadError\nfrom ..checks import budgets\n",
            "harness/load/__init__.py": "from . import a\n",
        }
    )
    assert {(a.importer, a.imported) for a in arrows} == {
        ("harness.load.a", "harness.load.errors.LoadError"),
        ("harness.load.a", "harness.checks.budgets"),
        ("harness.load", "harness.load.a"),
    }
    assert layer_violations(arrows) == []


if __name__ == "__main__":
    arrows = tree_arrows()
    modules = [module_name(rel) for rel in project_files()]
    problems = layer_violations(arrows) + cycles(arrows, "package") + cycles(arrows, "module", modules)
    print("\n".join(problems) or "layers hold")
    sys.exit(1 if problems else 0)
