"""The vagrant provider driving real Vagrant, with SSH to a real OpenSSH server on loopback.

No VM can run here, so the machines come from a small Vagrant provider plugin defined in the test's
Vagrantfile: it keeps each machine's power state in Vagrant's own data directory and reports SSH on
the loopback sshd. Everything between the harness and that plugin is real: the vagrant command line
and its machine-readable output, `vagrant ssh-config` feeding paramiko, `halt --force` and `up` for
power, and commands, iptables rules and error paths on the SSH side.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.errors import ClusterError, FaultError, TimeoutExpired
from harness.providers.base import Component, Role
from harness.providers.remote import PARTITION_CHAIN
from harness.providers.topology import DEFAULT_TOPOLOGY, load_topology
from harness.providers.vagrant import VagrantCLI, VagrantCluster, VagrantError
from tests.integration.sshd_server import SSHServer, sshd, sshd_prepared

__all__ = ["sshd", "sshd_prepared"]  # fixtures, imported for pytest

pytestmark = pytest.mark.timeout(600)

STUB_VAGRANTFILE = r"""
require "yaml"

# A provider whose machines are a state file each; SSH goes to the test's loopback sshd.
class KqStubProvider < Vagrant.plugin("2", :provider)
  def initialize(machine)
    @machine = machine
  end

  def state_file
    @machine.data_dir.join("kqstub-state")
  end

  def state
    id = File.file?(state_file) ? File.read(state_file).strip : "not_created"
    Vagrant::MachineState.new(id.to_sym, id.tr("_", " "), "stub machine #{@machine.name} is #{id}")
  end

  def ssh_info
    return nil unless state.id == :running
    { host: "127.0.0.1", port: Integer(ENV.fetch("KQ_STUB_PORT")), username: ENV.fetch("KQ_STUB_USER"),
      private_key_path: [ENV.fetch("KQ_STUB_KEY")] }
  end

  class SetState
    def initialize(app, _env, state)
      @app = app
      @state = state
    end

    def call(env)
      machine = env[:machine]
      File.write(machine.data_dir.join("kqstub-state"), @state)
      File.open(File.join(ENV.fetch("KQ_STUB_LOG")), "a") do |f|
        f.puts("#{machine.name} #{@state} force=#{env[:force_halt] ? 'yes' : 'no'}")
      end
      @app.call(env)
    end
  end

  def action(name)
    state = { up: "running", halt: "poweroff", destroy: "not_created" }[name]
    return nil unless state

    Vagrant::Action::Builder.new.tap { |b| b.use SetState, state }
  end
end

class KqStubPlugin < Vagrant.plugin("2")
  name "kqstub"
  provider(:kqstub) { KqStubProvider }
end

Vagrant.configure("2") do |config|
  config.vm.box = "stub"
  YAML.safe_load(File.read(ENV.fetch("KUBEQUAKE_TOPOLOGY")))["nodes"].each do |n|
    config.vm.define n["name"]
  end
end
"""


def offline_vagrant() -> list[str]:
    exe = shutil.which("vagrant")
    if exe is None:
        pytest.skip("vagrant is not installed (Debian package vagrant; `make setup` installs it)")
    isolated = os.geteuid() == 0 and shutil.which("unshare") is not None
    if isolated and subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10, check=False).returncode:
        isolated = False
    return ["unshare", "-n", exe] if isolated else [exe]


@pytest.fixture
def cluster(sshd: SSHServer, tmp_path: Path) -> Iterator[VagrantCluster]:
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    data["nodes"] = [n for n in data["nodes"] if n["name"] in ("lb1", "cp1", "w1")]
    topo_file = tmp_path / "topology.yaml"
    topo_file.write_text(yaml.safe_dump(data))
    root = tmp_path / "vagrant"
    root.mkdir()
    (root / "Vagrantfile").write_text(STUB_VAGRANTFILE)
    env = {
        "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
        "KQ_STUB_PORT": str(sshd.port),
        "KQ_STUB_USER": sshd.user,
        "KQ_STUB_KEY": str(sshd.client_key),
        "KQ_STUB_LOG": str(tmp_path / "actions.log"),
    }
    topo = load_topology(topo_file)
    cli = VagrantCLI(root, topology_file=topo_file, provider="kqstub", executable=offline_vagrant(), env=env)
    c = VagrantCluster(topo, root=root, run_dir=tmp_path / "run", cli=cli, ssh_connect_deadline=15, ssh_sudo=False)
    try:
        yield c
    finally:
        for n in c.nodes():
            n.transport.close()


def actions(c: VagrantCluster) -> list[str]:
    log = Path(c.cli.env["KQ_STUB_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def test_lifecycle_status_ssh_power_and_destroy(cluster: VagrantCluster) -> None:
    assert [(s.name, s.state, s.provider) for s in cluster.status()] == [
        ("lb1", "not_created", "kqstub"),
        ("cp1", "not_created", "kqstub"),
        ("w1", "not_created", "kqstub"),
    ]
    # create = `vagrant up` then the admin kubeconfig from the first control plane, which
    # this host does not have: the error says provisioning did not finish and what to do.
    with pytest.raises(ClusterError, match=r"cp1 has no /etc/kubernetes/admin.conf .*vagrant provision cp1"):
        cluster.create(timeout=300)
    assert {s.state for s in cluster.status()} == {"running"}
    assert actions(cluster) == ["lb1 running force=no", "cp1 running force=no", "w1 running force=no"]
    with pytest.raises(ClusterError, match=r"does not exist yet"):
        cluster.kubeconfig()

    # SSH through `vagrant ssh-config` to the loopback sshd.
    w1 = cluster.node("w1")
    assert w1.role is Role.WORKERS and w1.address == "192.168.56.31"
    res = w1.run(["hostname"], timeout=10)
    assert res.ok and res.stdout.strip() == socket.gethostname()

    # Power off is `vagrant halt --force`; the machine then has no SSH, and says so.
    w1.power_off()
    assert actions(cluster)[-1] == "w1 poweroff force=yes"
    assert [s.state for s in cluster.status() if s.name == "w1"] == ["poweroff"]
    with pytest.raises(VagrantError, match=r"SSHNotReady"):
        w1.run(["true"], timeout=10)

    # Power on is `vagrant up --no-provision`, then a fresh SSH connection and a readiness
    # wait for every component; this host runs no kubelet, so the wait names what it saw.
    with pytest.raises(TimeoutExpired, match=r"w1/kubelet not ready within \d+s; last state: kubelet.service is"):
        w1.power_on(timeout=8)
    assert actions(cluster)[-1] == "w1 running force=no"
    assert w1.run(["echo", "back"], timeout=10).stdout == "back\n"

    cluster.destroy()
    assert {s.state for s in cluster.status()} == {"not_created"}
    cluster.destroy()  # safe twice


def test_static_pod_faults_over_ssh_need_crictl_and_say_so(cluster: VagrantCluster) -> None:
    cluster.cli.up(["cp1"])
    cp1 = cluster.node("cp1")
    if shutil.which("crictl"):
        pytest.skip("crictl exists on this host; the error path cannot be shown")
    with pytest.raises(ClusterError, match=r"cp1: crictl cannot list kube-apiserver containers"):
        cp1.kill(Component.APISERVER)


def test_partition_rules_are_added_and_healed_with_real_iptables(cluster: VagrantCluster) -> None:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.skip("partitions need root and iptables")
    cluster.cli.up(["cp1"])
    cp1 = cluster.node("cp1")
    # Addresses of the Vagrant private network: configuration only, nothing is ever sent there.
    peers = ["192.168.56.22", "192.168.56.23"]
    try:
        cp1.partition(peers)
        cp1.partition(peers)  # applying twice adds nothing
        rules = cp1.partition_rules()
        assert sorted(rules) == sorted(f"-A {PARTITION_CHAIN} -{d} {p}/32 -j DROP" for p in peers for d in ("d", "s"))
        hooks = cp1.run(["iptables", "-w", "5", "-S"], timeout=10).stdout
        assert f"-A INPUT -j {PARTITION_CHAIN}" in hooks and f"-A OUTPUT -j {PARTITION_CHAIN}" in hooks
        cp1.heal_partition(["192.168.56.22"])
        assert cp1.partition_rules() == [
            f"-A {PARTITION_CHAIN} -d 192.168.56.23/32 -j DROP",
            f"-A {PARTITION_CHAIN} -s 192.168.56.23/32 -j DROP",
        ]
    finally:
        cp1.heal_partition()
    assert cp1.partition_rules() == []
    assert PARTITION_CHAIN not in cp1.run(["iptables", "-w", "5", "-S"], timeout=10).stdout
    with pytest.raises(FaultError, match=r"own address"):
        cp1.partition([cp1.address])
