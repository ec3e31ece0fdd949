"""The store's guards as its migrations make them (append-only triggers; on PostgreSQL their
functions and pinned search_path too), and how a store's own catalog differs from them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bastion.audit.base import migrations

_FUNCTION = re.compile(
    r"CREATE (?:OR REPLACE )?FUNCTION (\w+)\(.*?\bAS \$(\w*)\$(.*?)\$\2\$", re.DOTALL
)
_TRIGGER = re.compile(r"CREATE TRIGGER (\w+)\s.*?\bON (\w+)", re.DOTALL)
_DROPPED = re.compile(r"DROP TRIGGER (\w+) ON (\w+)")
_SQLITE_TRIGGER = re.compile(r"(CREATE TRIGGER (\w+)\b.*?\bEND)\s*;", re.DOTALL)
_SQLITE_DROPPED = re.compile(r"DROP TRIGGER (?:IF EXISTS )?(\w+)")
# A trigger that fires in a session as the bastion opens it: 'O' (origin) or 'A' (always);
# 'D' is disabled and 'R' fires only on a replica.
FIRING = ("O", "A")

# (table, trigger name, enabled) and (function name, body, settings) as the catalog shows
TriggerRow = tuple[str, str, str]
FunctionRow = tuple[str, str, list[str] | None]


def shipped() -> tuple[set[tuple[str, str]], dict[str, str]]:
    """The (table, trigger) pairs and each function's body the PostgreSQL migrations leave."""
    triggers: set[tuple[str, str]] = set()
    bodies: dict[str, str] = {}
    for _, _, sql in migrations("postgresql"):
        for table_trigger in _events(sql):
            kind, name, table = table_trigger
            if kind == "drop":
                triggers.discard((table, name))
            else:
                triggers.add((table, name))
        for match in _FUNCTION.finditer(sql):
            bodies[match.group(1)] = match.group(3)
    return triggers, bodies


def _events(sql: str) -> list[tuple[str, str, str]]:
    """CREATE and DROP TRIGGER statements in the order the migration runs them."""
    found = [(m.start(), "create", m.group(1), m.group(2)) for m in _TRIGGER.finditer(sql)]
    found += [(m.start(), "drop", m.group(1), m.group(2)) for m in _DROPPED.finditer(sql)]
    return [(kind, name, table) for _, kind, name, table in sorted(found)]


def problems(schema: str, triggers: Iterable[TriggerRow],
             functions: Iterable[FunctionRow]) -> list[str]:  # fmt: skip
    """What differs from the shipped guards: a trigger missing, disabled or firing only on a
    replica; a function whose body was replaced, whose search_path is not pinned, or that the
    migrations never made (one short phrase each, sorted)."""
    want_triggers, want_bodies = shipped()
    pinned = [f"search_path={schema}, pg_temp", f'search_path="{schema}", pg_temp']
    out: list[str] = []
    have = {(table, name): enabled for table, name, enabled in triggers}
    for table, name in sorted(want_triggers):
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
        elif name in _TRIGGER_FUNCTIONS and not any(p in (settings or []) for p in pinned):
            out.append(f"function {name} does not pin its search_path")
    return sorted(out)


_TRIGGER_FUNCTIONS = frozenset({"audit_events_append_only", "audit_events_decided",
                                "audit_events_delete_checkpointed",
                                "chain_checkpoints_append_only"})  # fmt: skip


def sqlite_shipped() -> dict[str, str]:
    """Each trigger the SQLite migrations leave, by name: its CREATE text as SQLite keeps it."""
    out: dict[str, str] = {}
    for _, _, sql in migrations("sqlite"):
        found = [(m.start(), m.group(2), m.group(1)) for m in _SQLITE_TRIGGER.finditer(sql)]
        found += [(m.start(), m.group(1), None) for m in _SQLITE_DROPPED.finditer(sql)]
        for _, name, text in sorted(found, key=lambda f: f[0]):
            if text is None:
                out.pop(name, None)
            else:
                out[name] = text
    return out


def sqlite_problems(triggers: Iterable[tuple[str, str]]) -> list[str]:
    """A SQLite store's triggers (name, CREATE text) against the shipped ones."""
    want, have = sqlite_shipped(), dict(triggers)
    out = [f"trigger {name} is missing" for name in want if name not in have]
    out += [f"trigger {name} is not the shipped one" for name in want
            if name in have and have[name] != want[name]]  # fmt: skip
    out += [f"trigger {name} was not made by a migration" for name in have if name not in want]
    return sorted(out)
