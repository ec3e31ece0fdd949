"""Structured logging: JSON lines in production, readable lines on a terminal, secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_WORDS = (
    "password",
    "secret",
    "token",
    "totp_code",
    "code",
    "seed",
    "key_material",
    "ticket",
)
REDACTED = "[redacted]"


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any field whose name says it holds a secret."""
    for key in list(event):
        lowered = key.lower()
        if any(word in lowered for word in SECRET_WORDS) and key != "event":
            event[key] = REDACTED
    return event


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog once per process; `fmt` is auto, json or console."""
    out = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def bind_connection(session_id: str, user: str | None = None, target: str | None = None) -> None:
    """Tag every following log line in this task with who and what it is about."""
    structlog.contextvars.bind_contextvars(session_id=session_id, user=user, target=target)
