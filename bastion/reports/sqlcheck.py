"""Whether a logged statement is destructive (DROP, TRUNCATE, DELETE or UPDATE whose WHERE
lets every row through, ALTER/CREATE ROLE, GRANT, REVOKE, COPY ... PROGRAM, a DO block or
function body not analysed, MERGE, DROP COLUMN), wherever it stands: any statement of a
multi-statement string, inside EXPLAIN ANALYZE, a CTE, a cursor, a PREPARE or an SQL
function's body. Read with PostgreSQL's own grammar; the tag and plain words only when the
text does not parse.

A WHERE lets every row through when it reads no column (`WHERE true`, `WHERE 1 = 1`, and
`WHERE $1` as the query log redacts literals) or is a tautology this module can prove
(bastion/reports/wherecheck.py): flagging is the safe side, a reviewer looks at it."""

from __future__ import annotations

import re

import pglast
from pglast import ast

from bastion.reports.wherecheck import restricts, walk

_SIMPLE: dict[type[ast.Node], str] = {
    ast.DropStmt: "DROP", ast.TruncateStmt: "TRUNCATE", ast.AlterRoleStmt: "ALTER ROLE",
    ast.CreateRoleStmt: "CREATE ROLE", ast.GrantRoleStmt: "GRANT", ast.DoStmt: "a DO block",
    ast.AlterDefaultPrivilegesStmt: "GRANT", ast.DropRoleStmt: "DROP", ast.MergeStmt: "MERGE",
    ast.DropdbStmt: "DROP", ast.ReassignOwnedStmt: "REASSIGN OWNED", ast.DropOwnedStmt: "DROP",
}  # fmt: skip
_TAGGED = {"DROP": "DROP", "TRUNCATE": "TRUNCATE", "ALTER ROLE": "ALTER ROLE",
           "ALTER USER": "ALTER ROLE", "GRANT": "GRANT", "REVOKE": "REVOKE",
           "CREATE ROLE": "CREATE ROLE", "DO": "a DO block", "MERGE": "MERGE"}  # fmt: skip
_PROGRAM = re.compile(r"\bcopy\b.*\b(?:from|to)\s+program\b", re.IGNORECASE | re.DOTALL)
_WORDS = re.compile(r"\b(drop|truncate|grant|revoke|merge)\b|\balter\s+(?:role|user)\b"
                    r"|\bcreate\s+role\b|\bdo\s+\$", re.IGNORECASE)  # fmt: skip
_WHERE = re.compile(r"\bwhere\b", re.IGNORECASE)
_CONST = r"(?:\$\d+|'[^']*'|\d+(?:\.\d+)?|true|false)"
_TAUTOLOGY = re.compile(  # in text that does not parse: WHERE true, 1=1, id = id, NOT false
    rf"\bwhere\s+\(?\s*(?:(?:true|not\s+(?:false|\$\d+)|\$\d+)(?![\w.=<>!])"
    rf"|{_CONST}\s*(?:=|<>|!=|<=|>=|<|>)\s*{_CONST}(?![\w.])"
    rf"|([A-Za-z_][\w.]*)\s*(?:=|<=|>=)\s*\1(?![\w.]))", re.IGNORECASE)  # fmt: skip
_CHANGE = re.compile(r"\b(delete|update)\b", re.IGNORECASE)


def destructive_statement(sql: str, tag: str | None) -> str | None:
    """What makes the statement destructive ("DROP", "DELETE without WHERE"), or None."""
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return _by_words(sql, (tag or "").upper())
    for node in walk(statements):
        found = _judge(node)
        if found is not None:
            return found
    return None


def _judge(node: ast.Node) -> str | None:
    if type(node) in _SIMPLE:
        return _SIMPLE[type(node)]
    if isinstance(node, ast.GrantStmt):
        return "GRANT" if node.is_grant else "REVOKE"
    if isinstance(node, ast.DeleteStmt | ast.UpdateStmt) and not restricts(
        node.whereClause, node.relation
    ):
        return ("DELETE" if isinstance(node, ast.DeleteStmt) else "UPDATE") + " without WHERE"
    return _judge_more(node)


def _judge_more(node: ast.Node) -> str | None:
    if isinstance(node, ast.CreateFunctionStmt):
        return _function_body(node)
    if isinstance(node, ast.CopyStmt) and node.is_program:
        return "COPY PROGRAM"  # a shell command on the database server, as its owner
    if isinstance(node, ast.AlterTableCmd) and getattr(node.subtype, "name", "") == "AT_DropColumn":
        return "DROP COLUMN"
    return None


def _function_body(node: ast.CreateFunctionStmt) -> str | None:
    """An SQL function's body judged as statements; any other language's is not analysed
    (as a DO block). A BEGIN ATOMIC body is already in the tree, walked with the rest."""
    options = {o.defname: o.arg for o in node.options or () if isinstance(o, ast.DefElem)}
    language = getattr(options.get("language"), "sval", "sql").lower()
    body = options.get("as")
    if body is None:
        return None
    if language != "sql":
        return "a function body (not analysed)"
    texts = [getattr(part, "sval", "") for part in body] if isinstance(body, tuple) else []
    try:
        inner = [pglast.parse_sql(text) for text in texts]
    except pglast.parser.ParseError:
        return "a function body (not analysed)"
    return next((found for tree in inner for n in walk(tree) if (found := _judge(n))), None)


def _by_words(sql: str, tag: str) -> str | None:
    """For text that does not parse (literals redacted oddly, or a tool's own syntax)."""
    for prefix, name in _TAGGED.items():
        if tag == prefix or tag.startswith(prefix + " "):
            return name
    if _PROGRAM.search(sql):
        return "COPY PROGRAM"
    if match := _WORDS.search(sql):
        return " ".join(match.group(0).split()).upper().replace("DO $", "a DO block")
    change = _CHANGE.search(sql)
    if change and (not _WHERE.search(sql) or _TAUTOLOGY.search(sql)):
        return f"{change.group(1).upper()} without WHERE"
    return None
