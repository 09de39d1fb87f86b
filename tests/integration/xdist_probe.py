"""Run by test_xdist.py under `pytest -n 2`: each worker reports the cluster it got."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.providers.local import LocalCluster
from harness.status import collect


@pytest.mark.parametrize("i", [1, 2, 3, 4])
def test_report_my_cluster(cluster: LocalCluster, i: int) -> None:
    st = collect(cluster)
    assert st.healthy
    out = Path(os.environ["KQ_XDIST_OUT"]) / f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{i}.json"
    out.write_text(
        json.dumps({"name": cluster.cfg.name, "lb": cluster.cfg.lb_address, "run_dir": str(cluster.run_dir)})
    )
