"""Where the two engines' SQL differs: `?` to `$n`, the advisory lock key, and fragments as data.

The store's SQL is written once with sqlite3's `?` placeholders. PostgreSQL numbers its
parameters, so each text is rewritten once (cached): every `?` in code becomes `$1`, `$2`, ...
in order, while a `?` inside a quoted literal ('...', E'...', $tag$...$tag$), a quoted
identifier ("...") or a comment (-- and nested /* */) is left as it is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol

from bastion.audit.sqlconn import DbError, Dialect, Result

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_WORD = re.compile(r"[A-Za-z_]+")
_TRANSACTION_WORDS = frozenset({"begin", "start", "commit", "end", "rollback", "abort"})
READ_WORDS = frozenset({"select", "values", "show", "table"})
_CHANGES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})


def lock_key(purpose: str) -> int:
    """A 64-bit advisory lock key (signed, as PostgreSQL's bigint) named by its purpose."""
    return int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "big", signed=True)


MIGRATION_LOCK = lock_key("bastion store migrations v1")  # the first migration of a new store


def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _quoted_end(sql: str, at: int, quote: str, backslash: bool) -> int:
    """Where the literal or identifier opened at `at` ends (one past its closing quote)."""
    i, n = at + 1, len(sql)
    while i < n:
        ch = sql[i]
        if backslash and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _comment_end(sql: str, at: int) -> int:
    """Where the (nested) block comment opened at `at` ends."""
    depth, i, n = 0, at, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _skip_end(sql: str, i: int) -> int:
    """If a literal, quoted identifier or comment starts at i, where it ends; else -1."""
    ch = sql[i]
    if ch == "'":
        escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _ident_char(sql[i - 2]))
        return _quoted_end(sql, i, "'", escapes)
    if ch == '"':
        return _quoted_end(sql, i, '"', False)
    if sql.startswith("--", i):
        found = sql.find("\n", i)
        return len(sql) if found < 0 else found
    if sql.startswith("/*", i):
        return _comment_end(sql, i)
    if ch == "$" and not (i > 0 and _ident_char(sql[i - 1])):
        tag = _DOLLAR_TAG.match(sql, i)
        if tag:
            found = sql.find(tag.group(0), tag.end())
            return len(sql) if found < 0 else found + len(tag.group(0))
    return -1


@lru_cache(maxsize=256)
def parts(sql: str) -> tuple[tuple[bool, str], ...]:
    """The text cut into (is_code, piece): literals, quoted names and comments are not code."""
    found: list[tuple[bool, str]] = []
    i = start = 0
    while i < len(sql):
        end = _skip_end(sql, i) if sql[i] in "'\"-/$" else -1
        if end < 0:
            i += 1
            continue
        if i > start:
            found.append((True, sql[start:i]))
        found.append((False, sql[i:end]))
        i = start = end
    if start < len(sql):
        found.append((True, sql[start:]))
    return tuple(found)


@lru_cache(maxsize=2048)
def to_dollar(sql: str) -> str:
    """The text with each `?` in code numbered as PostgreSQL's $1, $2, ..."""
    if "?" not in sql:
        return sql
    out: list[str] = []
    count = 0
    for code, piece in parts(sql):
        if not code or "?" not in piece:
            out.append(piece)
            continue
        pieces = piece.split("?")
        out.append(pieces[0])
        for rest in pieces[1:]:
            count += 1
            out.append(f"${count}{rest}")
    return "".join(out)


def statements_words(sql: str) -> list[tuple[str, str]]:
    """The first two words (lower case) of each statement of a script, in code only."""
    code = "".join(piece if is_code else " " for is_code, piece in parts(sql))
    found = []
    for statement in code.split(";"):
        words = _WORD.findall(statement)[:2]
        if words:
            found.append((words[0].lower(), words[1].lower() if len(words) > 1 else ""))
    return found


def controls_transaction(sql: str) -> bool:
    """Whether a statement of the text begins or ends a transaction (ROLLBACK TO SAVEPOINT and
    RELEASE are not: they stay inside one)."""
    return any(
        first in _TRANSACTION_WORDS and not (first == "rollback" and second == "to")
        for first, second in statements_words(sql)
    )


def is_read(sql: str) -> bool:
    """Whether the text is one statement that starts as a read (SELECT, VALUES, SHOW, TABLE);
    the server still has the last word (a retried read runs in a READ ONLY transaction)."""
    words = statements_words(sql)
    return len(words) == 1 and words[0][0] in READ_WORDS


def rowcount(status: str | None) -> int:
    """How many rows a command changed, from its status tag ("INSERT 0 1", "UPDATE 3",
    "DELETE 2"); -1 for any other command, as sqlite3 says for them."""
    word, _, rest = (status or "").partition(" ")
    count = rest.rsplit(" ", 1)[-1]
    return int(count) if word in _CHANGES and count.isdigit() else -1


def numeric(text: str) -> int | Decimal:
    """A numeric value as int when it is integral (SUM over bigint is numeric)."""
    value = Decimal(text)
    return int(value) if value.is_finite() and value == value.to_integral_value() else value


# -- fragments the two engines spell differently --------------------------------------------
#
# Each is a format string over column expressions ({col}, {x}, {value}, ...) and a JSON path
# of plain names ("first", "done.rows") or an array index, which the caller supplies from its
# own code, never from input (`fragment` checks them). The JSON readers agree on both engines
# for what they name: `json_text` strings only, `json_number` numbers only (NULL otherwise,
# never an error, never the other type), `json_type` in PostgreSQL's words. `json_at` and
# `json_canonical` give JSON text to compare within one engine: SQLite's is minified with
# keys in written order, PostgreSQL's is jsonb's (spaced, keys sorted), so two notes that
# differ only in spacing are equal on both, and two that differ in key order on PostgreSQL
# only. `detail` and the other JSON columns are text on both (the chain MACs the text).
# `bastion_json_valid` is a function of the PostgreSQL migrations (a text that casts to json).


@dataclass(frozen=True)
class Fragments:
    """The SQL one engine needs where the two differ."""

    json_text: str  # a string at a path of a JSON text, as text; NULL if absent or no string
    json_scalar: str  # a scalar at a path as SQLite's json_extract gives it; text on PostgreSQL
    json_scalar_number: str  # the same for a number: a number on PostgreSQL (NULL if no number)
    json_part: str  # an object at a path as JSON text (SQLite's json_extract: minified)
    json_number: str  # a number at a path, as a number; NULL if absent or no number
    json_type: str  # object, array, string, number, boolean or null; NULL if absent
    json_at: str  # the value at a path as JSON text (compare within one engine)
    json_canonical: str  # a text as canonical JSON when it is JSON, else the text itself
    json_valid: str  # whether a text is JSON (false for NULL)
    json_each: str  # FROM item: the members of the object at a path (columns key, value)
    json_item_text: str  # element {index} of a json_each value (an array) as text
    like_ci: str  # a LIKE that ignores ASCII case
    contains: str  # whether {needle} occurs in {x}
    seq_is_key: str  # one row, ok: audit_events.seq is still its 64-bit primary key alone
    integrity: str  # SQLite: one table's check; PostgreSQL: one table's btree indexes


_SQLITE_AT = "'$.{path}'"
_PG_AT = "'{{{keys}}}'"
FRAGMENTS: dict[Dialect, Fragments] = {
    "sqlite": Fragments(
        json_text=f"(CASE WHEN json_type({{col}}, {_SQLITE_AT}) = 'text'"
        f" THEN json_extract({{col}}, {_SQLITE_AT}) END)",
        json_number=f"(CASE WHEN json_type({{col}}, {_SQLITE_AT}) IN ('integer', 'real')"
        f" THEN json_extract({{col}}, {_SQLITE_AT}) END)",
        json_scalar=f"json_extract({{col}}, {_SQLITE_AT})",
        json_scalar_number=f"json_extract({{col}}, {_SQLITE_AT})",
        json_part=f"json_extract({{col}}, {_SQLITE_AT})",
        json_type=f"(CASE json_type({{col}}, {_SQLITE_AT}) WHEN 'integer' THEN 'number'"
        " WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' WHEN 'true' THEN 'boolean'"
        f" WHEN 'false' THEN 'boolean' ELSE json_type({{col}}, {_SQLITE_AT}) END)",
        json_at=f"({{col}} -> {_SQLITE_AT})",
        json_canonical="(CASE WHEN json_valid({x}) THEN json({x}) ELSE {x} END)",
        json_valid="coalesce(json_valid({x}), 0)",
        json_each=f"json_each({{col}}, {_SQLITE_AT})",
        json_item_text="json_extract({value}, '$[{index}]')",
        like_ci="({x} LIKE {pattern})",
        contains="(instr({x}, {needle}) > 0)",
        seq_is_key=(
            "SELECT (SELECT COUNT(*) FROM pragma_table_info('audit_events') WHERE pk > 0) = 1"
            " AND EXISTS (SELECT 1 FROM pragma_table_info('audit_events') WHERE name = 'seq'"
            " AND pk = 1 AND upper(type) = 'INTEGER') AS ok"
        ),
        integrity="PRAGMA integrity_check({table})",
    ),
    "postgresql": Fragments(
        json_text=f"(CASE WHEN jsonb_typeof({{col}}::jsonb #> {_PG_AT}) = 'string'"
        f" THEN {{col}}::jsonb #>> {_PG_AT} END)",
        json_number=f"(CASE WHEN jsonb_typeof({{col}}::jsonb #> {_PG_AT}) = 'number'"
        f" THEN ({{col}}::jsonb #>> {_PG_AT})::numeric END)",
        json_scalar=f'(({{col}}::jsonb #>> {_PG_AT}) COLLATE "C")',
        json_scalar_number=f"(CASE WHEN jsonb_typeof({{col}}::jsonb #> {_PG_AT}) = 'number'"
        f" THEN ({{col}}::jsonb #>> {_PG_AT})::numeric END)",
        json_part=f'((({{col}}::jsonb #> {_PG_AT})::text) COLLATE "C")',
        json_type=f"jsonb_typeof({{col}}::jsonb #> {_PG_AT})",
        json_at=f"(({{col}}::jsonb #> {_PG_AT})::text)",
        json_canonical=(
            '(CASE WHEN bastion_json_valid({x}) THEN ({x}::jsonb)::text COLLATE "C" ELSE {x} END)'
        ),
        json_valid="coalesce(bastion_json_valid({x}), false)",
        json_each=f"jsonb_each({{col}}::jsonb #> {_PG_AT})",
        json_item_text="({value} ->> {index})",
        like_ci="({x} ILIKE {pattern})",
        contains="(strpos({x}, {needle}) > 0)",
        seq_is_key=(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = to_regclass('audit_events') AND i.indisprimary"
            " AND i.indisvalid AND i.indimmediate AND i.indnkeyatts = 1"
            " AND a.attname = 'seq' AND a.atttypid = 'bigint'::regtype) AS ok"
        ),
        integrity=(
            "SELECT {amcheck}.bt_index_check(i.indexrelid, true) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
            " WHERE i.indrelid = to_regclass('{table}') AND am.amname = 'btree'"
        ),
    ),
}
AMCHECK_SCHEMA = (
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
    " WHERE e.extname = 'amcheck'"
)
HEAP_CHECK = (
    "SELECT blkno, offnum, msg FROM {amcheck}.verify_heapam(to_regclass('{table}')) LIMIT 1"
)
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_EXPRESSION = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*|\?|'[^']*'")


def _fits(part: str, value: str | int) -> bool:
    if part == "path":
        return isinstance(value, str) and all(_NAME.fullmatch(k) for k in value.split("."))
    if part in ("table", "amcheck"):
        return isinstance(value, str) and _NAME.fullmatch(value.strip('"')) is not None
    if part == "index":
        return isinstance(value, int) and value >= 0
    return isinstance(value, str) and _EXPRESSION.fullmatch(value) is not None


def fragment(engine: Dialect, name: str, **parts: str | int) -> str:
    """One fragment filled in. A path is plain names joined by dots, an index a number, a
    column expression a plain (qualified) name, `?` or a simple literal: all from code."""
    for part, value in parts.items():
        if not _fits(part, value):
            raise ValueError(f"{part}={value!r} is not what this fragment takes")
    if "path" in parts:
        parts["keys"] = str(parts["path"]).replace(".", ",")
    text: str = getattr(FRAGMENTS[engine], name)
    return text.format(**parts)


class Reads(Protocol):
    """What the index check needs of a connection (a Conn has it)."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result: ...

    def table_exists(self, name: str) -> bool: ...


def index_problem(conn: Reads, tables: Sequence[str]) -> str | None:
    """None when every index (and, on PostgreSQL, the heap) of these tables agrees with its
    table; else the first problem, or why they could not be checked (fail closed). Run it
    outside a transaction: on PostgreSQL a failed check ends the transaction it is in."""
    if conn.dialect == "postgresql":
        return _pg_index_problem(conn, tables)
    for table in tables:
        try:
            check = fragment("sqlite", "integrity", table=table)
            said = [str(r[0]) for r in conn.execute(check)]
        except (DbError, ValueError) as exc:
            return f"the store's table {table} could not be checked: {exc}"
        if said != ["ok"]:
            return f"the store's table {table} and its indexes disagree: {said[0]}"
    return None


def _amcheck(conn: Reads) -> tuple[str, str]:
    """(the amcheck schema, quoted; '') or ('', why the indexes cannot be checked)."""
    found = conn.execute(AMCHECK_SCHEMA).fetchone()
    if found is None:
        return "", ("the store's indexes cannot be checked: the amcheck extension is not"
                    " installed in the store's database (CREATE EXTENSION amcheck, as a"
                    " superuser)")  # fmt: skip
    if not _NAME.fullmatch(str(found[0])):
        return "", f"the store's indexes cannot be checked: amcheck is in schema {found[0]!r}"
    return '"' + str(found[0]) + '"', ""


def _pg_index_problem(conn: Reads, tables: Sequence[str]) -> str | None:
    amcheck, problem = _amcheck(conn)
    if problem:
        return problem
    for table in tables:
        if not _NAME.fullmatch(table) or not conn.table_exists(table):
            return f"the store has no table {table}"
        try:
            conn.execute(fragment("postgresql", "integrity", amcheck=amcheck, table=table))
            bad = conn.execute(HEAP_CHECK.format(amcheck=amcheck, table=table)).fetchone()
        except DbError as exc:
            if "SQLSTATE 42501" in str(exc):
                return f"the store's indexes cannot be checked: {exc}"
            return f"the store's table {table} and its indexes disagree: {exc}"
        if bad is not None:
            return f"the store's table {table} is damaged: {bad['msg']} (block {bad['blkno']})"
    return None
