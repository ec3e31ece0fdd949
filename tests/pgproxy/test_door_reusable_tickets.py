"""Reusable tickets through the real PostgreSQL door: the attacker's tries first, then the tools
that open several connections (psql and asyncpg at once) on one ticket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from bastion.errors import Denied
from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, alice_on
from tests.realpg import PgDatabase, asyncpg_connect, psycopg_connect, run_psql, run_psql_async
from tests.ssh.test_door_admin import wait_until

if TYPE_CHECKING:
    from bastion.audit.tickets import TicketRow


def mint(
    b: Bastion, user: str = "alice", target: str = "orders-prod", *,
    hours: float = 1, bind: str | None = None,
) -> tuple[str, TicketRow]:  # fmt: skip
    """A reusable ticket, minted after the user's own fresh code."""
    token, row, _ = b.core.tickets.mint(user, target, b.code(user),
                                        duration=timedelta(hours=hours), bind=bind,
                                        via="test")  # fmt: skip
    return token, row


def with_ticket(
    b: Bastion, token: str, user: str = "alice", target: str = "orders-prod"
) -> PgDatabase:
    return PgDatabase("127.0.0.1", b.pg_port, target, user, token)


ONE_TRY = {"PGSSLMODE": "require"}  # TLS or nothing: libpq's "prefer" tries twice


def refused(b: Bastion, token: str, why: str, **where: str) -> str:
    """The client is told only "ticket refused"; the reason (`why`) is in the audit event.
    Returns what the client read."""
    before = len(b.events("auth.ticket_refused"))
    done = run_psql(with_ticket(b, token, **where), "-c", "SELECT 1", env=ONE_TRY)
    assert done.returncode != 0, done.stdout
    assert "ticket refused" in done.stderr and why not in done.stderr, done.stderr
    events = b.events("auth.ticket_refused")
    assert len(events) == before + 1
    assert why in json.loads(events[-1].detail)["why"]
    return done.stderr


def opens(b: Bastion, token: str, **where: str) -> None:
    done = run_psql(with_ticket(b, token, **where), "-At", "-c", "SELECT 1", env=ONE_TRY)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def two(tmp_path: Path, pg: PgDatabase) -> Iterator[Bastion]:
    """alice and bob may both read orders-prod; alice also orders-copy (the same database)."""
    extra = "[postgres]\nmax_failures_per_source = 4\n[targets.orders-copy]\n"
    extra += 'reusable_ticket_max = "30m"\n'
    b = alice_on(tmp_path / "bastion", pg, extra)
    b.add_user("bob", password=PASSWORD)
    b.grant("bob", "orders-prod")
    b.add_pg_target("orders-copy", pg)
    b.grant("alice", "orders-copy")
    b.start()
    try:
        yield b
    finally:
        b.stop()


# --- the attacker's tries ---------------------------------------------------------------------


def test_someone_elses_ticket_is_refused_under_any_name(two: Bastion) -> None:
    token, row = mint(two)
    refused(two, token, "unknown ticket", user="bob")  # alice's ticket, bob's name
    opens(two, token)  # still alice's, and still good for her
    [bad] = [e for e in two.events("auth.ticket_refused") if e.subject == "bob"]
    detail = json.loads(bad.detail)
    assert detail["ticket"] == row.id and detail["ticket_user"] == "alice"
    assert bad.severity == "warning"


def test_a_ticket_opens_only_its_own_target(two: Bastion) -> None:
    token, _ = mint(two)
    refused(two, token, "this ticket is for orders-prod, not orders-copy", target="orders-copy")


def test_a_refused_ticket_tells_its_holder_nothing_of_where_it_works(two: Bastion) -> None:
    """A stolen ticket's holder learns neither its target, nor its network, nor its owner."""
    token, _ = mint(two, bind="10.9.8.0/24")
    told = refused(two, token, "this ticket is for orders-prod", target="orders-copy")
    told += refused(two, token, "bound to 10.9.8.0/24")
    told += refused(two, token, "unknown ticket", user="bob")
    for secret in ("orders-prod", "10.9.8", "/24", "alice", "bound", "is for"):
        assert secret not in told, told
    one_use, _ = two.core.identity.issue_ticket("alice", "orders-prod", two.code("alice"),
                                                "test", timedelta(minutes=10))  # fmt: skip
    told = refused(two, one_use, "this ticket is for orders-prod", target="orders-copy")
    assert "orders-prod" not in told and "is for" not in told, told


def test_an_expired_ticket_is_refused(two: Bastion) -> None:
    token, _ = mint(two, hours=0.5)
    opens(two, token)
    two.clock.advance(timedelta(minutes=31))
    refused(two, token, "expired")


def test_a_revoked_ticket_is_refused_and_its_live_sessions_end(two: Bastion) -> None:
    token, row = mint(two)
    live = psycopg_connect(with_ticket(two, token))
    try:
        revoked, sessions = two.core.tickets.revoke(row.id, "admin", "laptop stolen")
        assert revoked.state_at(two.clock.now()) == "revoked" and len(sessions) == 1
        refused(two, token, "revoked")
        wait_until(lambda: not two.store.sessions(open_only=True))
        with pytest.raises(psycopg.OperationalError):
            live.execute("SELECT 1")
    finally:
        live.close()
    [session] = two.store.sessions()
    assert session.state == "ticket_revoked"
    assert [json.loads(e.detail)["ticket"] for e in two.events("ticket.revoked")] == [row.id]


def test_a_ticket_dies_with_its_grant_even_when_a_new_grant_follows(two: Bastion) -> None:
    token, row = mint(two)
    assert row.grant_id is not None
    two.core.access.revoke(row.grant_id, "admin")
    refused(two, token, f"grant {row.grant_id}")
    two.grant("alice", "orders-prod")  # access again, but the ticket was for the old grant
    refused(two, token, f"grant {row.grant_id}")


def test_a_ticket_is_capped_by_its_grant_and_the_target_maximum(two: Bastion) -> None:
    grant = next(g for g in two.store.grants(user="alice", target="orders-prod"))
    token, row = mint(two, hours=48)  # the grant lasts 2h, the default maximum 8h
    assert row.expires_at == grant.ends_at
    _, short = mint(two, target="orders-copy", hours=48)  # its maximum is 30m
    assert short.expires_at == two.clock.now() + timedelta(minutes=30)
    two.clock.advance(grant.ends_at - two.clock.now())
    refused(two, token, "expired")
    with pytest.raises(Denied, match="no access"):  # no live grant: nothing is minted
        mint(two)


def test_offboarding_revokes_every_ticket(two: Bastion) -> None:
    token, row = mint(two)
    two.store.disable_user("alice", "admin", "left the company")
    refused(two, token, "revoked")
    assert two.store.ticket(row.id).revoked_by == "admin"


def test_a_locked_account_is_refused_at_every_connection(two: Bastion) -> None:
    token, _ = mint(two)
    for _ in range(two.config.lockout.max_failures):
        two.core.identity.check_totp("alice", "000000", "test")
    done = run_psql(with_ticket(two, token), "-c", "SELECT 1", env=ONE_TRY)
    assert done.returncode != 0 and "locked" in done.stderr, done.stderr


def test_a_bound_ticket_opens_only_from_its_address(two: Bastion) -> None:
    elsewhere, _ = mint(two, bind="10.9.8.7")
    refused(two, elsewhere, "bound to 10.9.8.7/32")
    here, row = mint(two, bind="127.0.0.0/8")
    assert row.bind_address == "127.0.0.0/8"
    opens(two, here)
    opens(two, here)


def test_a_one_use_ticket_is_still_one_use(two: Bastion) -> None:
    token, _ = two.core.identity.issue_ticket("alice", "orders-prod", two.code("alice"), "test",
                                              timedelta(minutes=10))  # fmt: skip
    opens(two, token)
    refused(two, token, "used already")


def test_guessing_tickets_counts_towards_the_prelogin_block(two: Bastion) -> None:
    token, _ = mint(two)
    for n in range(4):
        refused(two, f"btr_guess{n:039d}", "unknown ticket")
    # The right ticket, from a blocked address (refused in plain text, before TLS):
    done = run_psql(with_ticket(two, token), "-c", "SELECT 1")
    assert done.returncode != 0 and "too many failed logins" in done.stderr
    assert two.events("auth.source_blocked")


def test_no_ticket_in_the_store_the_audit_trail_or_the_logs(
    two: Bastion, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    token, row = mint(two)
    opens(two, token)
    refused(two, token, "unknown ticket", user="bob")
    two.core.tickets.revoke(row.id, "admin")
    refused(two, token, "revoked")
    store = two.config.paths.store
    for path in store.parent.glob(store.name + "*"):
        data = path.read_bytes()
        assert token.encode() not in data and token[4:].encode() not in data, path
    assert token not in str([e.detail for e in two.store.events()])
    out, err = capfd.readouterr()
    assert token not in caplog.text + out + err


# --- the tools ---------------------------------------------------------------------------------


def test_psql_and_asyncpg_at_once_on_one_ticket(two: Bastion) -> None:
    """Two live connections at the same time, as pgcli, DBeaver or a pool open them."""
    token, row = mint(two)
    via = with_ticket(two, token)

    async def both() -> tuple[int, str]:
        conn = await asyncpg_connect(via.url, ssl=False)
        try:
            first = await conn.fetchval("SELECT count(*) FROM customers")
            done = await run_psql_async(via, "-At", "-c", "SELECT count(*) FROM customers")
            assert done.returncode == 0, done.stderr
            again = await conn.fetchval("SELECT count(*) FROM customers")  # still open
            assert again == first
            return int(first), done.stdout.strip()
        finally:
            await conn.close()

    counted, printed = asyncio.run(both())
    assert counted > 0 and printed == str(counted)
    sessions = two.store.sessions()
    assert len(sessions) == 2 and {s.user for s in sessions} == {"alice"}
    assert len({s.id for s in sessions}) == 2  # each connection its own audited session
    assert all(q.session_id in {s.id for s in sessions} for q in two.store.queries())
    assert two.store.ticket(row.id).uses == 2
    assert len(two.events("auth.ticket_ok")) == 2
    assert two.store.verify_chain().ok


def test_a_ticket_session_keeps_its_grants_guard(two: Bastion) -> None:
    """alice's grant is read-only: the ticket's sessions are too."""
    token, _ = mint(two)
    done = run_psql(with_ticket(two, token), "-c", "CREATE TABLE t_by_ticket (id int)")
    assert done.returncode != 0 and "read-only" in done.stderr
