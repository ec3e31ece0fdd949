"""The weekly review by mail, to a real local SMTP server (aiosmtpd) over STARTTLS: it arrives
whole; a server without STARTTLS or with an untrusted certificate gets nothing; failures are
retried, then given up, each one audited; the SMTP password is never in a log or an event."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from structlog.testing import capture_logs

from bastion.pki import TlsFiles
from bastion.reports.deliver import MailError, SmtpSettings, compose, spool_path
from bastion.reports.schedule import ReportScheduler
from tests.harness import Bastion
from tests.reports.packs import (
    CSVS,
    HTML,
    PASSWORD,
    Builder,
    Mailbox,
    events,
    first_week,
    home,
    reports_config,
    server_context,
    smtp_server,
    tls_files,
)


@pytest.fixture
def box() -> Mailbox:
    return Mailbox()


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    """The CA the bastion trusts (smtp_ca) and the server's certificate it signed."""
    return tls_files(tmp_path / "smtp-tls")


@pytest.fixture
def starttls(box: Mailbox, tls: TlsFiles) -> Iterator[Controller]:
    yield from smtp_server(box, server_context(tls))


@pytest.fixture
def bastions(tmp_path: Path) -> Iterator[list[Bastion]]:
    made: list[Bastion] = []
    yield made
    for b in made:
        b.release()


def make(
    bastions: list[Bastion], tmp_path: Path, port: int, ca: Path | None, extra: str = ""
) -> Bastion:
    b = home(tmp_path / f"bastion{len(bastions)}", reports_config(port, ca, extra=extra))
    bastions.append(b)
    return b


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


async def test_the_review_arrives_over_starttls_with_its_attachments_intact(
    box: Mailbox, starttls: Controller, tls: TlsFiles, bastions: list[Bastion], tmp_path: Path
) -> None:
    b = make(bastions, tmp_path, starttls.port, tls.ca_cert)
    builder = Builder(b)
    week = first_week(b)
    scheduler = ReportScheduler(b.core, builder)
    await scheduler.tick()
    assert [label for label, _ in builder.calls] == [week.label]
    [envelope] = box.received
    assert box.tls == [True] and box.logins == ["reports"]
    assert envelope.mail_from == "bastion@example.test"
    assert envelope.rcpt_tos == ["security@example.test", "auditor@example.test"]
    assert isinstance(envelope.original_content, bytes)
    msg = parse(envelope.original_content)
    assert (
        msg["Subject"]
        == f"Weekly access review {week.label}: 3 people, 12 sessions, 1 high finding"
    )
    pack = builder.home.config.paths.reports / week.label
    manifest = hashlib.sha256((pack / "manifest.json").read_bytes()).hexdigest()
    assert str(msg["X-Bastion-Manifest-SHA256"]).strip() == manifest
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert manifest in text.get_content() and str(pack) in text.get_content()
    assert html.get_payload(decode=True) == HTML.encode()  # inline, byte for byte
    attached = {p.get_filename(): p for p in msg.iter_attachments()}
    assert set(attached) == {f"access-review-{week.label}.json", *CSVS}
    assert attached[f"access-review-{week.label}.json"].get_content_type() == "application/json"
    assert (
        attached[f"access-review-{week.label}.json"].get_payload(decode=True)
        == (pack / "report.json").read_bytes()
    )
    for name, data in CSVS.items():
        assert attached[name].get_content_type() == "text/csv"
        assert attached[name].get_payload(decode=True) == data  # CRLF and UTF-8 intact
    [run] = [r for r in b.store.report_runs(week.label) if r.channel == "mail"]
    assert run.state == "done" and run.attempts == 1 and run.delivered_at == b.clock.now()
    [delivered] = events(b, "report.delivered")
    assert delivered["detail"]["to"] == ["security@example.test", "auditor@example.test"]
    assert delivered["detail"]["manifest_sha256"] == manifest
    assert delivered["subject"] == week.label
    assert not spool_path(b.config.paths.reports, week.label).exists()
    await scheduler.tick()  # delivered once: a second look sends nothing more
    assert len(box.received) == 1 and len(builder.calls) == 1


async def test_a_server_that_does_not_offer_starttls_gets_nothing(
    box: Mailbox, bastions: list[Bastion], tmp_path: Path, tls: TlsFiles
) -> None:
    for plain in smtp_server(box, None):
        b = make(bastions, tmp_path, plain.port, tls.ca_cert)
        week = first_week(b)
        await ReportScheduler(b.core, Builder(b)).tick()
    assert box.data_calls == 0 and box.logins == []
    [failed] = events(b, "report.delivery_failed")
    assert failed["severity"] == "high" and failed["detail"]["channel"] == "mail"
    assert "does not offer STARTTLS" in failed["detail"]["error"]
    assert b.store.report_run(week.label, "mail").state == "pending"  # type: ignore[union-attr]


async def test_a_server_whose_certificate_is_not_trusted_gets_nothing(
    box: Mailbox, bastions: list[Bastion], tmp_path: Path, tls: TlsFiles
) -> None:
    """The server's certificate is signed by another CA than smtp_ca: no login, no mail."""
    other = tls_files(tmp_path / "impostor")
    for impostor in smtp_server(box, server_context(other)):
        b = make(bastions, tmp_path, impostor.port, tls.ca_cert)
        first_week(b)
        await ReportScheduler(b.core, Builder(b)).tick()
        c = make(bastions, tmp_path, impostor.port, None)  # the system's CAs: not trusted either
        first_week(c)
        await ReportScheduler(c.core, Builder(c)).tick()
    assert box.data_calls == 0 and box.logins == []
    for home_ in (b, c):
        [failed] = events(home_, "report.delivery_failed")
        assert failed["severity"] == "high"
        assert "certificate is not trusted" in failed["detail"]["error"]


async def test_a_failing_server_is_retried_with_backoff_then_given_up(
    box: Mailbox, starttls: Controller, tls: TlsFiles, bastions: list[Bastion], tmp_path: Path
) -> None:
    box.answer = "451 4.3.0 mailbox busy, try later"
    extra = '\n[notify]\nretries = 2\nretry_after = "2s"\n'
    b = make(bastions, tmp_path, starttls.port, tls.ca_cert, extra=extra)
    week = first_week(b)
    scheduler = ReportScheduler(b.core, Builder(b))
    await scheduler.tick()
    assert box.data_calls == 1
    assert await scheduler.deliver_due() == 0 and box.data_calls == 1  # not due yet
    b.clock.advance(timedelta(seconds=2))
    assert await scheduler.deliver_due() == 0 and box.data_calls == 2
    b.clock.advance(timedelta(seconds=3))
    assert await scheduler.deliver_due() == 0 and box.data_calls == 2  # the second wait is 4 s
    b.clock.advance(timedelta(seconds=1))
    assert await scheduler.deliver_due() == 0 and box.data_calls == 3
    b.clock.advance(timedelta(days=1))
    assert await scheduler.deliver_due() == 0 and box.data_calls == 3  # given up
    failures = events(b, "report.delivery_failed")
    assert [f["detail"]["attempt"] for f in failures] == [1, 2, 3]
    assert [f["detail"]["gives_up"] for f in failures] == [False, False, True]
    assert failures[-1]["severity"] == "high"
    assert all("451" in f["detail"]["error"] for f in failures)
    run = b.store.report_run(week.label, "mail")
    assert run is not None and run.state == "failed" and run.attempts == 3
    assert run.last_error is not None and "mailbox busy" in run.last_error


async def test_the_smtp_password_is_never_in_a_log_or_an_event(
    box: Mailbox, starttls: Controller, tls: TlsFiles, bastions: list[Bastion], tmp_path: Path
) -> None:
    """A hostile (or chatty) server quotes the login back in its refusal."""
    box.echo_password = True
    b = make(bastions, tmp_path, starttls.port, tls.ca_cert)
    week = first_week(b)
    with capture_logs() as logs:
        await ReportScheduler(b.core, Builder(b)).tick()
    assert set(box.logins) == {"reports"} and box.data_calls == 0  # PLAIN, then LOGIN
    [failed] = events(b, "report.delivery_failed")
    assert "refused the login as reports" in failed["detail"]["error"]
    assert "<secret>" in failed["detail"]["error"]
    seen = json.dumps([e.as_dict() for e in b.store.events()]) + repr(logs)
    seen += repr(b.store.report_runs(week.label)) + repr(b.store.notifications())
    for form in (PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
                 base64.b64encode(f"\0reports\0{PASSWORD}".encode()).decode()):  # fmt: skip
        assert form not in seen


async def test_a_password_file_others_can_read_is_refused_before_connecting(
    box: Mailbox, starttls: Controller, tls: TlsFiles, bastions: list[Bastion], tmp_path: Path
) -> None:
    b = make(bastions, tmp_path, starttls.port, tls.ca_cert)
    (b.home / "smtp.password").chmod(0o644)
    first_week(b)
    await ReportScheduler(b.core, Builder(b)).tick()
    assert box.logins == [] and box.data_calls == 0
    [failed] = events(b, "report.delivery_failed")
    assert "chmod 600" in failed["detail"]["error"] and PASSWORD not in json.dumps(failed)


async def test_a_spooled_mail_changed_after_the_build_is_not_sent(
    box: Mailbox, starttls: Controller, tls: TlsFiles, bastions: list[Bastion], tmp_path: Path
) -> None:
    """Someone with the files swaps the waiting message: it is refused, not retried."""
    box.answer = "451 4.3.0 try later"
    b = make(bastions, tmp_path, starttls.port, tls.ca_cert)
    week = first_week(b)
    scheduler = ReportScheduler(b.core, Builder(b))
    await scheduler.tick()
    spooled = spool_path(b.config.paths.reports, week.label)
    spooled.write_bytes(spooled.read_bytes().replace(b"3 people", b"0 people"))
    box.answer = "250 OK"
    b.clock.advance(timedelta(minutes=5))
    assert await scheduler.deliver_due() == 0
    assert box.received == []
    failed = events(b, "report.delivery_failed")[-1]
    assert failed["severity"] == "high" and failed["detail"]["gives_up"] is True
    assert "not the one built for this week" in failed["detail"]["error"]


def test_settings_resolve_files_beside_the_config(tmp_path: Path) -> None:
    b = home(tmp_path / "b", reports_config(2525, Path("tls/ca.pem")))
    try:
        settings = SmtpSettings.of(b.config)
        assert settings.password_file == b.home / "smtp.password"
        assert settings.ca == b.home / "tls/ca.pem"
        assert settings.missing() == ""
    finally:
        b.release()


async def test_a_permanent_refusal_is_given_up_at_once(
    box: Mailbox, starttls: Controller, tls: TlsFiles, bastions: list[Bastion], tmp_path: Path
) -> None:
    box.answer = "554 5.7.1 message rejected"
    b = make(bastions, tmp_path, starttls.port, tls.ca_cert)
    week = first_week(b)
    scheduler = ReportScheduler(b.core, Builder(b))
    await scheduler.tick()
    b.clock.advance(timedelta(hours=1))
    await scheduler.deliver_due()
    assert box.data_calls == 1
    [failed] = events(b, "report.delivery_failed")
    assert failed["detail"]["gives_up"] is True and "554" in failed["detail"]["error"]
    assert b.store.report_run(week.label, "mail").state == "failed"  # type: ignore[union-attr]


async def test_a_mail_over_the_servers_size_limit_is_not_sent(
    box: Mailbox, tls: TlsFiles, bastions: list[Bastion], tmp_path: Path
) -> None:
    for small in smtp_server(box, server_context(tls), data_size_limit=2000):
        b = make(bastions, tmp_path, small.port, tls.ca_cert)
        first_week(b)
        await ReportScheduler(b.core, Builder(b)).tick()
    assert box.data_calls == 0 and box.logins == []
    [failed] = events(b, "report.delivery_failed")
    assert "over the SMTP server's limit of 2000" in failed["detail"]["error"]
    assert failed["detail"]["gives_up"] is True


async def test_a_line_break_in_the_summary_cannot_add_a_header_or_a_recipient(
    box: Mailbox, starttls: Controller, tls: TlsFiles, bastions: list[Bastion], tmp_path: Path
) -> None:
    b = make(bastions, tmp_path, starttls.port, tls.ca_cert)
    first_week(b)
    builder = Builder(b, summary="ok\r\nBcc: evil@example.test\r\n\r\n<script>")
    await ReportScheduler(b.core, builder).tick()
    [envelope] = box.received
    assert envelope.rcpt_tos == ["security@example.test", "auditor@example.test"]
    assert isinstance(envelope.original_content, bytes)
    msg = parse(envelope.original_content)
    assert msg["Bcc"] is None
    assert str(msg["Subject"]).endswith("ok Bcc: evil@example.test <script>")


async def test_a_recipient_that_is_not_one_plain_address_gets_nothing(
    box: Mailbox, starttls: Controller, tls: TlsFiles, bastions: list[Bastion], tmp_path: Path
) -> None:
    """The config refuses such a recipient at load; the mail checks again as it is made."""
    b = make(bastions, tmp_path, starttls.port, tls.ca_cert)
    week = first_week(b)
    scheduler = ReportScheduler(b.core, Builder(b))
    injected = "security@example.test\r\nBcc: evil@example.test"
    scheduler.smtp = replace(scheduler.smtp, recipients=(injected,))
    await scheduler.tick()
    assert box.data_calls == 0 and box.logins == []
    [failed] = events(b, "report.delivery_failed")
    assert "is not an email address" in failed["detail"]["error"]
    assert b.store.report_run(week.label, "build").state == "done"  # type: ignore[union-attr]
    assert b.store.report_run(week.label, "mail").state == "failed"  # type: ignore[union-attr]


def test_attachments_over_the_budget_are_named_in_the_text_not_attached(tmp_path: Path) -> None:
    b = home(tmp_path / "b", reports_config(2525, None))
    try:
        week = first_week(b)
        pack = Builder(b)(week)
        budget = len(pack.json) + 10
        msg = compose(pack, SmtpSettings.of(b.config), b.clock.now(), budget=budget)
        names = [p.get_filename() for p in msg.iter_attachments()]
        assert names == [f"access-review-{week.label}.json"]
        text = msg.get_body(("plain",))
        assert text is not None
        assert "Too large to attach" in text.get_content()
        assert "sessions.csv" in text.get_content() and "access.csv" in text.get_content()
    finally:
        b.release()


@pytest.mark.parametrize("label", ["../../etc/passwd", "2026-W47/../../x", "2026-W4", ""])
def test_a_spool_path_is_only_ever_a_week_label(tmp_path: Path, label: str) -> None:
    """A week read back from the store is checked before it names a file to send."""
    with pytest.raises(MailError, match="not a review week's label"):
        spool_path(tmp_path, label)
    assert spool_path(tmp_path, "2026-W47") == tmp_path / "outbox" / "2026-W47.eml"
