"""Red-team, on the relay's bytes alone: books that grow without bound while the server skips
to Sync, and a masked error that escapes the scrubbing behind a refusal's stand-in."""

from __future__ import annotations

import pytest

from bastion import pgwire
from bastion.pgproxy.relay import Relay
from bastion.pgwire.state import TooMany
from tests.pgproxy.test_relay import (
    READY,
    T0,
    client,
    error_of,
    masked_relay,
    read_relay,
    server,
)

PARSED = pgwire.parse_complete()


# -- A7: what the client sends while the server skips to Sync is kept, without bound ---------


def test_requests_sent_while_the_server_skips_to_sync_are_not_kept_without_bound() -> None:
    """After an error, the client never sends Sync and streams Parses of fresh names (each with
    a large text): the server reads and drops them, the relay keeps every one (its Request, in
    `_sent_statements` and `_unrun`, with its SQL as the note) until a Sync that never comes.
    max_prepared bounds the tables only while the server is not skipping."""
    relay = read_relay(max_prepared=16)
    client(relay, pgwire.parse("", "SELECT 1") + pgwire.bind("", "missing", []) + pgwire.flush())
    server(relay, PARSED + pgwire.error_response("ERROR", "26000", "no such statement"))
    padding = "SELECT 1 AS " + "x" * 10_000
    for batch in range(10):
        client(relay, b"".join(pgwire.parse(f"n{batch}_{n}", padding) for n in range(100)))
    state = relay.state
    held = {id(r): r for r in [*state._sent_statements.values(), *state._unrun]}
    kept = sum(len(r.note) for r in held.values() if isinstance(r.note, str))
    assert len(held) <= 16, f"{len(held)} skipped Parses kept, {kept} bytes of their SQL"


# -- A8: a real error ahead of a refusal's stand-in is not scrubbed --------------------------


def test_a_server_error_ahead_of_a_refused_parse_is_still_scrubbed_in_masked_mode() -> None:
    """Bind (fails, its message quoting a value), then a Parse the masking refuses (its stand-in
    goes upstream), Sync. The guard takes the error for the stand-in's (the tracker's head is the
    stand-in's record, the Bind being a 'leading' request) and lets the server's text through;
    the relay, which looks at the request, does not swap it either."""
    relay = masked_relay()
    client(relay, pgwire.bind("", "s1", [b"123-45-6789"])
           + pgwire.parse("", "SELECT lower(email) FROM customers") + pgwire.sync())  # fmt: skip
    said = 'invalid input syntax for type integer: "123-45-6789"'
    reply = server(relay, pgwire.error_response("ERROR", "22P02", said) + READY)
    down = bytes(reply.down)
    assert b"123-45-6789" not in down, error_of(down)


# -- A12: CopyDone outside a COPY books a request each, past every bound ----------------------


def test_copy_done_outside_a_copy_is_not_booked_without_bound() -> None:
    """With one statement in flight, a stream of CopyDone (5 bytes each; the server ignores
    them outside a COPY): the state machine queues a pseudo-request for each, without looking
    at max_in_flight, so a slow statement plus a flood of 5-byte messages grows the queue."""
    relay = read_relay()
    relay.state.max_in_flight = 100
    client(relay, pgwire.query("SELECT 1"))
    with pytest.raises(TooMany):  # the session ends, saying so
        client(relay, pgwire.copy_done() * 1_000)
    assert relay.state.in_flight <= relay.state.max_in_flight


# -- A14: statements the server dropped by SQL still count against max_prepared ---------------


def test_statements_deallocated_by_sql_do_not_count_against_the_bound() -> None:
    """Functional, not security: 16 Parses (the bound), then DEALLOCATE ALL (or DISCARD ALL, as
    poolers send), which the server runs: it holds no statement, the relay's table still holds
    16, and the next Parse ends the session with 'more than 16 prepared statements'."""
    relay = Relay("s1", "wendy", "orders-prod", False, T0, max_prepared=16)
    client(relay, b"".join(pgwire.parse(f"s{n}", "SELECT 1") for n in range(16)) + pgwire.sync())
    server(relay, PARSED * 16 + READY)
    client(relay, pgwire.query("DEALLOCATE ALL"))
    server(relay, pgwire.command_complete("DEALLOCATE ALL") + READY)
    client(relay, pgwire.parse("s16", "SELECT 1") + pgwire.sync())  # TooMany on main
