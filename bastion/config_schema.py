"""Every key bastion.toml accepts, declared as data: type, limits and a line of help."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import MISSING, dataclass, fields, is_dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from bastion.access.hours import Hours
from bastion.durations import format_duration
from bastion.masking.policy import KEYS as MASKING_KEYS

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

Kind = Literal["bool", "int", "str", "choice", "choices", "duration", "path", "strings"]
Value = bool | int | str | timedelta | Path | Hours | tuple[str, ...] | None
Written = bool | int | str | tuple[str, ...] | None


@dataclass(frozen=True)
class Setting:
    """One key the loader accepts: its type, limits and help.

    Its default is not here: it is the default of the settings dataclass field the key fills
    (bastion.config), declared once there where mypy checks its type; see declared_default."""

    key: str
    kind: Kind
    help: str
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    allow_empty: bool = False


def declared_default(cls: type[Any], key: str) -> object:
    """The default a settings dataclass declares for a dotted key, e.g. (Config, "ssh.block_for"):
    the field's own default, or the part of its section's default that it names, or for a
    section declared without a default, its dataclass's defaults. LookupError when there is
    no such field or it has no default."""
    holder: object = cls  # a settings dataclass, or a declared default on the way down
    for part in key.split("."):
        if not is_dataclass(holder):
            raise LookupError(f"{key}: {part!r} is inside a value, not a settings dataclass")
        found = {f.name: f for f in fields(holder)}.get(part)
        if found is None:
            raise LookupError(f"{key}: no field {part!r} in {type(holder).__name__}")
        if not isinstance(holder, type):
            holder = getattr(holder, part)
        elif found.default is not MISSING:
            holder = found.default
        elif found.default_factory is not MISSING:
            holder = found.default_factory()
        else:  # a field with no default: look inside its type
            holder = get_type_hints(holder)[part]
    if not isinstance(holder, type):
        return holder
    try:
        return holder() if is_dataclass(holder) else _no_default(key)
    except TypeError:
        return _no_default(key)


def _no_default(key: str) -> object:
    raise LookupError(f"{key}: declares no default")


def written_defaults(cls: type[Any], settings: Iterable[Setting]) -> dict[str, Written]:
    """Each setting's declared default as bastion.toml would write it, by key."""
    return {s.key: as_written(declared_default(cls, s.key)) for s in settings}


def as_written(value: object) -> Written:
    """A declared default as bastion.toml would write it, so the loader reads it, checks it and
    resolves it (paths against the file's directory) exactly as a written value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple) and all(isinstance(item, str) for item in value):
        return tuple(str(item) for item in value)
    raise TypeError(f"a setting's default must be a TOML value, got {value!r}")


def _listener(name: str, what: str) -> tuple[Setting, ...]:
    key = f"listeners.{name}"
    return (
        Setting(f"{key}.enabled", "bool", f"Accept {what} connections."),
        Setting(f"{key}.address", "str", f"Address the {what} listener binds."),
        Setting(f"{key}.port", "int", f"TCP port for {what}.", low=1, high=65535),
    )


def _preauth(door: str) -> tuple[Setting, ...]:
    """The pre-login limits, the same keys for each door."""
    return (
        Setting(f"{door}.login_grace", "duration", "Time allowed to finish logging in."),
        Setting(f"{door}.max_unauthenticated_per_source", "int",
                "Logins in progress per address.", low=1, high=10000),
        Setting(f"{door}.max_failures_per_source", "int",
                "Failed logins per address per window.", low=1, high=10000),
        Setting(f"{door}.failure_window", "duration", "Window for counting failed logins."),
        Setting(f"{door}.block_for", "duration", "How long a failing address is refused."),
        Setting(f"{door}.max_logins_in_progress", "int",
                "Logins in progress from every address.", low=1, high=100000),
    )  # fmt: skip


SETTINGS: tuple[Setting, ...] = (
    *_listener("ssh", "SSH"),
    *_listener("postgres", "PostgreSQL"),
    *_listener("web", "web console"),
    Setting("listeners.proxy_from", "strings", "Load balancers that send a PROXY header."),
    Setting("paths.store", "path", "SQLite store with the audit trail (without [store] url)."),
    Setting("paths.recordings", "path", "Directory for session recordings."),
    Setting("paths.secrets_key", "path", "Key that seals secrets at rest."),
    Setting("paths.ssh_host_key", "path", "SSH host private key."),
    Setting("paths.tls_cert", "path", "TLS certificate chain (PEM)."),
    Setting("paths.tls_key", "path", "TLS private key (PEM)."),
    Setting("paths.tls_ca", "path", "CA that signed the TLS certificate."),
    Setting("paths.reports", "path", "Directory of the weekly access reviews."),
    Setting(
        "paths.report_signing_key",
        "path",
        "Ed25519 key that signs each weekly review pack.",
    ),
    Setting("totp.issuer", "str", "Name shown in authenticator apps."),
    Setting("totp.skew_steps", "int", "30 s steps of clock drift allowed.", low=0, high=2),
    Setting("lockout.max_failures", "int", "Failures before locking.", low=1, high=100),
    Setting("lockout.lock_for", "duration", "How long a lock lasts."),
    *_preauth("ssh"),
    *_preauth("postgres"),
    Setting(
        "postgres.max_message",
        "int",
        "Largest message relayed (bytes).",
        low=1024 * 1024,
        high=1024 * 1024 * 1024,
    ),
    Setting(
        "postgres.max_prepared",
        "int",
        "Prepared statements (and open portals) one session may hold.",
        low=16,
        high=1_000_000,
    ),
    Setting(
        "postgres.max_sessions",
        "int",
        "Database sessions open through the door at once.",
        low=1,
        high=1_000_000,
    ),
    Setting(
        "postgres.max_sessions_per_user",
        "int",
        "Database sessions one person may have open at once.",
        low=1,
        high=1_000_000,
    ),
    Setting(
        "postgres.cancel_advertise",
        "str",
        "host:port other nodes forward cancel requests to (default: the listener's).",
        allow_empty=True,
    ),
    Setting(
        "audit.durability",
        "choice",
        "When a statement's row is on disk.",
        choices=("strict", "batched"),
    ),
    Setting("audit.keep_literals", "bool", "Keep literal values in the query log."),
    Setting("audit.ticket_valid_for", "duration", "How long a one-time ticket lasts."),
    Setting("audit.anchors", "strings", "Where signed chain heads are sent."),
    Setting("audit.anchor_every", "duration", "Time between signed chain heads (<= 1m)."),
    Setting("grants.default_max", "duration", "Longest grant unless a target says."),
    Setting("grants.min_reason_length", "int", "Shortest reason.", low=0, high=1000),
    Setting("requests.pending_for", "duration", "How long a request waits for approval."),
    Setting("notify.webhook_url", "str", "Where notifications are posted.", allow_empty=True),
    Setting("notify.timeout", "duration", "How long one post may take."),
    Setting("notify.retries", "int", "Retries of a failed post.", low=0, high=20),
    Setting("notify.retry_after", "duration", "First retry delay; doubles each time."),
    Setting("reports.timezone", "str", "Timezone the weekly review's weeks are in."),
    Setting(
        "reports.week_starts",
        "choice",
        "First day of a review week.",
        choices=("monday", "sunday"),
    ),
    Setting(
        "reports.build_at",
        "str",
        "Local time on a week's first day when last week's review is built.",
    ),
    Setting("reports.recipients", "strings", "Who the weekly review is mailed to."),
    Setting("reports.sign_within", "duration", "Time a review week has to be signed."),
    Setting(
        "reports.working_hours",
        "str",
        "Hours outside which access is a finding (in reports.timezone).",
    ),
    Setting(
        "reports.large_transfer_mb",
        "int",
        "A session, or a person's day of copies, moving more MiB than this is a finding.",
        low=1,
        high=10_000_000,
    ),
    Setting(
        "reports.smtp_host", "str", "SMTP server the review is sent through.", allow_empty=True
    ),
    Setting("reports.smtp_port", "int", "SMTP port (STARTTLS).", low=1, high=65535),
    Setting("reports.smtp_from", "str", "Sender of the review mail."),
    Setting("reports.smtp_user", "str", "SMTP login, if the server asks.", allow_empty=True),
    Setting(
        "reports.smtp_password_file", "str", "File holding the SMTP password.", allow_empty=True
    ),
    Setting(
        "reports.smtp_ca",
        "str",
        "CA that signs the SMTP server's certificate.",
        allow_empty=True,
    ),
    Setting("reports.daily_flags", "bool", "Send each day's high findings that day."),
    Setting("reports.flag_every", "duration", "Time between looks at the day so far."),
    Setting("reports.catch_up_weeks", "int", "Missed weeks and days caught up.", low=1, high=52),
    Setting("recordings.url", "str", "s3://BUCKET/PREFIX recordings go to.", allow_empty=True),
    Setting("recordings.endpoint", "str", "S3-compatible endpoint URL.", allow_empty=True),
    Setting("recordings.region", "str", "S3 region."),
    Setting(
        "recordings.credentials_file",
        "str",
        "File holding the object store's access key id and secret (mode 0600).",
        allow_empty=True,
    ),
    Setting("recordings.keep_spool", "bool", "Keep the local copy once uploaded."),
    Setting("sessions.idle_timeout", "duration", "Time without input that ends a session."),
    Setting("sessions.max_length", "duration", "Longest a session may last."),
    Setting("sessions.drain", "duration", "How long a stop (SIGTERM) waits for live sessions."),
    Setting("web.idle_timeout", "duration", "Time without a request that signs a web user out."),
    Setting("web.session_lifetime", "duration", "Longest a web console sign-in lasts."),
    Setting("web.step_up", "duration", "How long a proven TOTP code lets a sign-in make changes."),
    Setting(
        "store.url", "str", "PostgreSQL store URL, no password; empty: SQLite.", allow_empty=True
    ),
    Setting(
        "store.password_file",
        "str",
        "File (mode 0600) holding the store's password.",
        allow_empty=True,
    ),
    Setting("store.schema", "str", "Schema of the PostgreSQL store."),
    Setting("store.head_file", "str", "This node's head file for a PostgreSQL store."),
    Setting("cluster.node", "str", "This node's name; empty: the host name.", allow_empty=True),
    Setting("cluster.store_grace", "duration", "Time without the store before failing closed."),
    Setting("cluster.lost_after", "duration", "How long a node may be unseen before it is lost."),
    Setting(
        "metrics.listen",
        "str",
        "HOST:PORT serving /metrics alone; empty: on the web listener (needs token_file).",
        allow_empty=True,
    ),
    Setting(
        "metrics.token_file",
        "str",
        "File (mode 0600) holding the bearer token a scrape must send; empty: none.",
        allow_empty=True,
    ),
    Setting(
        "retention.recordings",
        "str",
        "How long recordings are kept; empty: for ever.",
        allow_empty=True,
    ),
    Setting(
        "retention.queries",
        "str",
        "How long query-log rows are kept; empty: for ever.",
        allow_empty=True,
    ),
    Setting(
        "retention.events",
        "str",
        "How long audit events are kept; empty: for ever.",
        allow_empty=True,
    ),
    Setting("retention.archive_dir", "str", "Where pruned evidence is archived.", allow_empty=True),
    Setting("retention.every", "duration", "Time between retention runs of `bastion serve`."),
    Setting("retention.allow_short", "bool", "Allow periods under 30 days."),
    Setting("logging.format", "choice", "Log format.", choices=get_args(LogFormat)),
    Setting("logging.level", "choice", "Least severe level.", choices=get_args(LogLevel)),
)
TARGET_SETTINGS: tuple[Setting, ...] = (
    Setting("description", "str", "Shown next to the target's name.", allow_empty=True),
    Setting("max_grant", "duration", "Longest grant on this target."),
    Setting(
        "tls",
        "choice",
        "TLS from the bastion to the target's PostgreSQL.",
        choices=("off", "require", "verify-full"),
    ),
    Setting("tls_ca", "path", "CA that signs the target's PostgreSQL certificate."),
    Setting(
        "upstream_auth",
        "choices",
        "How the bastion may log in to the target's PostgreSQL.",
        choices=("scram-sha-256", "md5", "password", "trust"),
    ),
    Setting("idle_timeout", "duration", "Idle time that ends a session on this target."),
    Setting("max_session", "duration", "Longest session on this target."),
    Setting("allowed_hours", "str", "When sessions may be open, e.g. Mon-Fri 08:00-20:00."),
    Setting("timezone", "str", "Timezone of allowed_hours."),
    Setting("approvals", "int", "Approvals a request needs; 0 opens it at once.", low=0, high=5),
    Setting("break_glass", "bool", "Engineers may open emergency access themselves."),
    Setting("break_glass_max", "duration", "Longest break-glass access."),
    Setting("unmask_max", "duration", "Longest unmask grant on this target."),
    Setting("reusable_ticket_max", "duration", "Longest a reusable ticket may last."),
    Setting(
        "raw_tunnels",
        "choice",
        "Whether SSH commands that open raw network tunnels (nc, socat, ssh -W) may run.",
        choices=("refuse", "allow"),
    ),
)


def documented_keys() -> list[str]:
    """Every dotted key the loader accepts; target keys appear as "targets.*.KEY"."""
    masking = [f"targets.*.masking.{key}" for key in MASKING_KEYS]
    return [s.key for s in SETTINGS] + [f"targets.*.{s.key}" for s in TARGET_SETTINGS] + masking
