"""Run commands on a remote node over SSH (paramiko), with the same contract as LocalTransport.

Connecting is retried until a deadline, because a VM that is booting refuses or stalls before
sshd answers; a command is never retried, because it may not be idempotent. Every command has a
local deadline, and the remote side is wrapped in coreutils `timeout` a little later, so a
command abandoned by the harness does not keep running on the node.

SSH sends one command string, not an argv: `remote_command` is the only place in kubequake
that turns an argv into shell text, with `shlex.join`.
"""

from __future__ import annotations

import logging
import math
import select
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paramiko

from harness.errors import TransportError
from harness.transport.base import CommandResult

log = logging.getLogger(__name__)

# The remote `timeout` fires this long after the local deadline, so the harness always
# reports the timeout itself; the remote one only reaps what was left behind.
REMOTE_REAP_GRACE_S = 2
_POLL_S = 0.05
_TAIL = 500


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to log in. Keys are files; passwords are not supported on purpose."""

    host: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    # Off for Vagrant VMs (their host keys change with every `vagrant up`, and `vagrant ssh-config`
    # says so); on for existing clusters, against the system known_hosts plus `known_hosts`.
    host_key_checking: bool = True
    known_hosts: Path | None = None

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def remote_command(argv: list[str], *, sudo: bool = False, reap_after_s: float | None = None) -> str:
    """The shell text sent over SSH for an argv: quoted here and nowhere else.

    `sudo -n` fails at once instead of waiting for a password prompt nobody will answer.
    """
    if not argv:
        raise TransportError("empty command: pass an argv list with the program first")
    words: list[str] = []
    if sudo:
        words += ["sudo", "-n", "--"]
    if reap_after_s is not None:
        words += ["timeout", f"--kill-after={REMOTE_REAP_GRACE_S}", str(math.ceil(reap_after_s))]
    return shlex.join([*words, *argv])


class SSHTransport:
    """One lazily opened, reused SSH connection to a node; reconnects when the node comes back."""

    def __init__(
        self,
        target: SSHTarget,
        *,
        connect_timeout: float = 10.0,
        connect_deadline: float = 60.0,
        sudo: bool = False,
        reap_remote: bool = True,
        keepalive_s: int = 5,
    ) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.connect_deadline = connect_deadline
        self.sudo = sudo
        self.reap_remote = reap_remote
        self.keepalive_s = keepalive_s
        self.connect_attempts = 0
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SSHTransport({self.target})"

    def __enter__(self) -> SSHTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- connection --------------------------------------------------------------------------
    def connected(self) -> bool:
        client = self._client
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    def connect(self, deadline_s: float | None = None) -> None:
        """Connect now (retrying until `deadline_s`, default connect_deadline) unless connected."""
        with self._lock:
            if self.connected():
                return
            self._drop()
            self._client = self._connect(self.connect_deadline if deadline_s is None else deadline_s)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.target.host_key_checking:
            client.load_system_host_keys()
            if self.target.known_hosts is not None:
                try:
                    client.load_host_keys(str(self.target.known_hosts))
                except OSError as exc:
                    raise TransportError(
                        f"ssh {self.target}: known_hosts file {self.target.known_hosts} cannot be read "
                        f"({exc.strerror}); fix the path or turn host key checking off for this node"
                    ) from None
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            # Accepted for this connection only; nothing is written to any known_hosts file.
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return client

    def _connect(self, deadline_s: float) -> paramiko.SSHClient:
        t = self.target
        key = t.key_file
        if key is not None and not key.is_file():
            raise TransportError(f"ssh {t}: key file {key} does not exist; check the inventory or `vagrant ssh-config`")
        started = time.monotonic()
        deadline = started + deadline_s
        attempt = 0
        delay = 0.25
        # Distinct errors in the order seen: the last alone can hide the cause (a banner timeout
        # is often followed by paramiko's "No existing session" on the next try).
        errors: list[str] = []
        while True:
            attempt += 1
            self.connect_attempts = attempt
            client = self._new_client()
            per_try = min(self.connect_timeout, max(0.5, deadline - time.monotonic()))
            try:
                client.connect(
                    t.host,
                    port=t.port,
                    username=t.user,
                    key_filename=str(key) if key is not None else None,
                    # paramiko gives up negotiating silently at `timeout` and then reports "No existing
                    # session"; a banner timeout just below it names the real cause.
                    timeout=per_try + 0.5,
                    banner_timeout=per_try,
                    auth_timeout=per_try,
                    channel_timeout=per_try,
                    look_for_keys=key is None,
                    allow_agent=key is None,
                )
            except paramiko.AuthenticationException as exc:
                client.close()
                # A wrong key does not get better by trying again.
                raise TransportError(
                    f"ssh {t}: authentication failed with key {key or '(agent/default keys)'} ({exc}); "
                    f"check that the key's public half is in {t.user}'s authorized_keys on {t.host}"
                ) from None
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise TransportError(
                    f"ssh {t}: host key changed (got {exc.key.get_name()} {exc.key.get_base64()[:16]}..., expected "
                    f"{exc.expected_key.get_base64()[:16]}...); if the machine was rebuilt, remove its old entry "
                    f"with `ssh-keygen -R {t.host}`, otherwise stop: this may be the wrong machine"
                ) from None
            except paramiko.SSHException as exc:
                client.close()
                if "known_hosts" in str(exc):
                    raise TransportError(
                        f"ssh {t}: host key unknown and host key checking is on; add it with "
                        f"`ssh-keyscan -p {t.port} {t.host} >> ~/.ssh/known_hosts` after verifying it, "
                        "or set the node's known_hosts file"
                    ) from None
                last = f"{type(exc).__name__}: {exc}"
                if "No existing session" in str(exc):
                    last = f"SSH handshake did not complete within {per_try:.1f}s"
            except (OSError, EOFError) as exc:
                client.close()
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                transport = client.get_transport()
                if transport is not None:
                    transport.set_keepalive(self.keepalive_s)
                log.debug("ssh %s: connected after %d attempt(s) in %.1fs", t, attempt, time.monotonic() - started)
                return client
            if last not in errors:
                errors.append(last)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(
                    f"ssh {t}: no connection within {deadline_s:.1f}s ({attempt} attempts, "
                    f"{self.connect_timeout:.1f}s each); errors seen: {'; '.join(errors)}. Check that the node is up "
                    "(`vagrant status` or the hypervisor), that sshd listens on that address and port, "
                    "and that no firewall drops it"
                )
            log.debug("ssh %s: attempt %d failed (%s); retrying in %.2fs", t, attempt, last, delay)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)

    # -- commands ----------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float) -> CommandResult:
        reap = timeout + REMOTE_REAP_GRACE_S if self.reap_remote else None
        command = remote_command(argv, sudo=self.sudo, reap_after_s=reap)
        shown = shlex.join(argv)
        self.connect()
        client = self._client
        transport = client.get_transport() if client is not None else None
        if transport is None:
            raise TransportError(f"ssh {self.target}: connection closed before `{shown}` could start; retry the step")
        start = time.monotonic()
        deadline = start + timeout
        try:
            chan = transport.open_session(timeout=max(0.1, min(timeout, self.connect_timeout)))
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise TransportError(
                f"ssh {self.target}: could not start `{shown}`: {exc}; the connection was reset"
            ) from None
        out = bytearray()
        err = bytearray()
        try:
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                if chan.exit_status_ready() and (chan.eof_received or chan.closed):
                    if not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    continue
                now = time.monotonic()
                if now >= deadline:
                    raise TransportError(
                        f"ssh {self.target}: command `{shown}` did not finish within {timeout:.1f}s "
                        f"(stdout so far: {_tail(out)!r}, stderr: {_tail(err)!r}); "
                        + (
                            f"the node kills it {REMOTE_REAP_GRACE_S}s later"
                            if reap is not None
                            else "it may still run on the node"
                        )
                    )
                if not transport.is_active():
                    raise TransportError(
                        f"ssh {self.target}: connection lost while `{shown}` ran (stdout so far: {_tail(out)!r}); "
                        "the node may have gone down"
                    )
                select.select([chan], [], [], min(_POLL_S, deadline - now))
            status = chan.recv_exit_status()
        except (OSError, paramiko.SSHException) as exc:
            self.close()
            raise TransportError(f"ssh {self.target}: `{shown}` failed in transit: {exc}") from None
        finally:
            chan.close()
        if status == -1:
            # The server closed the channel without an exit status: a signal or a dying sshd.
            raise TransportError(
                f"ssh {self.target}: `{shown}` ended without an exit status (stderr: {_tail(err)!r}); "
                "the command was killed or the connection dropped"
            )
        return CommandResult(
            tuple(argv),
            status,
            out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"),
            time.monotonic() - start,
        )


def _tail(data: bytearray) -> str:
    return data[-_TAIL:].decode("utf-8", errors="replace")
