"""PostgreSQL statement analysis with PostgreSQL's own grammar (pglast): pure, no I/O."""

from __future__ import annotations

from . import classifier as _classifier
from . import redaction as _redaction
from . import tree as _tree
from .classifier import Classification, StatementInfo, classify, command_kind
from .functions import search_path_refusal
from .redaction import (
    Redacted,
    describe_params,
    log_text,
    redact,
    redact_params,
    split_statements,
    unparsable,
)

__all__ = [
    "Classification",
    "Redacted",
    "StatementInfo",
    "cache_clear",
    "classify",
    "command_kind",
    "describe_params",
    "log_text",
    "redact",
    "redact_params",
    "search_path_refusal",
    "split_statements",
    "unparsable",
]


def cache_clear() -> None:
    """Forget every cached classification, redaction and split (for tests and benchmarks)."""
    _classifier.cache_clear()
    _redaction.cache_clear()
    _tree.cache_clear()
