"""libpg_query JSON parse trees (through pglast): parsing, walking, and reading constants."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pglast import parser

Node = dict[str, Any]
"""The fields of one parse-tree node, as libpg_query's JSON output gives them."""

CACHE_SIZE = 4096
"""Distinct texts remembered by each cache (pgbench sends one text thousands of times)."""
CACHE_MAX_CHARS = 8192
"""Longer texts are analysed every time, so the caches' memory stays bounded."""
_NORMALIZE_CACHE_SIZE = 256

_TRUE = frozenset({"on", "true", "yes", "1", "t", "y"})
_FALSE = frozenset({"off", "false", "no", "0", "f", "n"})


class UncheckableError(ValueError):
    """The text is one that the parser would misread or that cannot be analysed safely."""


def parse(sql: str) -> list[tuple[str, Node]]:
    """Parse `sql` with PostgreSQL's grammar: (node name, fields) for each top-level statement.

    Raises pglast's ParseError for a syntax error, UncheckableError for text the C parser
    would read differently from the server (a NUL character ends a C string early), and
    UnicodeEncodeError or RecursionError for text that cannot be encoded or is nested too deeply.
    """
    if "\x00" in sql:
        raise UncheckableError("the statement contains a NUL character")
    tree = json.loads(parser.parse_sql_json(sql))
    return [unwrap(raw["stmt"]) for raw in tree["stmts"]]


def normalize(sql: str) -> str:
    """libpg_query's normalize: constants become `$n` (numbered after any `$n` in the text).

    Raises like `parse`. The last few results are cached, because the proxy classifies and then
    redacts the same text, and both start here.
    """
    if "\x00" in sql:
        raise UncheckableError("the statement contains a NUL character")
    if len(sql) <= CACHE_MAX_CHARS:
        return _normalize_cached(sql)
    return parser.normalize(sql)


_normalize_cached = lru_cache(maxsize=_NORMALIZE_CACHE_SIZE)(parser.normalize)


def unwrap(wrapped: Node) -> tuple[str, Node]:
    """Split a wrapped node `{"SelectStmt": {...}}` into its name and fields."""
    if len(wrapped) != 1:
        raise UncheckableError(f"expected one node, found keys {sorted(wrapped)}")
    ((name, fields),) = wrapped.items()
    if not isinstance(fields, dict):
        raise UncheckableError(f"node {name} has no fields")
    return name, fields


def string_list(items: object) -> list[str]:
    """The strings of a list of `String` nodes, e.g. a qualified function name."""
    if not isinstance(items, list):
        return []
    names = []
    for item in items:
        if isinstance(item, dict) and "String" in item:
            names.append(str(item["String"].get("sval", "")))
    return names


def const_value(wrapped: object) -> str | int | bool | None:
    """The value of an `A_Const`, `String`, `Integer` or `Boolean` node; None for anything else.

    libpg_query leaves default values out of its JSON, so `{"ival": {}}` is 0, `{}` strings are
    empty and `{"boolval": {}}` is false.
    """
    if not isinstance(wrapped, dict) or len(wrapped) != 1:
        return None
    ((name, fields),) = wrapped.items()
    if name == "A_Const":
        for key, default in (("ival", 0), ("sval", ""), ("boolval", False)):
            if key in fields:
                inner = fields[key]
                value: str | int | bool = inner.get(key, default)
                return value
        return None
    defaults: dict[str, tuple[str, str | int | bool]] = {
        "Integer": ("ival", 0),
        "String": ("sval", ""),
        "Boolean": ("boolval", False),
    }
    if name in defaults:
        key, default = defaults[name]
        found: str | int | bool = fields.get(key, default)
        return found
    return None


def truth(value: str | int | bool | None) -> bool | None:
    """PostgreSQL's reading of a boolean setting's value; None when it is not clearly one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


def def_elems(items: object) -> list[tuple[str, object]]:
    """(defname, arg) of each `DefElem` in an options list; arg is None when absent."""
    if not isinstance(items, list):
        return []
    found = []
    for item in items:
        if isinstance(item, dict) and "DefElem" in item:
            elem = item["DefElem"]
            found.append((str(elem.get("defname", "")), elem.get("arg")))
    return found


def cache_clear() -> None:
    """Forget the cached normalize results (for tests and benchmarks)."""
    _normalize_cached.cache_clear()
