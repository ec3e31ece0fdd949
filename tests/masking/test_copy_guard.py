"""The door's Guard on a COPY's replies, fed the bytes a server would send: CopyOutResponse,
CopyData and CopyDone only after a planned COPY TO STDOUT, never CopyIn or CopyBoth; a row that
cannot be parsed ends the session (MaskingLost) before any of its read is forwarded."""

from __future__ import annotations

import struct

import pytest

from bastion import pgwire
from bastion.pgproxy.guard import Guard, MaskingLost
from tests.masking.test_session import session


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def copy_response(kind: bytes, overall: int, width: int) -> bytes:
    return _message(
        kind, bytes([overall]) + struct.pack("!h", width) + struct.pack("!h", overall) * width
    )


def replies(guard: Guard, data: bytes) -> bytes:
    """What the client gets for these server bytes."""
    out = []
    for item in pgwire.Scanner(b"Dd").feed(data).items:
        changed = guard.reply(item, None)
        out.append(bytes(item.raw) if changed is None else changed)
    return b"".join(out)


def guard(sql: str) -> Guard:
    g = Guard(session(), ())
    assert g.query(sql) is None
    return g


END = _message(b"c", b"") + pgwire.command_complete("COPY 1") + pgwire.ready_for_query("I")


def test_a_planned_copy_is_masked_on_its_way_out() -> None:
    g = guard("COPY customers (id, email, ssn) TO STDOUT (FORMAT csv)")
    head = copy_response(b"H", 0, 3)
    out = replies(g, head + _message(b"d", b"4711,jane.doe@example.com,123-45-6789\n") + END)
    assert out == head + _message(b"d", b'4711,"j*******@example.com","***-**-6789"\n') + END
    assert g.flow.copy is None and not g.flow.queue


@pytest.mark.parametrize(
    ("sql", "data", "why"),
    [
        # a CopyOutResponse no planned COPY explains, and CopyData with no response before it
        ("SELECT id FROM customers", copy_response(b"H", 0, 1), "no planned COPY"),
        ("SELECT id FROM customers", _message(b"d", b"1\n"), "outside a planned COPY"),
        # never copy-in or copy-both, whatever was planned
        ("COPY customers (id) TO STDOUT", copy_response(b"G", 0, 1), "never expects"),
        ("COPY customers (id) TO STDOUT", copy_response(b"W", 0, 1), "never expects"),
        # the response must match the plan
        ("COPY customers (id, ssn) TO STDOUT", copy_response(b"H", 1, 2), "does not match"),
        ("COPY customers (id, ssn) TO STDOUT", copy_response(b"H", 0, 1), "does not match"),
        # rows that are not one whole row of the planned width
        ("COPY customers (id, ssn) TO STDOUT",
         copy_response(b"H", 0, 2) + _message(b"d", b"1\t123-45-6789\n2\t987-65-4321\n"),
         "line break"),
        ("COPY customers (id, ssn) TO STDOUT",
         copy_response(b"H", 0, 2) + _message(b"d", b"1\t123-45-6789"), "does not end a row"),
        ("COPY customers (id, ssn) TO STDOUT (FORMAT binary)",
         copy_response(b"H", 1, 2) + _message(b"d", b"PGCOPY\n\xff\r\n\x00" + bytes(8)
                                              + struct.pack("!hi", 2, 1) + b"1"
                                              + struct.pack("!i", 999) + b"123-45-6789"),
         "claims 999"),
        ("COPY customers (id, ssn) TO STDOUT (FORMAT binary)",
         copy_response(b"H", 1, 2) + _message(b"c", b""), "trailer"),
        ("COPY customers (id, ssn) TO STDOUT",
         copy_response(b"H", 0, 2) + pgwire.command_complete("COPY 0"), "without its CopyDone"),
    ],
)  # fmt: skip
def test_what_the_masking_cannot_vouch_for_ends_the_session(
    sql: str, data: bytes, why: str
) -> None:
    with pytest.raises(MaskingLost, match=why):
        replies(guard(sql), data)
