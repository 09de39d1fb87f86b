"""The plugin's provider options: wrong combinations are usage errors that say what to give.

Each case runs pytest in a subprocess on an empty directory (collection only), so the real
option parsing and pytest_configure run; no cluster is involved.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_pytest(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", str(tmp_path), "--collect-only", "-q", "-p", "no:cacheprovider"]
    argv += [f"--rootdir={tmp_path}", "-c", str(tmp_path / "pytest.ini"), *options]
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--provider", "existing"], "--provider existing needs --inventory FILE"),
        (["--inventory", "x.toml"], "--inventory and --allow-disruptive apply to --provider existing only"),
        (["--allow-disruptive"], "--inventory and --allow-disruptive apply to --provider existing only"),
        (["--topology", "t.yaml"], "--topology applies to --provider vagrant only"),
        (["--provider", "cloud"], "invalid choice: 'cloud'"),
    ],
)
def test_wrong_provider_options_are_usage_errors(tmp_path: Path, options: list[str], message: str) -> None:
    proc = run_pytest(tmp_path, *options)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr


def test_a_complete_existing_selection_is_accepted(tmp_path: Path) -> None:
    # Only the session's `cluster` fixture reads the inventory; collecting nothing needs none.
    proc = run_pytest(tmp_path, "--provider", "existing", "--inventory", "x.toml", "--allow-disruptive")
    assert proc.returncode == 5, proc.stdout + proc.stderr  # 5: no tests collected, options fine
