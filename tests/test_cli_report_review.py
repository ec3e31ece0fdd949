"""`bastion report review`, `report sign` and `report findings`, run as real processes on a
bastion made by `bastion init`: who may pass a finding, and a sign-off bound to its pack."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.access.requests import Requests
from bastion.access.reviews import Reviews
from bastion.audit import ChainKey, NewGrant, Store
from bastion.clock import SystemClock
from bastion.config import load_config
from bastion.errors import Exit
from bastion.identity.sealing import SecretBox
from bastion.reports.model import Evidence, Finding
from tests import test_cli, test_cli_requests
from tests.test_cli import REASON, Bastion, assert_error, assert_ok
from tests.test_cli_requests import People

pristine = test_cli.pristine
bst = test_cli.bst
people = test_cli_requests.people
WEEK = "2026-W47"


def keyed_store(bst: Bastion) -> Store:
    """The store as the bastion itself opens it (the chain is keyed)."""
    config = load_config(bst.config)
    return Store.open(bst.db, SystemClock(), ChainKey.of(SecretBox.load(config.paths.secrets_key)))


def finding(
    rule: str,
    ref: str,
    subject: str | None,
    grants: tuple[int, ...] = (),
    requests: tuple[int, ...] = (),
) -> Finding:
    evidence = (Evidence(kind="event", ref=ref, at=None, text=f"{rule} {ref}"),)
    return Finding(rule=rule, severity="high", title=f"{rule} by {subject}", action="look",
                   evidence=evidence, subject=subject, grants=grants,
                   requests=requests)  # fmt: skip


@dataclass
class Week:
    """A built week 2026-W47 whose findings involve bob and carol, with its pack on disk."""

    pack: Path
    manifest_sha256: str
    own: str  # about bob's own access
    bobs_grant: str  # about a grant bob gave alice
    carols_request: str  # about a request carol approved
    carols_grant: str  # about the grant carol's approval opened
    plain: str  # about alice, nothing bob or carol did

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.own, self.bobs_grant, self.carols_request, self.carols_grant, self.plain)


@pytest.fixture
def week(people: People, tmp_path: Path) -> Week:
    """The week's grants and requests are made in-process through the same rules the CLI
    uses (bob gives alice a grant; carol approves alice's request), saving TOTP codes: the
    skew allows two per person per test."""
    bst = people.bst
    store = keyed_store(bst)
    now = SystemClock().now()
    given = store.add_grant(NewGrant(target="reports", mode="read", starts_at=now,
                                     ends_at=now + timedelta(hours=1), reason=REASON,
                                     actor="bob", user="alice"))  # fmt: skip
    rules = Requests(store, load_config(bst.config), SystemClock())
    asked = rules.request(user="alice", target="reports", duration=timedelta(hours=1),
                          reason=REASON, requested_by="alice")  # fmt: skip
    done = rules.approve(asked.id, "carol")
    assert done.approvers == ("carol",) and done.grant_id is not None
    found = (
        finding("break_glass", "e1", "bob"),
        finding("standing_grant", "e2", "alice", grants=(given.id,)),
        finding("reason_too_short", "e3", "alice", requests=(asked.id,)),
        finding("unused_grant", "e4", None, grants=(done.grant_id,)),
        finding("unusual_hours", "e5", "alice"),
    )
    pack = tmp_path / "pack"
    pack.mkdir()
    manifest = json.dumps({"week": WEEK, "files": {}}).encode()
    (pack / "manifest.json").write_bytes(manifest)
    digest = hashlib.sha256(manifest).hexdigest()
    store.record_report_week(WEEK, found, manifest_sha256=digest, pack_path=str(pack))
    store.close()
    return Week(pack, digest, *(f.id for f in found))


def decide_all(bst: Bastion, week: Week) -> None:
    """Every finding passed in-process, each by an admin not involved in it."""
    store = keyed_store(bst)
    reviews = Reviews(store, load_config(bst.config), SystemClock())
    for fid, who in ((week.own, "carol"), (week.bobs_grant, "carol"), (week.plain, "carol"),
                     (week.carols_request, "bob"), (week.carols_grant, "bob")):  # fmt: skip
        reviews.review(WEEK, fid, who, "ok", "looked at the recording")
    store.close()


def review(people: People, who: str, fid: str, verdict: str = "--ok") -> test_cli.Result:
    args = ("--finding", fid, verdict, "--note", "looked at the recording", "--as", who)
    return people.bst.run("report", "review", WEEK, *args, input=people.code(who))


def refusals(bst: Bastion) -> list[dict[str, object]]:
    return [e["detail"] for e in bst.events() if e["kind"] == "report.review_refused"]


def states(bst: Bastion) -> dict[str, str]:
    return {f["id"]: f["state"] for f in bst.json("report", "findings", WEEK)}


def test_a_reviewer_may_not_pass_a_finding_about_their_own_access(
    people: People, week: Week
) -> None:
    bst = people.bst
    assert_error(review(people, "bob", week.own), Exit.DENIED, "their own access", "another")
    assert states(bst)[week.own] == "open"
    [refused] = refusals(bst)
    assert refused["action"] == "review" and refused["finding"] == week.own
    assert refused["week"] == WEEK and "their own access" in str(refused["why"])
    flagged = bst.run("report", "review", WEEK, "--finding", week.own, "--flag", "--note",
                      "mine: escalated", "--as", "bob", input=people.code("bob"))  # fmt: skip
    assert_error(flagged, Exit.DENIED, "their own access")  # a flag would close it as well
    assert states(bst)[week.own] == "open"
    assert_ok(review(people, "carol", week.own))
    assert states(bst)[week.own] == "ok"


def test_a_reviewer_may_not_pass_a_grant_they_gave_or_one_their_approval_opened(
    people: People, week: Week
) -> None:
    bst = people.bst
    assert_error(review(people, "bob", week.bobs_grant), Exit.DENIED, "they gave grant")
    # carol's approval opened it: the grant names her as who gave it
    assert_error(review(people, "carol", week.carols_grant), Exit.DENIED, "they gave grant")
    assert [r["finding"] for r in refusals(bst)] == [week.bobs_grant, week.carols_grant]
    assert states(bst)[week.bobs_grant] == states(bst)[week.carols_grant] == "open"
    assert_ok(review(people, "carol", week.bobs_grant))
    assert_ok(review(people, "bob", week.carols_grant))
    assert states(bst)[week.bobs_grant] == states(bst)[week.carols_grant] == "ok"


def test_a_reviewer_may_not_pass_a_request_they_approved(people: People, week: Week) -> None:
    bst = people.bst
    result = review(people, "carol", week.carols_request)
    assert_error(result, Exit.DENIED, "they approved request", "another admin or reviewer must")
    [refused] = refusals(bst)
    assert refused["finding"] == week.carols_request
    assert states(bst)[week.carols_request] == "open"
    assert_ok(review(people, "bob", week.carols_request))
    assert states(bst)[week.carols_request] == "ok"


def test_only_admins_and_reviewers_review_and_sign_and_each_refusal_is_audited(
    people: People, week: Week
) -> None:
    bst = people.bst
    said = "only admins and reviewers may review"
    assert_error(review(people, "alice", week.plain), Exit.DENIED, said)
    signed = bst.run("report", "sign", WEEK, "--as", "alice", input=people.code("alice"))
    assert_error(signed, Exit.DENIED, "only admins and reviewers may sign")
    wrong = bst.run("report", "review", WEEK, "--finding", week.plain, "--ok", "--note", "fine",
                    "--as", "bob", input="000000\n")  # fmt: skip
    assert_error(wrong, Exit.DENIED, "code")
    unproven = bst.run("report", "sign", WEEK)
    assert unproven.returncode == Exit.USAGE
    assert [(r["action"], r.get("finding")) for r in refusals(bst)] == [
        ("review", week.plain), ("sign", None)]  # fmt: skip
    assert states(bst)[week.plain] == "open"
    assert_ok(review(people, "dave", week.plain))  # the reviewer, a security lead, may
    assert states(bst)[week.plain] == "ok"


def test_a_code_is_not_reused_for_a_second_decision(people: People, week: Week) -> None:
    bst = people.bst
    code = people.code("carol")
    first = bst.run("report", "review", WEEK, "--finding", week.plain, "--ok", "--note",
                    "seen", "--as", "carol", input=code)  # fmt: skip
    assert_ok(first)
    again = bst.run("report", "review", WEEK, "--finding", week.own, "--ok", "--note", "seen",
                    "--as", "carol", input=code)  # fmt: skip
    assert_error(again, Exit.DENIED, "code")
    assert states(bst)[week.own] == "open"


def test_signing_needs_every_finding_decided_and_happens_once_bound_to_the_pack(
    people: People, week: Week
) -> None:
    bst = people.bst
    early = bst.run("report", "sign", WEEK, "--as", "bob", input=people.code("bob"))
    line = assert_error(early, Exit.CONFLICT, "5 open findings", week.own)
    assert "report review" in line
    decide_all(bst, week)
    done = bst.json("report", "sign", WEEK, "--as", "bob", input=people.code("bob"))
    assert done["signed_by"] == "bob" and done["manifest_sha256"] == week.manifest_sha256
    [signed] = [e for e in bst.events() if e["kind"] == "report.signed"]
    assert signed["actor"] == "bob"
    assert signed["detail"]["week"] == WEEK
    assert signed["detail"]["manifest_sha256"] == week.manifest_sha256
    assert signed["detail"]["ok"] == 5 and signed["detail"]["flag"] == 0
    assert_ok(bst.run("audit", "verify"))
    twice = bst.run("report", "sign", WEEK, "--as", "carol", input=people.code("carol"))
    assert_error(twice, Exit.CONFLICT, "was signed by bob")
    late = review(people, "carol", week.own, "--flag")
    assert_error(late, Exit.CONFLICT, "was signed by bob")
    assert [r["action"] for r in refusals(bst)] == ["sign", "sign", "review"]
    assert len([e for e in bst.events() if e["kind"] == "report.signed"]) == 1


def test_a_pack_changed_after_it_was_built_is_not_signed(people: People, week: Week) -> None:
    bst = people.bst
    decide_all(bst, week)
    manifest = week.pack / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"{}", b'{"x": "y"}'))
    result = bst.run("report", "sign", WEEK, "--as", "bob", input=people.code("bob"))
    assert_error(result, Exit.CONFLICT, "does not match")
    manifest.unlink()
    result = bst.run("report", "sign", WEEK, "--as", "bob", input=people.code("bob"))
    assert_error(result, Exit.CONFLICT, "cannot read")
    assert "report.signed" not in bst.kinds()


def test_unknown_weeks_and_findings_are_named(people: People, week: Week) -> None:
    bst = people.bst
    assert_error(review(people, "bob", "nope"), Exit.NOT_FOUND, "no finding 'nope'")
    result = bst.run("report", "sign", "2026-W48", "--as", "bob", input=people.code("bob"))
    assert_error(result, Exit.NOT_FOUND, "no report was built for week 2026-W48")
    result = bst.run("report", "sign", "2026-47", "--as", "carol", input="000000\n")
    assert_error(result, Exit.USAGE, "YYYY-Www")  # before the code is asked for
