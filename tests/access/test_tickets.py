"""Reusable tickets' pure rules: lifetime caps, address binding, refusals, and the session end."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bastion.access.enforce import endings
from bastion.access.tickets import (
    UNKNOWN,
    bound_allows,
    lifetime,
    parse_bind,
    ticket_refusal,
)
from bastion.audit.records import OpenSession
from bastion.audit.tickets import TicketRow
from bastion.errors import UsageError

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TICKET = TicketRow(id=7, user="alice", target="db", reusable=True, grant_id=3, bind_address=None,
                   created_at=NOW, created_by="test", expires_at=NOW + timedelta(hours=1),
                   used_at=None, uses=0, revoked_at=None, revoked_by=None)  # fmt: skip


def why(ticket: TicketRow | None, *, user: str = "alice", target: str = "db",
        address: str = "10.0.0.1", now: datetime = NOW, live: frozenset[int] = frozenset({3}),
        ) -> str | None:  # fmt: skip
    return ticket_refusal(ticket, user=user, target=target, address=address, now=now,
                          live_grants=set(live))  # fmt: skip


def test_lifetime_is_the_first_of_asked_target_maximum_and_grant_end() -> None:
    ends = NOW + timedelta(hours=2)
    assert lifetime(NOW, timedelta(hours=1), timedelta(hours=8), ends) == (
        NOW + timedelta(hours=1), "asked")  # fmt: skip
    assert lifetime(NOW, timedelta(hours=4), timedelta(hours=8), ends) == (ends, "the grant's end")
    assert lifetime(NOW, timedelta(hours=4), timedelta(minutes=30), ends)[1] == (
        "reusable_ticket_max 30m")  # fmt: skip
    with pytest.raises(UsageError):
        lifetime(NOW, timedelta(0), timedelta(hours=8), ends)


def test_binding_takes_addresses_and_networks_and_matches_mapped_clients() -> None:
    assert parse_bind("10.1.2.3") == "10.1.2.3/32" and parse_bind("10.1.2.3/24") == "10.1.2.0/24"
    assert parse_bind("::ffff:10.1.2.3") == "10.1.2.3/32"
    assert parse_bind("2001:db8::1/64") == "2001:db8::/64"
    with pytest.raises(UsageError):
        parse_bind("bastion.example.com")
    assert bound_allows(None, "anything")
    assert bound_allows("10.1.2.0/24", "10.1.2.77") and bound_allows(
        "10.1.2.3/32", "::ffff:10.1.2.3"
    )
    assert not bound_allows("10.1.2.0/24", "10.1.3.1")
    assert not bound_allows("10.1.2.0/24", "2001:db8::1") and not bound_allows("10.1.2.0/24", "?")


def test_each_refusal_names_its_reason_and_someone_elses_ticket_reads_as_unknown() -> None:
    assert why(TICKET) is None
    assert why(None) == UNKNOWN and why(TICKET, user="bob") == UNKNOWN
    assert why(replace(TICKET, reusable=False)) == UNKNOWN
    assert why(TICKET, target="other") == "this ticket is for db, not other"
    assert why(replace(TICKET, revoked_at=NOW)) == "this ticket was revoked"
    assert why(TICKET, now=TICKET.expires_at) == "this ticket has expired"
    assert why(TICKET, live=frozenset({4})) == (
        "grant 3, which this ticket was minted under, has ended")  # fmt: skip
    assert "bound to 10.9.9.9/32" in str(why(replace(TICKET, bind_address="10.9.9.9/32")))


def test_a_revoked_tickets_sessions_end_even_under_a_live_grant() -> None:
    from tests.access.test_enforce import grant  # noqa: PLC0415 - the same grant maker

    live = [grant(3)]
    opened = OpenSession("s1", "alice", "db", 3, "read", False, ticket_revoked=7)
    [ending] = endings([opened], live, {3: live[0]}, NOW)
    assert ending.state == "ticket_revoked" and "ticket 7" in ending.message
    assert endings([replace(opened, ticket_revoked=None)], live, {3: live[0]}, NOW) == []
