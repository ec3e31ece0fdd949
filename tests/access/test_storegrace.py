"""StoreGrace: a node is lost only when no look at the store has completed for longer than the
grace (monotonic time), over several ticks in a row, and found again by the next look that
completes having begun within the grace; its presence lease outlasts that moment."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bastion.access.admission import Admission, Attempt, door_decision
from bastion.access.grants import Decision
from bastion.access.storegrace import (
    JUDGED_WITHIN,
    SKEW,
    TICK_AT_MOST,
    Moment,
    StoreGrace,
    presence_ttl,
)
from bastion.errors import StoreLost
from tests.access.test_admission import PW, code_now, make_core

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
M0 = 5000.0  # the monotonic reading at T0
REFUSED = "this bastion cannot reach its audit store (since "


def at(seconds: float, tick: int | None = None) -> Moment:
    """A moment on both readings of a clock nobody stepped (a tick every half second)."""
    tick = int(seconds * 2) if tick is None else tick
    return Moment(tick, M0 + seconds, T0 + timedelta(seconds=seconds))


def looked(grace: StoreGrace, began: float, now: float) -> bool:
    return grace.looked(at(began), at(now))


def test_the_grace_runs_from_the_last_completed_look() -> None:
    grace = StoreGrace(timedelta(seconds=30))
    assert not looked(grace, 0, 0.5)
    assert not grace.missed(at(1))  # the next look is still running
    assert not grace.missed(at(11)) and not grace.missed(at(21))
    assert not grace.missed(at(30))  # exactly the grace: not yet
    assert grace.missed(at(30.5))  # past it: lost, once
    assert grace.lost and grace.lost_since == T0  # the store's last proof
    assert not grace.missed(at(40))  # still lost, said once
    refusal = grace.refusal()
    assert refusal is not None and "since 2026-12-07T09:00:00.000000Z" in refusal
    assert "30 s" in grace.ended_message()
    assert looked(grace, 41, 41.2)  # a look completed: found again
    assert not grace.lost and grace.refusal() is None and grace.misses == 0


def test_a_clock_jump_while_one_look_is_in_flight_is_no_loss() -> None:
    """A test's clock may jump hours while a look is in flight: no loss when a look begun
    after the jump completes within MISSES_TO_LOSE ticks of the last proof."""
    grace = StoreGrace(timedelta(seconds=30))
    looked(grace, 0, 0.5)  # tick 1
    assert not grace.missed(at(7200, 2))  # the clock jumped: the look begun at tick 1 runs
    assert not grace.looked(at(0.5, 1), at(7200, 3))  # it completes (it began before the jump)
    assert not grace.missed(at(7200, 4))  # the one begun at tick 3 still runs
    assert not grace.looked(at(7200, 3), at(7200.5, 5)) and not grace.lost
    assert not grace.missed(at(7201, 6)) and not grace.lost


def test_the_grace_is_judged_only_ticks_after_the_last_proof() -> None:
    grace = StoreGrace(timedelta(seconds=30))
    looked(grace, 0, 0.5)
    assert not grace.missed(at(100, 1))
    assert not grace.missed(at(100, 2)) and not grace.missed(at(100, 3))  # three ticks since
    assert grace.missed(at(100, 4))  # the fourth


def test_failed_looks_count_as_misses_from_the_first() -> None:
    grace = StoreGrace(timedelta(seconds=30))
    for second in (0, 10, 20, 29):  # no look has ever completed: the grace starts at 0
        assert not grace.missed(at(second))
    assert grace.missed(at(31))
    assert grace.lost_since == T0


def test_an_older_look_completing_late_does_not_move_the_grace_back() -> None:
    grace = StoreGrace(timedelta(seconds=30))
    looked(grace, 20, 20.5)
    looked(grace, 10, 21)
    assert grace.reached == at(20)


def test_a_step_of_the_wall_clock_neither_ends_the_grace_nor_stretches_it() -> None:
    """Only monotonic time counts: the wall clock stepped an hour ahead is no loss, and an
    hour back does not give the node an hour more."""
    ahead = StoreGrace(timedelta(seconds=30))
    looked(ahead, 0, 0.5)
    for tick in range(2, 22):  # ten seconds, the wall clock an hour ahead
        wall = T0 + timedelta(hours=1, seconds=tick / 2)
        assert not ahead.missed(Moment(tick, M0 + tick / 2, wall))
    assert not ahead.lost
    back = StoreGrace(timedelta(seconds=30))
    looked(back, 0, 0.5)
    behind = T0 - timedelta(hours=1)
    for tick in range(2, 61):  # thirty seconds, the wall clock an hour behind
        assert not back.missed(Moment(tick, M0 + tick / 2, behind))
    assert back.missed(Moment(61, M0 + 30.5, behind)) and back.lost


def test_a_look_that_began_before_the_grace_ran_out_ends_no_loss() -> None:
    """It renewed the presence lease too long ago: the lease may have run out, and others
    may have taken the node for gone; a look begun since must complete first."""
    grace = StoreGrace(timedelta(seconds=30))
    looked(grace, 0, 0.5)
    for second in (1, 2, 3, 31):
        grace.missed(at(second))
    assert grace.lost
    assert not looked(grace, 0.5, 45)  # began within the loss' first look, completed late
    assert grace.lost and grace.refusal() is not None
    assert looked(grace, 45, 45.2)


def test_the_presence_lease_outlasts_the_moment_the_node_fails_closed() -> None:
    """The relation bastion/access/storegrace.py proves: with ticks at most TICK_AT_MOST
    apart, whenever the look that began at 0 completes (the last one to complete; it renewed
    the lease at 0 at the earliest), the loss is judged at most JUDGED_WITHIN after the
    grace, and others take the node for gone at least SKEW later than that."""
    for seconds in (2, 3, 30, 600):
        for done in range(1, seconds + 3):  # the tick that finds the look completed
            grace = StoreGrace(timedelta(seconds=seconds))
            grace.looked(at(-TICK_AT_MOST, -1), at(0, 0))  # the look before it
            tick, lost = 0, False
            while not lost:  # ticks as far apart as they may be
                tick += 1
                now = at(tick * TICK_AT_MOST, tick)
                if tick == done and not grace.lost:
                    grace.looked(at(0, 0), now)
                    continue
                lost = grace.missed(now)
            judged = timedelta(seconds=tick * TICK_AT_MOST)
            assert judged <= grace.grace + JUDGED_WITHIN, (seconds, done)
            assert judged + SKEW <= presence_ttl(grace.grace)


def test_a_lost_store_refuses_every_door_whatever_the_grants_say() -> None:
    proven = Admission(Attempt("ssh", "10.0.0.7", "alice"), first_factor="publickey",
                       authenticated=True)  # fmt: skip
    granted = Decision(True, "grant 7")
    assert door_decision(proven, granted) is granted
    refused = door_decision(proven, granted, "this bastion cannot reach its audit store")
    assert not refused.allowed and refused.reason.startswith("this bastion cannot reach")


async def test_a_login_under_way_when_the_store_is_lost_is_refused_at_the_decision(
    tmp_path: Path,
) -> None:
    """Proven before the loss, deciding after it: refused with the line, the store untouched;
    and a login beginning now is refused at its first step."""
    core, seeds = make_core(tmp_path, tmp_path / "bastion.db")
    try:
        proven = await core.sign_in("web", "10.0.0.9", "wes", PW, code_now(core, seeds["wes"]))
        now, wall = core.clock.monotonic(), core.clock.now()
        core.grace.looked(Moment(0, now, wall), Moment(0, now, wall))
        for tick, second in enumerate((1, 2, 3, 32), 1):  # four ticks, past the grace
            core.grace.missed(Moment(tick, now + second, wall + timedelta(seconds=second)))
        assert core.grace.lost
        before = len(core.store.events())
        decision = await core.decide(proven, "web-1", "ssh")
        assert not decision.allowed and decision.reason.startswith(REFUSED)
        with pytest.raises(StoreLost, match=re.escape(REFUSED)):
            core.admission("postgres", "10.0.0.9", "wes")
        assert len(core.store.events()) == before
    finally:
        core.shutdown()
