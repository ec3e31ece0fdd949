"""Delivering a week's review: the mail (SMTP, STARTTLS always, certificate checked), the webhook.

The mail carries the HTML inline (with a short text/plain alternative) and the JSON and the
CSVs attached, byte for byte (base64). It is composed once, when the pack is built, and
spooled beside the packs (paths.reports/outbox/WEEK.eml, 0600) with its SHA-256 in the
store, so a retry after a restart sends exactly what was built, and a spool someone edited
is refused rather than sent.

Why the standard library's smtplib, run in a thread (asyncio.to_thread), and not aiosmtplib:
one message a week does not need an async client, and smtplib is maintained with Python
itself, verifies the server through the same `ssl` context as everything else here, and adds
no dependency to the bastion's runtime. The thread keeps the event loop free meanwhile.

Fail closed: a server that does not offer STARTTLS, or whose certificate does not verify for
smtp_host (against smtp_ca when set, else the system's CAs), gets nothing, not even the login.
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import hashlib
import os
import re
import smtplib
import ssl
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from bastion.audit.outbox import REPORT_READY, Notice
from bastion.config import Config
from bastion.privatefiles import NotPrivate, read_private
from bastion.reports.week import Week

SMTP_TIMEOUT = 60.0  # seconds for each step of the conversation with the SMTP server
MAIL_BUDGET = 15 * 2**20  # bytes of attachments; base64 makes it ~20 MiB, under most limits
SPOOL = "outbox"
_LABEL = re.compile(
    r"\d{4}-W\d{2}"
)  # paths.reports/outbox/WEEK.eml: messages built, not yet accepted


class BuiltReport(Protocol):
    """A week's review as written to disk: what delivery needs of the builder's result."""

    @property
    def week(self) -> str: ...  # the ISO label, e.g. "2026-W47"

    @property
    def directory(self) -> Path: ...  # the signed pack, paths.reports/<week>/

    @property
    def html(self) -> bytes: ...

    @property
    def json(self) -> bytes: ...

    @property
    def csvs(self) -> Mapping[str, bytes]: ...  # "sessions.csv" (or "sessions") -> bytes

    @property
    def manifest_sha256(self) -> str: ...  # SHA-256 of the signed manifest

    @property
    def summary_line(self) -> str: ...  # one line: "5 people, 40 sessions, 3 high findings"


class ReportBuilder(Protocol):
    """Builds, signs and writes one week's pack; called in a worker thread. May return an
    awaitable instead (then awaited on the event loop)."""

    def __call__(self, week: Week) -> BuiltReport | Awaitable[BuiltReport]: ...


class MailError(Exception):
    """A delivery that did not happen, in one line without secrets. `final`: retrying
    cannot help (the spool was changed or lost); `severity` of its audit event."""

    def __init__(self, message: str, severity: str = "warning", final: bool = False) -> None:
        super().__init__(message)
        self.severity = severity
        self.final = final


@dataclass(frozen=True)
class SmtpSettings:
    """[reports] mail settings, files resolved against the config file's directory."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str
    password_file: Path | None
    ca: Path | None
    timeout: float = SMTP_TIMEOUT

    @classmethod
    def of(cls, config: Config) -> SmtpSettings:
        policy, base = config.reports, config.path.parent
        password = base / policy.smtp_password_file if policy.smtp_password_file else None
        ca = base / policy.smtp_ca if policy.smtp_ca else None
        return cls(policy.smtp_host, policy.smtp_port, policy.smtp_from, policy.recipients,
                   policy.smtp_user, password, ca)  # fmt: skip

    def missing(self) -> str:
        """Why mail cannot be sent at all ('' when it can be tried)."""
        if not self.recipients:
            return "no [reports] recipients"
        if not self.host:
            return "no [reports] smtp_host"
        if self.user and self.password_file is None:
            return "[reports] smtp_user is set without smtp_password_file"
        return ""


def one_line(text: str, limit: int = 300) -> str:
    """Text squeezed onto one line (no CR/LF can reach a header, a log or an event)."""
    return " ".join(text.split())[:limit]


def address(text: str, key: str) -> str:
    """One plain address (user@domain), or ValueError naming the setting."""
    try:
        parsed = Address(addr_spec=text.strip())
    except (ValueError, IndexError) as exc:
        raise ValueError(f"[reports] {key}: {text!r} is not an email address ({exc})") from None
    if not parsed.username or not parsed.domain or one_line(text) != text.strip():
        raise ValueError(f"[reports] {key}: {text!r} is not an email address")
    return parsed.addr_spec


def _attachment_name(name: str, suffix: str) -> str:
    """A safe attachment file name: letters, digits, dot, dash and underscore only."""
    base = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    base = base.lstrip(".") or "section"
    return base if base.endswith(suffix) else base + suffix


def compose(
    built: BuiltReport, settings: SmtpSettings, now: datetime, budget: int = MAIL_BUDGET
) -> EmailMessage:
    """The review as one message: text and HTML alternatives, then the JSON and the CSVs,
    each attached while the attachments stay within `budget` bytes; the text part names
    the files left out (they are in the pack)."""
    sender = address(settings.sender, "smtp_from")
    recipients = [address(r, "recipients") for r in settings.recipients]
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = one_line(f"Weekly access review {built.week}: {built.summary_line}", 200)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid(f"review.{built.week}", sender.split("@")[1])
    msg["X-Bastion-Manifest-SHA256"] = one_line(built.manifest_sha256, 64)
    files = [(f"access-review-{built.week}.json", "application", "json", built.json)]
    files += [(_attachment_name(name, ".csv"), "text", "csv", data)
              for name, data in sorted(built.csvs.items())]  # fmt: skip
    attached, left_out, used = [], [], 0
    for file in files:
        if used + len(file[3]) <= budget:
            attached.append(file)
            used += len(file[3])
        else:
            left_out.append(f"{file[0]} ({len(file[3]) / 2**20:.1f} MiB)")
    msg.set_content(_text(built, left_out))
    msg.add_alternative(built.html, "text", "html", params={"charset": "utf-8"})
    for name, maintype, subtype, data in attached:
        msg.add_attachment(data, maintype, subtype, filename=name)
    return msg


def _text(built: BuiltReport, left_out: list[str]) -> str:
    """The plain-text alternative: what this is, where the pack is, how to check it."""
    text = (
        f"Weekly access review {built.week}\n\n{one_line(built.summary_line)}\n\n"
        "The review is this mail's HTML part; its JSON and one CSV per section are attached.\n"
        f"The signed pack is on the bastion in {built.directory}; its manifest's SHA-256 is\n"
        f"{built.manifest_sha256}\n"
        f"Check the pack with: bastion report verify {built.directory}\n"
    )
    if left_out:
        text += "\nToo large to attach (find them in the pack): " + ", ".join(left_out) + "\n"
    return text


def ready_notice(built: BuiltReport) -> Notice:
    """The webhook message: the week, its summary line and the manifest's hash; never any of
    the report's content (people, targets, commands stay in the pack and the mail)."""
    summary = one_line(built.summary_line)
    body: dict[str, object] = {
        "text": f"bastion: the weekly access review {built.week} is ready: {summary}"
        f" (manifest SHA-256 {built.manifest_sha256})",
        "event": REPORT_READY,
        "severity": "notice",
        "week": built.week,
        "summary": summary,
        "manifest_sha256": built.manifest_sha256,
    }
    return Notice(REPORT_READY, "notice", body)


# -- the spool ----------------------------------------------------------------------------


def spool_path(reports: Path, week: str) -> Path:
    """Where a week's message waits; the label is checked, as it may come from the store."""
    if not _LABEL.fullmatch(week):
        raise MailError(f"{week!r} is not a review week's label; not sent", "high", final=True)
    return reports / SPOOL / f"{week}.eml"


def spool(path: Path, data: bytes) -> str:
    """Write the message for later tries (0600, replaced whole); returns its SHA-256."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, path)
    return hashlib.sha256(data).hexdigest()


def unspool(path: Path, sha256: str | None) -> bytes:
    """The spooled message, only if it is exactly what was built (else MailError, final)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MailError(f"the spooled message {path} cannot be read ({exc.strerror});"
                        " not sent", "high", final=True) from None  # fmt: skip
    if sha256 is None or hashlib.sha256(data).hexdigest() != sha256:
        raise MailError(f"the spooled message {path} is not the one built for this week;"
                        " not sent", "high", final=True)  # fmt: skip
    return data


# -- SMTP -----------------------------------------------------------------------------------


def read_password(path: Path) -> str:
    """The SMTP password from its file (first line), refused unless only its owner can
    read it; errors name the file, never its content."""
    try:
        data = read_private(path, 4096, follow=False)
    except NotPrivate:
        raise MailError(f"[reports] smtp_password_file {path}: must be a file only its"
                        f" owner can read (chmod 600 {path})", "high") from None  # fmt: skip
    except OSError as exc:
        raise MailError(
            f"[reports] smtp_password_file {path}: cannot open ({exc.strerror})"
        ) from None
    lines = data.decode("utf-8", "replace").splitlines()
    if not lines or not lines[0]:
        raise MailError(f"[reports] smtp_password_file {path} is empty")
    return lines[0]


def _secret_forms(user: str, password: str | None) -> list[str]:
    """The password as it may come back in a server's reply: plain, and as AUTH PLAIN and
    AUTH LOGIN carry it (base64)."""
    if not password:
        return []
    plain = f"\0{user}\0{password}".encode()
    return [password, base64.b64encode(password.encode()).decode(),
            base64.b64encode(plain).decode()]  # fmt: skip


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<secret>")
    return one_line(text)


def send_mail(settings: SmtpSettings, data: bytes) -> list[str]:
    """Send one message (blocking: run it in a thread); returns the recipients the server
    refused while accepting others. MailError, without secrets, when nothing was sent; final
    when the server's answer was permanent (5xx: retrying would only repeat it)."""
    if settings.missing():
        raise MailError(settings.missing())
    password = read_password(settings.password_file) if settings.password_file else None
    secrets = _secret_forms(settings.user, password)
    context = _tls_context(settings.ca)
    try:
        return _converse(settings, context, data, password)
    except MailError:
        raise
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or exc.reason or "verification failed"
        raise MailError(f"the SMTP server's certificate is not trusted ({why}): not sent",
                        "high") from None  # fmt: skip
    except ssl.SSLError as exc:
        raise MailError(f"TLS with the SMTP server failed ({exc.reason}): not sent",
                        "high") from None  # fmt: skip
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise MailError(f"the SMTP server refused every recipient ({sorted(set(codes))})",
                        final=all(code >= 500 for code in codes)) from None  # fmt: skip
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) \
            else str(exc.smtp_error)  # fmt: skip
        what = (f"refused the login as {settings.user}"
                if isinstance(exc, smtplib.SMTPAuthenticationError) else "answered")  # fmt: skip
        raise MailError(scrub(f"the SMTP server {what}: {exc.smtp_code} {reply}", secrets),
                        final=exc.smtp_code >= 500) from None  # fmt: skip
    except (smtplib.SMTPException, OSError) as exc:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise MailError(scrub(f"SMTP {settings.host}:{settings.port}: {text}", secrets)) from None


def _tls_context(ca: Path | None) -> ssl.SSLContext:
    """Certificates verified, host name checked, TLS 1.2 at least; against smtp_ca if set."""
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise MailError(f"[reports] smtp_ca {ca}: cannot be read as PEM certificates ({exc})",
                        "high") from None  # fmt: skip
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _converse(
    settings: SmtpSettings, context: ssl.SSLContext, data: bytes, password: str | None
) -> list[str]:
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise MailError(f"the SMTP server {settings.host}:{settings.port} does not offer"
                            " STARTTLS: refusing to send the review in clear", "high")  # fmt: skip
        smtp.starttls(context=context)
        smtp.ehlo()
        limit = smtp.esmtp_features.get("size", "")
        if limit.isdigit() and 0 < int(limit) < len(data):
            raise MailError(f"the review's mail is {len(data)} bytes, over the SMTP server's"
                            f" limit of {limit}: not sent", final=True)  # fmt: skip
        if password is not None:
            smtp.login(settings.user, password)
        refused = smtp.sendmail(settings.sender, list(settings.recipients), data)
    return sorted(refused)
