"""StoreGrace: a node is lost only when no look at the store has completed for longer than the
grace, over several ticks in a row, and found again by the next look that completes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bastion.access.admission import Admission, Attempt, door_decision
from bastion.access.grants import Decision
from bastion.access.storegrace import StoreGrace
from bastion.errors import StoreLost
from tests.access.test_admission import PW, code_now, make_core

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
REFUSED = "this bastion cannot reach its audit store (since "


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_grace_runs_from_the_first_tick_without_a_look() -> None:
    grace = StoreGrace(timedelta(seconds=30))
    assert not grace.looked(at(0))
    assert not grace.missed(at(1))  # the look begun at 0 is still running: the grace starts
    assert not grace.missed(at(11)) and not grace.missed(at(21))
    assert not grace.missed(at(31))  # exactly the grace: not yet
    assert grace.missed(at(31.5))  # past it: lost, once
    assert grace.lost and grace.lost_since == at(0)  # the store's last proof
    assert not grace.missed(at(40))  # still lost, said once
    refusal = grace.refusal()
    assert refusal is not None and "since 2026-12-07T09:00:00.000000Z" in refusal
    assert "30 s" in grace.ended_message()
    assert grace.looked(at(41))  # a look completed: found again
    assert not grace.lost and grace.refusal() is None and grace.misses == 0


def test_a_clock_jump_while_one_look_is_in_flight_is_no_loss() -> None:
    """A test's clock may jump hours while one look is in flight, even a slow one."""
    grace = StoreGrace(timedelta(seconds=30))
    grace.looked(at(0))
    for _ in range(10):  # ten ticks at one moment of the clock: no time without the store
        assert not grace.missed(at(7200))
    assert not grace.looked(at(7200))
    assert not grace.missed(at(7200.5)) and not grace.lost


def test_the_grace_is_judged_only_after_several_ticks_in_a_row() -> None:
    grace = StoreGrace(timedelta(seconds=30))
    grace.looked(at(0))
    assert not grace.missed(at(1))
    assert not grace.missed(at(100)) and not grace.missed(at(100))  # three misses so far
    assert grace.missed(at(100))  # the fourth


def test_failed_looks_count_as_misses_from_the_first() -> None:
    grace = StoreGrace(timedelta(seconds=30))
    for second in (0, 10, 20, 29):  # no look has ever completed: the grace starts at 0
        assert not grace.missed(at(second))
    assert grace.missed(at(31))
    assert grace.lost_since == at(0)


def test_an_older_look_completing_late_does_not_move_the_grace_back() -> None:
    grace = StoreGrace(timedelta(seconds=30))
    grace.looked(at(20))
    grace.looked(at(10))
    assert grace.reached_at == at(20)


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
        now = core.clock.now()
        core.grace.looked(now)
        for second in (1, 2, 3, 32):  # four ticks without a look, past the grace
            core.grace.missed(now + timedelta(seconds=second))
        assert core.grace.lost
        before = len(core.store.events())
        decision = await core.decide(proven, "web-1", "ssh")
        assert not decision.allowed and decision.reason.startswith(REFUSED)
        with pytest.raises(StoreLost, match=re.escape(REFUSED)):
            core.admission("postgres", "10.0.0.9", "wes")
        assert len(core.store.events()) == before
    finally:
        core.shutdown()
