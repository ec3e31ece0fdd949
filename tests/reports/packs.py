"""For the delivery tests: a builder that writes real packs, a local SMTP server, a bastion home."""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bastion.pki import TlsFiles, make_tls
from bastion.reports.schedule import due_at, parse_build_at
from bastion.reports.week import Week, week_of, zone
from tests.harness import Bastion
from tests.realssh import free_port

PASSWORD = "hunter2-Sm7p!x"  # the SMTP password the tests' server accepts
HTML = (
    "<html><body><h1>Access review</h1><p>caf\u00e9 \u2014 alice reached web-1</p></body></html>\n"
)
CSVS = {
    "sessions.csv": b"id,person,target\r\ns-1,alice,web-1\r\ns-2,b\xc3\xb6b,db-1\r\n",
    "access.csv": b"grant_id,person\r\n7,alice\r\n",
}


@dataclass(frozen=True)
class Pack:
    """What the lead's builder returns, as far as delivery reads it."""

    week: str
    directory: Path
    html: bytes
    json: bytes
    csvs: dict[str, bytes]
    manifest_sha256: str
    summary_line: str


@dataclass
class Builder:
    """Writes a small but real pack under paths.reports/<week>/ and signs nothing (the
    lead's pack module does); records when it was called, and can be told to fail."""

    home: Bastion
    failures: int = 0
    summary: str = "3 people, 12 sessions, 1 high finding"
    calls: list[tuple[str, datetime]] = field(default_factory=list)

    def __call__(self, week: Week) -> Pack:
        self.calls.append((week.label, self.home.clock.now()))
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the store is busy")
        directory = self.home.config.paths.reports / week.label
        directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"week": week.label, "findings": [{"rule": "break_glass"}]}).encode()
        files = {"report.html": HTML.encode(), "report.json": data, **CSVS}
        for name, content in files.items():
            (directory / name).write_bytes(content)
        manifest = json.dumps(
            {name: hashlib.sha256(content).hexdigest() for name, content in files.items()},
            sort_keys=True,
        ).encode()
        (directory / "manifest.json").write_bytes(manifest)
        return Pack(week.label, directory, HTML.encode(), data, dict(CSVS),
                    hashlib.sha256(manifest).hexdigest(), self.summary)  # fmt: skip


@dataclass
class Mailbox:
    """The test's SMTP server: what it was sent, whether over TLS, and who logged in."""

    answer: str = "250 OK"  # the reply to DATA
    echo_password: bool = False  # a hostile server that quotes the login back
    received: list[Envelope] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    data_calls: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        if self.answer.startswith("250"):
            self.received.append(envelope)
            self.tls.append(session.ssl is not None)
        return self.answer

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append(login)
        if self.echo_password:
            return AuthResult(success=False, handled=False,
                              message=f"535 5.7.8 {login}:{password} is wrong")  # fmt: skip
        return AuthResult(success=login == "reports" and password == PASSWORD, handled=False)


def tls_files(directory: Path) -> TlsFiles:
    """A private CA and a certificate it signs for localhost and 127.0.0.1."""
    return make_tls(directory)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.server_cert, files.server_key)
    return context


def smtp_server(box: Mailbox, tls: ssl.SSLContext | None, **options: Any) -> Iterator[Controller]:
    """An aiosmtpd server on a free loopback port: STARTTLS (required) when given a TLS
    context, plain SMTP without it; logins only over TLS."""
    controller = Controller(
        box, hostname="127.0.0.1", port=free_port(), tls_context=tls,
        require_starttls=tls is not None, authenticator=box.authenticate, auth_require_tls=True,
        **options,
    )  # fmt: skip
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def reports_config(
    port: int,
    ca: Path | None,
    *,
    user: bool = True,
    extra: str = "",
    recipients: str = '["security@example.test", "auditor@example.test"]',
) -> str:
    """[reports] for a bastion home whose mail goes to the test's server."""
    lines = [
        "[reports]",
        'timezone = "Europe/Amsterdam"',
        'build_at = "06:00"',
        f"recipients = {recipients}",
        'smtp_host = "127.0.0.1"',
        f"smtp_port = {port}",
        'smtp_from = "bastion@example.test"',
    ]
    if ca is not None:
        lines.append(f'smtp_ca = "{ca}"')
    if user:
        lines += ['smtp_user = "reports"', 'smtp_password_file = "smtp.password"']
    return "\n" + "\n".join(lines) + "\n" + extra


def home(path: Path, config: str) -> Bastion:
    """A bastion home with the config and, beside it, the SMTP password (0600)."""
    path.mkdir(parents=True, exist_ok=True)
    secret = path / "smtp.password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    secret.chmod(0o600)
    return Bastion(path, config)


def events(b: Bastion, kind: str) -> list[dict[str, Any]]:
    return [e.as_dict() for e in b.store.events() if e.kind == kind]


def first_week(b: Bastion) -> Week:
    """The week the store was born in; the clock is moved to just after its review is due."""
    born = b.store.store_born_at()
    assert born is not None
    policy = b.config.reports
    week = week_of(born.astimezone(zone(policy.timezone)).date(), policy.timezone)
    b.clock.set(due_at(week, parse_build_at(policy.build_at)) + timedelta(minutes=1))
    return week
