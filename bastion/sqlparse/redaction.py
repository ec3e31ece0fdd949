"""Statement text for the query log: literals and comments redacted, code kept, statements split."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from pglast import parser

from .code import COMMENT_PLACEHOLDER, KeptWhole, code_literals, may_hold_code, scrub
from .tree import CACHE_MAX_CHARS, CACHE_SIZE, normalize, parse

__all__ = ["COMMENT_PLACEHOLDER", "Redacted", "log_text", "redact", "unparsable"]

_MAY_NEED_SCAN = re.compile(r"'|--|/\*|\$(?!\d)|(?<![\w$])\d")
"""What any constant or comment token contains: a quote, a comment opener, a dollar quote, or a
digit that does not continue an identifier or a `$n`. Normalized text without one is done."""


class Redacted(NamedTuple):
    """A statement's text for the query log, and why it was kept whole (None: redacted)."""

    text: str
    kept_whole: str | None = None


def redact(sql: str) -> str:
    """The query log's text for `sql` (see `log_text`); never raises."""
    return log_text(sql).text


def log_text(sql: str) -> Redacted:
    """`sql` with every literal replaced by `$n` and every comment emptied, but code kept.

    libpg_query's normalize replaces the constants it knows (numbering after any `$n` already in
    the text); the literals it leaves in utility statements (COMMENT ON ... IS, PREPARE and
    EXECUTE, COPY's file name, CREATE VIEW bodies) get the next numbers here. A literal that is
    code (a DO block, a function body, a query given to query_to_xml: see bastion.sqlparse.code)
    stays, with its own literals redacted. A statement whose code cannot be parsed for that is
    kept whole, with the reason. Text that does not parse keeps none of its content: see
    `unparsable`. Never raises.
    """
    if len(sql) <= CACHE_MAX_CHARS:
        return _redact_cached(sql)
    return _redact(sql)


def unparsable(sql: str) -> str:
    """The log text for a statement that does not parse: its size and a short hash only."""
    data = sql.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"[unparsable statement, {len(data)} bytes, sha256 {digest}]"


def split_statements(sql: str) -> list[str]:
    """Each statement of a multi-statement text, by PostgreSQL's parser; [sql] if it fails.

    Blank text gives []; text with no statement but comments gives [sql].
    """
    if len(sql) <= CACHE_MAX_CHARS:
        return list(_split_cached(sql))
    return list(_split(sql))


def redact_params(params: Sequence[bytes | None]) -> list[str]:
    """Bind parameters described without their values: ["$1: 5 bytes", "$2: NULL"]."""
    described = []
    for number, value in enumerate(params, start=1):
        if value is None:
            described.append(f"${number}: NULL")
        else:
            size = len(value)
            described.append(f"${number}: {size} byte{'' if size == 1 else 's'}")
    return described


def describe_params(
    params: Sequence[bytes | None], formats: Sequence[int] = ()
) -> list[str | None]:
    """Bind parameter values for a log that keeps them: text decoded, binary as `\\x` hex.

    `formats` are the Bind message's format codes: none (all text), one (for every parameter),
    or one per parameter; 1 means binary. NULL stays None.
    """
    described: list[str | None] = []
    for index, value in enumerate(params):
        if value is None:
            described.append(None)
        elif _format_of(formats, index) == 1:
            described.append("\\x" + value.hex())
        else:
            described.append(value.decode("utf-8", "replace"))
    return described


def _format_of(formats: Sequence[int], index: int) -> int:
    if not formats:
        return 0
    if len(formats) == 1:
        return formats[0]
    return formats[index] if index < len(formats) else 0


def _redact(sql: str) -> Redacted:
    try:
        normalized = normalize(sql)
    except Exception:  # text that does not parse keeps nothing of itself
        return Redacted(unparsable(sql))
    coded = _with_code(sql) if may_hold_code(sql) else None
    if coded is not None:
        return coded
    try:
        if not _MAY_NEED_SCAN.search(normalized):
            return Redacted(normalized)
        return Redacted(scrub(normalized, parser.scan(normalized), {}))
    except Exception:  # any failure keeps nothing of the text
        return Redacted(unparsable(sql))


def _with_code(sql: str) -> Redacted | None:
    """The text of a statement with code in it; None when it holds none after all."""
    try:
        found = code_literals(sql, json.loads(parser.parse_sql_json(sql)), 0, _inner)
        return Redacted(scrub(sql, parser.scan(sql), found)) if found else None
    except KeptWhole as exc:
        return Redacted(sql, str(exc))
    except Exception as exc:  # fail towards showing what ran
        return Redacted(sql, f"its code could not be checked ({type(exc).__name__})")


def _inner(sql: str, depth: int) -> str:
    """SQL text that PostgreSQL will run (a body, a query argument): redacted the same way."""
    try:
        parse(sql)  # refuses what the server would read differently (a NUL, say)
        tree = json.loads(parser.parse_sql_json(sql))
    except Exception:
        raise KeptWhole("SQL text in it does not parse") from None
    return scrub(sql, parser.scan(sql), code_literals(sql, tree, depth, _inner))


def _split(sql: str) -> tuple[str, ...]:
    if "\x00" in sql:
        return (sql,)
    try:
        statements = parser.split(sql)
    except Exception:  # fall back to the whole text as one statement
        return (sql,)
    if statements:
        return statements
    return (sql,) if sql.strip() else ()


_redact_cached = lru_cache(maxsize=CACHE_SIZE)(_redact)
_split_cached = lru_cache(maxsize=CACHE_SIZE)(_split)


def cache_clear() -> None:
    """Forget every cached redaction and split (for tests and benchmarks)."""
    _redact_cached.cache_clear()
    _split_cached.cache_clear()
