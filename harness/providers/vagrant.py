"""The `vagrant` provider: the Vagrantfile's kubeadm HA cluster on VirtualBox or libvirt VMs.

Vagrant is driven through its command line with `--machine-readable`, as python-vagrant does
(it also locates the executable), but every call here has a deadline, output is parsed into
small types, and Vagrant's own `error-exit` records become ClusterErrors that say what failed.
SSH goes through paramiko with the addresses, ports and keys `vagrant ssh-config` reports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
import vagrant as python_vagrant

from harness.config import ClusterConfig, default_run_root
from harness.errors import ClusterError, ClusterNotRunningError, TransportError
from harness.providers.attached import Access, AttachedCluster
from harness.providers.base import Cluster, Node, Role
from harness.providers.remote import RemoteNode, controls_for
from harness.providers.topology import Topology
from harness.transport.base import CommandResult
from harness.transport.ssh import SSHTarget, SSHTransport

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# No update checks, no colour codes in parsed output. Vagrant otherwise phones home on most
# commands, which is slow, noisy and pointless inside a harness run.
VAGRANT_ENV = {"VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}
_COMMA = "%!(VAGRANT_COMMA)"
# Vagrant cleans up after SIGINT (it is Ctrl-C to it); SIGKILL only if it will not stop.
_INTERRUPT_GRACE_S = 20.0

STATUS_TIMEOUT_S = 60.0
SSH_CONFIG_TIMEOUT_S = 60.0
UP_TIMEOUT_S = 3600.0
HALT_TIMEOUT_S = 180.0
DESTROY_TIMEOUT_S = 600.0


class VagrantError(ClusterError):
    """A vagrant command failed; `error_class` is Vagrant's own (e.g. Vagrant::Errors::SSHNotReady)."""

    def __init__(self, message: str, error_class: str = "") -> None:
        super().__init__(message)
        self.error_class = error_class


# -- parsing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MachineReadableLine:
    """One `timestamp,target,type,data...` record; escaped commas and newlines decoded."""

    timestamp: int
    target: str
    kind: str
    data: tuple[str, ...]


def _decode(field_text: str) -> str:
    return field_text.replace(_COMMA, ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_machine_readable(text: str) -> list[MachineReadableLine]:
    """Every record in `text`; other lines (plugin warnings, plain ssh-config) are skipped."""
    out = []
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        out.append(MachineReadableLine(int(parts[0]), parts[1], parts[2], tuple(_decode(p) for p in parts[3:])))
    return out


def raise_for_error(records: Sequence[MachineReadableLine], command: str) -> None:
    for r in records:
        if r.kind == "error-exit":
            error_class = r.data[0] if r.data else "unknown"
            message = " ".join(r.data[1:]).strip() if len(r.data) > 1 else ""
            raise VagrantError(f"`vagrant {command}` failed with {error_class}: {message}", error_class)


@dataclass(frozen=True)
class MachineStatus:
    name: str
    state: str
    provider: str
    description: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def created(self) -> bool:
        return self.state != "not_created"


def parse_status(text: str) -> list[MachineStatus]:
    records = parse_machine_readable(text)
    raise_for_error(records, "status")
    fields: dict[str, dict[str, str]] = {}
    for r in records:
        if r.target and r.kind in ("state", "provider-name", "state-human-long"):
            # dict keeps first-seen order: machines come out in Vagrantfile order.
            fields.setdefault(r.target, {})[r.kind] = ",".join(r.data)
    return [
        MachineStatus(name, f.get("state", "unknown"), f.get("provider-name", ""), f.get("state-human-long", ""))
        for name, f in fields.items()
    ]


@dataclass(frozen=True)
class SSHConfig:
    """One machine's `vagrant ssh-config` block, as paramiko's own ssh_config parser reads it."""

    name: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...]
    strict_host_key_checking: bool

    def target(self) -> SSHTarget:
        key = next(
            (p for p in self.identity_files if p.is_file()), self.identity_files[0] if self.identity_files else None
        )
        return SSHTarget(self.hostname, self.port, self.user, key, host_key_checking=self.strict_host_key_checking)


def parse_ssh_config(text: str) -> dict[str, SSHConfig]:
    """Blocks of `vagrant ssh-config --machine-readable` (or its plain text), by machine name."""
    records = parse_machine_readable(text)
    raise_for_error(records, "ssh-config")
    blocks = [",".join(r.data) for r in records if r.kind == "ssh-config"]
    if not records:
        blocks = [text]  # plain output, as `vagrant ssh-config` prints without --machine-readable
    out: dict[str, SSHConfig] = {}
    for block in blocks:
        cfg = paramiko.SSHConfig.from_text(block)
        for host in sorted(cfg.get_hostnames() - {"*"}):
            entry = cfg.lookup(host)
            try:
                port = int(entry.get("port", "22"))
            except ValueError:
                raise ClusterError(
                    f"vagrant ssh-config for {host}: port {entry.get('port')!r} is not a number"
                ) from None
            out[host] = SSHConfig(
                name=host,
                hostname=entry.get("hostname", host),
                port=port,
                user=entry.get("user", "vagrant"),
                identity_files=tuple(Path(p.strip('"')) for p in entry.get("identityfile", [])),
                strict_host_key_checking=entry.get("stricthostkeychecking", "yes").lower() not in ("no", "false"),
            )
    return out


# -- the command line ------------------------------------------------------------------------
@dataclass
class VagrantRun:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str
    duration_s: float
    records: list[MachineReadableLine] = field(default_factory=list)


class VagrantCLI:
    """`vagrant` in one directory, every command with a deadline and machine-readable output."""

    def __init__(
        self,
        root: Path,
        *,
        topology_file: Path | None = None,
        provider: str | None = None,
        executable: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.root = root
        self.provider = provider
        self._executable = list(executable) if executable else None
        self.env = {**os.environ, **VAGRANT_ENV, **(env or {})}
        if topology_file is not None:
            # The Vagrantfile reads the very file the harness validated.
            self.env["KUBEQUAKE_TOPOLOGY"] = str(topology_file)
        if provider:
            self.env["VAGRANT_DEFAULT_PROVIDER"] = provider
        self.log_file = log_file

    def executable(self) -> list[str]:
        if self._executable is None:
            exe: str | None = python_vagrant.get_vagrant_executable()  # type: ignore[no-untyped-call]
            if not exe:
                raise ClusterError(
                    "vagrant is not installed or not on PATH; install it (Debian: apt-get install vagrant) "
                    "and a provider (VirtualBox, or vagrant-libvirt)"
                )
            self._executable = [exe]
        return self._executable

    def run(self, args: Sequence[str], timeout: float, *, check: bool = True) -> VagrantRun:
        argv = [*self.executable(), *args, "--machine-readable"]
        shown = "vagrant " + " ".join(args)
        if not (self.root / "Vagrantfile").is_file():
            raise ClusterError(f"no Vagrantfile in {self.root}; run from a kubequake checkout or pass its path")
        log.info("running %s (timeout %.0fs)", shown, timeout)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,  # so a timeout can stop vagrant and the provider tools it started
            )
        except FileNotFoundError:
            raise ClusterError(f"{argv[0]!r} not found; install vagrant") from None
        out: list[str] = []
        err: list[str] = []
        readers = [
            threading.Thread(target=self._pump, args=(proc.stdout, out, True), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr, err, False), daemon=True),
        ]
        for t in readers:
            t.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._interrupt(proc)
            for t in readers:
                t.join(5)
            raise VagrantError(
                f"`{shown}` did not finish within {timeout:.0f}s and was interrupted; run `vagrant status` in "
                f"{self.root} to see which machines are in which state, then retry or `vagrant destroy -f`"
            ) from None
        for t in readers:
            t.join(10)
        result = VagrantRun(tuple(argv), proc.returncode, "".join(out), "".join(err), time.monotonic() - start)
        result.records = parse_machine_readable(result.stdout)
        if check:
            raise_for_error(result.records, " ".join(args))
            if result.exit_status != 0:
                raise VagrantError(
                    f"`{shown}` exited {result.exit_status}: {(result.stderr or result.stdout).strip()[-800:]}"
                )
        return result

    def _pump(self, stream: object, sink: list[str], parse: bool) -> None:
        assert hasattr(stream, "readline")
        logfile = None
        if self.log_file is not None:
            # The log is a convenience: output is still collected and parsed without it.
            try:
                self.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                logfile = self.log_file.open("a")
            except OSError as exc:
                log.warning("cannot write %s (%s); vagrant output is not logged there", self.log_file, exc)
        try:
            for line in iter(stream.readline, ""):
                sink.append(line)
                if logfile is not None:
                    logfile.write(line)
                    logfile.flush()
                if parse:
                    for rec in parse_machine_readable(line):
                        if rec.kind == "ui" and len(rec.data) > 1 and rec.data[0] in ("info", "output", "detail"):
                            log.debug("vagrant: %s", ",".join(rec.data[1:]).strip())
        finally:
            if logfile is not None:
                logfile.close()

    @staticmethod
    def _interrupt(proc: subprocess.Popen[str]) -> None:
        for sig, grace in ((signal.SIGINT, _INTERRUPT_GRACE_S), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    # -- commands ----------------------------------------------------------------------------
    def version(self, timeout: float = 30.0) -> str:
        # `vagrant --version` stays offline; `vagrant version` looks up the latest release.
        res = subprocess.run(
            [*self.executable(), "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        return res.stdout.strip().removeprefix("Vagrant ").strip()

    def validate(self, ignore_provider: bool = False, timeout: float = 60.0) -> VagrantRun:
        return self.run(["validate", *(["--ignore-provider"] if ignore_provider else [])], timeout)

    def status(self, names: Sequence[str] = (), timeout: float = STATUS_TIMEOUT_S) -> list[MachineStatus]:
        res = self.run(["status", *names], timeout)
        return parse_status(res.stdout)

    def ssh_config(self, names: Sequence[str] = (), timeout: float = SSH_CONFIG_TIMEOUT_S) -> dict[str, SSHConfig]:
        res = self.run(["ssh-config", *names], timeout)
        return parse_ssh_config(res.stdout)

    def up(
        self,
        names: Sequence[str] = (),
        *,
        provision: bool | None = None,
        timeout: float = UP_TIMEOUT_S,
    ) -> VagrantRun:
        args = ["up", *names]
        if self.provider:
            args.append(f"--provider={self.provider}")
        if provision is not None:
            args.append("--provision" if provision else "--no-provision")
        # One machine at a time: the control-plane joins need the LB and the first control
        # plane up first. libvirt would otherwise bring all machines up in parallel.
        args.append("--no-parallel")
        return self.run(args, timeout)

    def halt(self, names: Sequence[str] = (), *, force: bool = False, timeout: float = HALT_TIMEOUT_S) -> VagrantRun:
        return self.run(["halt", *names, *(["--force"] if force else [])], timeout)

    def destroy(self, names: Sequence[str] = (), timeout: float = DESTROY_TIMEOUT_S) -> VagrantRun:
        return self.run(["destroy", "--force", *names], timeout)


# -- the provider ----------------------------------------------------------------------------
class VagrantPower:
    """Power through the hypervisor: `halt --force` is the pulled plug, `up` boots it again."""

    def __init__(self, cli: VagrantCLI) -> None:
        self.cli = cli

    def power_off(self, node: str) -> None:
        self.cli.halt([node], force=True)

    def power_on(self, node: str, timeout: float) -> None:
        self.cli.up([node], provision=False, timeout=timeout)


class VagrantSSH:
    """A node's SSH transport, resolved through `vagrant ssh-config` when first needed.

    Resolved again after close(): a restarted VM may come back on another forwarded port.
    """

    def __init__(
        self,
        cluster: VagrantCluster,
        name: str,
        *,
        connect_timeout: float = 10.0,
        connect_deadline: float = 120.0,
        sudo: bool = True,
    ) -> None:
        self.cluster = cluster
        self.name = name
        self.sudo = sudo
        self.connect_timeout = connect_timeout
        self.connect_deadline = connect_deadline
        self._ssh: SSHTransport | None = None
        self._lock = threading.Lock()

    def _transport(self) -> SSHTransport:
        with self._lock:
            if self._ssh is None:
                target = self.cluster.ssh_target(self.name)
                # The vagrant user has passwordless sudo on every box; faults need root.
                self._ssh = SSHTransport(
                    target, connect_timeout=self.connect_timeout, connect_deadline=self.connect_deadline, sudo=self.sudo
                )
            return self._ssh

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self._transport().run(argv, timeout)

    def connect(self, deadline_s: float | None = None) -> None:
        self._transport().connect(deadline_s)

    def close(self) -> None:
        with self._lock:
            if self._ssh is not None:
                self._ssh.close()
                self._ssh = None
        self.cluster.forget_ssh_config(self.name)


class VagrantNode(RemoteNode):
    """A VM of the Vagrant cluster; its address is the private-network IP from the topology."""


class VagrantCluster(AttachedCluster):
    """The Vagrant HA cluster: create (idempotent), destroy (safe twice), status, nodes, kubeconfig."""

    name = "vagrant"

    def __init__(
        self,
        topology: Topology,
        *,
        root: Path = REPO_ROOT,
        run_dir: Path | None = None,
        cli: VagrantCLI | None = None,
        provider: str | None = None,
        ssh_connect_timeout: float = 10.0,
        ssh_connect_deadline: float = 120.0,
        ssh_sudo: bool = True,
    ) -> None:
        super().__init__()
        self.topology = topology
        self.root = root
        self.run_dir = run_dir or default_run_root() / f"{topology.name}-vagrant"
        # Budgets follow kubeadm's defaults, which the provisioning scripts keep (lease 15 s,
        # HAProxy checks every 2 s, fall 3, rise 2).
        cps = sum(n.role.role is Role.CONTROL_PLANE for n in topology.nodes)
        self.cfg = ClusterConfig(name=topology.name, control_planes=cps, workers=0)
        self.access = Access(lb_url=topology.api_url)
        source = Path(topology.source) if topology.source and Path(topology.source).is_file() else None
        self.cli = cli or VagrantCLI(
            root, topology_file=source, provider=provider or topology.provider, log_file=self.run_dir / "vagrant.log"
        )
        power = VagrantPower(self.cli)
        self._ssh_configs: dict[str, SSHConfig] = {}
        self._ssh_lock = threading.Lock()
        self._nodes: dict[str, VagrantNode] = {}
        for n in topology.nodes:
            transport = VagrantSSH(
                self, n.name, connect_timeout=ssh_connect_timeout, connect_deadline=ssh_connect_deadline, sudo=ssh_sudo
            )
            role = n.role.role
            self._nodes[n.name] = VagrantNode(n.name, role, n.ip, transport, controls_for(role), power=power)

    # -- topology ----------------------------------------------------------------------------
    def nodes(self) -> list[VagrantNode]:
        return list(self._nodes.values())

    def node(self, name: str) -> VagrantNode:
        try:
            return self._nodes[name]
        except KeyError:
            raise ClusterError(f"no node {name!r}; this cluster has {', '.join(self._nodes)}") from None

    # -- ssh ---------------------------------------------------------------------------------
    def ssh_target(self, name: str) -> SSHTarget:
        with self._ssh_lock:
            if name not in self._ssh_configs:
                # One vagrant call for every machine (each call costs seconds of Ruby start-up);
                # it fails if any machine is down, and then only this one is asked for.
                with contextlib.suppress(VagrantError):
                    self._ssh_configs.update(self.cli.ssh_config())
            if name not in self._ssh_configs:
                self._ssh_configs.update(self.cli.ssh_config([name]))
            try:
                return self._ssh_configs[name].target()
            except KeyError:
                raise ClusterError(
                    f"`vagrant ssh-config {name}` printed no block for {name}; "
                    "is the machine running (`vagrant status`)?"
                ) from None

    def forget_ssh_config(self, name: str) -> None:
        with self._ssh_lock:
            self._ssh_configs.pop(name, None)

    # -- lifecycle ---------------------------------------------------------------------------
    def status(self) -> list[MachineStatus]:
        return self.cli.status()

    def create(self, timeout: float = UP_TIMEOUT_S) -> None:
        """`vagrant up` every machine (provisioning is idempotent), then fetch the admin kubeconfig."""
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        deadline = time.monotonic() + timeout
        self.cli.up(timeout=timeout)
        self.fetch_kubeconfig(max(30.0, deadline - time.monotonic()))

    def attach(self, timeout: float = 60.0) -> None:
        """Use the VMs as they run (every machine up), fetching the admin kubeconfig; nothing is started."""
        machines = self.status()
        down = [m.name for m in machines if not m.running]
        if not machines or down:
            raise ClusterNotRunningError(
                f"the Vagrant cluster {self.topology.name!r} is not running"
                + (f" ({', '.join(down)} not running)" if down else " (no machines)")
                + f"; bring it up with `vagrant up` in {self.root}"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.fetch_kubeconfig(timeout)

    def fetch_kubeconfig(self, timeout: float = 60.0) -> Path:
        init = self.node(self.topology.init_node.name)
        try:
            res = init.run(["cat", "/etc/kubernetes/admin.conf"], timeout)
        except TransportError as exc:
            raise ClusterError(f"cannot read the admin kubeconfig from {init.name}: {exc}") from None
        if not res.ok or "server:" not in res.stdout:
            raise ClusterError(
                f"{init.name} has no /etc/kubernetes/admin.conf (exit {res.exit_status}: "
                f"{res.stderr.strip()[-300:]}); provisioning did not finish: see {self.run_dir / 'vagrant.log'} "
                f"and rerun `vagrant provision {init.name}`"
            )
        path = self.kubeconfig_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(res.stdout)
        return path

    def kubeconfig_path(self) -> Path:
        return self.run_dir / "admin.conf"

    def kubeconfig(self) -> Path:
        path = self.kubeconfig_path()
        if not path.is_file():
            raise ClusterError(
                f"{path} does not exist yet; create the Vagrant cluster first (`vagrant up` via create())"
            )
        return path

    def disconnect(self) -> None:
        """Close the SSH connections and drop the credential copies; the VMs keep running."""
        for n in self._nodes.values():
            n.transport.close()
        self.forget_credentials()

    def detach(self) -> None:
        self.disconnect()

    def destroy(self) -> None:
        """Destroy every VM and forget the kubeconfig; destroying what is not there is a no-op."""
        self.disconnect()
        self.cli.destroy()
        with contextlib.suppress(FileNotFoundError):
            self.kubeconfig_path().unlink()


if TYPE_CHECKING:
    # mypy proves the provider and its nodes keep to the contracts in harness.providers.base.
    def _is_provider(c: VagrantCluster) -> Cluster:
        return c

    def _is_node(n: VagrantNode) -> Node:
        return n
