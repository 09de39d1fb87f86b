"""The paramiko transport against a real OpenSSH server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import TransportError
from harness.transport.ssh import REMOTE_REAP_GRACE_S, SSHTarget, SSHTransport
from tests.integration.sshd_server import SSHServer, free_port, keygen, sshd, sshd_prepared

__all__ = ["sshd", "sshd_prepared"]  # fixtures, imported for pytest

pytestmark = pytest.mark.timeout(120)


def target(server: SSHServer, **kw: object) -> SSHTarget:
    args: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "key_file": server.client_key,
        "host_key_checking": False,
    }
    args.update(kw)
    return SSHTarget(**args)  # type: ignore[arg-type]


@pytest.fixture
def ssh(sshd: SSHServer) -> Iterator[SSHTransport]:
    with SSHTransport(target(sshd), connect_timeout=5, connect_deadline=10) as t:
        yield t


def pids_running(argv: list[str]) -> list[int]:
    want = "\0".join(argv).encode() + b"\0"
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes() == want:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_runs_a_command_and_returns_stdout(ssh: SSHTransport) -> None:
    res = ssh.run(["echo", "hello", "world"], timeout=10)
    assert res.ok
    assert res.stdout == "hello world\n"
    assert res.stderr == ""
    assert res.argv == ("echo", "hello", "world")
    assert 0 <= res.duration_s < 10


def test_exit_status_and_stderr_are_kept_apart(ssh: SSHTransport) -> None:
    res = ssh.run(["sh", "-c", "echo out; echo oops >&2; exit 3"], timeout=10)
    assert res.exit_status == 3
    assert res.stdout == "out\n"
    assert res.stderr == "oops\n"
    with pytest.raises(TransportError, match=r"exited 3: oops"):
        res.check()


def test_argv_with_spaces_quotes_and_shell_syntax_arrives_unchanged(ssh: SSHTransport) -> None:
    weird = [
        "two words",
        "it's",
        'say "hi"',
        "$HOME",
        "`id`",
        "$(id)",
        "a;b",
        "x && y",
        "*",
        "",
        "line\nbreak",
        "back\\slash",
        "ünïcode",
    ]
    res = ssh.run(["python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *weird], timeout=15)
    assert res.ok, res.stderr
    assert json.loads(res.stdout) == weird


def test_a_command_that_outlives_its_timeout_raises_and_is_reaped_on_the_node(ssh: SSHTransport) -> None:
    argv = ["sleep", "37.25"]
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"`sleep 37.25` did not finish within 1.0s") as info:
        ssh.run(argv, timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 4, elapsed
    assert str(ssh.target) in str(info.value)
    # sshd runs on this machine, so the abandoned remote process is visible here: it must go.
    deadline = time.monotonic() + REMOTE_REAP_GRACE_S + 8
    while pids_running(argv) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_running(argv) == []
    # The connection stays usable after a timed-out command.
    assert ssh.run(["true"], timeout=10).ok


def test_large_output_on_both_streams_is_read_completely(ssh: SSHTransport) -> None:
    script = "import sys\nfor i in range(20000):\n    print(i)\n    print(-i, file=sys.stderr)\n"
    res = ssh.run(["python3", "-c", script], timeout=30)
    assert res.ok
    assert res.stdout.splitlines() == [str(i) for i in range(20000)]
    assert res.stderr.splitlines() == [str(-i) for i in range(20000)]


def test_connect_is_retried_until_the_server_comes_up(sshd_prepared: SSHServer) -> None:
    starter = threading.Timer(1.5, sshd_prepared.start)
    starter.start()
    try:
        with SSHTransport(target(sshd_prepared), connect_timeout=2, connect_deadline=20) as t:
            assert t.run(["echo", "up"], timeout=10).stdout == "up\n"
            assert t.connect_attempts > 1
    finally:
        starter.join()


def test_connection_refused_until_the_deadline_names_target_and_last_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    t = SSHTransport(
        SSHTarget("127.0.0.1", port, "nobody", host_key_checking=False), connect_timeout=0.5, connect_deadline=1.5
    )
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        t.run(["true"], timeout=5)
    assert 1.4 <= time.monotonic() - started < 5
    msg = str(info.value)
    assert f"nobody@127.0.0.1:{port}" in msg
    assert "no connection within 1.5s" in msg
    assert "refused" in msg.lower() or "unable to connect" in msg.lower()
    assert "Check that the node is up" in msg
    assert t.connect_attempts >= 2


def test_a_server_that_never_sends_a_banner_times_out_with_a_clear_message() -> None:
    # The kernel completes the TCP handshake for a listening socket nobody accepts from,
    # so the client waits for an SSH banner that never comes: a hung sshd or a black hole.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        t = SSHTransport(
            SSHTarget("127.0.0.1", port, "nobody", host_key_checking=False), connect_timeout=0.7, connect_deadline=2.0
        )
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"no connection within 2.0s") as info:
            t.connect()
        assert 1.9 <= time.monotonic() - started < 6
        assert "banner" in str(info.value).lower()


def test_authentication_failure_is_reported_at_once_without_retries(sshd: SSHServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_ed25519"
    keygen(stranger)
    t = SSHTransport(target(sshd, key_file=stranger), connect_timeout=5, connect_deadline=30)
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"authentication failed with key .*stranger_ed25519") as info:
        t.run(["true"], timeout=5)
    assert time.monotonic() - started < 10
    assert t.connect_attempts == 1
    assert f"{sshd.user}'s authorized_keys" in str(info.value)


def test_missing_key_file_is_named(sshd: SSHServer, tmp_path: Path) -> None:
    t = SSHTransport(target(sshd, key_file=tmp_path / "absent"), connect_deadline=5)
    with pytest.raises(TransportError, match=r"key file .*absent does not exist"):
        t.connect()


def test_host_key_checking_rejects_unknown_hosts_and_accepts_known_ones(sshd: SSHServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    strict = SSHTransport(target(sshd, host_key_checking=True, known_hosts=empty), connect_deadline=10)
    with pytest.raises(TransportError, match=r"host key unknown"):
        strict.connect()
    assert strict.connect_attempts == 1

    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line() + "\n")
    with SSHTransport(target(sshd, host_key_checking=True, known_hosts=known), connect_deadline=10) as t:
        assert t.run(["echo", "trusted"], timeout=10).stdout == "trusted\n"


def test_reconnects_after_the_connection_dies_with_the_server(sshd: SSHServer) -> None:
    with SSHTransport(target(sshd), connect_timeout=2, connect_deadline=20) as t:
        assert t.run(["true"], timeout=10).ok
        first = t.connect_attempts
        sshd.stop()  # kills the per-connection sshd too: a rebooted node
        deadline = time.monotonic() + 5
        while t.connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not t.connected()
        sshd.start()
        assert t.run(["echo", "back"], timeout=10).stdout == "back\n"
        assert t.connect_attempts >= first
