"""Two `bastion serve` processes as nodes "a" and "b" of one store (SQLite, shared by both):
a node's restart leaves the other's live sessions alone, a crashed node closes its own when it
comes back, and a revocation made while both serve ends a live session held by the other."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bastion.audit import Store
from bastion.audit.chain import ChainKey
from bastion.audit.cluster import node_lease
from bastion.clock import FakeClock, SystemClock
from bastion.identity import totp
from bastion.identity.sealing import SecretBox
from tests.harness import Bastion
from tests.realssh import OpenSSHClient, Sshd, TmuxSession, free_port, wait_for_banner


def wait_until(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not callable(predicate) or not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.05)


class Node:
    """One `bastion serve` process on a home of its own, sharing node a's store and keys."""

    def __init__(self, name: str, config: Path, port: int) -> None:
        self.name, self.config, self.port = name, config, port
        self.log = config.with_name(f"serve-{name}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bastion", "--config", str(self.config), "serve"],
                stdout=log, stderr=log,
            )  # fmt: skip
        wait_for_banner("127.0.0.1", self.port, timeout=30, alive=self._alive)
        return self

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.proc = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bastion", "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip


def two_nodes(tmp_path: Path, sshd: Sshd) -> tuple[Bastion, Node, Node, int]:
    """Node a's home (alice, granted web-1: that grant's id) and node b's, whose paths are
    a's."""
    a = Bastion(tmp_path / "a", '[cluster]\nnode = "a"\n')
    a.add_user("alice")
    a.add_target("web-1", sshd)
    grant_id = a.grant("alice", "web-1")
    a.release()
    paths = a.config.paths
    b_port = free_port()
    b_home = tmp_path / "b"
    b_home.mkdir()
    (b_home / "bastion.toml").write_text(
        f"[listeners.ssh]\nport = {b_port}\n[listeners.postgres]\nenabled = false\n"
        f"[listeners.web]\nenabled = false\n[paths]\nstore = \"{paths.store}\"\n"
        f"recordings = \"{paths.recordings}\"\nsecrets_key = \"{paths.secrets_key}\"\n"
        f"ssh_host_key = \"{paths.ssh_host_key}\"\n[cluster]\nnode = \"b\"\n"
    )  # fmt: skip
    node_a = Node("a", a.home / "bastion.toml", a.port)
    return a, node_a, Node("b", b_home / "bastion.toml", b_port), grant_id


@contextmanager
def session_through(a: Bastion, node: Node, workdir: Path) -> Iterator[TmuxSession]:
    """alice's shell on web-1 through `node` (OpenSSH in a terminal), at its prompt."""
    workdir.mkdir(parents=True, exist_ok=True)
    known = workdir / "known_hosts"
    public = Path(f"{a.config.paths.ssh_host_key}.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{node.port} {public[0]} {public[1]}\n")
    ssh = OpenSSHClient("127.0.0.1", node.port, "alice", workdir=workdir, known_hosts=known,
                        identity=a.keys["alice"])  # fmt: skip
    step = totp.step_at(datetime.now(UTC))
    answers = {"Verification code": totp.code_for_step(a.seeds["alice"], step + 1)}
    with ssh.tmux(login="alice+web-1", answers=answers, flags=["-t"]) as tmux:
        tmux.wait_for("$ ")
        yield tmux


def open_rows(a: Bastion) -> list[tuple[str, str, str | None]]:
    """(session id, state, node) of every session in the shared store."""
    store = Store.open(a.config.paths.store, SystemClock())
    try:
        rows = store._rows("SELECT id, state, node FROM sessions ORDER BY started_at")
    finally:
        store.close()
    return [(r["id"], r["state"], r["node"]) for r in rows]


def test_a_restarting_node_leaves_the_other_nodes_sessions_alone(tmp_path: Path,
                                                                 sshd: Sshd) -> None:  # fmt: skip
    a, node_a, node_b, _ = two_nodes(tmp_path, sshd)
    try:
        node_a.start()
        node_b.start()
        with session_through(a, node_b, tmp_path / "client") as tmux:
            [(session_id, state, node)] = open_rows(a)
            assert (state, node) == ("open", "b")
            node_a.stop()  # a restarts while b serves alice
            node_a.start()
            tmux.type_text("echo still-here", enter=True)
            tmux.wait_for(re.compile(r"still-here\n\$"))
            assert open_rows(a) == [(session_id, "open", "b")]
            node_b.stop(signal.SIGKILL)  # b crashes mid-session...
            node_a.stop()  # ...and a restarting meanwhile still leaves b's session to b
            node_a.start()
            assert open_rows(a) == [(session_id, "open", "b")]
            node_b.start()  # b comes back: the session it held is closed as interrupted
            assert open_rows(a) == [(session_id, "interrupted", "b")]
    finally:
        node_a.stop()
        node_b.stop()


def test_a_revocation_while_a_serves_ends_a_session_held_by_b(tmp_path: Path,
                                                              sshd: Sshd) -> None:  # fmt: skip
    a, node_a, node_b, grant_id = two_nodes(tmp_path, sshd)
    try:
        node_a.start()
        node_b.start()
        with session_through(a, node_b, tmp_path / "client") as tmux:
            [(_, _, node)] = open_rows(a)
            assert node == "b"
            done = node_a.cli("revoke", str(grant_id))
            assert done.returncode == 0, done.stderr
            tmux.wait_for(f"grant {grant_id} was revoked")
            wait_until(lambda: open_rows(a)[0][1] == "grant_revoked")
    finally:
        node_a.stop()
        node_b.stop()


def test_a_second_process_with_a_live_nodes_name_does_not_start(tmp_path: Path,
                                                                sshd: Sshd) -> None:  # fmt: skip
    """Two processes serving as one node would close each other's sessions at start-up."""
    a, node_a, node_b, _ = two_nodes(tmp_path, sshd)
    namesake = node_b.config.read_text().replace('node = "b"', 'node = "a"')
    node_b.config.write_text(namesake)
    try:
        node_a.start()
        with session_through(a, node_a, tmp_path / "client") as tmux:
            done = node_b.cli("serve")
            assert done.returncode != 0
            assert "another bastion is serving as node 'a' on this store" in done.stderr
            assert "give each node its own name" in done.stderr
            tmux.type_text("echo still-here", enter=True)
            tmux.wait_for(re.compile(r"still-here\n\$"))
            [(_, state, node)] = open_rows(a)
            assert (state, node) == ("open", "a")
            wait_until(lambda: "a" in live_nodes(a))  # its presence was left alone
            node_a.stop(signal.SIGKILL)  # with alice's session still open
        node_b.start()  # a crashed: its presence stands but is not renewed, so this starts
        assert [row[1] for row in open_rows(a)] == ["interrupted"]
    finally:
        node_a.stop()
        node_b.stop()


def live_nodes(a: Bastion) -> list[str]:
    store = Store.open(a.config.paths.store, SystemClock())
    try:
        return store.live_nodes()
    finally:
        store.close()


def test_a_kill_on_node_a_ends_a_session_held_by_b_and_the_listing_names_b(
    tmp_path: Path, sshd: Sshd
) -> None:
    """`sessions list` (text and JSON) and the console's rows name the node holding each
    session; `sessions kill` run on a's side reaches b through the store."""
    a, node_a, node_b, _ = two_nodes(tmp_path, sshd)
    try:
        node_a.start()
        node_b.start()
        with session_through(a, node_b, tmp_path / "client") as tmux:
            [(session_id, _, _)] = open_rows(a)
            listed = node_a.cli("sessions", "list", "--open")
            assert listed.returncode == 0, listed.stderr
            header, row = listed.stdout.splitlines()
            assert header.split()[4] == "NODE" and row.split()[4] == "b"
            as_json = node_a.cli("sessions", "list", "--open", "--json")
            assert [s["node"] for s in json.loads(as_json.stdout)] == ["b"]
            done = node_a.cli("sessions", "kill", session_id, "--reason", "incident over")
            assert done.returncode == 0, done.stderr
            assert f"asked node b to end session {session_id}" in done.stdout
            assert "it ends within a few seconds" in done.stdout
            tmux.wait_for("incident over")
            wait_until(lambda: open_rows(a)[0][1] == "killed")
    finally:
        node_a.stop()
        node_b.stop()


def test_a_kill_of_a_session_whose_node_is_gone_says_so(tmp_path: Path, sshd: Sshd) -> None:
    """Node b's presence ran out (it ended its sessions when it lost the store, or it
    stopped): the kill is recorded, and the admin is told that nobody is ending it now."""
    a, node_a, _, _ = two_nodes(tmp_path, sshd)
    long_ago = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    store = Store.open(
        a.config.paths.store, long_ago, ChainKey.of(SecretBox.load(a.config.paths.secrets_key))
    )
    try:
        store.take_lease(node_lease("b"), "b", timedelta(seconds=40), quiet=True)
        store.open_session(session_id="s-b", user="alice", target="web-1", grant_id=None,
                           protocol="ssh", client_addr="10.0.0.7", node="b")  # fmt: skip
    finally:
        store.close()
    done = node_a.cli("sessions", "kill", "s-b", "--reason", "incident over")
    assert done.returncode == 0, done.stderr
    assert "asked node b to end session s-b" in done.stdout
    assert "that node is not alive on the store" in done.stdout
    assert "closes as interrupted when node b starts again" in done.stdout
    said = json.loads(node_a.cli("sessions", "show", "s-b", "--json").stdout)
    assert said["node"] == "b"
