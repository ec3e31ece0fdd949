"""The store's guards as its migrations make them (append-only triggers; on PostgreSQL their
functions and pinned search_path too), and how a store's own catalog differs from them."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from bastion.audit.base import MIGRATIONS_TABLE_SQLITE, SQLITE_TRIGGERS, migrations
from bastion.audit.sqlconn import SqliteConn
from bastion.sqlparse.tree import Node, parse

# A trigger that fires in a session as the bastion opens it: 'O' (origin) or 'A' (always);
# 'D' is disabled and 'R' fires only on a replica.
FIRING = ("O", "A")

# (table, trigger name, enabled) and (function name, body, settings) as the catalog shows
TriggerRow = tuple[str, str, str]
FunctionRow = tuple[str, str, list[str] | None]


@dataclass
class Shipped:
    """What the PostgreSQL migrations leave: (table, trigger) pairs, the function each trigger
    runs, and each function's body."""

    triggers: dict[tuple[str, str], str] = field(default_factory=dict)
    bodies: dict[str, str] = field(default_factory=dict)

    def trigger_functions(self) -> set[str]:
        """The functions some shipped trigger runs: each must pin its search_path."""
        return set(self.triggers.values())


@functools.cache
def shipped() -> Shipped:
    """The guards the PostgreSQL migrations make, read with PostgreSQL's own grammar, each
    migration's statements in the order they run."""
    return read_guards(sql for _, _, sql in migrations("postgresql"))


def read_guards(scripts: Iterable[str]) -> Shipped:
    """The triggers and functions PostgreSQL scripts leave, run one after the other."""
    out = Shipped()
    for sql in scripts:
        for kind, node in parse(sql):
            _apply(out, kind, node)
    return out


def _apply(out: Shipped, kind: str, node: Node) -> None:
    """One statement's effect on the shipped guards (others leave them as they are)."""
    if kind == "CreateTrigStmt":
        out.triggers[(node["relation"]["relname"], node["trigname"])] = _bare(node["funcname"])
    elif kind == "CreateFunctionStmt":
        body = next(o["DefElem"] for o in node["options"] if o["DefElem"]["defname"] == "as")
        out.bodies[_bare(node["funcname"])] = body["arg"]["List"]["items"][0]["String"]["sval"]
    elif kind == "DropStmt" and node["removeType"] == "OBJECT_TRIGGER":
        for obj in node["objects"]:
            table, name = (part["String"]["sval"] for part in obj["List"]["items"][-2:])
            out.triggers.pop((table, name), None)
    elif kind == "DropStmt" and node["removeType"] == "OBJECT_FUNCTION":
        for obj in node["objects"]:
            out.bodies.pop(_bare(obj["ObjectWithArgs"]["objname"]), None)


def _bare(name: list[Node]) -> str:
    """The last part of a possibly schema-qualified name."""
    return str(name[-1]["String"]["sval"])


def problems(schema: str, triggers: Iterable[TriggerRow],
             functions: Iterable[FunctionRow]) -> list[str]:  # fmt: skip
    """What differs from the shipped guards: a trigger missing, disabled or firing only on a
    replica; a function whose body was replaced, whose search_path is not pinned, or that the
    migrations never made (one short phrase each, sorted)."""
    want = shipped()
    want_bodies, trigger_functions = want.bodies, want.trigger_functions()
    pinned = [f"search_path={schema}, pg_temp", f'search_path="{schema}", pg_temp']
    out: list[str] = []
    have = {(table, name): enabled for table, name, enabled in triggers}
    for table, name in sorted(want.triggers):
        enabled = have.get((table, name))
        if enabled is None:
            out.append(f"trigger {name} on {table} is missing")
        elif enabled not in FIRING:
            out.append(f"trigger {name} on {table} is disabled ({enabled})")
    for name, body, settings in functions:
        if name not in want_bodies:
            what = name if name.startswith("operator ") else f"function {name}"
            out.append(f"{what} was not made by a migration")
        elif body != want_bodies[name]:
            out.append(f"function {name} is not the shipped one")
        elif name in trigger_functions and not any(p in (settings or []) for p in pinned):
            out.append(f"function {name} does not pin its search_path")
    return sorted(out)


@functools.cache
def sqlite_shipped() -> dict[str, str]:
    """Each trigger the SQLite migrations leave, by name, with its CREATE text as SQLite keeps
    it: SQLite itself runs them, as a store does, on a private in-memory database and says."""
    scratch = SqliteConn.scratch()
    try:
        scratch.execute(MIGRATIONS_TABLE_SQLITE)
        for number, name, sql in migrations("sqlite"):
            scratch.apply_migration(number, name, sql, "1970-01-01T00:00:00Z")
        rows = scratch.execute(SQLITE_TRIGGERS).fetchall()
        return {str(row[0]): str(row[1]) for row in rows}
    finally:
        scratch.close()


def sqlite_problems(triggers: Iterable[tuple[str, str]]) -> list[str]:
    """A SQLite store's triggers (name, CREATE text) against the shipped ones."""
    want, have = sqlite_shipped(), dict(triggers)
    out = [f"trigger {name} is missing" for name in want if name not in have]
    out += [f"trigger {name} is not the shipped one" for name in want
            if name in have and have[name] != want[name]]  # fmt: skip
    out += [f"trigger {name} was not made by a migration" for name in have if name not in want]
    return sorted(out)
