"""The weekly review's store and rules on a real store with a fake clock: rebuilds, carry-over,
weeks not signed in time, and who may pass what."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.access.requests import Requests
from bastion.access.reviews import Reviews
from bastion.audit import NewGrant, Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.errors import Conflict, Denied
from bastion.reports.carry import UNSIGNED_RULE, carry
from bastion.reports.model import Evidence, Finding

REASON = "INC-4411 refund stuck in queue"
CONFIG = """
[notify]
webhook_url = "http://127.0.0.1:9/hook?token=s3cret-token"

[reports]
sign_within = "7d"

[targets.web-1]
approvals = 1
"""


def finding(ref: str, subject: str | None = "alice", **refs: tuple[int, ...]) -> Finding:
    evidence = (Evidence(kind="session", ref=ref, at=None, text=ref),)
    return Finding(rule="unusual_hours", severity="medium", title=f"{ref} at 03:00",
                   action="ask why", evidence=evidence, subject=subject,
                   grants=refs.get("grants", ()), requests=refs.get("requests", ()))  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reviews(tmp_path: Path, store_at: Path | PgLocation, clock: FakeClock) -> Reviews:
    path = tmp_path / "bastion.toml"
    path.write_text(CONFIG, encoding="utf-8")
    store = Store.create(store_at, clock)
    for name, role in (("alice", "engineer"), ("bob", "admin"), ("carol", "admin"),
                       ("dave", "reviewer")):  # fmt: skip
        store.add_user(name, role, None, os.urandom(8), "cli:root")
    store.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="deploy",
                     database=None, secret_sealed=b"x", actor="cli:root")  # fmt: skip
    return Reviews(store, load_config(path), clock)


def pack(tmp_path: Path, text: str = "{}") -> tuple[str, str]:
    where = tmp_path / f"pack-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    where.mkdir()
    (where / "manifest.json").write_text(text, encoding="utf-8")
    return str(where), hashlib.sha256(text.encode()).hexdigest()


def test_a_rebuild_keeps_decisions_and_the_signing_clock(
    reviews: Reviews, clock: FakeClock, tmp_path: Path
) -> None:
    store = reviews.store
    first = store.record_report_week("2026-W46", [finding("s1"), finding("s2")])
    reviews.review("2026-W46", finding("s1").id, "bob", "flag", "asked alice")
    clock.advance(timedelta(days=3))
    path, digest = pack(tmp_path)
    again = store.record_report_week("2026-W46", [finding("s1"), finding("s3")],
                                     manifest_sha256=digest, pack_path=path)  # fmt: skip
    assert again.built_at == first.built_at and again.rebuilt_at == clock.now()
    found = {f.id: f for f in store.report_findings("2026-W46")}
    assert set(found) == {finding("s1").id, finding("s3").id}
    assert found[finding("s1").id].state == "flag"
    assert found[finding("s1").id].note == "asked alice"
    assert found[finding("s3").id].state == "open"
    reviews.review("2026-W46", finding("s3").id, "bob", "ok", "seen")
    reviews.sign("2026-W46", "carol")
    with pytest.raises(Conflict, match="signed by carol"):
        store.record_report_week("2026-W46", [finding("s1")])
    assert store.verify_chain().ok


def test_findings_stay_open_across_weeks_until_someone_decides(reviews: Reviews) -> None:
    store = reviews.store
    store.record_report_week("2026-W46", [finding("a"), finding("b")])
    reviews.review("2026-W46", finding("a").id, "bob", "ok", "fine")
    [carried] = store.open_findings_before("2026-W47")
    assert carried.id == finding("b").id and carried.week == "2026-W46"
    store.record_report_week("2026-W47", [finding("b"), finding("c")])
    assert [(f.id, f.week) for f in store.open_findings_before("2026-W48")] == sorted(
        [(finding("b").id, "2026-W46"), (finding("c").id, "2026-W47")],
        key=lambda pair: (pair[1], pair[0]),
    )
    reviews.review("2026-W47", finding("b").id, "carol", "flag", "still running")
    assert [f.id for f in store.open_findings_before("2026-W48")] == [finding("c").id]
    assert store.open_findings_before("2026-W46") == []


def test_a_week_not_signed_in_time_is_announced_once(
    reviews: Reviews, clock: FakeClock, tmp_path: Path
) -> None:
    store = reviews.store
    store.record_report_week("2026-W46", [])
    clock.advance(timedelta(days=1))
    path, digest = pack(tmp_path)
    store.record_report_week("2026-W47", [], manifest_sha256=digest, pack_path=path)
    clock.advance(timedelta(days=6, hours=1))
    assert [w.week for w in reviews.overdue()] == ["2026-W46"]
    reviews.sign("2026-W47", "bob")
    clock.advance(timedelta(days=1))
    assert [w.week for w in reviews.overdue()] == ["2026-W46"]
    assert [w.week for w in store.unsigned_report_weeks(clock.now())] == ["2026-W46"]
    events = [e for e in store.events() if e.kind == "report.sign_overdue"]
    assert len(events) == 1 and json.loads(events[0].detail)["week"] == "2026-W46"
    [notice] = [n for n in store.notifications() if n["kind"] == "report.sign_overdue"]
    body = json.loads(notice["payload"])
    assert body["week"] == "2026-W46" and "s3cret" not in notice["payload"]
    assert store.report_week("2026-W46").overdue_at is not None


def test_group_grants_requests_asked_for_and_unknown_grants(reviews: Reviews) -> None:
    store, now = reviews.store, reviews.clock.now()
    store.add_group("oncall", "cli:root")
    store.set_membership("oncall", "bob", "cli:root", member=True)
    to_group = store.add_grant(NewGrant(target="web-1", mode="read", starts_at=now,
                                        ends_at=now + timedelta(hours=1), reason=REASON,
                                        actor="carol", group="oncall"))  # fmt: skip
    rules = Requests(store, reviews.config, reviews.clock)
    filed = rules.request(user="alice", target="web-1", duration=timedelta(hours=1),
                          reason=REASON, requested_by="carol")  # fmt: skip
    by_terminal = store.add_grant(NewGrant(target="web-1", mode="read", starts_at=now,
                                           ends_at=now + timedelta(hours=1), reason=REASON,
                                           actor="cli:root", user="alice"))  # fmt: skip
    found = [finding("g", None, grants=(to_group.id,)),
             finding("r", None, requests=(filed.id,)),
             finding("x", None, grants=(999,)),
             finding("t", None, grants=(by_terminal.id,))]  # fmt: skip
    store.record_report_week("2026-W47", found)
    for item, who, why in ((found[0], "bob", "their own access"),
                           (found[1], "carol", "they asked for request"),
                           (found[2], "carol", "grant 999 is not in the store"),
                           (found[3], "carol", "'cli:root', not a proven person"),
                           ):  # fmt: skip
        for verdict in ("ok", "flag"):  # a flag would close it as surely as an ok
            with pytest.raises(Denied, match=why):
                reviews.review("2026-W47", item.id, who, verdict, "fine")
    with pytest.raises(Denied, match="only admins and reviewers"):
        reviews.review("2026-W47", found[0].id, "alice", "flag", "fine")
    refused = [json.loads(e.detail) for e in store.events() if e.kind == "report.review_refused"]
    assert [r["finding"] for r in refused] == [f.id for f in found for _ in "ab"] + [found[0].id]


def test_a_sign_off_is_bound_to_the_manifest_it_was_checked_against(
    reviews: Reviews, tmp_path: Path
) -> None:
    store = reviews.store
    path, digest = pack(tmp_path)
    store.record_report_week("2026-W47", [], manifest_sha256=digest, pack_path=path)
    with pytest.raises(Conflict, match="changed meanwhile"):
        store.sign_report_week("2026-W47", "bob", "0" * 64)
    done = reviews.sign("2026-W47", "bob")
    assert done.signed_by == "bob" and done.manifest_sha256 == digest
    [event] = [e for e in store.events() if e.kind == "report.signed"]
    assert json.loads(event.detail)["manifest_sha256"] == digest
    assert store.verify_chain().ok
    store.record_report_week("2026-W48", [])
    with pytest.raises(Conflict, match="no pack"):
        reviews.sign("2026-W48", "bob")


def test_who_gave_approved_or_asked_may_not_pass_it(reviews: Reviews) -> None:
    evidence = (Evidence(kind="grant", ref="7", at=None, text="grant 7"),)
    item = Finding(rule="long_grant", severity="low", title="grant 7 is long", action="shorten",
                   evidence=evidence, involved=("carol",))  # fmt: skip
    reviews.store.record_report_week("2026-W47", [item])
    assert reviews.store.report_finding("2026-W47", item.id).involved == ("carol",)
    with pytest.raises(Denied, match="gave, approved or asked for"):
        reviews.review("2026-W47", item.id, "carol", "ok", "fine")
    assert reviews.review("2026-W47", item.id, "bob", "ok", "fine").state == "ok"


def test_the_next_report_carries_open_findings_and_unsigned_weeks(
    reviews: Reviews, clock: FakeClock
) -> None:
    store, config = reviews.store, reviews.config
    store.record_report_week("2026-W46", [finding("a"), finding("b", grants=(3,))])
    reviews.review("2026-W46", finding("a").id, "bob", "ok", "fine")
    assert carry(store, config, clock, "2026-W47") == [
        Finding(**{**vars(finding("b", grants=(3,))), "first_seen": "2026-W46"})
    ]
    clock.advance(timedelta(days=7, seconds=1))
    unsigned, carried = carry(store, config, clock, "2026-W47")
    assert unsigned.rule == UNSIGNED_RULE and unsigned.evidence[0].ref == "2026-W46"
    assert "not signed within 1w" in unsigned.title
    assert carried.id == finding("b", grants=(3,)).id and carried.first_seen == "2026-W46"
    store.record_report_week("2026-W47", [unsigned, carried])
    again = carry(store, config, clock, "2026-W48")
    assert [f.id for f in again] == [unsigned.id, carried.id]  # once each, same ids
    assert len([e for e in store.events() if e.kind == "report.sign_overdue"]) == 1
