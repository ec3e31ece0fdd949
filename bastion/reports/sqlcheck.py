"""Whether a logged statement is destructive (DROP, TRUNCATE, DELETE or UPDATE without WHERE,
ALTER ROLE, GRANT, REVOKE); read with PostgreSQL's own grammar where the logged text parses."""

from __future__ import annotations

import re

import pglast
from pglast import ast

_TAGGED = {"DROP": "DROP", "TRUNCATE": "TRUNCATE", "ALTER ROLE": "ALTER ROLE",
           "ALTER USER": "ALTER ROLE", "GRANT": "GRANT", "REVOKE": "REVOKE",
           "GRANT ROLE": "GRANT", "REVOKE ROLE": "REVOKE"}  # fmt: skip
_WHERE = re.compile(r"\bwhere\b", re.IGNORECASE)
_UNBOUNDED = re.compile(r"^\s*(?:with\b.*?\)\s*)?(delete|update)\b", re.IGNORECASE | re.DOTALL)


def destructive_statement(sql: str, tag: str | None) -> str | None:
    """What makes the statement destructive ("DROP", "DELETE without WHERE"), or None."""
    tag = (tag or "").upper()
    for prefix, name in _TAGGED.items():
        if tag == prefix or tag.startswith(prefix + " "):
            return name
    if tag not in ("DELETE", "UPDATE", ""):
        return None
    return _unbounded(sql)


def _unbounded(sql: str) -> str | None:
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        match = _UNBOUNDED.match(sql)  # the log's text may not parse (literals redacted)
        if match and not _WHERE.search(sql):
            return f"{match.group(1).upper()} without WHERE"
        return None
    for raw in statements:
        node = raw.stmt
        if isinstance(node, ast.DeleteStmt | ast.UpdateStmt) and not _names_a_column(
            node.whereClause
        ):
            return ("DELETE" if isinstance(node, ast.DeleteStmt) else "UPDATE") + " without WHERE"
    return None


def _names_a_column(node: object) -> bool:
    """True when a WHERE clause reads some column: `WHERE true` or `WHERE 1 = 1` does not,
    and touches every row all the same."""
    if isinstance(node, ast.ColumnRef):
        return True
    if isinstance(node, tuple | list):
        return any(_names_a_column(item) for item in node)
    if isinstance(node, ast.Node):
        fields: tuple[str, ...] = getattr(type(node), "__slots__", ())
        return any(_names_a_column(getattr(node, name, None)) for name in fields)
    return False
