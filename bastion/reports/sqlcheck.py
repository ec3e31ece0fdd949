"""Whether a logged statement is destructive (DROP, TRUNCATE, DELETE or UPDATE whose WHERE
reads no column, ALTER/CREATE ROLE, GRANT, REVOKE, a DO block, MERGE, DROP COLUMN), wherever
it stands: any statement of a multi-statement string, inside EXPLAIN ANALYZE, a CTE, a
cursor or a PREPARE. Read with PostgreSQL's own grammar; the tag and plain words only when
the logged text does not parse."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pglast
from pglast import ast

_SIMPLE: dict[type[ast.Node], str] = {
    ast.DropStmt: "DROP", ast.TruncateStmt: "TRUNCATE", ast.AlterRoleStmt: "ALTER ROLE",
    ast.CreateRoleStmt: "CREATE ROLE", ast.GrantRoleStmt: "GRANT", ast.DoStmt: "a DO block",
    ast.AlterDefaultPrivilegesStmt: "GRANT", ast.DropRoleStmt: "DROP", ast.MergeStmt: "MERGE",
    ast.DropdbStmt: "DROP", ast.ReassignOwnedStmt: "REASSIGN OWNED", ast.DropOwnedStmt: "DROP",
}  # fmt: skip
_TAGGED = {"DROP": "DROP", "TRUNCATE": "TRUNCATE", "ALTER ROLE": "ALTER ROLE",
           "ALTER USER": "ALTER ROLE", "GRANT": "GRANT", "REVOKE": "REVOKE",
           "CREATE ROLE": "CREATE ROLE", "DO": "a DO block", "MERGE": "MERGE"}  # fmt: skip
_WORDS = re.compile(r"\b(drop|truncate|grant|revoke|merge)\b|\balter\s+(?:role|user)\b"
                    r"|\bcreate\s+role\b|\bdo\s+\$", re.IGNORECASE)  # fmt: skip
_WHERE = re.compile(r"\bwhere\b", re.IGNORECASE)
_CHANGE = re.compile(r"\b(delete|update)\b", re.IGNORECASE)


def destructive_statement(sql: str, tag: str | None) -> str | None:
    """What makes the statement destructive ("DROP", "DELETE without WHERE"), or None."""
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return _by_words(sql, (tag or "").upper())
    for node in _walk(statements):
        found = _judge(node)
        if found is not None:
            return found
    return None


def _judge(node: ast.Node) -> str | None:
    if type(node) in _SIMPLE:
        return _SIMPLE[type(node)]
    if isinstance(node, ast.GrantStmt):
        return "GRANT" if node.is_grant else "REVOKE"
    if isinstance(node, ast.DeleteStmt | ast.UpdateStmt) and not _names_a_column(node.whereClause):
        return ("DELETE" if isinstance(node, ast.DeleteStmt) else "UPDATE") + " without WHERE"
    if isinstance(node, ast.AlterTableCmd) and getattr(node.subtype, "name", "") == "AT_DropColumn":
        return "DROP COLUMN"
    return None


def _walk(node: object) -> Iterator[ast.Node]:
    """Every node of the tree, the outer ones first."""
    if isinstance(node, ast.Node):
        yield node
        fields: tuple[str, ...] = getattr(type(node), "__slots__", ())
        for name in fields:
            yield from _walk(getattr(node, name, None))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _walk(item)


def _names_a_column(node: object) -> bool:
    """True when a WHERE clause reads some column: `WHERE true` or `WHERE 1 = 1` does not,
    and touches every row all the same."""
    return any(isinstance(found, ast.ColumnRef) for found in _walk(node))


def _by_words(sql: str, tag: str) -> str | None:
    """For text that does not parse (literals redacted oddly, or a tool's own syntax)."""
    for prefix, name in _TAGGED.items():
        if tag == prefix or tag.startswith(prefix + " "):
            return name
    if match := _WORDS.search(sql):
        return " ".join(match.group(0).split()).upper().replace("DO $", "a DO block")
    change = _CHANGE.search(sql)
    if change and not _WHERE.search(sql):
        return f"{change.group(1).upper()} without WHERE"
    return None
