"""`pytest -n 2`: each xdist worker brings up its own cluster on its own address block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_two_workers_get_disjoint_clusters(tmp_path: Path) -> None:
    env = {**os.environ, "KQ_XDIST_OUT": str(tmp_path)}
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-n",
        "2",
        "-p",
        "no:cacheprovider",
        "-q",
        "--kq-set",
        "name=kqx",
        "--kq-set",
        "address_block=120",
        "-p",
        "xdist",
        "--dist",
        "load",
        str(ROOT / "tests/integration/xdist_probe.py"),
    ]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=380, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    seen = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    workers = {p.name.split("-")[0] for p in tmp_path.glob("*.json")}
    assert workers == {"gw0", "gw1"}, f"both workers must run a test: {sorted(workers)}"
    by_worker = {p.name.split("-")[0]: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert by_worker["gw0"]["lb"] != by_worker["gw1"]["lb"]
    assert by_worker["gw0"]["name"] != by_worker["gw1"]["name"]
    assert len(seen) == 4
    # Both clusters are gone afterwards: nothing of either run directory is left.
    for info in by_worker.values():
        assert not Path(info["run_dir"]).exists(), f"{info['run_dir']} left behind"
