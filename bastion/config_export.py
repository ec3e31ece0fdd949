"""The [export.NAME] tables: the SIEM sinks every audit event is fed to, each with a filter."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from bastion.durations import parse_duration

SinkKind = Literal["syslog", "file", "webhook"]
SINK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SEVERITIES = ("info", "notice", "warning", "high")  # bastion.audit.chain's, lowest first
FACILITIES = ("auth", "authpriv", "audit", *(f"local{n}" for n in range(8)))
COMMON = ("kind", "enabled", "min_severity", "kinds", "batch", "retry_after", "retry_max",
          "alert_after")  # fmt: skip
BY_KIND: dict[str, tuple[str, ...]] = {
    "syslog": (
        "address",
        "tls_ca",
        "server_name",
        "tls_cert",
        "tls_key",
        "facility",
        "timeout",
        "replay",
    ),
    "file": ("path", "max_bytes", "keep"),
    "webhook": ("url", "timeout"),
}
REQUIRED = {"syslog": ("address", "tls_ca"), "file": ("path",), "webhook": ("url",)}


class KeyProblem(Exception):
    """A problem with one key of bastion.toml (load_config adds the file's name)."""

    def __init__(self, parts: tuple[str, ...], problem: str) -> None:
        super().__init__(problem)
        self.parts, self.problem = parts, problem


@dataclass(frozen=True)
class ExportSink:
    """One sink. Secrets never live here: a webhook URL's token is shown by host only."""

    name: str
    kind: SinkKind
    enabled: bool = True
    min_severity: str = "info"
    kinds: tuple[str, ...] = ("*",)
    batch: int = 500  # events read and delivered at a time
    retry_after: timedelta = timedelta(seconds=1)  # the first wait after a failure; doubles
    retry_max: timedelta = timedelta(minutes=1)
    alert_after: timedelta = timedelta(minutes=5)  # failing this long: an audit event
    address: str = ""  # syslog: host:port
    tls_ca: Path | None = None
    server_name: str = ""  # syslog: the name the certificate must carry (default: the host)
    tls_cert: Path | None = None  # syslog: a client certificate, if the receiver asks
    tls_key: Path | None = None
    facility: str = "auth"
    timeout: timedelta = timedelta(seconds=10)
    replay: int = 1000  # syslog: events sent again after a reconnect (receivers dedupe on seq+mac)
    path: Path | None = None  # file
    max_bytes: int = 100 * 1024 * 1024
    keep: int = 10
    url: str = ""  # webhook

    @property
    def destination(self) -> str:
        """Where the sink goes, safe to chain: a webhook by scheme, host and port only."""
        if self.kind == "file":
            return str(self.path)
        if self.kind == "webhook":
            parts = urllib.parse.urlsplit(self.url)
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{parts.hostname}{port}"
        return self.address + (f" as {self.server_name}" if self.server_name else "")

    @property
    def selection(self) -> str:
        """What the sink takes and where it goes, as canonical JSON (the store chains a
        change of it)."""
        chosen = {"kinds": list(self.kinds), "min_severity": self.min_severity,
                  "to": self.destination}  # fmt: skip
        return json.dumps(chosen, sort_keys=True, separators=(",", ":"))

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


def parse_exports(raw: object, base: Path) -> tuple[ExportSink, ...]:
    """Check the [export.NAME] tables; KeyProblem names the first bad key."""
    if not isinstance(raw, dict):
        raise KeyProblem(("export",), "expected a table of sinks, [export.NAME]")
    sinks = []
    for name, table in raw.items():
        where = ("export", name)
        if not SINK_NAME.fullmatch(name):
            raise KeyProblem(where, "invalid sink name: use 1-63 lowercase letters,"
                                    " digits, '_' or '-'")  # fmt: skip
        if not isinstance(table, dict):
            raise KeyProblem(where, "expected a table")
        sinks.append(_sink(name, table, base))
    return tuple(sinks)


def _sink(name: str, table: dict[str, object], base: Path) -> ExportSink:
    where = ("export", name)
    kind = table.get("kind")
    if kind not in BY_KIND:
        raise KeyProblem((*where, "kind"), "must be one of 'syslog', 'file', 'webhook'")
    allowed = (*COMMON, *BY_KIND[str(kind)])
    for key in table:
        if key not in allowed:
            raise KeyProblem((*where, key), f"unknown key for a {kind} sink (expected"
                                    f" one of: {', '.join(allowed)})")  # fmt: skip
    for key in REQUIRED[str(kind)]:
        if key not in table:
            raise KeyProblem((*where, key), f"is required for a {kind} sink")
    values: dict[str, object] = {}
    for key, value in table.items():
        try:
            values[key] = _value(key, value, base)
        except ValueError as exc:
            raise KeyProblem((*where, key), str(exc)) from None
    sink = ExportSink(name=name, **values)  # type: ignore[arg-type]
    problem = _problem(sink)
    if problem:
        raise KeyProblem((*where, problem[0]), problem[1])
    return sink


_INTS = {"batch": (1, 10_000), "replay": (0, 100_000), "max_bytes": (4096, 1 << 40),
         "keep": (1, 1000)}  # fmt: skip
_DURATIONS = ("retry_after", "retry_max", "alert_after", "timeout")
_PATHS = ("tls_ca", "tls_cert", "tls_key", "path")


def _value(key: str, value: object, base: Path) -> object:
    """One key's typed value; ValueError says what is wrong."""
    if key == "enabled":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if key in _INTS:
        low, high = _INTS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected an integer between {low} and {high}")
        return value
    if key == "kinds":
        return _kinds(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    if key in _DURATIONS:
        return parse_duration(value)
    if key in _PATHS:
        return Path(os.path.abspath(base / Path(value).expanduser()))
    if key == "min_severity" and value not in SEVERITIES:
        raise ValueError(f"must be one of {', '.join(SEVERITIES)}")
    if key == "facility" and value not in FACILITIES:
        raise ValueError(f"must be one of {', '.join(FACILITIES)}")
    return value


def _kinds(value: object) -> tuple[str, ...]:
    from bastion.export.formats import kind_pattern_problem  # noqa: PLC0415 - no cycle

    if not isinstance(value, list) or not value:
        raise ValueError('expected a non-empty array of kinds, e.g. ["session.*", "grant.*"]')
    for item in value:
        problem = kind_pattern_problem(item) if isinstance(item, str) else "not a string"
        if problem:
            raise ValueError(problem)
    return tuple(value)


def _problem(sink: ExportSink) -> tuple[str, str] | None:
    """(key, problem) for a combination that cannot work."""
    if sink.kind == "syslog":
        host, _, port = sink.address.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            return "address", "must be host:port, e.g. 'siem.example.com:6514'"
        if (sink.tls_cert is None) != (sink.tls_key is None):
            return "tls_cert", "tls_cert and tls_key go together"
    if sink.kind == "webhook" and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", sink.url):
        return "url", "must be an http:// or https:// URL"
    if sink.retry_max < sink.retry_after:
        return "retry_max", "must be at least retry_after"
    return None
