"""Which open sessions must end: expired, revoked, disabled; a new grant keeps one going."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bastion.access.enforce import endings, overstayed, uncovered
from bastion.audit.records import Grant, OpenSession

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def grant(gid: int, *, mode: str = "read", ends: timedelta = timedelta(hours=1),
          revoked: bool = False, user: str = "alice", target: str = "db") -> Grant:  # fmt: skip
    return Grant(id=gid, user=user, target=target, mode=mode, starts_at=NOW - timedelta(hours=1),
                 ends_at=NOW + ends, reason="testing the doors", granted_by="admin",
                 created_at=NOW - timedelta(hours=1),
                 revoked_at=NOW - timedelta(minutes=1) if revoked else None,
                 revoked_by="bob" if revoked else None)  # fmt: skip


def session(gid: int | None, mode: str | None = "read", disabled: bool = False) -> OpenSession:
    return OpenSession(f"s{gid}", "alice", "db", gid, mode, disabled)


def end_of(grants: list[Grant], open_: list[OpenSession]) -> list[tuple[str, str, str]]:
    live = [g for g in grants if g.live_at(NOW)]
    found = endings(open_, live, {g.id: g for g in grants}, NOW)
    return [(e.session_id, e.state, e.message) for e in found]


def test_a_session_under_a_live_grant_goes_on() -> None:
    assert end_of([grant(1)], [session(1)]) == []


def test_an_expired_grant_ends_its_session_saying_when() -> None:
    [(sid, state, message)] = end_of([grant(1, ends=-timedelta(seconds=1))], [session(1)])
    assert (sid, state) == ("s1", "grant_expired")
    assert message == "access to db ended: grant 1 expired at 2026-11-22T11:59:59.000000Z"


def test_a_revoked_grant_ends_its_session_naming_who() -> None:
    [(_, state, message)] = end_of([grant(1, revoked=True)], [session(1)])
    assert state == "grant_revoked" and message.endswith("grant 1 was revoked by bob")


def test_a_disabled_user_loses_every_session_whatever_the_grants() -> None:
    [(_, state, _)] = end_of([grant(1)], [session(1, disabled=True)])
    assert state == "user_disabled"


def test_a_new_grant_keeps_the_session_only_if_it_is_as_wide() -> None:
    expired = grant(1, mode="write", ends=-timedelta(seconds=1))
    assert end_of([expired, grant(2, mode="write")], [session(1, "write")]) == []
    [(_, state, _)] = end_of([expired, grant(2, mode="read")], [session(1, "write")])
    assert state == "grant_expired"  # a read grant does not carry on a write session
    assert end_of([grant(1, mode="read", ends=-timedelta(seconds=1)), grant(2, mode="write")],
                  [session(1, "read")]) == []  # fmt: skip


def test_grants_of_other_users_or_targets_do_not_count() -> None:
    expired = grant(1, ends=-timedelta(seconds=1))
    others = [grant(2, user="bob"), grant(3, target="web-1")]
    [(_, state, _)] = end_of([expired, *others], [session(1)])
    assert state == "grant_expired"


def test_a_session_without_a_known_grant_ends() -> None:
    [(_, state, message)] = end_of([], [session(None, mode=None)])
    assert state == "grant_revoked" and "no grant covers it" in message


LIMITS = (timedelta(minutes=15), timedelta(hours=12))


def test_a_session_with_recent_input_inside_its_cap_goes_on() -> None:
    opened = NOW - timedelta(hours=11)
    assert overstayed("db", opened, NOW - timedelta(minutes=14), NOW, LIMITS) is None


def test_idle_too_long_ends_the_session() -> None:
    found = overstayed("db", NOW - timedelta(hours=1), NOW - timedelta(minutes=15), NOW, LIMITS)
    assert found == ("idle_timeout", "no input for 15m on db; session ended")


def test_the_cap_ends_even_a_busy_session() -> None:
    found = overstayed("db", NOW - timedelta(hours=12), NOW, NOW, LIMITS)
    assert found == ("session_cap", "sessions on db last at most 12h")


def test_sessions_on_a_target_outside_its_hours_end_whatever_the_grants() -> None:
    found = endings([session(1)], [grant(1)], {1: grant(1)}, NOW, {"db": "db is closed now"})
    assert [(e.state, e.message) for e in found] == [("outside_hours", "db is closed now")]
    assert endings([session(1)], [grant(1)], {1: grant(1)}, NOW, {"web-1": "closed"}) == []


def test_only_uncovered_sessions_need_their_own_grant_looked_up() -> None:
    live = [grant(1), grant(2, mode="write", target="web"), grant(3, user="bob")]
    read_db, write_web = session(1), OpenSession("s9", "alice", "web", 2, "write", False)
    writing_db = session(4, mode="write")  # alice's db grant is read only
    bobs = OpenSession("s5", "bob", "web", 5, "read", False)  # bob has db, not web
    assert uncovered([read_db, write_web, writing_db, bobs], live, NOW) == [writing_db, bobs]
