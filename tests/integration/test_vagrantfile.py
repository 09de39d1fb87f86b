"""The Vagrantfile and its provisioning scripts, checked without creating a VM.

Real Vagrant validates and lists the machines; Ruby loads the Vagrantfile to show what it computes
from the topology file; the configuration the scripts render is fed to HAProxy's own checker and
a YAML parser; shellcheck reads every script. When running as root, Vagrant runs in a network
namespace of its own, so no test can send a packet anywhere.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from harness.providers.topology import DEFAULT_TOPOLOGY, load_topology
from harness.providers.vagrant import VagrantCLI, VagrantError

REPO = Path(__file__).resolve().parents[2]
VAGRANTFILE = REPO / "Vagrantfile"
SCRIPTS = REPO / "harness" / "providers" / "vagrant_scripts"
PROBE = Path(__file__).with_name("vagrantfile_probe.rb")

pytestmark = pytest.mark.timeout(300)


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian package {package}; `make setup` installs it)")
    return path


@functools.cache
def offline_prefix() -> tuple[str, ...]:
    """`unshare -n` when allowed: Vagrant then has only a loopback interface that is down."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10, check=False)
        if probe.returncode == 0:
            return ("unshare", "-n")
    return ()


@pytest.fixture
def vagrant_env(tmp_path: Path) -> dict[str, str]:
    """Vagrant's home and machine state in the test's directory, never in the checkout."""
    return {
        "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot-vagrant"),
        "VAGRANT_CHECKPOINT_DISABLE": "1",
    }


def probe(env: dict[str, str], topology: Path | None = None) -> dict[str, Any]:
    need("ruby", "ruby")
    run_env = {**os.environ, **env}
    run_env.pop("VAGRANT_DEFAULT_PROVIDER", None)
    if topology is not None:
        run_env["KUBEQUAKE_TOPOLOGY"] = str(topology)
    res = subprocess.run(
        ["ruby", str(PROBE), str(VAGRANTFILE)], capture_output=True, text=True, env=run_env, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert isinstance(data, dict)
    return data


def custom_topology(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    data["name"] = "five"
    data["provider"] = "libvirt"
    cp = {"role": "control-plane", "cpus": 2, "memory_mb": 2048}
    # Listed out of order on purpose: the Vagrantfile must still bring LBs up first.
    data["nodes"] = [
        {"name": "worker-a", "role": "worker", "ip": "192.168.56.40", "cpus": 1, "memory_mb": 1024},
        *({"name": f"m{i}", "ip": f"192.168.56.{50 + i}", **cp} for i in range(1, 6)),
        {"name": "edge", "role": "load-balancer", "ip": "192.168.56.60", "cpus": 1, "memory_mb": 512},
    ]
    path = tmp_path / "five.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(env: dict[str, str], topology: Path | None = None, provider: str | None = "libvirt") -> VagrantCLI:
    exe = need("vagrant", "vagrant")
    return VagrantCLI(REPO, topology_file=topology, provider=provider, executable=[*offline_prefix(), exe], env=env)


def libvirt_cli(env: dict[str, str], topology: Path | None = None) -> VagrantCLI:
    c = cli(env, topology)
    try:
        c.status()
    except VagrantError as exc:
        if exc.error_class in ("Vagrant::Errors::ProviderNotUsable", "Vagrant::Errors::ProviderNotFound"):
            pytest.skip("the vagrant-libvirt plugin is not installed (Debian package vagrant-libvirt)")
        raise
    return c


# -- what the Vagrantfile computes ------------------------------------------------------------
def test_vagrantfile_is_valid_ruby() -> None:
    need("ruby", "ruby")
    res = subprocess.run(["ruby", "-c", str(VAGRANTFILE)], capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    assert "Syntax OK" in res.stdout


def test_vagrantfile_and_harness_read_the_same_machines(vagrant_env: dict[str, str]) -> None:
    data = probe(vagrant_env)
    topo = load_topology(DEFAULT_TOPOLOGY)
    machines = data["machines"]
    assert [(m["name"], m["role"], m["ip"], m["cpus"], m["memory_mb"]) for m in machines] == [
        (n.name, n.role.value, n.ip, n.cpus, n.memory_mb)
        for n in (*topo.load_balancers(), *topo.control_planes(), *topo.workers())
    ]
    assert [m["name"] for m in machines if m["init"]] == [topo.init_node.name]
    assert data["default_provider"] == topo.provider
    assert sorted(Path(s).name for s in data["scripts"]) == sorted(p.name for p in SCRIPTS.glob("*.sh"))


def test_a_custom_topology_comes_up_load_balancers_first(vagrant_env: dict[str, str], tmp_path: Path) -> None:
    path = custom_topology(tmp_path)
    data = probe(vagrant_env, path)
    assert [m["name"] for m in data["machines"]] == ["edge", "m1", "m2", "m3", "m4", "m5", "worker-a"]
    assert [m["name"] for m in data["machines"] if m["init"]] == ["m1"]
    assert load_topology(path).init_node.name == "m1"
    assert data["default_provider"] == "libvirt"
    env = data["env"]["m3"]
    assert env["KQ_CONTROL_PLANES"] == ",".join(f"m{i}=192.168.56.{50 + i}" for i in range(1, 6))
    assert env["KQ_LOAD_BALANCERS"] == "edge=192.168.56.60"


def test_provisioning_environment_carries_roles_versions_and_peers(vagrant_env: dict[str, str]) -> None:
    data = probe(vagrant_env)
    topo = load_topology(DEFAULT_TOPOLOGY)
    cp2 = data["env"]["cp2"]
    assert cp2["KQ_ROLE"] == "control-plane"
    assert cp2["KQ_INIT_NODE"] == "false"
    assert data["env"]["cp1"]["KQ_INIT_NODE"] == "true"
    assert cp2["KQ_NODE_IP"] == topo.node("cp2").ip
    assert cp2["KQ_VIP"] == topo.network.vip
    assert cp2["KQ_API_PORT"] == str(topo.network.api_port)
    assert cp2["KQ_K8S_VERSION"] == topo.kubernetes_version
    assert cp2["KQ_CONTAINERD_VERSION"] == topo.containerd_version
    assert cp2["KQ_CNI_VERSION"] == topo.cni.version
    assert cp2["KQ_CONTROL_PLANES"] == ",".join(f"{n.name}={n.ip}" for n in topo.control_planes())
    assert cp2["KQ_LOAD_BALANCERS"] == ",".join(f"{n.name}={n.ip}" for n in topo.load_balancers())
    assert data["env"]["w1"]["KQ_ROLE"] == "worker"
    # Every machine gets the same cluster secrets.
    assert len({(e["KQ_TOKEN"], e["KQ_CERT_KEY"], e["KQ_CA_HASH"]) for e in data["env"].values()}) == 1


def test_secrets_are_made_once_kept_private_and_pin_the_ca(vagrant_env: dict[str, str]) -> None:
    first = probe(vagrant_env)["secrets"]
    second = probe(vagrant_env)["secrets"]
    assert first == second
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", first["token"])
    assert re.fullmatch(r"[0-9a-f]{64}", first["certificate_key"])
    secret_dir = Path(vagrant_env["VAGRANT_DOTFILE_PATH"]) / "kubequake"
    assert stat.S_IMODE(secret_dir.stat().st_mode) == 0o700
    for name in ("ca.key", "bootstrap-token", "certificate-key"):
        assert stat.S_IMODE((secret_dir / name).stat().st_mode) == 0o600, name
    cert = x509.load_pem_x509_certificate(Path(first["ca_crt"]).read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.subject.rfc4514_string() == "CN=kubernetes"
    # kubeadm's --discovery-token-ca-cert-hash: sha256 over the DER SubjectPublicKeyInfo.
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    assert first["ca_hash"] == "sha256:" + digest.finalize().hex()


def test_the_vagrantfile_refuses_a_broken_topology(vagrant_env: dict[str, str], tmp_path: Path) -> None:
    need("ruby", "ruby")
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    data["nodes"][0]["role"] = "master"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    res = subprocess.run(
        ["ruby", str(PROBE), str(VAGRANTFILE)],
        capture_output=True,
        text=True,
        env={**os.environ, **vagrant_env, "KUBEQUAKE_TOPOLOGY": str(path)},
        timeout=60,
        check=False,
    )
    assert res.returncode != 0
    assert 'nodes[0].role "master": choose one of load-balancer, control-plane, worker' in res.stderr


# -- real Vagrant -----------------------------------------------------------------------------
def test_vagrant_validate_accepts_the_vagrantfile_ignoring_provider_options(vagrant_env: dict[str, str]) -> None:
    res = cli(vagrant_env, provider=None).validate(ignore_provider=True)
    assert "Vagrantfile validated successfully" in res.stdout


def test_vagrant_validate_accepts_the_libvirt_provider_options(vagrant_env: dict[str, str]) -> None:
    res = libvirt_cli(vagrant_env).validate()
    assert "Vagrantfile validated successfully" in res.stdout


def test_vagrant_status_lists_the_topology_in_boot_order(vagrant_env: dict[str, str], tmp_path: Path) -> None:
    st = libvirt_cli(vagrant_env).status()
    topo = load_topology(DEFAULT_TOPOLOGY)
    assert [s.name for s in st] == [n.name for n in (*topo.load_balancers(), *topo.control_planes(), *topo.workers())]
    assert {(s.state, s.provider) for s in st} == {("not_created", "libvirt")}
    custom = libvirt_cli(vagrant_env, custom_topology(tmp_path)).status()
    assert [s.name for s in custom] == ["edge", "m1", "m2", "m3", "m4", "m5", "worker-a"]


def test_vagrant_errors_for_machines_that_are_not_there(vagrant_env: dict[str, str]) -> None:
    c = libvirt_cli(vagrant_env)
    with pytest.raises(VagrantError, match=r"MachineNotFound: The machine with the name 'nope'"):
        c.status(["nope"])
    with pytest.raises(VagrantError) as info:
        c.ssh_config(["cp1"])
    assert info.value.error_class.startswith("Vagrant::Errors::")


# -- the provisioning scripts -----------------------------------------------------------------
def test_provisioning_scripts_pass_shellcheck() -> None:
    need("shellcheck", "shellcheck")
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    assert len(scripts) >= 5
    res = subprocess.run(
        ["shellcheck", "-x", "-P", "SCRIPTDIR", *scripts], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def bash(snippet: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `snippet` in bash with the helpers sourced, as provision.sh sources them."""
    script = f"set -euo pipefail; for f in lib node load-balancer control-plane; do . {SCRIPTS}/$f.sh; done\n{snippet}"
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_kq_put_writes_only_on_change(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "x.conf"
    res = bash(
        f"""
        for content in one one two; do
          if kq_put {target} 0640 <<<"$content"; then echo changed; else echo same; fi
        done
        stat -c %a {target}
        """
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [x for x in lines if not x.startswith("kubequake[")] == ["changed", "same", "changed", "640"]
    assert lines.count(f"kubequake[node] wrote {target}") == 2
    assert target.read_text() == "two\n"


def test_helpers_parse_peers_find_interfaces_and_give_up_on_time() -> None:
    res = bash('kq_peers "cp1=192.168.56.21,cp2=192.168.56.22"; kq_interface_of 127.0.0.1')
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["cp1 192.168.56.21", "cp2 192.168.56.22", "lo"]
    res = bash("kq_wait_for 0 'the thing' false", {"KQ_NODE_NAME": "cp9"})
    assert res.returncode == 1
    assert "kubequake[cp9] ERROR: the thing: not reached within 0s" in res.stderr
    res = bash("kq_require KQ_MISSING")
    assert res.returncode == 1
    assert "KQ_MISSING is not set" in res.stderr


def provision_env(vagrant_env: dict[str, str], node: str) -> dict[str, str]:
    env = probe(vagrant_env)["env"][node]
    assert isinstance(env, dict)
    return env


def test_rendered_haproxy_config_passes_haproxys_own_check(vagrant_env: dict[str, str], tmp_path: Path) -> None:
    haproxy = need("haproxy", "haproxy")
    env = provision_env(vagrant_env, "lb1")
    res = bash("kq_haproxy_config", env)
    assert res.returncode == 0, res.stderr
    cfg = tmp_path / "haproxy.cfg"
    # The stats socket's directory exists on the LB (the package creates it); point it here.
    cfg.write_text(res.stdout.replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock")))
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    servers = re.findall(
        r"^\s+server (\S+) (\S+) check check-ssl verify none inter 2s fall 3 rise 2$", res.stdout, re.M
    )
    topo = load_topology(DEFAULT_TOPOLOGY)
    assert servers == [(n.name, f"{n.ip}:6443") for n in topo.control_planes()]
    assert "option httpchk GET /readyz" in res.stdout
    assert "timeout client 1h" in res.stdout and "timeout server 1h" in res.stdout


def test_rendered_keepalived_configs_prefer_the_first_lb_and_peer_by_unicast(vagrant_env: dict[str, str]) -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    lb1, lb2 = topo.load_balancers()
    configs = {}
    for lb in (lb1, lb2):
        res = bash("kq_keepalived_config eth1", provision_env(vagrant_env, lb.name))
        assert res.returncode == 0, res.stderr
        configs[lb.name] = res.stdout
    assert re.search(r"^\s+priority 150$", configs["lb1"], re.M)
    assert re.search(r"^\s+priority 140$", configs["lb2"], re.M)
    for me, peer in ((lb1, lb2), (lb2, lb1)):
        cfg = configs[me.name]
        assert f"unicast_src_ip {me.ip}" in cfg
        assert re.search(rf"unicast_peer \{{\n\s+{re.escape(peer.ip)}\n\s+\}}", cfg)
        assert f"{topo.network.vip}/24 dev eth1" in cfg
        assert f"virtual_router_id {topo.network.vip.rsplit('.', 1)[1]}" in cfg
        assert 'script "/usr/bin/systemctl is-active --quiet haproxy"' in cfg
        assert cfg.count("{") == cfg.count("}")


def test_rendered_kubeadm_configs_use_the_vip_and_pin_the_ca(vagrant_env: dict[str, str]) -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    endpoint = f"{topo.network.vip}:{topo.network.api_port}"
    cp1 = provision_env(vagrant_env, "cp1")
    res = bash("kq_init_config", cp1)
    assert res.returncode == 0, res.stderr
    init, cluster, kubelet = yaml.safe_load_all(res.stdout)
    assert init["kind"] == "InitConfiguration" and init["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert init["bootstrapTokens"][0]["token"] == cp1["KQ_TOKEN"]
    assert init["certificateKey"] == cp1["KQ_CERT_KEY"]
    assert init["localAPIEndpoint"] == {"advertiseAddress": topo.node("cp1").ip, "bindPort": 6443}
    assert init["nodeRegistration"]["name"] == "cp1"
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": topo.node("cp1").ip}]
    assert cluster["controlPlaneEndpoint"] == endpoint
    assert cluster["kubernetesVersion"] == topo.kubernetes_version
    assert cluster["networking"] == {"podSubnet": topo.network.pod_cidr, "serviceSubnet": topo.network.service_cidr}
    assert kubelet["cgroupDriver"] == "systemd"

    for node, control_plane in (("cp2", True), ("w1", False)):
        env = provision_env(vagrant_env, node)
        res = bash(f"kq_join_config {'control-plane' if control_plane else 'worker'}", env)
        assert res.returncode == 0, res.stderr
        join = yaml.safe_load(res.stdout)
        assert join["kind"] == "JoinConfiguration"
        discovery = join["discovery"]["bootstrapToken"]
        assert discovery == {
            "apiServerEndpoint": endpoint,
            "token": env["KQ_TOKEN"],
            "caCertHashes": [env["KQ_CA_HASH"]],
        }
        assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": topo.node(node).ip}]
        if control_plane:
            assert join["controlPlane"] == {
                "localAPIEndpoint": {"advertiseAddress": topo.node(node).ip, "bindPort": 6443},
                "certificateKey": env["KQ_CERT_KEY"],
            }
        else:
            assert "controlPlane" not in join


def test_provision_refuses_an_unknown_role_before_touching_anything() -> None:
    res = subprocess.run(
        ["bash", str(SCRIPTS / "provision.sh")],
        capture_output=True,
        text=True,
        env={
            "PATH": os.environ["PATH"],
            "KQ_NODE_NAME": "x",
            "KQ_ROLE": "etcd-only",
            "KQ_NODE_IP": "192.168.56.99",
            "KQ_VIP": "192.168.56.10",
            "KQ_API_PORT": "6443",
        },
        timeout=30,
        check=False,
    )
    assert res.returncode == 1
    assert "KQ_ROLE=etcd-only: expected load-balancer, control-plane or worker" in res.stderr
