"""The decision kinds stay complete: every store write that changes what the session watcher
reads appends a kind on migration 0023's allow-list (DECISION_KINDS), or is reviewed below
as one that never ends access. Both sides are found anew on each run: what the watcher
reads, from SQLite's authorizer while Core._watch_once runs; the store's writes, from the
SQL text of every function in bastion/audit."""

from __future__ import annotations

import ast
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bastion.audit import Store
from bastion.audit.grants import NewGrant
from bastion.audit.listen import DECISION_KINDS
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.core import Core
from bastion.identity.sealing import SecretBox

AUDIT = Path(__file__).resolve().parents[2] / "bastion" / "audit"
KIND_SHAPE = re.compile(r"[a-z][a-z_]*(?:\.[a-z][a-z_]*)+")
UPDATE = re.compile(r"\bUPDATE\s+(\w+)\s+SET\s+(.*?)(?:\bWHERE\b|\bRETURNING\b|$)", re.I | re.S)
DELETE = re.compile(r"\bDELETE\s+FROM\s+(\w+)", re.I)
ASSIGNED = re.compile(r"(\w+)\s*=(?!=)")
START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

# Store writes that touch what the watcher reads but never end or refuse access, and why.
# (INSERTs are not looked at: a new row, a grant, a member or a session, can give access,
# never take it away.)
REVIEWED = {
    "sessions.py:close_session": "a session ending is the result of a decision, not one",
    "grants.py:acknowledge_grant": "a reviewer acknowledges a break-glass grant; access stays",
    "requests.py:cancel_pending": "runs inside disable_user and remove_target, which notify",
    "requests.py:_open": "approving a request gives access (its grant is an insert)",
    "requests.py:close_request": "denying or cancelling a pending request: it gave no access",
    "requests.py:expire_requests": "each node's watcher expires them itself; no access ends",
    "tickets.py:revoke_users_tickets": "runs inside disable_user, which notifies",
    "cluster.py:take_lease": "a node's presence or a job's lease: it ends nobody's access",
    "cluster.py:release_lease": "a node's presence or a job's lease: it ends nobody's access",
    "lostnodes.py:close_lost_session": "closes a lost node's session: no live node holds it",
    "pgload.py:_expire_leases": "a restore ends the archive's leases; no node is connected",
    "retention.py:cut_chain": "deletes archived events before a checkpoint; no access ends",
}


class Live:
    """A live session as a door keeps it."""

    target_name = "db"
    opened_at = START
    last_input = START

    def __init__(self) -> None:
        self.ended: list[str] = []

    async def terminate(self, state: str, message: str) -> None:
        self.ended.append(state)


def raw_sqlite(store: Store) -> sqlite3.Connection:
    """The store's sqlite3 connection, whether the store holds it bare or in an adapter."""
    conn: Any = store.conn
    if isinstance(conn, sqlite3.Connection):
        return conn
    names = list(getattr(conn, "__dict__", {})) + list(getattr(type(conn), "__slots__", ()))
    found: list[sqlite3.Connection] = [
        getattr(conn, n) for n in names if isinstance(getattr(conn, n, None), sqlite3.Connection)
    ]
    assert found, f"no sqlite3 connection inside {type(conn).__name__}"
    return found[0]


async def watched_columns(tmp_path: Path) -> set[tuple[str, str]]:
    """(table, column) of every read while the watcher looks once at a store with an open
    session whose grant was revoked (so it looks at everything it ever looks at)."""
    clock = FakeClock(START)
    config_path = tmp_path / "bastion.toml"
    config_path.write_text("")
    config = load_config(config_path)
    SecretBox.create_key_file(config.paths.secrets_key)
    store = Store.create(config.paths.store, clock)
    core = Core(config, store, SecretBox.load(config.paths.secrets_key), clock)
    store.add_user("alice", "engineer", None, b"sealed", "cli:root")
    store.add_target(name="db", kind="ssh", host="127.0.0.1", port=22, login="svc",
                     database=None, secret_sealed=b"x", actor="cli:root")  # fmt: skip
    grant = store.add_grant(NewGrant("db", "write", START, START + timedelta(hours=1), "on call",
                                     "cli:root", user="alice"))  # fmt: skip
    store.open_session(session_id="s1", user="alice", target="db", grant_id=grant.id,
                       protocol="ssh", client_addr="127.0.0.1")  # fmt: skip
    store.revoke_grant(grant.id, "cli:root")
    reads: set[tuple[str, str]] = set()

    def authorize(action: int, table: str | None, column: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_READ and table and column:
            reads.add((table, column))
        return sqlite3.SQLITE_OK

    raw_sqlite(store).set_authorizer(authorize)
    live = Live()
    try:
        await core._watch_once([{"s1": live}])
    finally:
        raw_sqlite(store).set_authorizer(None)
        core.shutdown()
        store.close()
    assert live.ended == ["grant_revoked"]  # it did look at everything
    return reads


def sql_of(node: ast.AST) -> list[str]:
    """The string constants (f-strings with their holes as ?) inside a function."""
    found = []
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            found.append(child.value)
        elif isinstance(child, ast.JoinedStr):
            found.append("".join(str(v.value) if isinstance(v, ast.Constant) else "?"
                                 for v in child.values))  # fmt: skip
    return found


def writes(texts: list[str], columns: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The (table, column) pairs these SQL texts update or delete, of the tables given."""
    found = set()
    for text in texts:
        for table, assignments in UPDATE.findall(text):
            found |= {(table, c) for c in ASSIGNED.findall(assignments)}
        for table in DELETE.findall(text):
            found |= {(table, c) for c in columns.get(table, ())}
    return {(t, c) for t, c in found if c in columns.get(t, ())}


def store_writers(
    watched: set[tuple[str, str]],
) -> dict[str, tuple[set[tuple[str, str]], set[str]]]:
    """Every function (and module level) in bastion/audit that updates or deletes what the
    watcher reads: what it touches, and the kinds it names."""
    columns: dict[str, set[str]] = {}
    for table, column in watched:
        columns.setdefault(table, set()).add(column)
    found = {}
    for path in sorted(AUDIT.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        units: list[tuple[str, ast.AST]] = [
            (f"{path.name}:{node.name}", node)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        top = ast.Module(
            [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.ClassDef)], []
        )
        units.append((f"{path.name}:<module>", top))
        for name, node in units:
            texts = sql_of(node)
            touched = writes(texts, columns)
            if touched:
                found[name] = (touched, {t for t in texts if KIND_SHAPE.fullmatch(t)})
    return found


async def test_every_write_the_watcher_reads_notifies_or_is_reviewed(tmp_path: Path) -> None:
    watched = await watched_columns(tmp_path)
    tables = {t for t, _ in watched}
    assert {"sessions", "users", "grants", "group_members", "tickets", "targets"} <= tables
    assert ("sessions", "kill_requested_at") in watched and ("users", "disabled_at") in watched
    writers = store_writers(watched)
    silent = {name: sorted(touched) for name, (touched, kinds) in writers.items()
              if not kinds & DECISION_KINDS and name not in REVIEWED}  # fmt: skip
    assert silent == {}, (
        "these store writes change what the session watcher reads, but append no kind that"
        " notifies the other nodes: add the kind to DECISION_KINDS and a migration's"
        " bastion_decision_kinds(), or review them in REVIEWED"
    )
    stale = sorted(set(REVIEWED) - set(writers))
    assert stale == [], "REVIEWED names writes that no longer touch what the watcher reads"
    notifying = {name for name, (_, kinds) in writers.items() if kinds & DECISION_KINDS}
    assert {"sessions.py:request_kill", "grants.py:revoke_grant", "people.py:disable_user",
            "resources.py:remove_target", "tickets.py:revoke_ticket",
            "grants.py:set_membership"} <= notifying  # fmt: skip


def test_a_new_silent_write_would_be_found() -> None:
    """The scan sees an UPDATE, a DELETE and an f-string's SQL, and only watched columns."""
    columns = {"grants": {"revoked_at", "ends_at"}, "group_members": {"user_id"}}
    assert writes(["UPDATE grants SET ends_at = ?, reason = ? WHERE id = ?"], columns) == {
        ("grants", "ends_at")
    }
    assert writes(["UPDATE grants SET reason = ? WHERE id = ?"], columns) == set()
    assert writes(["DELETE FROM group_members WHERE group_id = ?"], columns) == {
        ("group_members", "user_id")
    }
    tree = ast.parse('def f(c):\n    c.execute(f"UPDATE grants SET revoked_at = ? WHERE {x} = ?")')
    assert writes(sql_of(tree), columns) == {("grants", "revoked_at")}
