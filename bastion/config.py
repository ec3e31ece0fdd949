"""Load bastion.toml into typed, frozen settings; each mistake names the file, key and problem."""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from bastion import config_schema
from bastion.access.hours import Hours, parse_hours
from bastion.config_cluster import ClusterPolicy
from bastion.config_export import ExportSink, KeyProblem, parse_exports
from bastion.config_metrics import MetricsPolicy
from bastion.config_policies import (
    AuditPolicy,
    GrantPolicy,
    NotifyPolicy,
    PostgresPolicy,
    RecordingsPolicy,
    ReportPolicy,
    RequestPolicy,
    SessionPolicy,
    SshPolicy,
    WebPolicy,
    balancer_network_problem,
)
from bastion.config_retention import RetentionPolicy
from bastion.config_schema import SETTINGS, TARGET_SETTINGS, LogFormat, LogLevel, Setting, Value
from bastion.config_store import StoreConfig
from bastion.durations import parse_duration
from bastion.errors import ConfigError
from bastion.masking.policy import MaskingConfigError, MaskingPolicy, parse_masking

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

TOTP_PERIOD = 30  # seconds per TOTP step (RFC 6238 default; authenticator apps assume it)
TOTP_DIGITS = 6  # digits per TOTP code (RFC 6238 default)
SECRETS_KEY_ENV = "BASTION_SECRETS_KEY"  # base64 of a 32-byte key; overrides paths.secrets_key

TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


# A field's default below is its setting's one default: an absent key reads as it.


@dataclass(frozen=True)
class Listener:
    enabled: bool = True
    address: str = "127.0.0.1"  # nothing is reachable from other machines until chosen
    port: int = field(kw_only=True)


@dataclass(frozen=True)
class Listeners:
    ssh: Listener = Listener(port=2222)  # port 22 stays with the host's sshd
    postgres: Listener = Listener(port=6432)  # 5432 stays free for a real PostgreSQL
    web: Listener = Listener(port=8080)
    DOORS: ClassVar[tuple[str, ...]] = ("ssh", "postgres", "web")
    # Load balancers whose connections start with a PROXY protocol header naming the client
    # (addresses or networks); empty: no header is read from anyone.
    proxy_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class Paths:
    """Files and directories bastion uses; always absolute once loaded (the defaults here are
    relative to the config file's directory)."""

    store: Path = Path("bastion.db")
    recordings: Path = Path("recordings")
    secrets_key: Path = Path("secrets.key")
    ssh_host_key: Path = Path("ssh_host_ed25519_key")
    tls_cert: Path = Path("tls/server.pem")
    tls_key: Path = Path("tls/server.key")
    tls_ca: Path = Path("tls/bastion-ca.pem")
    reports: Path = Path("reports")
    report_signing_key: Path = Path("report_signing.key")


@dataclass(frozen=True)
class TotpPolicy:
    TOTP_PERIOD: ClassVar[int] = TOTP_PERIOD
    TOTP_DIGITS: ClassVar[int] = TOTP_DIGITS

    issuer: str = "bastion"
    skew_steps: int = 1


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    lock_for: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class LoggingConfig:
    format: LogFormat = "auto"
    level: LogLevel = "info"


@dataclass(frozen=True)
class TargetPolicy:
    name: str
    description: str = ""
    max_grant: timedelta | None = None
    tls: Literal["off", "require", "verify-full"] = "off"
    tls_ca: Path | None = None
    upstream_auth: tuple[str, ...] = ("scram-sha-256",)
    idle_timeout: timedelta | None = None
    max_session: timedelta | None = None
    allowed_hours: Hours | None = None
    timezone: str = "UTC"
    approvals: int = 1
    break_glass: bool = False
    break_glass_max: timedelta = timedelta(hours=1)
    unmask_max: timedelta = timedelta(hours=4)
    reusable_ticket_max: timedelta = timedelta(hours=8)
    raw_tunnels: Literal["refuse", "allow"] = "refuse"
    masking: MaskingPolicy = field(default_factory=MaskingPolicy)

    def database_warnings(self) -> list[str]:
        """What is weak about how the bastion reaches this database target, one line each."""
        found = []
        if self.tls == "off":
            found.append(f"{self.name}: no TLS to the database (tls = \"off\"): the service"
                         " role's login and every row cross the network in clear, and an"
                         " impostor on the path is not detected")  # fmt: skip
        elif self.tls == "require":
            found.append(f"{self.name}: TLS without checking the server's certificate"
                         " (tls = \"require\"); set tls_ca for verify-full")  # fmt: skip
        weak = [m for m in self.upstream_auth if m != "scram-sha-256"]
        if weak:
            found.append(f"{self.name}: upstream_auth allows {', '.join(weak)}: a server"
                         " need not prove it knows the password")  # fmt: skip
        return found


@dataclass(frozen=True)
class Config:
    path: Path
    listeners: Listeners
    paths: Paths
    totp: TotpPolicy
    lockout: LockoutPolicy
    grants: GrantPolicy
    logging: LoggingConfig
    targets: Mapping[str, TargetPolicy]
    ssh: SshPolicy = field(default_factory=SshPolicy)
    postgres: PostgresPolicy = field(default_factory=PostgresPolicy)
    audit: AuditPolicy = field(default_factory=AuditPolicy)
    sessions: SessionPolicy = field(default_factory=SessionPolicy)
    requests: RequestPolicy = field(default_factory=RequestPolicy)
    notify: NotifyPolicy = field(default_factory=NotifyPolicy)
    reports: ReportPolicy = field(default_factory=ReportPolicy)
    recordings: RecordingsPolicy = field(default_factory=RecordingsPolicy)
    web: WebPolicy = field(default_factory=WebPolicy)
    cluster: ClusterPolicy = field(default_factory=ClusterPolicy)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    store: StoreConfig = field(default_factory=StoreConfig)
    metrics: MetricsPolicy = field(default_factory=MetricsPolicy)
    export: tuple[ExportSink, ...] = ()  # the [export.NAME] sinks (bastion/config_export.py)

    def max_grant_for(self, target: str) -> timedelta:
        """The longest grant allowed on a target: its own max_grant, else grants.default_max."""
        policy = self.targets.get(target)
        if policy is not None and policy.max_grant is not None:
            return policy.max_grant
        return self.grants.default_max

    def session_limits(self, target: str) -> tuple[timedelta, timedelta]:
        """(idle timeout, longest session) for a target: its own, else [sessions]."""
        policy = self.target_policy(target)
        idle = policy.idle_timeout or self.sessions.idle_timeout
        return idle, policy.max_session or self.sessions.max_length

    def target_policy(self, target: str) -> TargetPolicy:
        """The [targets.NAME] table for a target, or the defaults when there is none."""
        return self.targets.get(target) or TargetPolicy(target)


Parts = tuple[str, ...]
_BY_KEY: dict[Parts, Setting] = {tuple(s.key.split(".")): s for s in SETTINGS}
_DEFAULTS = config_schema.written_defaults(Config, SETTINGS)  # what an absent key reads as
_TARGET_DEFAULTS = config_schema.written_defaults(TargetPolicy, TARGET_SETTINGS)
_CHILDREN: dict[Parts, list[str]] = {(): []}
for _parts in [*_BY_KEY, ("targets",), ("export",)]:
    for _depth in range(len(_parts)):
        _names = _CHILDREN.setdefault(_parts[:_depth], [])
        if _parts[_depth] not in _names:
            _names.append(_parts[_depth])


# --- loading -------------------------------------------------------------------------------


_Bad = KeyProblem  # a problem with one key (parts, problem); load_config adds the file name


def _show(parts: Parts) -> str:
    """A dotted key as TOML would spell it: bare parts where possible, else quoted."""
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else json.dumps(p) for p in parts)


def _describe(value: object) -> str:
    """Name a TOML value's type (and the value, briefly) for an error message."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return "string " + (repr(value) if len(value) <= 40 else repr(value[:37] + "..."))
    if isinstance(value, datetime | date | time):
        return f"date/time {value.isoformat()}"
    if isinstance(value, int | float):
        return f"{'integer' if isinstance(value, int) else 'float'} {value}"
    names: dict[type[object], str] = {dict: "a table", list: "an array"}
    return names.get(type(value), type(value).__name__)


def _unknown(parts: Parts, known: list[str]) -> _Bad:
    close = difflib.get_close_matches(parts[-1], known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(known)}"
    return _Bad(parts, f"unknown key ({hint})")


_EXPECTED = {"bool": "true or false", "int": "an integer", "duration": "a duration such as '15m'"}


def _convert(setting: Setting, raw: object, base: Path) -> Value:
    """Check one raw TOML value against its setting and return the typed value."""
    if raw is None:  # TOML has no null: only an absent optional key gets here
        return None
    if setting.kind == "bool" and isinstance(raw, bool):
        return raw
    if setting.kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        low, high = setting.low, setting.high
        if (low is not None and raw < low) or (high is not None and raw > high):
            raise ValueError(f"must be between {low} and {high}, got {raw}")
        return raw
    if setting.kind in ("str", "choice", "duration", "path") and isinstance(raw, str):
        if not raw.strip() and not setting.allow_empty:
            raise ValueError("must not be empty")
        if setting.kind == "duration":
            return parse_duration(raw)
        if setting.kind == "choice" and raw not in setting.choices:
            options = ", ".join(repr(c) for c in setting.choices)
            raise ValueError(f"must be one of {options}, got {raw!r}")
        if setting.kind == "path":
            return Path(os.path.abspath(base / Path(raw).expanduser()))
        return raw
    raise ValueError(f"expected {_EXPECTED.get(setting.kind, 'a string')}, got {_describe(raw)}")


def _choices(setting: Setting, raw: object) -> tuple[str, ...]:
    """A non-empty list of distinct names, each one of the setting's choices."""
    options = ", ".join(repr(c) for c in setting.choices)
    if not isinstance(raw, list | tuple):
        raise ValueError(f"expected a list of names, got {_describe(raw)}")
    if not raw:
        raise ValueError(f"must name at least one of {options}")
    for item in raw:
        if not isinstance(item, str) or item not in setting.choices:
            raise ValueError(f"each entry must be one of {options}, got {_describe(item)}")
    if len(set(raw)) != len(raw):
        raise ValueError("names an entry twice")
    return tuple(str(item) for item in raw)


def _strings(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list | tuple):
        raise ValueError(f"expected an array of strings, got {_describe(raw)}")
    if not all(isinstance(item, str) and item.strip() for item in raw):
        raise ValueError("expected an array of non-empty strings")
    return tuple(str(item) for item in raw)


def _value(setting: Setting, parts: Parts, raw: object, base: Path) -> Value:
    try:
        if setting.kind == "choices":
            return _choices(setting, raw)
        if setting.kind == "strings":
            return _strings(raw)
        return _convert(setting, raw, base)
    except ValueError as exc:
        raise _Bad(parts, str(exc)) from None


def _table(parts: Parts, value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _Bad(parts, f"expected a table, got {_describe(value)}")
    return value


def _collect(table: dict[str, object], prefix: Parts, found: dict[Parts, object]) -> None:
    """Walk the parsed TOML, rejecting unknown keys and gathering the known ones."""
    for name, value in table.items():
        parts = (*prefix, name)
        if parts in (("targets",), ("export",)):
            continue  # checked by _targets, parse_exports
        if parts in _BY_KEY:
            found[parts] = value
        elif parts in _CHILDREN:
            _collect(_table(parts, value), parts, found)
        else:
            raise _unknown(parts, _CHILDREN[prefix])


def _targets(raw: object, base: Path) -> dict[str, TargetPolicy]:
    """Check the [targets.NAME] tables and return their policies by name."""
    result: dict[str, TargetPolicy] = {}
    known = [s.key for s in TARGET_SETTINGS]
    for name, value in _table(("targets",), raw).items():
        where = ("targets", name)
        if not TARGET_NAME.fullmatch(name):
            raise _Bad(
                where,
                "invalid target name: use 1-63 lowercase letters, digits, '.', '_' or '-',"
                " starting with a letter or digit",
            )
        table = _table(where, value)
        for key in table:
            if key not in known and key != "masking":
                raise _unknown((*where, key), [*known, "masking"])
        got = {
            s.key: _value(s, (*where, s.key), table.get(s.key, _TARGET_DEFAULTS[s.key]), base)
            for s in TARGET_SETTINGS
        }
        got["allowed_hours"] = _hours(where, got["allowed_hours"], got["timezone"])
        if "tls" not in table and got["tls_ca"] is not None:
            got["tls"] = "verify-full"  # a CA is configured: check the server against it
        masking = _masking(where, table.get("masking", {}))
        result[name] = replace(_section(TargetPolicy, "", {"name": name, **got}), masking=masking)
    return result


def _masking(where: Parts, raw: object) -> MaskingPolicy:
    try:
        return parse_masking(raw)
    except MaskingConfigError as exc:
        raise _Bad((*where, "masking", *([exc.key] if exc.key else [])), exc.problem) from None


def _hours(where: Parts, text: Value, zone: Value) -> Hours | None:
    if text is None:
        return None
    try:
        return parse_hours(str(text), str(zone))
    except ValueError as exc:
        raise _Bad((*where, "allowed_hours"), str(exc)) from None


D = TypeVar("D", bound="DataclassInstance")


def _section(cls: type[D], prefix: str, values: Mapping[str, Value]) -> D:
    """Build one settings dataclass from converted values named PREFIX + field name."""
    return cls(
        **{f.name: values[prefix + f.name] for f in fields(cls) if prefix + f.name in values}
    )


def _retention(path: Path, values: Mapping[str, Value]) -> RetentionPolicy:
    """[retention], its archive_dir taken from this file's directory when relative."""
    policy = _section(RetentionPolicy, "retention.", values)
    folder = policy.archive_dir and str(path.parent / policy.archive_dir)
    return replace(policy, archive_dir=folder)


def _build(path: Path, values: Mapping[str, Value], targets: dict[str, TargetPolicy]) -> Config:
    """Assemble the dataclasses; each field is named after its key in the schema."""
    listeners = {name: _section(Listener, f"listeners.{name}.", values) for name in Listeners.DOORS}
    return Config(
        path=path,
        listeners=Listeners(**listeners, proxy_from=_strings(values["listeners.proxy_from"] or ())),
        paths=_section(Paths, "paths.", values),
        totp=_section(TotpPolicy, "totp.", values),
        lockout=_section(LockoutPolicy, "lockout.", values),
        ssh=_section(SshPolicy, "ssh.", values),
        postgres=_section(PostgresPolicy, "postgres.", values),
        audit=_section(AuditPolicy, "audit.", values),
        grants=_section(GrantPolicy, "grants.", values),
        sessions=_section(SessionPolicy, "sessions.", values),
        requests=_section(RequestPolicy, "requests.", values),
        notify=_section(NotifyPolicy, "notify.", values),
        reports=_section(ReportPolicy, "reports.", values),
        recordings=_section(RecordingsPolicy, "recordings.", values),
        web=_section(WebPolicy, "web.", values),
        logging=_section(LoggingConfig, "logging.", values),
        cluster=_section(ClusterPolicy, "cluster.", values),
        retention=_retention(path, values),
        store=_section(StoreConfig, "store.", values),
        metrics=_section(MetricsPolicy, "metrics.", values),
        targets=MappingProxyType(targets),
    )


_WILDCARDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - compared against, never bound


def _check_policies(config: Config) -> None:
    """The sections whose policy checks itself (problem(): the key and what is wrong)."""
    sections = ("reports", "recordings", "cluster", "store", "metrics", "sessions", "retention")
    for section in sections:
        problem = getattr(config, section).problem()
        if problem is not None:
            raise _Bad((section, problem[0]), problem[1])


def _check_webhook(url: str) -> None:
    if url and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise _Bad(("notify", "webhook_url"), "must be an http:// or https:// URL")


def _check_anchors(audit: AuditPolicy) -> None:
    if audit.anchors:  # imported only then: the config does not pull in the store's package
        from bastion.audit.anchors import AnchorError, parse_spec  # noqa: PLC0415

    for spec in audit.anchors:
        try:
            parse_spec(spec)
        except AnchorError as exc:
            raise _Bad(("audit", "anchors"), str(exc)) from None
    if not timedelta(seconds=1) <= audit.anchor_every <= timedelta(minutes=1):
        raise _Bad(("audit", "anchor_every"), "must be between 1s and 1m")


def _check_listeners(listeners: Listeners) -> None:
    """Refuse two enabled listeners that would fight over one port, and a balancer address
    that is not an address or network."""
    for network in listeners.proxy_from:
        if problem := balancer_network_problem(network):
            raise _Bad(("listeners", "proxy_from"), problem)
    seen: list[tuple[str, Listener]] = []
    for name in Listeners.DOORS:
        mine: Listener = getattr(listeners, name)
        if not mine.enabled:
            continue
        for other_name, other in seen:
            shared = other.address == mine.address or {other.address, mine.address} & _WILDCARDS
            if other.port == mine.port and shared:
                raise _Bad(
                    ("listeners", name, "port"),
                    f"port {mine.port} is already used by listeners.{other_name}",
                )
        seen.append((name, mine))


def _read(file: Path, shown: str, data: bytes | None = None) -> dict[str, object]:
    """Read (unless its bytes are given) and parse the TOML file, turning every failure into
    a one-line ConfigError."""
    try:
        data = file.read_bytes() if data is None else data
    except FileNotFoundError:
        raise ConfigError(shown, "(file)", "file not found") from None
    except OSError as exc:
        raise ConfigError(shown, "(file)", f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (bad byte at offset {exc.start})"
        raise ConfigError(shown, "(syntax)", problem) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = "invalid TOML: " + " ".join(str(exc).split())
        raise ConfigError(shown, "(syntax)", problem) from None


def load_config(path: str | Path, data: bytes | None = None) -> Config:
    """Read and check a bastion.toml; raise ConfigError naming the file, key and problem.
    `data`: the file's bytes, read already (a reload hashes exactly what it applies)."""
    shown = str(path)
    file = Path(os.path.abspath(Path(path).expanduser()))
    raw = _read(file, shown, data)
    base = file.parent
    try:
        found: dict[Parts, object] = {}
        _collect(raw, (), found)
        values = {
            s.key: _value(s, parts, found.get(parts, _DEFAULTS[s.key]), base)
            for parts, s in _BY_KEY.items()
        }
        config = _build(file, values, _targets(raw.get("targets", {}), base))
        _check_listeners(config.listeners)
        _check_webhook(config.notify.webhook_url)
        _check_policies(config)
        _check_anchors(config.audit)
        config = replace(config, export=parse_exports(raw.get("export", {}), base))
    except _Bad as exc:
        raise ConfigError(shown, _show(exc.parts), exc.problem) from None
    return config
