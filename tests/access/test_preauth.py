"""The pre-login limiter's global cap and its shedding, and the audit tally (pure code)."""

from __future__ import annotations

from datetime import timedelta

from bastion.access.preauth import MAX_TRACKED, PreauthLimiter, PreauthPolicy
from bastion.access.tally import Tally
from bastion.clock import FakeClock


def seated(limiter: PreauthLimiter, source: str, ended: list[str]) -> PreauthLimiter:
    seat = limiter.for_connection(lambda why: ended.append(f"{source}: {why}"))
    assert seat.admit(source, FakeClock().now()) is None
    return seat


def test_the_cap_sheds_the_busiest_address_for_a_quieter_one() -> None:
    limiter = PreauthLimiter(PreauthPolicy(max_unauthenticated_per_source=5,
                                           max_logins_in_progress=3))  # fmt: skip
    ended: list[str] = []
    seats = [seated(limiter, "10.0.0.1", ended) for _ in range(2)]
    seated(limiter, "10.0.0.2", ended)
    now = FakeClock().now()
    refused = limiter.for_connection(ended.append).admit("10.0.0.1", now)
    assert refused is not None and "too many connections are logging in" in refused
    assert limiter.for_connection(ended.append).admit("10.0.0.3", now) is None
    assert ended == ["10.0.0.1: too many connections are logging in; try again shortly"]
    assert limiter.in_progress == 3
    seats[0].closed_unauthenticated("10.0.0.1")  # the evicted one leaves: counted once
    assert limiter.in_progress == 3
    seats[1].authenticated("10.0.0.1")
    assert limiter.in_progress == 2


def test_connections_that_can_not_be_ended_are_never_shed() -> None:
    limiter = PreauthLimiter(PreauthPolicy(max_logins_in_progress=2))
    now = FakeClock().now()
    assert limiter.admit("10.0.0.1", now) is None
    assert limiter.admit("10.0.0.1", now) is None
    assert limiter.admit("10.0.0.2", now) is not None
    limiter.closed_unauthenticated("10.0.0.1")
    assert limiter.admit("10.0.0.2", now) is None


def test_a_block_ends_the_addresses_other_logins_but_not_the_failing_one() -> None:
    limiter = PreauthLimiter(PreauthPolicy(max_failures=2))
    ended: list[str] = []
    failing = seated(limiter, "10.0.0.1", ended)
    seated(limiter, "10.0.0.1", ended)
    seated(limiter, "10.0.0.2", ended)
    now = FakeClock().now()
    assert not failing.failed("10.0.0.1", now)
    assert failing.failed("10.0.0.1", now)
    assert ended == ["10.0.0.1: too many failed logins from 10.0.0.1"]
    assert failing.blocked("10.0.0.1", now) and not failing.blocked("10.0.0.2", now)
    closing = limiter.for_connection(ended.append, close_when_blocked=True)
    assert closing.admit("10.0.0.3", now) is None
    closing.failed("10.0.0.3", now)
    closing.failed("10.0.0.3", now)
    assert ended[-1] == "too many failed logins from 10.0.0.3"


def test_the_tally_sums_a_minute_per_address_and_keeps_a_budget() -> None:
    clock = FakeClock()
    tally = Tally(window=timedelta(minutes=1), budget=3)
    worked = [tally.note("cancel", "10.0.0.1", clock.now(), "no key") for _ in range(5)]
    assert worked == [True, True, True, False, False]
    tally.note("cancel", "10.0.0.2", clock.now())
    assert tally.due(clock.now()) == []
    clock.advance(60)
    assert tally.note("cancel", "10.0.0.1", clock.now())  # a new window
    [first, other] = tally.due(clock.now())
    assert (first.source, first.count, first.details) == ("10.0.0.1", 5, {"no key": 5})
    assert other.count == 1
    [rest] = tally.drain()
    assert rest.summary()["count"] == 1


def test_the_tally_counts_an_ipv6_client_by_its_64() -> None:
    """Rotating through one's /64 neither renews the budget nor writes a summary an address."""
    clock = FakeClock()
    tally = Tally(window=timedelta(minutes=1), budget=3)
    worked = [tally.note("cancel", f"2001:db8::{i:x}", clock.now()) for i in range(1, 6)]
    assert worked == [True, True, True, False, False]
    clock.advance(60)
    [summary] = tally.due(clock.now())
    assert (summary.source, summary.count) == ("2001:db8::/64", 5)


def test_ipv6_addresses_count_by_their_64() -> None:
    limiter = PreauthLimiter(PreauthPolicy(max_unauthenticated_per_source=2, max_failures=2))
    now = FakeClock().now()
    assert limiter.admit("2001:db8::1", now) is None
    assert limiter.admit("2001:db8::ffff:2", now) is None
    refused = limiter.admit("2001:db8::3", now)  # the same /64: one client rotating
    assert refused is not None and "2001:db8::/64" in refused
    assert limiter.admit("2001:db8:0:1::1", now) is None  # the next /64 is someone else
    limiter.failed("2001:db8::a", now)
    assert limiter.failed("2001:db8::b", now)
    assert limiter.blocked("2001:db8::c", now) and not limiter.blocked("2001:db8:0:1::c", now)
    assert limiter.admit("::ffff:10.0.0.1", now) is None  # IPv4-mapped counts as IPv4
    limiter.closed_unauthenticated("10.0.0.1")
    assert limiter.in_progress == 3


def test_failures_from_many_addresses_are_forgotten_once_over() -> None:
    clock = FakeClock()
    limiter = PreauthLimiter(PreauthPolicy(failure_window=timedelta(minutes=1)))
    for i in range(MAX_TRACKED):
        limiter.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", clock.now())
    clock.advance(61)
    limiter.failed("192.0.2.1", clock.now())
    assert len(limiter._failures) == 1
