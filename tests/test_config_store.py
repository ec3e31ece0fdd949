"""[store]: the URL that puts the store on PostgreSQL, refused in one line when it can't be safe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.audit.location import PgLocation
from bastion.config import load_config
from bastion.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bastion.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "\n" not in str(caught.value)
    return caught.value


def test_without_a_url_the_store_is_the_sqlite_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.store.where(config.path, config.paths.store) == tmp_path / "bastion.db"


def test_a_url_puts_the_store_on_postgresql_with_its_files_beside_the_config(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "store.pw"
    secret.write_text("hunter2-long-password\n")
    secret.chmod(0o600)
    config = load_config(write(tmp_path, (
        '[store]\nurl = "postgresql://bastion@127.0.0.1:5432/bastion"\n'
        'password_file = "store.pw"\nschema = "audit"\n'
    )))  # fmt: skip
    where = config.store.where(config.path, config.paths.store)
    assert isinstance(where, PgLocation)
    assert where.head_file == tmp_path / "store.head"
    assert where.schema == "audit" and where.password_file == secret
    assert where.handoff()[1] == "hunter2-long-password"
    assert "hunter2" not in repr(where) + str(where)


@pytest.mark.parametrize(
    ("text", "key", "said"),
    [
        ('url = "postgresql://bastion:pw@127.0.0.1/b"', "store.url", "holds a password"),
        ('url = "postgresql://b@127.0.0.1/b?password=pw"', "store.url", "holds a password"),
        ('url = "mysql://b@127.0.0.1/b"', "store.url", "must start with postgresql://"),
        ('url = "postgresql://b@db.example/b"', "store.url", "sslmode=verify-full"),
        ('url = "postgresql://b@db.example/b?sslmode=require"', "store.url", "verify-full"),
        ('url = "postgresql://b@127.0.0.1/b?synchronous_commit=off"', "store.url", "parameter"),
        ('url = "postgresql://b@127.0.0.1/b"\nschema = "a; drop"', "store.schema", "schema name"),
        ('url = "postgresql://b@127.0.0.1/b"\nhead_file = " "', "store.head_file", "empty"),
        ('password_file = "pw"', "store.password_file", "url is not"),
    ],
)
def test_a_store_that_cannot_be_safe_is_refused_in_one_line(
    tmp_path: Path, text: str, key: str, said: str
) -> None:
    error = refused(tmp_path, f"[store]\n{text}\n")
    assert error.key == key and said in error.problem


def test_a_password_file_others_can_read_is_refused_when_the_store_is_opened(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "store.pw"
    secret.write_text("hunter2-long-password\n")
    os.chmod(secret, 0o644)
    config = load_config(write(tmp_path, (
        '[store]\nurl = "postgresql://bastion@127.0.0.1/b"\npassword_file = "store.pw"\n'
    )))  # fmt: skip
    with pytest.raises(ConfigError, match="chmod 600") as caught:
        config.store.where(config.path, config.paths.store)
    assert "hunter2" not in str(caught.value)
