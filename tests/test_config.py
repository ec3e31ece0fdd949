"""Tests for bastion.config: defaults, path resolution, one-line errors, the example file."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.config import (
    TOTP_DIGITS,
    TOTP_PERIOD,
    Config,
    Listener,
    LockoutPolicy,
    LoggingConfig,
    TargetPolicy,
    TotpPolicy,
    load_config,
)
from bastion.config_policies import GrantPolicy
from bastion.config_schema import SETTINGS, documented_keys
from bastion.config_text import default_config_text
from bastion.durations import format_duration, parse_duration
from bastion.errors import ConfigError, Exit

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "bastion.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, key: str, *problem_parts: str) -> ConfigError:
    """Load PATH, expect a ConfigError for KEY, and check the message is one good line."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    err = caught.value
    message = str(err)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert err.key == key
    for part in problem_parts:
        assert part in err.problem, message
    assert err.exit_code == Exit.CONFIG
    return err


# --- defaults -------------------------------------------------------------------------------


def test_empty_file_gives_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.path == tmp_path / "bastion.toml"
    assert config.listeners.ssh == Listener(enabled=True, address="127.0.0.1", port=2222)
    assert config.listeners.postgres == Listener(enabled=True, address="127.0.0.1", port=6432)
    assert config.listeners.web == Listener(enabled=True, address="127.0.0.1", port=8080)
    assert config.paths.store == tmp_path / "bastion.db"
    assert config.paths.recordings == tmp_path / "recordings"
    assert config.paths.secrets_key == tmp_path / "secrets.key"
    assert config.paths.ssh_host_key == tmp_path / "ssh_host_ed25519_key"
    assert config.paths.tls_cert == tmp_path / "tls" / "server.pem"
    assert config.paths.tls_key == tmp_path / "tls" / "server.key"
    assert config.paths.tls_ca == tmp_path / "tls" / "bastion-ca.pem"
    assert config.totp == TotpPolicy() == TotpPolicy(issuer="bastion", skew_steps=1)
    assert config.lockout == LockoutPolicy() == LockoutPolicy(5, timedelta(minutes=15))
    assert config.grants == GrantPolicy() == GrantPolicy(timedelta(hours=12), 10)
    assert config.logging == LoggingConfig() == LoggingConfig("auto", "info")
    assert dict(config.targets) == {}


def test_minimal_file_overrides_only_what_it_says(tmp_path: Path) -> None:
    text = '[listeners.ssh]\nport = 2200\n\n[logging]\nformat = "json"\n'
    config = load_config(write(tmp_path, text))
    assert config.listeners.ssh == Listener(enabled=True, address="127.0.0.1", port=2200)
    assert config.listeners.web.port == 8080
    assert config.logging == LoggingConfig(format="json", level="info")
    assert config.lockout == LockoutPolicy()


def test_values_have_their_declared_types() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config.listeners.ssh.enabled, bool)
    assert type(config.listeners.ssh.port) is int
    assert isinstance(config.lockout.lock_for, timedelta)
    assert isinstance(config.grants.default_max, timedelta)
    assert all(
        isinstance(getattr(config.paths, f.name), Path) for f in dataclasses.fields(config.paths)
    )
    target = config.targets["orders-prod"]
    assert isinstance(target.max_grant, timedelta)


def test_totp_constants_follow_rfc_6238() -> None:
    assert TOTP_PERIOD == TotpPolicy.TOTP_PERIOD == 30
    assert TOTP_DIGITS == TotpPolicy.TOTP_DIGITS == 6
    assert "TOTP_PERIOD" not in {f.name for f in dataclasses.fields(TotpPolicy)}


def test_every_setting_has_help_and_a_valid_default(tmp_path: Path) -> None:
    assert all(s.help for s in SETTINGS)
    assert len({s.key for s in SETTINGS}) == len(SETTINGS)
    load_config(write(tmp_path, ""))  # defaults pass the same checks as written values


# --- paths ----------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc" / "bastion"
    etc.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = (
        '[paths]\nstore = "data/bastion.db"\nrecordings = "../../var/recordings"\n'
        f'tls_ca = "{tmp_path / "ca.pem"}"\n'
    )
    write(etc, text)
    config = load_config("../etc/bastion/bastion.toml")
    assert config.path == etc / "bastion.toml"
    assert config.path.is_absolute()
    assert config.paths.store == etc / "data" / "bastion.db"
    assert config.paths.recordings == tmp_path / "var" / "recordings"
    assert config.paths.tls_ca == tmp_path / "ca.pem"
    assert config.paths.secrets_key == etc / "secrets.key"
    for field in dataclasses.fields(config.paths):
        value = getattr(config.paths, field.name)
        assert value.is_absolute()
        assert ".." not in value.parts


def test_home_directory_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(write(tmp_path, '[paths]\nsecrets_key = "~/bastion/secrets.key"\n'))
    assert config.paths.secrets_key == tmp_path / "home" / "bastion" / "secrets.key"


# --- targets --------------------------------------------------------------------------------


def test_targets_and_max_grant_for(tmp_path: Path) -> None:
    text = (
        '[grants]\ndefault_max = "8h"\n\n'
        '[targets.orders-prod]\ndescription = "Orders"\nmax_grant = "2h"\n\n'
        "[targets.web-1]\n\n"
        '[targets."db.eu-1"]\nmax_grant = "1d"\n'
    )
    config = load_config(write(tmp_path, text))
    assert config.targets["orders-prod"] == TargetPolicy(
        "orders-prod", "Orders", timedelta(hours=2)
    )
    assert config.targets["web-1"] == TargetPolicy("web-1")
    assert config.max_grant_for("orders-prod") == timedelta(hours=2)
    assert config.max_grant_for("db.eu-1") == timedelta(days=1)
    assert config.max_grant_for("web-1") == timedelta(hours=8)
    assert config.max_grant_for("not-configured") == timedelta(hours=8)


def test_config_objects_are_frozen(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.path = tmp_path  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listeners.ssh.port = 22  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lockout.max_failures = 1000  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.targets["orders-prod"].max_grant = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.targets["new"] = TargetPolicy("new")  # type: ignore[index]


# --- errors: one line naming the file, the key and the problem -------------------------------


def test_missing_file(tmp_path: Path) -> None:
    config_error(tmp_path / "nope.toml", "(file)", "file not found")


def test_unreadable_file(tmp_path: Path) -> None:
    config_error(tmp_path, "(file)", "cannot read")


def test_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[listeners.ssh]\nport = = 2222\n")
    err = config_error(path, "(syntax)", "invalid TOML", "line 2", "column")
    assert err.path == str(path)


def test_syntax_error_multiline_string_stays_one_line(tmp_path: Path) -> None:
    config_error(write(tmp_path, '[totp]\nissuer = """abc\n\n'), "(syntax)", "Unterminated string")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_bytes(b'[totp]\nissuer = "\xff"\n')
    config_error(path, "(syntax)", "UTF-8")


def test_utf8_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_bytes(b'\xef\xbb\xbf[totp]\nissuer = "acme"\n')
    assert load_config(path).totp.issuer == "acme"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    config_error(
        write(tmp_path, "[listener.ssh]\nport = 1\n"), "listener", "unknown key", "listeners"
    )


def test_unknown_nested_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[listeners.ssh]\nprot = 2222\n")
    config_error(path, "listeners.ssh.prot", "unknown key", "did you mean 'port'?")


def test_unknown_key_lists_the_choices_when_nothing_is_close(tmp_path: Path) -> None:
    path = write(tmp_path, "[lockout]\nzzz = 1\n")
    config_error(path, "lockout.zzz", "unknown key", "max_failures, lock_for")


def test_unknown_section(tmp_path: Path) -> None:
    config_error(write(tmp_path, "[listeners.ftp]\nport = 21\n"), "listeners.ftp", "unknown key")


def test_unknown_target_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[targets.web-1]\nmax_grants = "1h"\n')
    config_error(path, "targets.web-1.max_grants", "unknown key", "max_grant")


def test_quoted_key_with_newline_stays_on_one_line(tmp_path: Path) -> None:
    config_error(write(tmp_path, '[totp]\n"a\\nb" = 1\n'), 'totp."a\\nb"', "unknown key")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            '[listeners.ssh]\nport = "abc"\n',
            "listeners.ssh.port",
            "expected an integer, got string 'abc'",
        ),
        (
            "[listeners.ssh]\nport = 22.5\n",
            "listeners.ssh.port",
            "expected an integer, got float 22.5",
        ),
        (
            "[listeners.ssh]\nport = true\n",
            "listeners.ssh.port",
            "expected an integer, got boolean true",
        ),
        (
            "[listeners.web]\nenabled = 1\n",
            "listeners.web.enabled",
            "expected true or false, got integer 1",
        ),
        (
            '[listeners.web]\nenabled = "yes"\n',
            "listeners.web.enabled",
            "expected true or false, got string 'yes'",
        ),
        ("[paths]\nstore = 5\n", "paths.store", "expected a string, got integer 5"),
        ("[totp]\nissuer = [1]\n", "totp.issuer", "expected a string, got an array"),
        (
            "[lockout]\nlock_for = 15\n",
            "lockout.lock_for",
            "expected a duration such as '15m', got integer 15",
        ),
        ("[grants]\ndefault_max = 1979-05-27\n", "grants.default_max", "got date/time 1979-05-27"),
        ("listeners = 5\n", "listeners", "expected a table, got integer 5"),
        ("[listeners]\nssh = true\n", "listeners.ssh", "expected a table, got boolean true"),
        ("targets = 1\n", "targets", "expected a table, got integer 1"),
        ('[targets]\nweb-1 = "x"\n', "targets.web-1", "expected a table, got string 'x'"),
        ("[listeners.ssh.port]\n", "listeners.ssh.port", "expected an integer, got a table"),
    ],
)
def test_wrong_type(tmp_path: Path, text: str, key: str, problem: str) -> None:
    config_error(write(tmp_path, text), key, problem)


def test_long_string_value_is_shortened(tmp_path: Path) -> None:
    err = config_error(
        write(tmp_path, f'[listeners.ssh]\nport = "{"9" * 200}"\n'), "listeners.ssh.port"
    )
    assert len(err.message) < 200


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("listeners.ssh", "port", "0", "must be between 1 and 65535, got 0"),
        ("listeners.postgres", "port", "65536", "must be between 1 and 65535, got 65536"),
        ("listeners.web", "port", "-1", "got -1"),
        ("totp", "skew_steps", "3", "must be between 0 and 2, got 3"),
        ("lockout", "max_failures", "0", "must be between 1 and 100"),
        ("lockout", "max_failures", "101", "must be between 1 and 100"),
        ("grants", "min_reason_length", "-1", "must be between 0 and 1000"),
        ("logging", "format", '"xml"', "must be one of 'auto', 'json', 'console', got 'xml'"),
        ("logging", "level", '"INFO"', "must be one of 'debug', 'info', 'warning', 'error'"),
        ("listeners.ssh", "address", '""', "must not be empty"),
        ("totp", "issuer", '"  "', "must not be empty"),
        ("paths", "store", '""', "must not be empty"),
    ],
)
def test_out_of_range(tmp_path: Path, section: str, key: str, value: str, problem: str) -> None:
    config_error(write(tmp_path, f"[{section}]\n{key} = {value}\n"), f"{section}.{key}", problem)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[lockout]\nlock_for = "5x"\n', "lockout.lock_for", "unknown unit 'x'"),
        ('[lockout]\nlock_for = "abc"\n', "lockout.lock_for", "not a number followed by a unit"),
        ('[grants]\ndefault_max = "12"\n', "grants.default_max", "has no unit"),
        ('[grants]\ndefault_max = "-1h"\n', "grants.default_max", "negative"),
        ('[targets.web-1]\nmax_grant = "0m"\n', "targets.web-1.max_grant", "must be positive"),
        ('[targets.web-1]\nmax_grant = ""\n', "targets.web-1.max_grant", "must not be empty"),
    ],
)
def test_bad_duration(tmp_path: Path, text: str, key: str, problem: str) -> None:
    config_error(write(tmp_path, text), key, problem)


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("[targets.Web_1]", "targets.Web_1"),
        ("[targets.-web]", "targets.-web"),
        ('[targets."web 1"]', 'targets."web 1"'),
        ('[targets."web\\n1"]', 'targets."web\\n1"'),
        (f"[targets.{'a' * 64}]", f"targets.{'a' * 64}"),
    ],
)
def test_bad_target_name(tmp_path: Path, header: str, key: str) -> None:
    config_error(write(tmp_path, f"{header}\n"), key, "invalid target name", "lowercase")


def test_longest_target_name_is_fine(tmp_path: Path) -> None:
    name = "a" * 63
    assert name in load_config(write(tmp_path, f"[targets.{name}]\n")).targets


def test_two_listeners_on_one_port(tmp_path: Path) -> None:
    path = write(tmp_path, "[listeners.web]\nport = 2222\n")
    config_error(path, "listeners.web.port", "port 2222 is already used by listeners.ssh")


def test_wildcard_address_clashes_with_loopback(tmp_path: Path) -> None:
    text = '[listeners.ssh]\naddress = "0.0.0.0"\n[listeners.postgres]\nport = 2222\n'
    config_error(write(tmp_path, text), "listeners.postgres.port", "already used")


def test_same_port_is_fine_when_a_listener_is_off_or_on_another_address(tmp_path: Path) -> None:
    text = (
        "[listeners.ssh]\nenabled = false\n"
        '[listeners.postgres]\nport = 2222\naddress = "10.0.0.1"\n'
        '[listeners.web]\nport = 2222\naddress = "10.0.0.2"\n'
    )
    config = load_config(write(tmp_path, text))
    assert config.listeners.ssh.enabled is False
    assert config.listeners.web.port == 2222


# --- the example file and the template ------------------------------------------------------


def test_example_loads_and_matches_the_template() -> None:
    config = load_config(EXAMPLE)
    assert EXAMPLE.read_bytes() == default_config_text().encode("utf-8")
    assert set(config.targets) == {"orders-prod", "billing-prod"}
    assert config.targets["orders-prod"].description
    assert config.targets["orders-prod"].max_grant == timedelta(hours=4)
    billing = config.target_policy("billing-prod")
    assert (
        billing.tls == "verify-full"
        and billing.tls_ca == EXAMPLE.parent / "tls/billing-prod-ca.pem"
    )
    assert config.target_policy("web-1").tls == "off"  # no table: the defaults


def test_target_tls_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"targets\.db\.tls.*'off', 'require', 'verify-full'"):
        load_config(write(tmp_path, '[targets.db]\ntls = "prefer"\n'))


def test_example_shows_the_true_defaults(tmp_path: Path) -> None:
    example = load_config(EXAMPLE)
    empty = load_config(write(tmp_path, ""))
    for field in dataclasses.fields(Config):
        if field.name not in ("path", "paths", "targets"):
            assert getattr(example, field.name) == getattr(empty, field.name), field.name
    for field in dataclasses.fields(example.paths):
        mine = getattr(example.paths, field.name).relative_to(EXAMPLE.parent)
        assert mine == getattr(empty.paths, field.name).relative_to(tmp_path)


def keys_in(text: str) -> dict[str, bool]:
    """Each active key in a TOML text, dotted, with whether a comment line sits right above it."""
    table, previous, found = "", "", {}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            table = stripped.strip("[]")
        elif stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip()
            found[f"{table}.{key}" if table else key] = previous.startswith("#")
        previous = stripped
    return found


def test_every_documented_key_is_in_the_example_with_a_comment_above_it() -> None:
    found = {
        re.sub(r"^targets\.[^.]+\.", "targets.*.", key): commented
        for key, commented in keys_in(EXAMPLE.read_text(encoding="utf-8")).items()
    }
    missing = [key for key in documented_keys() if key not in found]
    assert not missing, f"settings missing from config.example.toml: {missing}"
    bare = [key for key in documented_keys() if not found[key]]
    assert not bare, f"settings without a comment line directly above: {bare}"
    assert set(found) == set(documented_keys())


def test_documented_keys_cover_the_schema() -> None:
    keys = documented_keys()
    assert "listeners.ssh.port" in keys
    assert "targets.*.description" in keys
    assert "targets.*.max_grant" in keys
    assert len(keys) == len(set(keys))


def test_example_mentions_the_commented_out_target_and_the_env_variable() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "# [targets.web-1]" in text
    assert "BASTION_SECRETS_KEY" in text


def test_default_config_text_with_other_ports(tmp_path: Path) -> None:
    text = default_config_text(ssh_port=2200, postgres_port=5433, web_port=8443)
    assert "$" not in text
    config = load_config(write(tmp_path, text))
    assert (config.listeners.ssh.port, config.listeners.postgres.port) == (2200, 5433)
    assert config.listeners.web.port == 8443


@pytest.mark.parametrize(
    "ports",
    [{"ssh_port": 0}, {"web_port": 70000}, {"web_port": 2222}],
)
def test_default_config_text_refuses_bad_ports(ports: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="port"):
        default_config_text(**ports)


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("2w", 1209600),
        ("1h30m", 5400),
        ("1w2d3h4m5s", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        (" 1h 30m ", 5400),
        ("120m", 7200),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("0m", "must be positive"),
        ("0h0m", "must be positive"),
        ("5x", "unknown unit 'x'"),
        ("5M", "unknown unit 'M'"),
        ("abc", "not a number followed by a unit"),
        ("h", "not a number followed by a unit"),
        ("-5m", "negative"),
        ("15", "has no unit"),
        ("1.5h", "whole numbers"),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("99999999999999w", "too long"),
    ],
)
def test_parse_duration_refuses(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as caught:
        parse_duration(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5400, "1h30m"), (90, "1m30s"), (900, "15m"), (43200, "12h"), (1209600, "2w"), (0, "0s")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


def test_format_duration_drops_fractions_and_keeps_sign() -> None:
    assert format_duration(timedelta(seconds=61, milliseconds=999)) == "1m1s"
    assert format_duration(timedelta(minutes=-15)) == "-15m"


@given(st.integers(min_value=1, max_value=10**12))
def test_duration_round_trip_from_seconds(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


@given(st.lists(st.integers(min_value=0, max_value=10**4), min_size=5, max_size=5))
def test_duration_round_trip_from_text(counts: list[int]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in zip(counts, "wdhms", strict=True) if n)
    if not text:
        return
    delta = parse_duration(text)
    assert format_duration(parse_duration(format_duration(delta))) == format_duration(delta)
    assert parse_duration(format_duration(delta)) == delta


def test_allowed_hours_are_read_and_checked(tmp_path: Path) -> None:
    text = '[targets.db]\nallowed_hours = "Mon-Fri 08:00-20:00"\ntimezone = "Europe/Berlin"\n'
    hours = load_config(write(tmp_path, text)).target_policy("db").allowed_hours
    assert hours is not None and hours.zone == "Europe/Berlin"
    with pytest.raises(ConfigError, match=r"targets\.db\.allowed_hours.*unknown day 'weekdays'"):
        load_config(write(tmp_path, '[targets.db]\nallowed_hours = "weekdays 08:00-20:00"\n'))
    with pytest.raises(ConfigError, match=r"targets\.db\.allowed_hours.*unknown timezone"):
        load_config(write(tmp_path, '[targets.db]\nallowed_hours = "daily 08:00-20:00"\n'
                                    'timezone = "Mars/Olympus"\n'))  # fmt: skip


@pytest.mark.parametrize(("line", "key", "problem"), [
    ('timezone = "Mars/Olympus"', "timezone", "unknown timezone 'Mars/Olympus'"),
    ('build_at = "25:00"', "build_at", "'25:00' is not a time of day written HH:MM"),
    ('working_hours = "Moonday 9-5"', "working_hours", ""),
    ('recipients = ["sec@example.com, boss@example.com"]', "recipients", "not one email"),
])  # fmt: skip
def test_a_weekly_review_setting_that_cannot_work_is_refused_at_load(
    tmp_path: Path, line: str, key: str, problem: str
) -> None:
    config_error(write(tmp_path, f"[reports]\n{line}\n"), f"reports.{key}", problem)
