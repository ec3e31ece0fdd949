"""Every key bastion.toml accepts, declared as data: type, default, limits and a line of help."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal, get_args

from bastion.access.hours import Hours
from bastion.masking.policy import KEYS as MASKING_KEYS

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

Kind = Literal["bool", "int", "str", "choice", "choices", "duration", "path", "strings"]
Value = bool | int | str | timedelta | Path | Hours | tuple[str, ...] | None


@dataclass(frozen=True)
class Setting:
    """One key the loader accepts: its type, default (as written in TOML), limits and help."""

    key: str
    kind: Kind
    default: bool | int | str | tuple[str, ...] | None
    help: str
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    allow_empty: bool = False


def _listener(name: str, port: int, what: str) -> tuple[Setting, ...]:
    key = f"listeners.{name}"
    return (
        Setting(f"{key}.enabled", "bool", True, f"Accept {what} connections."),
        Setting(f"{key}.address", "str", "127.0.0.1", f"Address the {what} listener binds."),
        Setting(f"{key}.port", "int", port, f"TCP port for {what}.", low=1, high=65535),
    )


def _preauth(door: str) -> tuple[Setting, ...]:
    """The pre-login limits, the same keys for each door."""
    return (
        Setting(f"{door}.login_grace", "duration", "1m", "Time allowed to finish logging in."),
        Setting(f"{door}.max_unauthenticated_per_source", "int", 10,
                "Logins in progress per address.", low=1, high=10000),
        Setting(f"{door}.max_failures_per_source", "int", 20,
                "Failed logins per address per window.", low=1, high=10000),
        Setting(f"{door}.failure_window", "duration", "5m", "Window for counting failed logins."),
        Setting(f"{door}.block_for", "duration", "5m", "How long a failing address is refused."),
        Setting(f"{door}.max_logins_in_progress", "int", 1000,
                "Logins in progress from every address.", low=1, high=100000),
    )  # fmt: skip


SETTINGS: tuple[Setting, ...] = (
    *_listener("ssh", 2222, "SSH"),
    *_listener("postgres", 6432, "PostgreSQL"),
    *_listener("web", 8080, "web console"),
    Setting("paths.store", "path", "bastion.db", "SQLite store with the audit trail."),
    Setting("paths.recordings", "path", "recordings", "Directory for session recordings."),
    Setting("paths.secrets_key", "path", "secrets.key", "Key that seals secrets at rest."),
    Setting("paths.ssh_host_key", "path", "ssh_host_ed25519_key", "SSH host private key."),
    Setting("paths.tls_cert", "path", "tls/server.pem", "TLS certificate chain (PEM)."),
    Setting("paths.tls_key", "path", "tls/server.key", "TLS private key (PEM)."),
    Setting("paths.tls_ca", "path", "tls/bastion-ca.pem", "CA that signed the TLS certificate."),
    Setting("paths.reports", "path", "reports", "Directory of the weekly access reviews."),
    Setting(
        "paths.report_signing_key",
        "path",
        "report_signing.key",
        "Ed25519 key that signs each weekly review pack.",
    ),
    Setting("totp.issuer", "str", "bastion", "Name shown in authenticator apps."),
    Setting("totp.skew_steps", "int", 1, "30 s steps of clock drift allowed.", low=0, high=2),
    Setting("lockout.max_failures", "int", 5, "Failures before locking.", low=1, high=100),
    Setting("lockout.lock_for", "duration", "15m", "How long a lock lasts."),
    *_preauth("ssh"),
    *_preauth("postgres"),
    Setting(
        "postgres.max_message",
        "int",
        64 * 1024 * 1024,
        "Largest message relayed (bytes).",
        low=1024 * 1024,
        high=1024 * 1024 * 1024,
    ),
    Setting(
        "audit.durability",
        "choice",
        "strict",
        "When a statement's row is on disk.",
        choices=("strict", "batched"),
    ),
    Setting("audit.keep_literals", "bool", False, "Keep literal values in the query log."),
    Setting("audit.ticket_valid_for", "duration", "10m", "How long a one-time ticket lasts."),
    Setting("audit.anchors", "strings", (), "Where signed chain heads are sent."),
    Setting("audit.anchor_every", "duration", "1m", "Time between signed chain heads (<= 1m)."),
    Setting("grants.default_max", "duration", "12h", "Longest grant unless a target says."),
    Setting("grants.min_reason_length", "int", 10, "Shortest reason.", low=0, high=1000),
    Setting("requests.pending_for", "duration", "24h", "How long a request waits for approval."),
    Setting("notify.webhook_url", "str", "", "Where notifications are posted.", allow_empty=True),
    Setting("notify.timeout", "duration", "5s", "How long one post may take."),
    Setting("notify.retries", "int", 5, "Retries of a failed post.", low=0, high=20),
    Setting("notify.retry_after", "duration", "2s", "First retry delay; doubles each time."),
    Setting("reports.timezone", "str", "UTC", "Timezone the weekly review's weeks are in."),
    Setting(
        "reports.week_starts",
        "choice",
        "monday",
        "First day of a review week.",
        choices=("monday", "sunday"),
    ),
    Setting(
        "reports.build_at",
        "str",
        "06:00",
        "Local time on a week's first day when last week's review is built.",
    ),
    Setting("reports.recipients", "strings", (), "Who the weekly review is mailed to."),
    Setting("reports.sign_within", "duration", "7d", "Time a review week has to be signed."),
    Setting(
        "reports.working_hours",
        "str",
        "Mon-Fri 07:00-20:00",
        "Hours outside which access is a finding (in reports.timezone).",
    ),
    Setting(
        "reports.large_transfer_mb",
        "int",
        100,
        "A session, or a person's day of copies, moving more MiB than this is a finding.",
        low=1,
        high=10_000_000,
    ),
    Setting(
        "reports.smtp_host", "str", "", "SMTP server the review is sent through.", allow_empty=True
    ),
    Setting("reports.smtp_port", "int", 587, "SMTP port (STARTTLS).", low=1, high=65535),
    Setting("reports.smtp_from", "str", "bastion@localhost", "Sender of the review mail."),
    Setting("reports.smtp_user", "str", "", "SMTP login, if the server asks.", allow_empty=True),
    Setting(
        "reports.smtp_password_file", "str", "", "File holding the SMTP password.", allow_empty=True
    ),
    Setting(
        "reports.smtp_ca",
        "str",
        "",
        "CA that signs the SMTP server's certificate.",
        allow_empty=True,
    ),
    Setting("reports.daily_flags", "bool", True, "Send each day's high findings that day."),
    Setting("reports.flag_every", "duration", "15m", "Time between looks at the day so far."),
    Setting("reports.catch_up_weeks", "int", 8, "Missed weeks and days caught up.", low=1, high=52),
    Setting("sessions.idle_timeout", "duration", "15m", "Time without input that ends a session."),
    Setting("sessions.max_length", "duration", "12h", "Longest a session may last."),
    Setting(
        "web.idle_timeout",
        "duration",
        "30m",
        "Time without a request that signs a web console user out.",
    ),
    Setting(
        "web.session_lifetime",
        "duration",
        "12h",
        "Longest a web console sign-in lasts, however busy.",
    ),
    Setting("logging.format", "choice", "auto", "Log format.", choices=get_args(LogFormat)),
    Setting("logging.level", "choice", "info", "Least severe level.", choices=get_args(LogLevel)),
)
TARGET_SETTINGS: tuple[Setting, ...] = (
    Setting("description", "str", "", "Shown next to the target's name.", allow_empty=True),
    Setting("max_grant", "duration", None, "Longest grant on this target."),
    Setting(
        "tls",
        "choice",
        "off",
        "TLS from the bastion to the target's PostgreSQL.",
        choices=("off", "require", "verify-full"),
    ),
    Setting("tls_ca", "path", None, "CA that signs the target's PostgreSQL certificate."),
    Setting(
        "upstream_auth",
        "choices",
        ("scram-sha-256",),
        "How the bastion may log in to the target's PostgreSQL.",
        choices=("scram-sha-256", "md5", "password", "trust"),
    ),
    Setting("idle_timeout", "duration", None, "Idle time that ends a session on this target."),
    Setting("max_session", "duration", None, "Longest session on this target."),
    Setting("allowed_hours", "str", None, "When sessions may be open, e.g. Mon-Fri 08:00-20:00."),
    Setting("timezone", "str", "UTC", "Timezone of allowed_hours."),
    Setting("approvals", "int", 1, "Approvals a request needs; 0 opens it at once.", low=0, high=5),
    Setting("break_glass", "bool", False, "Engineers may open emergency access themselves."),
    Setting("break_glass_max", "duration", "1h", "Longest break-glass access."),
    Setting("unmask_max", "duration", "4h", "Longest unmask grant on this target."),
    Setting("reusable_ticket_max", "duration", "8h", "Longest a reusable ticket may last."),
    Setting(
        "raw_tunnels",
        "choice",
        "refuse",
        "Whether SSH commands that open raw network tunnels (nc, socat, ssh -W) may run.",
        choices=("refuse", "allow"),
    ),
)


def documented_keys() -> list[str]:
    """Every dotted key the loader accepts; target keys appear as "targets.*.KEY"."""
    masking = [f"targets.*.masking.{key}" for key in MASKING_KEYS]
    return [s.key for s in SETTINGS] + [f"targets.*.{s.key}" for s in TARGET_SETTINGS] + masking
