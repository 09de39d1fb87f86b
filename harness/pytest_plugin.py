"""kubequake's pytest plugin: options, markers and the fixtures that give tests a real HA cluster.

Options resolve marker > command line > ini/config file, and every bad value is a usage error
naming its source. Providers and their options come from harness/providers/registry.py. The
fixtures live in the repository's fixtures/ directory, installed as `harness.fixtures`; this
module only wires them in.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from harness import config as kqconfig
from harness import slo
from harness.errors import HarnessError
from harness.providers import registry

MARKERS = {
    "disruptive": "breaks the cluster on purpose (faults); deselect with -m 'not disruptive'",
    "etcd": "scenario about etcd membership and quorum",
    "control_plane": "scenario about control-plane node failover and leader leases",
    "lb": "scenario about the load balancer in front of the apiservers",
    "partition": "scenario that partitions nodes from each other",
    "rollout": "scenario about Deployment rollout, history and undo",
    "quorum_loss": "scenario allowed to lose etcd quorum (blast-radius guard)",
    "requires(*capabilities)": "needs these provider capabilities (harness.providers.base.Capability values, e.g. "
    "'power-off', 'partition'); skipped with the reason on a provider without them",
    "cluster_settings(**settings)": "run this test on a cluster with these settings (key=value as --set)",
    "slo(budget, only=None)": "client traffic through the LB, judged by this SLO budget (harness/load/slo.py)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubequake", "kubequake HA cluster")
    group.addoption(
        "--provider",
        default="local",
        choices=registry.names(),
        help="where the cluster comes from: "
        + "; ".join(f"{e.name}: {e.summary}" for e in registry.PROVIDERS.values()),
    )
    group.addoption("--inventory", default=None, help="existing provider: the inventory TOML of the cluster")
    group.addoption(
        "--allow-disruptive",
        action="store_true",
        help="existing provider: allow faults even if the inventory does not set allow_disruptive = true",
    )
    group.addoption("--topology", default=None, help="vagrant provider: topology file (default: the shared one)")
    group.addoption(
        "--keep-cluster",
        action="store_true",
        help="leave a cluster this session brings up running after it (one that already ran is always left running)",
    )
    group.addoption(
        "--kq-attach",
        action="store_true",
        help="use the cluster that already runs; never bring one up or tear one down (an error if none runs)",
    )
    group.addoption("--kq-config", default=None, help="kubequake.toml with cluster settings")
    group.addoption("--kq-set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    try:
        path = config.getoption("--kq-config")
        overrides = kqconfig.parse_set(config.getoption("--kq-set"))
        base = kqconfig.load(Path(path) if path else None, overrides)
        # The SLOs come from the same file and flags: a bad key is a usage error before any cluster starts.
        slo.load(Path(path) if path else None, overrides)
    except HarnessError as exc:
        raise pytest.UsageError(f"kubequake: {exc}") from None
    config.stash[BASE_CONFIG] = base
    problem = registry.option_problem(config.getoption("--provider"), provider_options(config, base).given())
    if problem is not None:
        raise pytest.UsageError(f"kubequake: {problem}")


BASE_CONFIG = pytest.StashKey[kqconfig.ClusterConfig]()


def provider_options(config: pytest.Config, cluster_config: kqconfig.ClusterConfig) -> registry.ProviderOptions:
    """The session's provider and its options, as the command line gave them."""
    inventory, topology = config.getoption("--inventory"), config.getoption("--topology")
    return registry.ProviderOptions(
        provider=config.getoption("--provider"),
        config=cluster_config,
        inventory=Path(inventory) if inventory else None,
        topology=Path(topology) if topology else None,
        allow_disruptive=True if config.getoption("--allow-disruptive") else None,
    )


def worker_index() -> int:
    """0 for a plain run, N+1 for xdist worker gwN: each worker gets its own address block."""
    wid = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(wid[2:]) + 1 if wid.startswith("gw") else 0


def _fixtures_package() -> str:
    # Installed (regular or editable), fixtures/ is the package harness.fixtures, so that it never
    # shadows PyPI's `fixtures`; a checkout used without installing has it at the top level.
    return "harness.fixtures" if importlib.util.find_spec("harness.fixtures") is not None else "fixtures"


_FIXTURES = _fixtures_package()
pytest_plugins = [f"{_FIXTURES}.cluster", f"{_FIXTURES}.chaos", f"{_FIXTURES}.traffic", "harness.report.pytest_hooks"]
