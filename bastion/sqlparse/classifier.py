"""Classify statement text for read grants: parsed once per distinct text or shape, then cached."""

from __future__ import annotations

from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache

from pglast import parser

from .readonly import depends_on_values, refusal
from .tags import command_tag
from .tree import CACHE_MAX_CHARS, CACHE_SIZE, UncheckableError, normalize, parse

__all__ = [
    "CACHE_MAX_CHARS",
    "CACHE_SIZE",
    "Classification",
    "StatementInfo",
    "cache_clear",
    "classify",
    "command_kind",
]

_ERROR_MAX_CHARS = 200

# Two caches: one keyed by the exact text (a prepared statement's text, sent again and again),
# one by the normalized text, its "shape" (pgbench's simple protocol sends a new literal each
# time). A shape stands for all its texts only when every statement is a query or DML, whose
# classification depends on keywords, identifiers and node types, never on a constant's value.
# SET, EXPLAIN and BEGIN options do depend on values (and normalize even rewrites some of their
# keywords), so those are cached by exact text only.
_SHAPE_KINDS = frozenset({"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})


@dataclass(frozen=True)
class StatementInfo:
    """One top-level statement: its parse-tree node name and whether a read grant refuses it."""

    kind: str
    writes: bool
    reason: str | None


@dataclass(frozen=True)
class Classification:
    """Every statement of a text, or the parse error that stopped the parser."""

    statements: tuple[StatementInfo, ...]
    error: str | None = None

    @property
    def read_only_refusal(self) -> str | None:
        """None when a read grant allows every statement; else the first reason (fail closed)."""
        if self.error is not None:
            return f"cannot parse the statement: {self.error}"
        for statement in self.statements:
            if statement.writes:
                return statement.reason or f"{statement.kind} is not known to be read-only"
        return None


@dataclass(frozen=True)
class _Analysis:
    classification: Classification
    tags: tuple[str, ...]
    by_shape: bool = False  # whether the verdict holds for every text of the same shape


def classify(sql: str) -> Classification:
    """Parse `sql` with PostgreSQL's grammar and classify each statement; never raises."""
    return _analysis(sql).classification


def command_kind(sql: str) -> str:
    """The first statement's command tag for logs ("SELECT", "CREATE TABLE"), or EMPTY/UNKNOWN."""
    analysis = _analysis(sql)
    if analysis.classification.error is not None:
        return "UNKNOWN"
    return analysis.tags[0] if analysis.tags else "EMPTY"


def cache_clear() -> None:
    """Forget every cached analysis (for tests and benchmarks)."""
    _by_text.cache_clear()
    _SHAPES.clear()


class _ShapeCache:
    """A small LRU keyed by normalized text; filled only with value-independent analyses."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, _Analysis] = OrderedDict()

    def get(self, shape: str) -> _Analysis | None:
        found = self._entries.get(shape)
        if found is not None:
            with suppress(KeyError):  # evicted meanwhile by another thread
                self._entries.move_to_end(shape, last=True)
        return found

    def put(self, shape: str, analysis: _Analysis) -> None:
        self._entries[shape] = analysis
        while len(self._entries) > self._size:
            with suppress(KeyError):
                self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


_SHAPES = _ShapeCache(CACHE_SIZE)


def _analysis(sql: str) -> _Analysis:
    if len(sql) <= CACHE_MAX_CHARS:
        return _by_text(sql)
    return _analyse(sql)


@lru_cache(maxsize=CACHE_SIZE)
def _by_text(sql: str) -> _Analysis:
    try:
        shape: str | None = normalize(sql)
    except Exception:  # the full analysis below reports why
        shape = None
    if shape is not None:
        known = _SHAPES.get(shape)
        if known is not None:
            return known
    analysis = _analyse(sql)
    if shape is not None and _value_independent(analysis):
        _SHAPES.put(shape, analysis)
    return analysis


def _value_independent(analysis: _Analysis) -> bool:
    result = analysis.classification
    return (
        analysis.by_shape
        and result.error is None
        and all(statement.kind in _SHAPE_KINDS for statement in result.statements)
    )


def _analyse(sql: str) -> _Analysis:
    try:
        statements = parse(sql)
    except Exception as exc:  # fail closed: whatever stops the parser refuses the text
        return _failed(_parse_failure(exc))
    try:
        infos = []
        tags = []
        by_shape = True
        for kind, node in statements:
            reason = refusal(kind, node)
            infos.append(StatementInfo(kind=kind, writes=reason is not None, reason=reason))
            tags.append(command_tag(kind, node))
            by_shape = by_shape and not depends_on_values(node)
    except Exception as exc:  # fail closed on a parse tree shaped unlike what the rules expect
        return _failed(f"the statement could not be checked ({type(exc).__name__})")
    return _Analysis(Classification(tuple(infos)), tuple(tags), by_shape)


def _parse_failure(exc: Exception) -> str:
    if isinstance(exc, parser.ParseError | UncheckableError):
        return str(exc)
    if isinstance(exc, UnicodeError):
        return "the statement is not valid UTF-8 text"
    if isinstance(exc, RecursionError):
        return "the statement is nested too deeply to check"
    return f"the parser failed ({type(exc).__name__})"


def _failed(message: str) -> _Analysis:
    line = " ".join(message.split())
    if len(line) > _ERROR_MAX_CHARS:
        line = line[: _ERROR_MAX_CHARS - 3] + "..."
    return _Analysis(Classification((), error=line or "unknown error"), ())
