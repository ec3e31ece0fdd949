"""`scripts/demo` end to end: it puts a private SSH host and a shop database behind a bastion,
the demo engineer logs in through both doors with TOTP and sees the shop's personal data
masked, and SIGINT (or a step failing half-way) leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from tests.realpg import run_psql
from tests.realssh import LOOPBACK, OpenSSHClient, descendants, free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo"
READY = "bastion demo is ready"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
# Values in the shop's data that must never reach the demo engineer in clear.
CLEAR = ("Jane Doe", "jane.doe@example.com", "+1 202-555-0143", "202-555-0143",
         "4111 1111 1111 1111", "john.work@example.net", "+44 20 7946 0555")  # fmt: skip


def _tag(pid: int) -> str | None:
    """ "PID STARTTIME" of a live process (not a zombie), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in {"Z", "X"} else f"{pid} {fields[19]}"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention text (the demo folder's path)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _tag(int(entry)) is not None and text in _cmdline(int(entry)):
            found.append(f"{entry}: {_cmdline(int(entry))}")
    return found


class RunningDemo:
    """./scripts/demo as a child process in a session of its own, its output collected."""

    def __init__(self, home: Path, ports: dict[str, int]) -> None:
        self.dir = home / "demo"
        env = {
            **os.environ,
            "BASTION_DEMO_DIR": str(self.dir),
            "BASTION_VENV": sys.prefix,  # the test's venv: the demo must not build another
            "HOME": str(home),  # no ~/.ssh key of the person running the tests
            **{f"BASTION_DEMO_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        }
        self.proc = subprocess.Popen(
            [str(DEMO)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while READY not in self.output:
            assert self.proc.poll() is None, f"the demo stopped:\n{self.output}"
            assert time.monotonic() < deadline, f"the demo was not ready:\n{self.output}"
            time.sleep(0.1)

    def family(self) -> list[str]:
        """The demo and every process under it now (sshd, postgres, bastion and theirs)."""
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        return [tag for pid in pids if (tag := _tag(pid)) is not None]

    def wait_exit(self) -> int:
        code = self.proc.wait(STOP_TIMEOUT)
        self._reader.join(10)
        return code

    def close(self) -> None:
        """Whatever happened in the test: nothing of this demo keeps running."""
        for tag in self.family():
            pid = int(tag.split()[0])
            if pid != self.proc.pid:
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """A folder postgres and the demo's SSH login can reach (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="bastion-demo-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"ssh": free_port(), "postgres": free_port(), "web": free_port()}


@pytest.fixture
def demo(home: Path, ports: dict[str, int]) -> Iterator[RunningDemo]:
    running = RunningDemo(home, ports)
    try:
        yield running
    finally:
        running.close()


def _codes(secret: str) -> Iterator[str]:
    """Codes not used yet: the current step's, then the next (one step of skew is allowed)."""
    totp = pyotp.TOTP(secret)
    step = int(time.time()) // 30
    while True:
        yield totp.at(step * 30)
        step += 1


def _ssh_as_alice(demo: RunningDemo, port: int, password: str, code: str) -> str:
    pub = (demo.dir / "ssh_host_ed25519_key.pub").read_text().split()
    known_hosts = demo.dir.parent / "known_hosts"
    known_hosts.write_text(f"[{LOOPBACK}]:{port} {pub[0]} {pub[1]}\n")
    client = OpenSSHClient(LOOPBACK, port, "alice+demo-web", workdir=demo.dir.parent / "ssh",
                           known_hosts=known_hosts)  # fmt: skip
    result = client.run_ssh("id -un; id -u", answers={"password": password,
                                                      "Verification code": code})  # fmt: skip
    assert result.returncode == 0, result.err
    assert any("Verification code" in prompt for prompt in result.prompts)
    return result.out


def _the_printed_health_check_trusts_the_demo_ca(demo: RunningDemo, port: int) -> None:
    """The console's curl line, run as printed: TLS verified against the CA it names."""
    printed = re.search(r"^ *(curl --cacert .+/healthz)$", demo.output, re.MULTILINE)
    assert printed is not None, demo.output
    argv = shlex.split(printed.group(1))
    assert argv[-1] == f"https://127.0.0.1:{port}/healthz"
    assert Path(argv[2]) == demo.dir / "tls" / "bastion-ca.pem"
    done = subprocess.run([*argv[:1], "-sS", "--fail", *argv[1:]], capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ok"
    plain = subprocess.run(["curl", "-sS", argv[-1].replace("https:", "http:")],
                           capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert plain.returncode != 0 or "ok" not in plain.stdout  # TLS only


def test_the_demo_serves_both_doors_masks_the_shop_and_stops_on_sigint(
    demo: RunningDemo, ports: dict[str, int]
) -> None:
    demo.wait_ready()
    assert f"ssh -p {ports['ssh']} alice+demo-web@127.0.0.1" in demo.output
    assert f"https://127.0.0.1:{ports['web']}/" in demo.output
    _the_printed_health_check_trusts_the_demo_ca(demo, ports["web"])
    alice = json.loads((demo.dir / "users.json").read_text())["alice"]
    assert alice["password"] not in demo.output and alice["totp_secret"] not in demo.output
    codes = _codes(alice["totp_secret"])

    login, uid = _ssh_as_alice(demo, ports["ssh"], alice["password"], next(codes)).split()
    assert uid != "0"
    assert login == ("bastion-demo" if os.geteuid() == 0 else os.environ.get("USER", login))

    # The psql command the demo printed, as printed, with alice's password and a code.
    printed = re.search(r'psql "([^"]+)" -c \'([^\']+)\'', demo.output)
    assert printed is not None, demo.output
    conninfo, query = printed.groups()
    assert f"port={ports['postgres']}" in conninfo and "sslmode=verify-full" in conninfo
    password = {"PGPASSWORD": alice["password"] + next(codes)}
    done = run_psql(conninfo, "-At", "-F", "|", "-c", query, env=password)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stdout.splitlines()]
    assert len(rows) == 6 and all(len(row) == 7 for row in rows)
    for value in CLEAR:
        assert value not in done.stdout
    for _, name, email, phone, card, _, _ in rows:
        assert name == "****" and "*" in email and "*" in phone and "*" in card
    assert "j********@example.net" in done.stdout  # an email inside a free-text note

    family = demo.family()
    assert len(family) >= 4  # the demo, postgres, sshd, the bastion (and their children)
    os.kill(demo.proc.pid, signal.SIGINT)
    assert demo.wait_exit() == 0, demo.output
    assert [tag for tag in family if _tag(int(tag.split()[0])) == tag] == []
    assert _mentioning(str(demo.dir)) == []


def test_a_step_failing_half_way_stops_what_was_started(
    demo: RunningDemo, ports: dict[str, int]
) -> None:
    # Someone else holds the web port, so `bastion serve` cannot start after the SSH host and
    # the database did (on the folder the test above made, or a new one).
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((LOOPBACK, ports["web"]))
        squatter.listen()
        seen: dict[str, set[str]] = {}  # each process's command lines (exec, exit change it)
        deadline = time.monotonic() + START_TIMEOUT
        while demo.proc.poll() is None:
            assert time.monotonic() < deadline, f"the demo did not give up:\n{demo.output}"
            for tag in demo.family():
                seen.setdefault(tag, set()).add(_cmdline(int(tag.split()[0])))
            time.sleep(0.05)
        assert demo.wait_exit() == 1
    assert "demo: bastion stopped" in demo.output, demo.output
    config = tomllib.loads((demo.dir / "bastion.toml").read_text())
    assert config["listeners"]["web"]["port"] == ports["web"]
    argvs = {argv for each in seen.values() for argv in each}
    for program in ("postgres -D", "sshd -D", "bastion --config"):
        assert any(program in argv for argv in argvs), sorted(argvs)
    assert [tag for tag in seen if _tag(int(tag.split()[0])) == tag] == []
    assert _mentioning(str(demo.dir)) == []
