"""A real OpenSSH server on a loopback port, for testing the SSH transport and the providers.

It runs as the current user with generated host and client keys, listens on 127.0.0.1 only and
is killed in teardown. Nothing here ever connects outside loopback.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


@dataclass
class SSHServer:
    port: int
    user: str
    client_key: Path
    host_public_key: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}"

    def start(self) -> None:
        cfg = self.root / "sshd_config"
        log = (self.root / "sshd.log").open("ab")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(cfg), "-p", str(self.port), "-o", "ListenAddress=127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {(self.root / 'sshd.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.settimeout(2)
                if s.recv(8).startswith(b"SSH-"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not answer on 127.0.0.1:{self.port} within 10s")

    def stop(self) -> None:
        """Stop the listener and every per-connection child (they outlive it in their own sessions)."""
        if self.proc is not None and self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # The command name in parentheses may hold spaces; the parent pid follows it.
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(proc.name))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubequake-test", "-f", str(path)],
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def prepare(root: Path) -> SSHServer:
    """Keys and config for a server; not started yet (tests of connect retries start it late)."""
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server is not installed (Debian package openssh-server; `make setup` installs it)")
    if os.geteuid() == 0:
        # sshd refuses to start without its privilege separation directory, which the
        # system's ssh service would normally create at boot.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    keygen(root / "host_ed25519")
    keygen(root / "client_ed25519")
    (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
    user = getpass.getuser()
    (root / "sshd_config").write_text(
        "\n".join(
            [
                f"HostKey {root / 'host_ed25519'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                f"AllowUsers {user}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "StrictModes no",
                "UsePAM no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    host_pub = " ".join((root / "host_ed25519.pub").read_text().split()[:2])
    return SSHServer(free_port(), user, root / "client_ed25519", host_pub, root)


@pytest.fixture
def sshd_prepared(tmp_path: Path) -> Iterator[SSHServer]:
    server = prepare(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sshd(sshd_prepared: SSHServer) -> SSHServer:
    sshd_prepared.start()
    return sshd_prepared
