"""Each setting's default is declared once, in its settings dataclass; the example documents it."""

from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from bastion.cli import build_parser
from bastion.config import Config, Listener, Listeners, Paths, TargetPolicy, load_config
from bastion.config_schema import (
    SETTINGS,
    TARGET_SETTINGS,
    Setting,
    as_written,
    declared_default,
    documented_keys,
)
from bastion.config_text import default_config_text

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
# filled by the loader, not by a key
NOT_SETTINGS = {"path", "targets", "name", "masking", "export"}


def write(directory: Path, text: str, name: str = "bastion.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# --- one declaration ------------------------------------------------------------------------


def test_a_setting_cannot_carry_a_default_of_its_own() -> None:
    # The schema says what a key is; the dataclass field it fills says what it defaults to.
    assert "default" not in {f.name for f in dataclasses.fields(Setting)}


def test_every_setting_has_a_declared_default_with_a_toml_form() -> None:
    for setting in SETTINGS:
        as_written(declared_default(Config, setting.key))
    for setting in TARGET_SETTINGS:
        as_written(declared_default(TargetPolicy, setting.key))
    assert declared_default(Config, "listeners.postgres.port") == 6432
    assert declared_default(Config, "ssh.login_grace") == declared_default(
        Config, "postgres.login_grace"
    )


def test_a_key_without_a_declared_default_is_refused() -> None:
    with pytest.raises(LookupError, match="declares no default"):
        declared_default(TargetPolicy, "name")
    with pytest.raises(LookupError, match=r"no field .colour. in Listener"):
        declared_default(Config, "listeners.ssh.colour")
    with pytest.raises(TypeError, match="TOML value"):
        as_written(object())


def _leaves(cls: type[Any], prefix: str = "") -> list[str]:
    """Every settings field below a dataclass, as dotted keys."""
    found = []
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in NOT_SETTINGS:
            continue
        kind = hints[field.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            found += _leaves(kind, f"{prefix}{field.name}.")
        else:
            found.append(prefix + field.name)
    return found


def test_every_settings_field_is_a_setting_and_every_setting_a_field() -> None:
    assert sorted(_leaves(Config)) == sorted(s.key for s in SETTINGS)
    assert sorted(_leaves(TargetPolicy)) == sorted(s.key for s in TARGET_SETTINGS)


def test_an_empty_file_loads_exactly_the_declared_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[targets.t]\n"))
    for field in dataclasses.fields(Config):
        if field.name not in ("path", "paths", "targets"):
            assert getattr(config, field.name) == declared_default(Config, field.name), field.name
    assert config.listeners == Listeners()
    assert config.listeners.web == Listener(port=8080)
    for field in dataclasses.fields(Paths):
        assert getattr(config.paths, field.name) == tmp_path / getattr(Paths(), field.name)
    # A target with a [targets.NAME] table and one without read the same defaults.
    assert config.targets["t"] == TargetPolicy("t") == config.target_policy("t")
    assert dataclasses.replace(config.target_policy("other"), name="t") == TargetPolicy("t")


def test_bastion_init_writes_the_declared_ports_unless_told_otherwise(tmp_path: Path) -> None:
    doors = Listeners()
    ports = {door: getattr(doors, door).port for door in ("ssh", "postgres", "web")}
    args = build_parser().parse_args(["init", str(tmp_path)])
    assert {door: getattr(args, f"{door}_port") for door in ports} == ports
    parameters = inspect.signature(default_config_text).parameters
    assert {door: parameters[f"{door}_port"].default for door in ports} == ports
    assert load_config(write(tmp_path, default_config_text())).listeners == doors


# --- the example documents the declared defaults --------------------------------------------

LITERAL = re.compile(r'("(?:[^"\\]|\\.)*"|\[[^\]]*\]|true|false|-?\d+)(.*)')


def documented_defaults() -> dict[str, str]:
    """Each active key of the example ("targets.*.KEY" for targets) and the text after the
    "Default:" in the comment lines right above it."""
    table, comments, found = "", [], {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
            continue
        if stripped.startswith("["):
            table = re.sub(r"^targets\.[^.]+", "targets.*", stripped.strip("[]"))
        elif stripped:
            said = re.search(r"Default: (.*)$", " ".join(comments))
            found[f"{table}.{stripped.split('=', 1)[0].strip()}"] = said.group(1) if said else ""
        comments = []
    return found


def _with(key: str, literal: str) -> tuple[str, str]:
    """(a file setting only this key to `literal`, the same file without it)."""
    *table, name = key.replace("targets.*", "targets.t").split(".")
    base = "[targets.t]\n" if key.startswith("targets.") else ""
    if table == ["targets", "t"]:
        return f"{base}{name} = {literal}\n", base
    return f"{base}[{'.'.join(table)}]\n{name} = {literal}\n", base


def _same(tmp_path: Path, key: str, literal: str) -> bool:
    with_it, without = _with(key, literal)
    written = load_config(write(tmp_path, with_it, "with.toml"))
    default = load_config(write(tmp_path, without, "without.toml"))
    return dataclasses.replace(written, path=default.path) == default


def test_every_key_in_the_example_says_its_default() -> None:
    documented = documented_defaults()
    assert set(documented) == set(documented_keys())
    assert not [key for key, said in documented.items() if not said]


def test_the_example_documents_the_declared_defaults(tmp_path: Path) -> None:
    """Writing the value a key's comment calls its default loads what leaving it out does."""
    wrong, prose = [], {}
    for key, said in documented_defaults().items():
        literal = LITERAL.match(said)
        if literal is None or literal.group(2).startswith(" when"):
            prose[key] = said
        elif not _same(tmp_path, key, literal.group(1)):
            wrong.append(f"{key}: the example says {literal.group(1)}")
    assert not wrong, f"config.example.toml documents defaults that are not declared: {wrong}"
    for key, said in prose.items():
        _check_prose(tmp_path, key, said)


def _check_prose(tmp_path: Path, key: str, said: str) -> None:
    """A default the example describes in words rather than as a value."""
    name = key.removeprefix("targets.*.")
    policy = TargetPolicy("t")
    if said.startswith("none") or said.rstrip(".") in documented_keys():
        assert getattr(policy, name) is None, key
    elif key == "targets.*.tls":
        assert said.startswith('"verify-full" when tls_ca is set, else "off"')
        with_ca = load_config(write(tmp_path, '[targets.t]\ntls_ca = "ca.pem"\n'))
        assert (policy.tls, with_ca.targets["t"].tls) == ("off", "verify-full")
    elif key == "targets.*.masking.styles":
        assert said.startswith("by what the column holds")
        assert policy.masking.rules.styles == ()
    else:
        raise AssertionError(f"{key}: cannot read the documented default {said!r}")


def test_a_wrong_documented_default_is_caught(tmp_path: Path) -> None:
    assert _same(tmp_path, "sessions.idle_timeout", '"15m"')
    assert not _same(tmp_path, "sessions.idle_timeout", '"16m"')
    assert _same(tmp_path, "targets.*.masking.phone_regions", '["US", "GB", "NL", "DE", "FR"]')
    assert not _same(tmp_path, "targets.*.masking.phone_regions", '["US"]')
    assert tomllib.loads(_with("listeners.web.port", "8080")[0])["listeners"]["web"]["port"] == 8080
