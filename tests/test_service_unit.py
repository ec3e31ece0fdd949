"""The systemd unit, sysusers and tmpfiles snippets in deploy/systemd, checked by systemd's own
tools (verify, security --offline, sysusers and tmpfiles on a scratch root), and sd_notify
READY=1 / STOPPING=1 from a real `bastion serve` to a real datagram socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion import sdnotify
from bastion.config import Paths
from bastion.config_policies import SessionPolicy
from bastion.errors import Exit
from bastion.lifecycle import STOP_AFTER_DRAIN
from tests import test_cli
from tests.realssh import free_port
from tests.test_cli import Bastion, child_env, close_pipes

bst = test_cli.bst
pristine = test_cli.pristine

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
UNIT = DEPLOY / "bastion.service"
STATE = "/var/lib/bastion"
WAIT = 120.0  # seconds a start or a stop may take on a loaded machine (not a timing assertion)


def directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd allows a key several times)."""
    found: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            found.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        found[section].setdefault(key.strip(), []).append(value.strip())
    return found


def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's bastion (verify checks it exists)."""
    bastion = Path(sys.executable).parent / "bastion"
    assert bastion.exists(), bastion
    text = UNIT.read_text(encoding="utf-8").replace("/usr/local/bin/bastion", str(bastion))
    unit = tmp_path / "bastion.service"
    unit.write_text(text, encoding="utf-8")
    return unit


class TestUnit:
    def test_systemd_verifies_it_without_a_warning(self, tmp_path: Path) -> None:
        done = subprocess.run(["systemd-analyze", "verify", str(runnable_unit(tmp_path))],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == "", done.stderr  # "ignoring" a bad value is a warning

    def test_the_hardening_is_there(self) -> None:
        service = directives(UNIT)["Service"]
        expected = {
            "Type": ["notify"],
            "User": ["bastion"],
            "Group": ["bastion"],
            "DynamicUser": ["no"],
            "ProtectSystem": ["strict"],
            "ReadWritePaths": [STATE],
            "NoNewPrivileges": ["yes"],
            "PrivateTmp": ["yes"],
            "ProtectHome": ["yes"],
            "ProtectKernelTunables": ["yes"],
            "ProtectKernelModules": ["yes"],
            "ProtectKernelLogs": ["yes"],
            "ProtectControlGroups": ["yes"],
            "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
            "CapabilityBoundingSet": [""],
            "AmbientCapabilities": [""],
            "UMask": ["0077"],
            "Restart": ["on-failure"],
            "ExecReload": ["/bin/kill -HUP $MAINPID"],
            "KillMode": ["mixed"],
        }
        for key, values in expected.items():
            assert service.get(key) == values, (key, service.get(key))
        assert service["SystemCallFilter"][0] == "@system-service"
        assert int(service["LimitNOFILE"][0]) >= 4096
        assert service["TimeoutStopSec"][0].endswith("s")
        stop = float(service["TimeoutStopSec"][0].removesuffix("s"))
        assert SessionPolicy().drain.total_seconds() + STOP_AFTER_DRAIN <= stop
        assert service["ExecStart"] == [f"/usr/local/bin/bastion --config {STATE}/bastion.toml"
                                        " serve"]  # fmt: skip

    def test_only_the_state_directory_is_writable_and_it_holds_every_default_path(self) -> None:
        service = directives(UNIT)["Service"]
        writable = [Path(p) for value in service["ReadWritePaths"] for p in value.split()]
        assert writable == [Path(STATE)]
        config = Path(STATE) / "bastion.toml"
        for name in ("store", "recordings", "reports"):  # relative: under the config's folder
            default = getattr(Paths(), name)
            assert not default.is_absolute()
            assert (config.parent / default).is_relative_to(writable[0])

    def test_systemd_scores_each_option_as_set(self, tmp_path: Path) -> None:
        done = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", str(runnable_unit(tmp_path))],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        passed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("✓")}
        for option in ("NoNewPrivileges=", "PrivateTmp=", "ProtectHome=", "ProtectSystem=",
                       "ProtectKernelTunables=", "ProtectKernelModules=", "ProtectKernelLogs=",
                       "ProtectControlGroups=", "User=/DynamicUser=", "AmbientCapabilities=",
                       "CapabilityBoundingSet=~CAP_SYS_ADMIN", "SystemCallFilter=~@mount",
                       "RestrictAddressFamilies=~AF_PACKET", "UMask="):  # fmt: skip
            assert option in passed, (option, done.stdout)


def scratch_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for folder in ("etc/sysusers.d", "etc/tmpfiles.d"):
        (root / folder).mkdir(parents=True)
    (root / "etc/passwd").touch()
    (root / "etc/group").touch()
    shutil.copy(DEPLOY / "bastion.sysusers.conf", root / "etc/sysusers.d/bastion.conf")
    shutil.copy(DEPLOY / "bastion.tmpfiles.conf", root / "etc/tmpfiles.d/bastion.conf")
    return root


def test_sysusers_and_tmpfiles_make_the_user_and_a_private_state_directory(
    tmp_path: Path,
) -> None:
    root = scratch_root(tmp_path)
    for tool in (["systemd-sysusers"], ["systemd-tmpfiles", "--create"]):
        done = subprocess.run([*tool, f"--root={root}"], capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    user = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines())
    assert user[0] == "bastion" and user[5] == STATE and user[6] == "/usr/sbin/nologin"
    assert 0 < int(user[2]) < 1000  # a system user
    for folder in (STATE, f"{STATE}/recordings"):
        info = (root / folder.lstrip("/")).stat()
        assert (info.st_mode & 0o777, info.st_uid) == (0o700, int(user[2]))


# --- sd_notify ------------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    """A datagram socket bound where systemd's NOTIFY_SOCKET would be."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(WAIT)
    try:
        yield sock, path
    finally:
        sock.close()


def message(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def health(port: int, ca: Path) -> dict[str, object]:
    context = ssl.create_default_context(cafile=str(ca))
    url = f"https://127.0.0.1:{port}/healthz"
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        assert response.status == 200
        body: dict[str, object] = json.loads(response.read())
        return body


def test_serve_says_ready_once_healthy_and_stopping_on_sigterm(
    bst: Bastion, notify_socket: tuple[socket.socket, Path]
) -> None:
    sock, path = notify_socket
    port = free_port()
    bst.set_web_port(port)
    env = {**child_env(), "NOTIFY_SOCKET": str(path)}
    proc = subprocess.Popen(bst.argv("serve"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=bst.cwd, env=env)  # fmt: skip
    try:
        ready = message(sock)  # the first datagram: nothing is said before the doors listen
        assert ready["READY"] == "1"
        assert ready["MAINPID"] == str(proc.pid)
        assert ready["STATUS"].startswith("serving: ")
        assert sorted(ready["STATUS"].removeprefix("serving: ").split(", ")) == [
            "postgres", "ssh", "web"]  # fmt: skip
        assert health(port, bst.home / "tls" / "bastion-ca.pem")["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        stopping = message(sock)
        assert stopping["STOPPING"] == "1"
        # systemd is asked to wait out the drain (60 s by default) and the stop after it,
        # whatever the unit's TimeoutStopSec: a longer drain is not killed half-way.
        assert stopping["EXTEND_TIMEOUT_USEC"] == str(int((60 + STOP_AFTER_DRAIN) * 1e6))
        _, stderr = proc.communicate(timeout=WAIT)
        assert proc.returncode == Exit.OK, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
        close_pipes(proc)


def test_serve_that_cannot_listen_never_says_ready(
    bst: Bastion, notify_socket: tuple[socket.socket, Path]
) -> None:
    sock, path = notify_socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        bst.set_web_port(blocker.getsockname()[1])
        env = {**child_env(), "NOTIFY_SOCKET": str(path)}
        done = subprocess.run(bst.argv("serve"), capture_output=True, text=True, cwd=bst.cwd,
                              env=env, timeout=WAIT, check=False)  # fmt: skip
    assert done.returncode != Exit.OK
    assert "cannot listen" in done.stderr
    sock.setblocking(False)
    said = []
    while True:
        try:
            said.append(sock.recv(4096).decode())
        except BlockingIOError:
            break
    assert not any("READY=1" in each for each in said), said


def test_notify_reaches_an_abstract_socket_and_is_quiet_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"bastion-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(WAIT)
        monkeypatch.setenv(sdnotify.ENV, "@" + name)
        assert sdnotify.notify("READY=1")
        assert sock.recv(100) == b"READY=1"
    monkeypatch.delenv(sdnotify.ENV)
    assert not sdnotify.notify("READY=1")
    monkeypatch.setenv(sdnotify.ENV, "/nonexistent/notify.sock")
    assert not sdnotify.notify("READY=1")  # logged, never fatal
