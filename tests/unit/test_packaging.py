"""What an install ships: every package of the library, the suites and fixtures inside it, the data files.

pyproject lists the packages instead of finding them (fixtures/ and scenarios/ are mapped into
harness at install time, which discovery cannot express); this keeps the list true to the tree.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
# Generated or fetched at setup, never shipped.
NOT_SHIPPED = ("node_modules", "__pycache__", ".gitignore")


def package_dir(package: str) -> Path:
    mapped = SETUPTOOLS.get("package-dir", {})
    for prefix in sorted(mapped, key=len, reverse=True):
        if package == prefix or package.startswith(prefix + "."):
            rest = package[len(prefix) :].lstrip(".").split(".") if package != prefix else []
            return ROOT / mapped[prefix] / Path(*rest) if rest else ROOT / mapped[prefix]
    return ROOT / Path(*package.split("."))


def test_every_package_under_harness_is_listed() -> None:
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "harness").rglob("__init__.py")
        if not any(part in NOT_SHIPPED for part in p.parts)
    }
    missing = sorted(on_disk - set(SETUPTOOLS["packages"]))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def test_fixtures_and_scenarios_ship_inside_harness_only() -> None:
    packages = set(SETUPTOOLS["packages"])
    assert {"harness.fixtures", "harness.scenarios"} <= packages
    assert not {p for p in packages if not p.startswith("harness")}, "a top-level package besides harness"
    assert package_dir("harness.fixtures") == ROOT / "fixtures"
    assert package_dir("harness.scenarios") == ROOT / "scenarios"


def test_every_data_file_of_a_listed_package_is_shipped() -> None:
    data = SETUPTOOLS.get("package-data", {})
    unshipped = []
    for package in SETUPTOOLS["packages"]:
        d = package_dir(package)
        assert d.is_dir(), f"{package} maps to {d}, which does not exist"
        for f in d.iterdir():
            if f.is_dir() or f.suffix == ".py" or f.name in NOT_SHIPPED:
                continue
            if not any(fnmatch.fnmatch(f.name, pattern) for pattern in data.get(package, [])):
                unshipped.append(str(f.relative_to(ROOT)))
    assert not unshipped, f"add {unshipped} to [tool.setuptools.package-data] in pyproject.toml"


def test_fixture_modules_import_each_other_relatively() -> None:
    # Installed they are harness.fixtures.*; in a checkout used without installing, fixtures.*.
    for path in (ROOT / "fixtures").glob("*.py"):
        text = path.read_text()
        assert "from fixtures" not in text and "import fixtures" not in text, path
