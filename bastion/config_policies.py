"""Settings sections of bastion.toml that are plain values: the doors' limits, grants,
requests, notifications, sessions and the weekly review (bastion.config loads them)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bastion.access.hours import parse_hours

_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


@dataclass(frozen=True)
class AuditPolicy:
    """How the PostgreSQL door writes its query log."""

    durability: Literal["strict", "batched"] = "strict"
    keep_literals: bool = False
    ticket_valid_for: timedelta = timedelta(minutes=10)
    anchors: tuple[str, ...] = ()  # sinks for signed chain heads (bastion/audit/anchors.py)
    anchor_every: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class DoorLimits:
    """Limits a door applies before anyone has logged in (the same keys for each door)."""

    login_grace: timedelta = timedelta(minutes=1)
    max_unauthenticated_per_source: int = 10
    max_failures_per_source: int = 20
    failure_window: timedelta = timedelta(minutes=5)
    block_for: timedelta = timedelta(minutes=5)
    max_logins_in_progress: int = 1000


@dataclass(frozen=True)
class SshPolicy(DoorLimits):
    """The SSH door's limits before login."""


@dataclass(frozen=True)
class PostgresPolicy(DoorLimits):
    """The PostgreSQL door's limits before login, and the largest message it relays."""

    max_message: int = 64 * 1024 * 1024
    max_prepared: int = 10_000  # prepared statements, and open portals, per session
    max_sessions: int = 5_000  # database sessions open through this door at once
    max_sessions_per_user: int = 100  # and per person
    cancel_advertise: str = ""  # host:port peers forward cancels to; "" is the listener's

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for a value that cannot work, else None."""
        if self.cancel_advertise and host_port(self.cancel_advertise) is None:
            why = "is not host:port (an IPv6 address in brackets, a port from 1 to 65535)"
            return "cancel_advertise", f"{self.cancel_advertise!r} {why}"
        return None


_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}")


def host_port(text: str) -> tuple[str, int] | None:
    """("host", port) from "host:port" or "[v6]:port"; None when it is not that."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1])), int(port)
        except ValueError:
            return None
    return (host, int(port)) if _HOST.fullmatch(host) else None


@dataclass(frozen=True)
class GrantPolicy:
    default_max: timedelta = timedelta(hours=12)
    min_reason_length: int = 10


@dataclass(frozen=True)
class RequestPolicy:
    pending_for: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class NotifyPolicy:
    """The webhook that hears about requests, approvals, denials and break-glass."""

    webhook_url: str = ""
    timeout: timedelta = timedelta(seconds=5)
    retries: int = 5
    retry_after: timedelta = timedelta(seconds=2)


@dataclass(frozen=True)
class ReportPolicy:
    """The weekly access review: its weeks, schedule, recipients, thresholds and mail."""

    timezone: str = "UTC"
    week_starts: Literal["monday", "sunday"] = "monday"
    build_at: str = "06:00"
    recipients: tuple[str, ...] = ()
    sign_within: timedelta = timedelta(days=7)
    working_hours: str = "Mon-Fri 07:00-20:00"
    large_transfer_mb: int = 100
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_from: str = "bastion@localhost"
    smtp_user: str = ""
    smtp_password_file: str = ""  # relative to the config file's directory
    smtp_ca: str = ""
    daily_flags: bool = True
    flag_every: timedelta = timedelta(minutes=15)
    catch_up_weeks: int = 8

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for the first value that cannot work, else None."""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return "timezone", f"unknown timezone {self.timezone!r} (an IANA name, e.g. UTC)"
        if not _CLOCK.fullmatch(self.build_at):
            return "build_at", f"{self.build_at!r} is not a time of day written HH:MM"
        try:
            parse_hours(self.working_hours, self.timezone)
        except ValueError as exc:
            return "working_hours", str(exc)
        if self.flag_every < timedelta(minutes=1):  # each look reads a day of the store
            return "flag_every", "must be at least 1m (each look reads the day so far)"
        bad = [r for r in self.recipients if "@" not in r or any(c in r for c in " \r\n,;<>")]
        if bad:
            return "recipients", f"{bad[0]!r} is not one email address"
        return None


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session may sit idle, and last at all, unless its target says otherwise."""

    idle_timeout: timedelta = timedelta(minutes=15)
    max_length: timedelta = timedelta(hours=12)
    drain: timedelta = timedelta(seconds=60)  # how long a stop waits for live sessions

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for a value that cannot work, else None."""
        if self.drain > timedelta(hours=1):
            return "drain", "must be at most 1h (a stop that waits longer is a hang)"
        return None


@dataclass(frozen=True)
class WebPolicy:
    """How long a web console sign-in lasts: idle, and at most; and how long a proven TOTP
    code lets it make an admin's changes (step-up)."""

    idle_timeout: timedelta = timedelta(minutes=30)
    session_lifetime: timedelta = timedelta(hours=12)
    step_up: timedelta = timedelta(minutes=10)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_ENDPOINT = re.compile(r"(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?/?")
_LOOPBACK = re.compile(r"localhost|127\.\d+\.\d+\.\d+|\[::1\]")


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of s3://BUCKET[/PREFIX]; ValueError saying what is wrong."""
    if not url.startswith("s3://"):
        raise ValueError("must be s3://BUCKET or s3://BUCKET/PREFIX")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    prefix = prefix.rstrip("/")
    if prefix and (not _PREFIX.fullmatch(prefix) or ".." in prefix.split("/")):
        raise ValueError(f"prefix {prefix!r}: use letters, digits, '.', '_', '-' and '/'")
    return bucket, prefix


@dataclass(frozen=True)
class RecordingsPolicy:
    """Where recordings are kept besides the local folder (the spool): S3-compatible storage."""

    url: str = ""  # s3://bucket/prefix; "" keeps recordings in paths.recordings only
    endpoint: str = ""  # "" is AWS's own endpoint for the region
    region: str = "us-east-1"
    credentials_file: str = ""  # relative to the config file's directory; "" reads AWS_* env
    keep_spool: bool = False

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for the first value that cannot work, else None."""
        if self.url:
            try:
                parse_s3_url(self.url)
            except ValueError as exc:
                return "url", str(exc)
        elif self.endpoint or self.credentials_file:
            return "url", "is needed when endpoint or credentials_file is set"
        if self.endpoint:
            found = _ENDPOINT.fullmatch(self.endpoint)
            if found is None:
                return "endpoint", "must be https://HOST[:PORT] (no path)"
            if found.group(1) == "http" and not _LOOPBACK.fullmatch(found.group(2)):
                return "endpoint", "must use https (http is allowed only on loopback)"
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+|[a-z0-9-]{1,32}", self.region):
            return "region", f"{self.region!r} is not a region name (e.g. us-east-1)"
        return None


NARROWEST_BALANCERS = {4: 16, 6: 48}  # prefix lengths: wider is a network of clients


def balancer_network_problem(network: str) -> str:
    """'' for an address or network of load balancers [listeners] proxy_from may trust; else
    why not. A network as wide as the clients' would let any client claim any address."""
    try:
        parsed = ipaddress.ip_network(network, strict=True)
    except ValueError as exc:
        return f"{network!r}: {exc}"
    narrowest = NARROWEST_BALANCERS[parsed.version]
    if parsed.prefixlen < narrowest:
        return (f"{network!r} is wider than /{narrowest}: list the balancers' own addresses,"
                " never the clients' networks (anyone there could claim any address)")  # fmt: skip
    return ""
