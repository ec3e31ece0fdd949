"""Errors and notices quote nothing in masked mode; startup parameters are allowlisted."""

from __future__ import annotations

from bastion import pgwire
from bastion.masking.scrub import scrubbed, startup_refusal


def test_an_error_keeps_its_sqlstate_and_loses_the_value() -> None:
    original = {"S": "ERROR", "V": "ERROR", "C": "22P02",
                "M": 'invalid input syntax for type integer: "123-45-6789"',
                "D": "Key (ssn)=(123-45-6789) already exists.", "W": "SQL function f"}  # fmt: skip
    raw = scrubbed(original)
    assert b"123-45-6789" not in raw and b"ssn" not in raw and b"SQL function" not in raw
    reader = pgwire.FrameReader()
    reader.feed(raw)
    [frame] = reader.frames()
    error = pgwire.decode_backend(frame)
    assert isinstance(error, pgwire.ErrorResponse)
    assert error.sqlstate == "22P02" and error.fields["V"] == "ERROR"
    assert "did not fit its type" in error.fields["M"]


def test_a_notice_stays_a_notice() -> None:
    raw = scrubbed({"S": "NOTICE", "V": "NOTICE", "C": "00000", "M": "ssn is 123-45-6789"},
                   notice=True)  # fmt: skip
    assert raw[:1] == b"N" and b"123-45-6789" not in raw


def test_startup_parameters_outside_the_allowlist_are_refused() -> None:
    assert startup_refusal({"user": "alice", "database": "db", "application_name": "psql"}) is None
    assert "options" in (startup_refusal({"user": "a", "options": "-c role=x"}) or "")
    assert "replication" in (startup_refusal({"user": "a", "replication": "database"}) or "")
    assert "_pq_.x" in (startup_refusal({"user": "a", "_pq_.x": "1"}) or "")
