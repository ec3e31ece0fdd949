"""A node's start-up (Server.recover) on a shared store: its own sessions left open by a crash
are closed; sessions from before sessions named their node only when no other node is alive;
another node's are never touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bastion.audit import Store
from bastion.audit.cluster import node_lease
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.core import Core
from bastion.identity.sealing import SecretBox
from bastion.server import Server

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def make_node(tmp_path: Path, clock: FakeClock, node: str) -> Server:
    config_path = tmp_path / "bastion.toml"
    config_path.write_text(f'[cluster]\nnode = "{node}"\n')
    config = load_config(config_path)
    SecretBox.create_key_file(config.paths.secrets_key)
    store = Store.create(config.paths.store, clock)
    store.add_user("alice", "engineer", None, b"seed", "test")
    store.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="x",
                     database=None, secret_sealed=b"s", actor="test")  # fmt: skip
    return Server(Core(config, store, SecretBox.load(config.paths.secrets_key), clock))


def states(store: Store) -> dict[str, str]:
    return {s.id: s.state for s in store.sessions()}


def test_recover_closes_this_nodes_sessions_and_unowned_ones_only_when_alone(
    tmp_path: Path,
) -> None:
    clock = FakeClock(START)
    server = make_node(tmp_path, clock, "a")
    store = server.store
    for session_id, node in (("mine", "a"), ("theirs", "b"), ("old", None)):
        store.open_session(session_id=session_id, user="alice", target="web-1", grant_id=None,
                           protocol="ssh", client_addr="10.0.0.7", node=node)  # fmt: skip
    store.take_lease(node_lease("b"), "b", timedelta(seconds=30))  # b is alive
    try:
        server.recover()
        assert states(store) == {"mine": "interrupted", "theirs": "open", "old": "open"}
        assert store.live_nodes() == ["a", "b"]  # a says it is alive from start-up on
        clock.advance(31)  # b has been silent past the grace: a is alone now
        server.recover()
        assert states(store) == {"mine": "interrupted", "theirs": "open", "old": "interrupted"}
    finally:
        server.core.shutdown()
        store.close()
