"""Logging: JSON lines that carry the connection's identity and never a secret."""

from __future__ import annotations

import io
import json

import structlog

from bastion import logs


def test_json_lines_carry_session_user_and_target() -> None:
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    structlog.contextvars.clear_contextvars()
    logs.bind_connection("s-123", user="alice", target="web-1")
    structlog.get_logger("t").info("session.open", client="127.0.0.1")
    structlog.contextvars.clear_contextvars()
    line = json.loads(out.getvalue().strip())
    assert line["session_id"] == "s-123"
    assert line["user"] == "alice" and line["target"] == "web-1"
    assert line["event"] == "session.open" and line["level"] == "info"


def test_secret_fields_are_redacted() -> None:
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    structlog.get_logger("t").info(
        "auth", password="hunter2hunter2", totp_code="123456", api_token="abc", user="alice"
    )
    text = out.getvalue()
    for secret in ("hunter2hunter2", "123456", 'abc"'):
        assert secret not in text
    assert json.loads(text)["user"] == "alice"


def test_levels_filter_and_console_format_is_readable() -> None:
    out = io.StringIO()
    logs.configure("console", "warning", stream=out)
    log = structlog.get_logger("t")
    log.info("quiet")
    log.warning("loud", door="ssh")
    text = out.getvalue()
    assert "quiet" not in text
    assert "loud" in text and "door" in text and not text.lstrip().startswith("{")
