"""PgLocation: where a PostgreSQL store is, refused in one line when it is not safe to use."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from bastion.audit.location import PgLocation, check_url, is_local, read_password_file
from bastion.audit.sqlconn import DbError
from bastion.errors import ConfigError
from tests.realpg import PgClusterFactory, make_server_tls

SECRET = "s3cret-Pa55word"


def secret_file(tmp_path: Path, mode: int = 0o600, text: str = SECRET + "\n") -> Path:
    path = tmp_path / "store.password"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://bastion@127.0.0.1/store", "must start with postgresql://"),
        ("127.0.0.1:5432/store", "must start with postgresql://"),
        ("postgresql://bastion:" + SECRET + "@127.0.0.1/store", "holds a password"),
        ("postgresql://bastion@127.0.0.1/store?password=" + SECRET, "holds a password"),
        ("postgresql://bastion@db.internal/store", "sslmode=verify-full"),
        ("postgresql://bastion@db.internal/store?sslmode=require", "sslmode=verify-full"),
        ("postgresql://b@127.0.0.1,10.0.0.7/store?sslmode=prefer", "10.0.0.7 is not on this host"),
        ("postgresql://b@[::1]/s?synchronous_commit=off", "'synchronous_commit' is not one of"),
        ("postgresql://b@127.0.0.1/s?service=prod", "'service' is not one of"),
        ("postgresql://b@127.0.0.1/s?sslmode=disable&sslmode=verify-full", "given twice"),
        ("postgresql://b@127.0.0.1/s#x", "#fragment"),
    ],
)
def test_unsafe_urls_are_refused_in_one_line(url: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said) as refused:
        PgLocation(url)
    assert SECRET not in str(refused.value)
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith("config: store.url: ")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bastion@127.0.0.1:5432/store",
        "postgres://bastion@localhost/store",
        "postgresql://bastion@[::1]:5433/store?sslmode=disable",
        "postgresql://bastion@%2Frun%2Fpostgresql/store",
        "postgresql:///store",
        "postgresql://b@db1.internal:5432,db2.internal/s?sslmode=verify-full"
        "&sslrootcert=/etc/bastion/ca.crt&target_session_attrs=read-write",
    ],
)
def test_local_and_verified_urls_are_accepted(url: str) -> None:
    assert PgLocation(url).url == url


def test_loopback_names() -> None:
    assert [is_local(h) for h in ("127.0.0.2", "::1", "localhost", "/tmp/s", "")] == [True] * 5
    assert [is_local(h) for h in ("10.0.0.1", "db", "localhost.evil.example", "::")] == [False] * 4
    assert check_url("postgresql://b@db/s?sslmode=verify-full") == {"sslmode": "verify-full"}


def test_the_password_comes_from_a_private_file(tmp_path: Path) -> None:
    location = PgLocation(
        "postgresql://bastion@127.0.0.1/store",
        password_file=secret_file(tmp_path),
        schema="bastion",
        head_file=tmp_path / "node.head",
    )
    assert location.handoff() == (location.url, SECRET, "bastion", tmp_path / "node.head")
    handed = PgLocation.handed(*location.handoff())
    assert handed.handoff() == location.handoff()
    shown = [repr(location), str(location), repr(handed), str(handed)]
    assert not [s for s in shown if SECRET in s]
    assert "postgresql://bastion@127.0.0.1/store" in str(location)
    assert "schema bastion" in str(location)
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(location)


@pytest.mark.parametrize(
    ("mode", "text", "said"),
    [
        (0o644, SECRET, "can be read by others \\(mode 0644\\); chmod 600 it"),
        (0o640, SECRET, "mode 0640"),
        (0o600, "\n", "holds no password"),
        (0o600, "", "holds no password"),
    ],
)
def test_a_password_file_others_can_read_is_refused(
    tmp_path: Path, mode: int, text: str, said: str
) -> None:
    path = secret_file(tmp_path, mode, text)
    with pytest.raises(ConfigError, match=said) as refused:
        PgLocation("postgresql://b@127.0.0.1/s", password_file=path)
    assert SECRET not in str(refused.value)
    assert str(refused.value).startswith("config: store.password_file: ")


def test_a_password_file_that_is_no_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Is a directory"):
        read_password_file(tmp_path)
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_password_file(tmp_path / "fifo")
    with pytest.raises(ConfigError, match=r"cannot read .*missing"):
        read_password_file(tmp_path / "missing")
    assert read_password_file(secret_file(tmp_path, 0o400, SECRET + "\r\nrest")) == SECRET


@pytest.mark.parametrize("schema", ["Public", "a-b", "x;drop", "", "s" * 64, '"q"'])
def test_a_schema_must_be_a_plain_name(schema: str) -> None:
    with pytest.raises(ConfigError, match=r"store.schema: .* is not a plain schema name"):
        PgLocation("postgresql://b@127.0.0.1/s", schema=schema)


def test_settings_name_the_node_and_the_schema() -> None:
    location = PgLocation("postgresql://b@127.0.0.1/s", schema="bastion")
    settings = location.server_settings("node a/1\u00e9", lock_timeout=2.5, idle_in_transaction=5)
    assert settings["application_name"] == "bastion-store/node_a_1_"
    assert settings["search_path"] == '"bastion"'
    assert (settings["lock_timeout"], settings["idle_in_transaction_session_timeout"]) == (
        "2500ms",
        "5000ms",
    )
    assert settings["synchronous_commit"] == "on"


def test_verify_full_reaches_a_store_that_proves_who_it_is(
    pg_cluster_factory: PgClusterFactory, tmp_path: Path
) -> None:
    cluster = pg_cluster_factory(ssl=True)
    cluster.set_hba(["hostssl all all 127.0.0.1/32 scram-sha-256"])  # TLS or nothing
    db = cluster.fresh_orders()
    wrong_ca = tmp_path / "other-ca.crt"
    wrong_ca.write_bytes(make_server_tls().ca_cert)
    secret = secret_file(tmp_path, text=db.password)
    base = f"postgresql://{db.user}@localhost:{db.port}/{db.database}?sslmode=verify-full"
    location = PgLocation(f"{base}&sslrootcert={cluster.ca_cert_path}", password_file=secret)
    conn = location.connect("tls")
    try:
        ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert ssl.fetchall() == [(True,)]
    finally:
        conn.close()
    impostor = PgLocation(f"{base}&sslrootcert={wrong_ca}", password_file=secret)
    with pytest.raises(DbError, match="certificate verify failed") as refused:
        impostor.connect("tls")
    assert db.password not in str(refused.value)
