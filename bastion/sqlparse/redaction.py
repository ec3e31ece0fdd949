"""Statement text for the query log: literals and comments redacted, statements split."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

from pglast import parser

from .tree import CACHE_MAX_CHARS, CACHE_SIZE, normalize

_CONSTANTS = frozenset({"SCONST", "USCONST", "BCONST", "XCONST", "ICONST", "FCONST"})
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
COMMENT_PLACEHOLDER = "/* */"
"""What a comment becomes: comments are free text and may quote customer data."""
_MAY_NEED_SCAN = re.compile(r"'|--|/\*|\$(?!\d)|(?<![\w$])\d")
"""What any constant or comment token contains: a quote, a comment opener, a dollar quote, or a
digit that does not continue an identifier or a `$n`. Normalized text without one is done."""


def redact(sql: str) -> str:
    """`sql` with every literal replaced by `$n` and every comment emptied; never raises.

    libpg_query's normalize replaces the constants it knows (numbering after any `$n` already in
    the text); the literals it leaves in utility statements (COMMENT ON ... IS, PREPARE and
    EXECUTE, COPY's file name, CREATE VIEW bodies) get the next numbers here. Text that does not
    parse keeps none of its content: see `unparsable`.
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


def _redact(sql: str) -> str:
    try:
        normalized = normalize(sql)
        if not _MAY_NEED_SCAN.search(normalized):
            return normalized
        return _scrub(normalized, parser.scan(normalized))
    except Exception:  # any failure keeps nothing of the text
        return unparsable(sql)


def _scrub(text: str, tokens: Sequence[parser.Token]) -> str:
    """Replace the constant and comment tokens normalize left behind."""
    number = max((_param_number(text, token) for token in tokens), default=0)
    pieces = []
    position = 0
    for token in tokens:
        if token.name in _CONSTANTS:
            number += 1
            replacement = f"${number}"
        elif token.name in _COMMENTS:
            replacement = COMMENT_PLACEHOLDER
        else:
            continue
        pieces.append(text[position : token.start])
        pieces.append(replacement)
        position = token.end + 1
    pieces.append(text[position:])
    return "".join(pieces)


def _param_number(text: str, token: parser.Token) -> int:
    if token.name != "PARAM":
        return 0
    digits = text[token.start + 1 : token.end + 1]
    return int(digits) if digits.isdigit() else 0


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
