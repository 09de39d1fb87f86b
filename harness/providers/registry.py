"""Providers by name, and the one lifecycle every command and the pytest plugin use to get a cluster.

    local     processes on loopback addresses of this machine (kubequake brings them up)
    existing  a cluster described by an inventory (kubequake never brings it up or down)
    vagrant   the Vagrantfile's VMs

Adding a provider is one entry in PROVIDERS: its class, whether kubequake can bring it up, the
options it needs, and how to build it from ProviderOptions. The command line (`--provider` of the
pytest plugin, `gate --inventory`, `heal`) and the session records read this table, so nothing
else lists providers.

The lifecycle means the same on every provider (see harness.providers.base.Provider): a session
attaches to a cluster that already runs and leaves it running, or creates one and, unless asked
to keep it, destroys it at the end. While it holds the cluster, a session record on disk says so
(harness/providers/sessions.py); `kubequake heal` reads those left by killed processes.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from harness import config as kqconfig
from harness.config import ClusterConfig
from harness.errors import ClusterError, ClusterNotRunningError, ClusterRunningError, ConfigError, HarnessError
from harness.providers import sessions
from harness.providers.sessions import SessionRecord

if TYPE_CHECKING:
    from harness.providers.base import Cluster

log = logging.getLogger(__name__)


class Lifecycle(enum.StrEnum):
    # Attach to the cluster if it runs, else create it (and destroy it at the end unless kept).
    AUTO = "auto"
    # The cluster must already run; it is never brought up or torn down.
    ATTACH = "attach"


@dataclass(frozen=True)
class ProviderOptions:
    """What a caller knows about the cluster it wants; each provider reads the fields it takes."""

    provider: str = "local"
    # local: the settings; others: ignored (their settings come from the inventory or topology).
    config: ClusterConfig = field(default_factory=ClusterConfig)
    inventory: Path | None = None
    topology: Path | None = None
    # existing: None follows the inventory's allow_disruptive; True/False overrides it.
    allow_disruptive: bool | None = None

    def given(self) -> list[str]:
        """The provider-specific options set here, by name (see OPTION_FLAGS)."""
        return [name for name in OPTION_FLAGS if getattr(self, name) not in (None, False)]

    def to_record(self) -> dict[str, Any]:
        """Plain data for a session record; paths absolute, so `heal` from another directory finds them."""
        cfg = self.config
        if self.provider == "local" and not cfg.run_root:
            cfg = replace(cfg, run_root=str(cfg.run_dir.parent))
        return {
            "provider": self.provider,
            "config": cfg.to_dict(),
            "inventory": str(self.inventory.resolve()) if self.inventory else None,
            "topology": str(self.topology.resolve()) if self.topology else None,
            "allow_disruptive": self.allow_disruptive,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> ProviderOptions:
        try:
            flat = kqconfig.flatten(data.get("config") or {})
            cfg = kqconfig.build({k: v for k, v in flat.items() if k in kqconfig.known_keys()})
            inventory, topology = data.get("inventory"), data.get("topology")
            return cls(
                provider=str(data["provider"]),
                config=cfg,
                inventory=Path(inventory) if inventory else None,
                topology=Path(topology) if topology else None,
                allow_disruptive=data.get("allow_disruptive"),
            )
        except (KeyError, TypeError, ConfigError) as exc:
            raise ConfigError(f"a session record's provider options are unreadable ({exc}): {data}") from None

    def run_root(self) -> Path:
        """Where this cluster's session records go: the local run root, else the default one."""
        return self.config.run_dir.parent if self.provider == "local" else kqconfig.default_run_root()


# Provider options by field name, as the command line spells them.
OPTION_FLAGS = {"inventory": "--inventory", "allow_disruptive": "--allow-disruptive", "topology": "--topology"}


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    # "module:Class", imported only when used: each provider pulls in its own dependencies.
    target: str
    summary: str
    # kubequake can bring the cluster up (and so tear it down); one that cannot only attaches.
    creates: bool
    # Options (ProviderOptions field names) this provider needs, and those only it takes.
    requires: tuple[str, ...]
    takes: tuple[str, ...]
    # A cluster object for the options, not yet created or attached. `detached`: nothing it
    # starts dies with this process.
    build: Callable[[ProviderOptions, bool], Cluster]
    # The options that build this cluster again (for session records of clusters made elsewhere).
    describe: Callable[[Cluster], ProviderOptions]
    # Installs what bringing the cluster up needs, before a create (may take long the first time).
    prepare: Callable[[], object] | None = None


def _build_local(options: ProviderOptions, detached: bool) -> Cluster:
    from harness.providers.local import LocalCluster

    return LocalCluster(local_config(options.config), detached=detached)


def _ensure_binaries() -> object:
    from harness import binaries

    # The pinned Kubernetes, etcd and KWOK builds: once per machine, so only the first run waits.
    return binaries.ensure()


def _describe_local(cluster: Cluster) -> ProviderOptions:
    return ProviderOptions("local", cluster.cfg)


def _build_existing(options: ProviderOptions, detached: bool) -> Cluster:
    from harness.providers.existing import ExistingCluster, load_inventory

    if options.inventory is None:
        raise ConfigError("the existing provider needs --inventory FILE (see harness/providers/real-clusters.md)")
    return ExistingCluster(load_inventory(options.inventory), allow_disruptive=options.allow_disruptive)


def _describe_existing(cluster: Cluster) -> ProviderOptions:
    from harness.providers.existing import ExistingCluster

    assert isinstance(cluster, ExistingCluster), cluster
    return ProviderOptions("existing", inventory=Path(cluster.inventory.source))


def _build_vagrant(options: ProviderOptions, detached: bool) -> Cluster:
    from harness.providers.topology import load_topology
    from harness.providers.vagrant import VagrantCluster

    return VagrantCluster(load_topology(options.topology))


def _describe_vagrant(cluster: Cluster) -> ProviderOptions:
    from harness.providers.vagrant import VagrantCluster

    assert isinstance(cluster, VagrantCluster), cluster
    source = cluster.topology.source
    return ProviderOptions("vagrant", topology=Path(source) if source and Path(source).is_file() else None)


PROVIDERS: dict[str, ProviderEntry] = {
    e.name: e
    for e in (
        ProviderEntry(
            "local",
            "harness.providers.local:LocalCluster",
            "local processes on loopback addresses (default)",
            creates=True,
            requires=(),
            takes=(),
            build=_build_local,
            describe=_describe_local,
            prepare=_ensure_binaries,
        ),
        ProviderEntry(
            "existing",
            "harness.providers.existing:ExistingCluster",
            "an existing cluster described by --inventory",
            creates=False,
            requires=("inventory",),
            takes=("inventory", "allow_disruptive"),
            build=_build_existing,
            describe=_describe_existing,
        ),
        ProviderEntry(
            "vagrant",
            "harness.providers.vagrant:VagrantCluster",
            "the Vagrantfile's VMs",
            creates=True,
            requires=(),
            takes=("topology",),
            build=_build_vagrant,
            describe=_describe_vagrant,
        ),
    )
}


def names() -> list[str]:
    return list(PROVIDERS)


def entry(name: str) -> ProviderEntry:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ConfigError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}") from None


def provider_class(name: str) -> type:
    module, _, cls = entry(name).target.partition(":")
    found: type = getattr(importlib.import_module(module), cls)
    return found


def option_problem(provider: str, given: Iterable[str]) -> str | None:
    """What is wrong with these options for this provider, as a usage message; None when nothing is."""
    e = entry(provider)
    given = list(given)
    for need in e.requires:
        if need not in given:
            return f"--provider {provider} needs {OPTION_FLAGS[need]} FILE (see harness/providers/real-clusters.md)"
    for name in given:
        if name in e.takes:
            continue
        owners = [p for p in PROVIDERS.values() if name in p.takes]
        flags = [OPTION_FLAGS[n] for n in owners[0].takes] if owners else [OPTION_FLAGS[name]]
        verb = "apply" if len(flags) > 1 else "applies"
        where = " or ".join(f"--provider {p.name}" for p in owners)
        return f"{' and '.join(flags)} {verb} to {where} only"
    return None


def describe(cluster: Cluster) -> ProviderOptions:
    return entry(cluster.name).describe(cluster)


def build(options: ProviderOptions, *, detached: bool = True) -> Cluster:
    """The cluster object for these options, neither created nor attached (status, logs, down, heal)."""
    problem = option_problem(options.provider, options.given())
    if problem is not None:
        raise ConfigError(problem)
    return entry(options.provider).build(options, detached)


def local_config(requested: ClusterConfig) -> ClusterConfig:
    """The settings the local cluster of this name was started with, unless the request contradicts them.

    So `status` after `up --set control_planes=5` needs no repetition of the --set flags, and `run`
    attaches to what `up` started. A request that sets a value other than the recorded one wins
    (and creating or attaching then refuses a cluster running with other settings).
    """
    state = requested.run_dir / "cluster.json"
    if not state.is_file():
        return requested
    try:
        recorded = json.loads(state.read_text()).get("config", {})
        flat = kqconfig.flatten(recorded)
    except (OSError, ValueError, AttributeError) as exc:
        raise ClusterError(
            f"cannot read the cluster state {state} ({exc}); stop the cluster with "
            f"`kubequake down --set name={requested.name}`"
        ) from None
    # The directory found is where the cluster lives, whatever the recorded (often empty) run_root
    # and this process's environment would resolve to.
    flat["run_root"] = str(requested.run_dir.parent)
    try:
        cfg = kqconfig.build({k: v for k, v in flat.items() if k in kqconfig.known_keys()})
    except ConfigError:
        return requested  # written by another version of kubequake: the request decides
    defaults = kqconfig.flatten(ClusterConfig().to_dict())
    asked = kqconfig.flatten(requested.to_dict())
    ran = kqconfig.flatten(cfg.to_dict())
    contradicted = [k for k, v in asked.items() if k != "run_root" and v != defaults.get(k) and ran.get(k) != v]
    return requested if contradicted else cfg


@dataclass
class ClusterSession:
    """One process's hold on a cluster: attached (left running at the end) or created (destroyed unless kept)."""

    cluster: Cluster
    options: ProviderOptions
    created: bool
    teardown: bool
    record: SessionRecord | None = None

    @property
    def origin(self) -> str:
        if not self.created:
            return "attached to the running cluster, left running"
        return "brought up, torn down after" if self.teardown else "brought up, left running"

    def keep(self) -> None:
        """The cluster outlives this process (`kubequake up`): the record goes, the cluster stays, as it is."""
        if self.record is not None:
            sessions.remove(self.record)
            self.record = None

    def close(self) -> None:
        """Destroy what this session created (unless kept), else detach; then drop the record."""
        try:
            if self.teardown:
                self.cluster.destroy()
            else:
                self.cluster.detach()
        finally:
            self.keep()

    def __enter__(self) -> ClusterSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_session(
    options: ProviderOptions,
    lifecycle: Lifecycle = Lifecycle.AUTO,
    *,
    keep: bool = False,
    timeout: float = 180.0,
    cluster: Cluster | None = None,
    command: list[str] | None = None,
    on_create: Callable[[Cluster], None] | None = None,
) -> ClusterSession:
    """Attach to the cluster, or (AUTO, a provider kubequake can bring up) create it; recorded on disk.

    `keep`: a cluster this session creates stays up at its end. `cluster`: one already built
    (a variant); else it is built from `options`. `on_create` is told just before a slow create.
    """
    e = entry(options.provider)
    may_create = lifecycle is Lifecycle.AUTO and e.creates
    if cluster is None:
        cluster = build(options, detached=keep or not may_create)
    root = options.run_root()

    def record(created: bool, teardown: bool) -> SessionRecord:
        rec = sessions.new_record(
            provider=e.name,
            cluster=cluster.cfg.name,
            run_dir=cluster.run_dir,
            created=created,
            teardown=teardown,
            options=options.to_record(),
            command=command,
        )
        return sessions.write(rec, root)

    try:
        cluster.attach(min(timeout, 60.0))
    except ClusterNotRunningError:
        if not may_create:
            raise
    else:
        return ClusterSession(cluster, options, created=False, teardown=False, record=record(False, False))
    if on_create is not None:
        on_create(cluster)
    try:
        if e.prepare is not None:
            e.prepare()
    except BaseException:
        # Nothing was started; building the cluster object may have made its (empty) run directory.
        with contextlib.suppress(HarnessError):
            cluster.destroy()
        raise
    # Written before start-up, as one that tears down: a process killed halfway through start-up
    # leaves half a cluster that `kubequake heal` must remove even when it was to be kept.
    rec = record(True, True)
    try:
        cluster.create(timeout)
    except ClusterRunningError:
        sessions.remove(rec)  # someone else's cluster, left untouched
        raise
    except BaseException:
        # Whatever start-up left goes; the record stays if even that fails, for `heal`.
        with contextlib.suppress(HarnessError):
            cluster.destroy()
            sessions.remove(rec)
        raise
    if keep:
        rec = sessions.write(replace(rec, teardown=False), root)
    return ClusterSession(cluster, options, created=True, teardown=not keep, record=rec)


def reopen(record: SessionRecord) -> Cluster:
    """The cluster a session record names, built again (detached: this process owns nothing of it)."""
    return build(ProviderOptions.from_record(record.options), detached=True)
