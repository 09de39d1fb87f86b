"""kubequake's pytest plugin: options, markers and the fixtures that give tests a real HA cluster.

Options resolve marker > command line > ini/config file, and every bad value is a usage error
naming its source. Fixtures live in the `fixtures` package; this module only wires them in.
"""

from __future__ import annotations

import os

import pytest

from harness import config as kqconfig
from harness.errors import HarnessError

MARKERS = {
    "disruptive": "breaks the cluster on purpose (faults); deselect with -m 'not disruptive'",
    "etcd": "scenario about etcd membership and quorum",
    "control_plane": "scenario about control-plane node failover and leader leases",
    "lb": "scenario about the load balancer in front of the apiservers",
    "partition": "scenario that partitions nodes from each other",
    "rollout": "scenario about Deployment rollout, history and undo",
    "quorum_loss": "scenario allowed to lose etcd quorum (blast-radius guard)",
    "cluster_settings(**settings)": "run this test on a cluster with these settings (key=value as --set)",
    "slo(budget, only=None)": "client traffic through the LB, judged by this SLO budget (harness/load/slo.py)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubequake", "kubequake HA cluster")
    group.addoption(
        "--provider",
        default="local",
        choices=["local", "existing", "vagrant"],
        help="where the cluster comes from: local processes (default), an existing cluster described by "
        "--inventory, or the Vagrantfile's VMs",
    )
    group.addoption("--inventory", default=None, help="existing provider: the inventory TOML of the cluster")
    group.addoption(
        "--allow-disruptive",
        action="store_true",
        help="existing provider: allow faults even if the inventory does not set allow_disruptive = true",
    )
    group.addoption("--topology", default=None, help="vagrant provider: topology file (default: the shared one)")
    group.addoption("--keep-cluster", action="store_true", help="leave the cluster running after the session")
    group.addoption("--kq-config", default=None, help="kubequake.toml with cluster settings")
    group.addoption("--kq-set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    try:
        base = kqconfig.load(
            config.getoption("--kq-config") and __import__("pathlib").Path(config.getoption("--kq-config")),
            kqconfig.parse_set(config.getoption("--kq-set")),
        )
    except HarnessError as exc:
        raise pytest.UsageError(f"kubequake: {exc}") from None
    config.stash[BASE_CONFIG] = base
    provider = config.getoption("--provider")
    if provider == "existing" and not config.getoption("--inventory"):
        raise pytest.UsageError(
            "kubequake: --provider existing needs --inventory FILE (see harness/providers/real-clusters.md)"
        )
    if provider != "existing" and (config.getoption("--inventory") or config.getoption("--allow-disruptive")):
        raise pytest.UsageError("kubequake: --inventory and --allow-disruptive apply to --provider existing only")
    if provider != "vagrant" and config.getoption("--topology"):
        raise pytest.UsageError("kubequake: --topology applies to --provider vagrant only")


BASE_CONFIG = pytest.StashKey[kqconfig.ClusterConfig]()


def worker_index() -> int:
    """0 for a plain run, N+1 for xdist worker gwN: each worker gets its own address block."""
    wid = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(wid[2:]) + 1 if wid.startswith("gw") else 0


pytest_plugins = ["fixtures.cluster", "fixtures.chaos", "fixtures.traffic", "harness.report.pytest_hooks"]
