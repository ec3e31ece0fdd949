"""A week driven through the real doors becomes a review: every finding once, with its
evidence, in every format; the JSON valid; the HTML read in Chromium; the mail over STARTTLS;
the pack verified by `bastion report verify`. The week itself: tests/reports/realweek.py."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from playwright.sync_api import Browser, sync_playwright

from bastion.reports.render_json import published_schema
from tests.harness import Bastion
from tests.masking.shop import make_shop
from tests.realpg import PgCluster
from tests.realssh import Sshd
from tests.reports.formats import findings_by_format
from tests.reports.packs import Mailbox, server_context, smtp_server, tls_files
from tests.reports.realweek import (
    ASKED,
    CONSENT,
    DROP,
    NUKE,
    PASSWORD,
    UPDATE,
    ZONE,
    Facts,
    Scenario,
    config_text,
    local_day,
)
from tests.reports.test_render_html_browser import CHROMIUM, open_offline
from tests.test_cli import assert_ok, run_bastion

# What the week should make: each rule, how many times.
EXPECTED = {
    "break_glass": 1, "outside_hours": 1, "destructive_command": 1,
    "privilege_escalation": 1, "destructive_statement": 2, "unmask": 1, "unused_grant": 1,
    "lockout": 1, "failed_login_burst": 1, "interrupted_session": 1, "many_addresses": 1,
    "review_unsigned": 1, "large_transfer": 1,
}  # fmt: skip


class Week:
    """The scenario's bastion, what it did, its pack read back, and the mail it sent."""

    def __init__(self, b: Bastion, facts: Facts, box: Mailbox, shots: Path) -> None:
        self.b, self.facts, self.box, self.shots = b, facts, box, shots
        self.pack = facts.pack
        self.report: dict[str, Any] = json.loads((facts.pack / "report.json").read_bytes())
        self.findings = self.report["findings"]

    def of(self, rule: str) -> list[dict[str, Any]]:
        return [f for f in self.findings if f["rule"] == rule]

    def session(self, name: str) -> str:
        return self.facts.sessions[name].id


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory, pg_cluster: PgCluster) -> Iterator[Week]:
    work = tmp_path_factory.mktemp("realistic-week")
    box = Mailbox()
    tls = tls_files(work / "smtp-tls")
    orders, shop = pg_cluster.fresh_orders("week"), make_shop(pg_cluster)
    sshd = Sshd()
    b: Bastion | None = None
    try:
        sshd.start()
        for controller in smtp_server(box, server_context(tls)):
            b = Bastion(work / "bastion", config_text(controller.port, tls.ca_cert),
                        postgres=True)  # fmt: skip
            for name, role in [("alice", "engineer"), ("bob", "engineer"), ("carol", "admin"),
                               ("dave", "engineer")]:  # fmt: skip
                b.add_user(name, role, password=PASSWORD)
            b.add_target("web-1", sshd)
            b.add_pg_target("orders-prod", orders)
            b.add_pg_target("shop", shop)
            b.start()
            facts = Scenario(b, sshd, work).run()
            yield Week(b, facts, box, work)
    finally:
        if b is not None:
            b.stop()
        sshd.close()
        pg_cluster.discard(orders)
        pg_cluster.sql(f'DROP DATABASE IF EXISTS "{shop.database}" WITH (FORCE)')
        for role in ("bastion_shop_masked", "bastion_shop_unmasked"):
            pg_cluster.sql(f'DROP ROLE IF EXISTS "{role}"')
        pg_cluster.drop_role(shop.user)


def test_every_finding_appears_once_in_every_format(week: Week) -> None:
    assert Counter(f["rule"] for f in week.findings) == Counter(EXPECTED), [
        f["title"] for f in week.findings
    ]
    found = findings_by_format(week.pack, week.pack)
    reference = found["json"]
    assert len({ident for ident, _ in reference}) == len(reference) == sum(EXPECTED.values())
    for kind, listed in found.items():
        assert listed == reference, kind  # same ids, same order, same evidence
    html = (week.pack / "report.html").read_text(encoding="utf-8")
    for finding in week.findings:
        assert html.count(f'id="finding-{finding["id"]}"') == 1


def test_the_json_validates_against_its_published_schema(week: Week) -> None:
    schema = published_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(week.report)
    provenance = week.report["provenance"]
    assert provenance["week"] == week.facts.week.label
    assert provenance["verification"]["chain"] == "intact"
    ssh = [r for r in week.report["tables"]["sessions"] if r["door"] == "ssh"]
    assert len(ssh) == 6  # nuke, elsewhere, night, glass, interrupted, dump: each recorded
    assert provenance["verification"]["recordings_checked"] == len(ssh)
    assert provenance["verification"]["recordings_failed"] == []


def evidence(finding: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in finding["evidence"] if e["kind"] == kind]


def test_commands_and_statements_are_evidenced_where_they_ran(week: Week) -> None:
    nuke = week.session("nuke")
    for rule in ("destructive_command", "privilege_escalation"):
        [finding] = week.of(rule)
        [command] = evidence(finding, "command")
        assert (command["text"], command["session"]) == (NUKE, nuke)
        assert command["replay"].startswith(f"bastion replay {nuke} --from ")
        assert finding["subject"] == "alice"
    database = week.session("database")
    statements = {e["text"]: e for f in week.of("destructive_statement")
                  for e in evidence(f, "statement")}  # fmt: skip
    assert set(statements) == {DROP, UPDATE}
    assert {e["session"] for e in statements.values()} == {database}


def test_access_findings_point_at_their_sessions_grants_and_events(week: Week) -> None:
    [glass] = week.of("break_glass")
    assert glass["subject"] == "bob" and glass["severity"] == "high"
    assert [e["ref"] for e in evidence(glass, "grant")] == [str(week.facts.glass_grant)]
    [used] = evidence(glass, "session")
    assert used["ref"] == week.session("glass")
    assert used["replay"] == f"bastion replay {week.session('glass')}"
    [night] = week.of("outside_hours")
    assert [e["ref"] for e in night["evidence"]] == [week.session("night")]
    assert week.facts.sessions["night"].started_at.astimezone(week.facts.week.local_start.tzinfo
                                                              ).hour == 3  # fmt: skip
    dave = week.facts.grants["dave-web"]
    [unused] = week.of("unused_grant")
    assert [e["ref"] for e in unused["evidence"]] == [str(dave)]
    assert unused["action"] == f"Revoke it: bastion revoke {dave}"  # it is still live
    [standing] = week.report["tables"]["access"]
    assert (standing["grant_id"], standing["person"], standing["standing"]) == (dave, "dave", True)
    [cut] = week.of("interrupted_session")
    assert [e["ref"] for e in cut["evidence"]] == [week.session("interrupted")]
    assert week.facts.sessions["interrupted"].state == "interrupted"
    [two] = week.of("many_addresses")
    assert {e["ref"] for e in two["evidence"]} == {week.session("nuke"), week.session("elsewhere")}
    assert local_day(week.facts.sessions["nuke"].started_at) == local_day(
        week.facts.sessions["elsewhere"].started_at)  # fmt: skip
    [locked] = week.of("lockout")
    assert locked["subject"] == "dave" and locked["evidence"][0]["text"].startswith("user.locked")
    [burst] = week.of("failed_login_burst")
    assert burst["subject"] == "dave" and len(burst["evidence"]) >= 5
    [dump] = week.of("large_transfer")
    assert [e["ref"] for e in dump["evidence"]] == [week.session("dump")]
    assert dump["title"] == "alice moved 2 MiB in one session on web-1"
    [late] = week.of("review_unsigned")
    assert [e["ref"] for e in late["evidence"]] == [week.facts.first_week]


def test_the_unmask_is_reported_with_its_consent_and_approver(week: Week) -> None:
    [finding] = week.of("unmask")
    [grant] = evidence(finding, "unmask")
    assert grant["ref"] == str(week.facts.unmask_id)
    assert f"consent {CONSENT}" in grant["text"] and "approved by carol" in grant["text"]
    assert "customers.id=4711" in grant["text"] and "(1 rows in clear)" in grant["text"]
    assert finding["subject"] == "bob"
    [row] = [r for r in week.report["tables"]["consent"] if r["unmask_id"] == week.facts.unmask_id]
    assert (row["consent_ref"], row["approved_by"], row["rows_shown"]) == (CONSENT, "carol", 1)


def test_the_csvs_and_the_evidence_file_hold_the_same_evidence_text(week: Week) -> None:
    text = (week.pack / "evidence.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    with closing(sqlite3.connect(f"file:{week.pack / 'evidence.db'}?mode=ro", uri=True)) as db:
        stored = db.execute("SELECT finding_id, kind, ref, text, session, replay"
                            " FROM evidence ORDER BY id").fetchall()  # fmt: skip
    expected = [(f["id"], e["kind"], e["ref"], e["text"], e["session"], e["replay"])
                for f in week.findings for e in f["evidence"]]  # fmt: skip
    assert stored == expected
    assert [(r["finding_id"], r["kind"], r["ref"], r["text"]) for r in rows] == [
        e[:4] for e in expected]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


def test_the_html_renders_in_chromium_with_the_key_findings(week: Week, browser: Browser) -> None:
    page, requests = open_offline(browser, (week.pack / "report.html").read_bytes())
    try:
        shot = week.shots / "realistic-week.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        body = page.inner_text("body")
        for finding in week.findings:
            assert finding["title"] in body
        assert "bob opened break-glass read access to web-1 (not acknowledged)" in body
        assert "dave was locked out after failed logins" in body
        assert NUKE in body and DROP in body and f"bastion replay {week.session('nuke')}" in body
        night = week.facts.sessions["night"].started_at.astimezone(ZONE)
        shown = night.strftime("%Y-%m-%d 03:00 %Z")  # CET, or CEST in summer
        assert shown in body  # the reviewer reads the night in local time
        assert page.locator("script").count() == 0
    finally:
        page.context.close()
    assert requests == []


def test_the_mail_arrives_over_starttls_with_the_review_inline_and_attached(week: Week) -> None:
    label = week.facts.week.label
    mails = [email.message_from_bytes(e.original_content or b"", policy=email.policy.default)
             for e in week.box.received]  # fmt: skip
    ours = [m for m in mails if label in str(m["Subject"])]
    assert len(ours) == 1 and all(week.box.tls)
    msg = ours[0]
    assert isinstance(msg, EmailMessage)
    subject = str(msg["Subject"])
    assert f"{len(week.findings)} findings" in subject
    assert not any(name in subject for name in ("alice", "bob", "carol", "dave"))  # counts only
    html = msg.get_body(("html",))
    assert html is not None
    assert html.get_payload(decode=True) == (week.pack / "report.html").read_bytes()
    attached = {p.get_filename(): p.get_payload(decode=True) for p in msg.iter_attachments()}
    csvs = {p.name: p.read_bytes() for p in week.pack.glob("*.csv")}
    assert attached == {f"access-review-{label}.json": (week.pack / "report.json").read_bytes(),
                        **csvs}  # fmt: skip


def test_the_request_and_its_approval_are_in_the_changes(week: Week) -> None:
    changes = [
        (c["kind"], c["actor"], c["person"], c["target"], c["reason"])
        for c in week.report["tables"]["changes"]
        if c["kind"].startswith("request.")
    ]
    assert changes == [("request.created", "bob", "bob", "orders-prod", ASKED),
                       ("request.approved", "carol", "bob", "orders-prod", None)]  # fmt: skip
    people = {p["person"]: p for p in week.report["tables"]["people"]}
    assert people["alice"]["hours"] > 0.4  # the interrupted session was open 25 minutes
    assert set(people) == {"alice", "bob"}  # dave never got in; carol only approved


def test_report_verify_passes_on_the_packs(week: Week) -> None:
    """This week's pack, and the store's first week's (built by serve on its restart, with
    no event before its start; verified by the scenario as soon as serve built it)."""
    pack = week.b.config.paths.reports / week.facts.week.label
    config = week.b.home / "bastion.toml"
    result = assert_ok(run_bastion("--config", str(config), "report", "verify", str(pack),
                                   cwd=week.b.home))  # fmt: skip
    assert "intact" in result.stdout
    assert "intact" in week.facts.first_verified
