"""The real-PostgreSQL test infrastructure works against a private cluster, with no bastion."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.realpg import (
    CUSTOMER_ROWS,
    ORDER_ROWS,
    PgCluster,
    PgClusterFactory,
    PgDatabase,
    asyncpg_connect,
    pgbench_tps,
    psycopg_connect,
    random_password,
    reap_stale_clusters,
    run_pgbench,
    run_psql,
    run_psql_async,
    unique_name,
)


def _login(cluster: PgCluster, *, prefix: str = "u") -> PgDatabase:
    """A fresh login role (SCRAM) on `cluster`, connecting to the postgres database."""
    role, password = unique_name(prefix), random_password()
    cluster.create_role(role, password)
    return PgDatabase(cluster.host, cluster.port, "postgres", role, password, cluster)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in {"Z", "X"}


def test_cluster_runs_as_postgres_on_loopback_with_a_private_directory(
    pg_cluster: PgCluster,
) -> None:
    assert pg_cluster.running and pg_cluster.host == "127.0.0.1" and pg_cluster.port > 0
    assert pg_cluster.port != 5432
    pid = pg_cluster.pid
    assert pid is not None
    data = pg_cluster.data_dir.stat()
    assert stat.S_IMODE(data.st_mode) == 0o700
    if os.geteuid() == 0:
        assert Path(f"/proc/{pid}").stat().st_uid == data.st_uid != 0
    settings = dict(
        pg_cluster.sql(
            "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses',"
            " 'password_encryption', 'fsync', 'max_connections', 'server_version_num',"
            " 'unix_socket_directories')"
        )
    )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "password_encryption": "scram-sha-256",
        "fsync": "off",
        "max_connections": "300",
        "server_version_num": settings["server_version_num"],
        "unix_socket_directories": str(pg_cluster.socket_dir),
    }
    assert settings["server_version_num"].startswith("15")


def test_psql_logs_in_as_the_service_role_with_scram(pg: PgDatabase) -> None:
    assert pg.cluster is not None
    start = pg.cluster.log_offset()
    result = run_psql(pg, "-At", "-c", "SELECT 1, current_user, current_database()")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"1|{pg.user}|{pg.database}\n"
    stored = pg.cluster.stored_password(pg.user)
    assert stored is not None and stored.startswith("SCRAM-SHA-256$")
    assert f'identity="{pg.user}" method=scram-sha-256' in pg.cluster.log_text(start)


def test_psql_with_a_wrong_password_is_refused(pg: PgDatabase) -> None:
    result = run_psql(pg.replace(password="wrong"), "-At", "-c", "SELECT 1")
    assert result.returncode == 2 and result.stdout == ""
    assert f'password authentication failed for user "{pg.user}"' in result.stderr


def test_psql_without_a_password_fails_instead_of_prompting(pg: PgDatabase) -> None:
    result = run_psql(pg.dsn.replace(f"password={pg.password}", ""), "-c", "SELECT 1")
    assert result.returncode == 2
    assert "no password supplied" in result.stderr


def test_the_seeded_world_is_deterministic_and_owned_by_the_service_role(pg: PgDatabase) -> None:
    result = run_psql(
        pg,
        "-At",
        "-c",
        "SELECT count(*), min(id), max(id) FROM customers;"
        " SELECT name, email, ssn, created_at FROM customers WHERE id = 42;"
        " SELECT count(*), sum(total) FROM orders;"
        " SELECT tableowner FROM pg_tables WHERE tablename IN ('customers', 'orders');"
        " SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{CUSTOMER_ROWS}|1|{CUSTOMER_ROWS}"
    assert lines[1] == "Customer 42|customer42@example.com|142-52-1294|2024-01-02 18:00:00+00"
    count, total = lines[2].split("|")
    assert int(count) == ORDER_ROWS and float(total) > 0
    assert lines[3:5] == [pg.user, pg.user]
    assert lines[5] == "f"


def test_each_pg_is_a_database_and_role_of_its_own(pg_cluster: PgCluster, pg: PgDatabase) -> None:
    other = pg_cluster.fresh_orders("other")
    try:
        assert (other.database, other.user) != (pg.database, pg.user)
        run_psql(pg, "-c", "DELETE FROM orders")
        counts = run_psql(other, "-At", "-c", "SELECT count(*) FROM orders")
        assert counts.stdout == f"{ORDER_ROWS}\n", counts.stderr
    finally:
        pg_cluster.discard(other)
    assert not pg_cluster.sql(
        "SELECT 1 FROM pg_database WHERE datname = %s", params=[other.database]
    )
    assert not pg_cluster.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", params=[other.user])


async def test_asyncpg_runs_a_query_with_a_parameter(pg: PgDatabase) -> None:
    conn = await asyncpg_connect(pg)
    try:
        name = await conn.fetchval("SELECT name FROM customers WHERE id = $1", 42)
        rows = await conn.fetch("SELECT id FROM orders WHERE customer_id = $1 ORDER BY id", 8)
    finally:
        await conn.close()
    assert name == "Customer 42"
    assert [row["id"] for row in rows][:1] == [1]
    conn = await asyncpg_connect(pg.url)
    try:
        assert await conn.fetchval("SELECT current_user") == pg.user
    finally:
        await conn.close()


async def test_psql_runs_without_blocking_the_event_loop(pg: PgDatabase) -> None:
    result = await run_psql_async(pg, "-At", "-c", "SELECT count(*) FROM customers")
    assert (result.returncode, result.stdout) == (0, f"{CUSTOMER_ROWS}\n"), result.stderr


def test_psycopg_runs_a_query_with_a_parameter(pg: PgDatabase) -> None:
    with psycopg_connect(pg) as conn:
        row = conn.execute("SELECT email FROM customers WHERE id = %s", [7]).fetchone()
        assert row == ("customer7@example.com",)
    with psycopg_connect(pg.dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (pg.user,)


def test_pgbench_initialises_and_runs_select_only(pg: PgDatabase) -> None:
    init = run_pgbench(pg, "-i", "-s", "1", "-q")
    assert init.returncode == 0, init.stderr
    bench = run_pgbench(pg, "-S", "-T", "2", "-c", "2", "-j", "2")
    assert bench.returncode == 0, bench.stderr
    tps = pgbench_tps(bench.stdout)
    print(f"pgbench -S -T 2 -c 2 direct: {tps:.0f} TPS")
    assert tps > 0


def test_pg_private_restarts_on_the_same_port_and_keeps_data(pg_private: PgCluster) -> None:
    port = pg_private.port
    pg_private.sql("CREATE TABLE kept AS SELECT 7 AS n")
    before = pg_private.pid
    pg_private.restart()
    assert pg_private.port == port and pg_private.pid not in {None, before}
    assert pg_private.sql("SELECT n FROM kept") == [(7,)]
    pg_private.stop("immediate")
    assert not pg_private.running
    with pytest.raises(psycopg.OperationalError):
        pg_private.sql("SELECT 1")
    pg_private.start()
    assert pg_private.sql("SELECT n FROM kept") == [(7,)]


def test_pg_private_survives_being_killed(pg_private: PgCluster) -> None:
    login = _login(pg_private)
    with psycopg_connect(login) as conn:
        pg_private.kill()
        assert not pg_private.running
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    pg_private.start()
    result = run_psql(login, "-At", "-c", "SELECT 1")
    assert result.stdout == "1\n", result.stderr
    assert "terminated by signal 9" in pg_private.log_text() or "was interrupted" in (
        pg_private.log_text()
    )


def test_a_role_switched_to_md5_logs_in_with_md5(pg_private: PgCluster) -> None:
    login = _login(pg_private, prefix="md5")
    pg_private.set_password(login.user, login.password, encryption="md5")
    stored = pg_private.stored_password(login.user)
    assert stored is not None and re.fullmatch(r"md5[0-9a-f]{32}", stored)
    pg_private.set_role_auth(login.user, "md5")
    start = pg_private.log_offset()
    result = run_psql(login, "-At", "-c", "SELECT current_user")
    assert result.stdout == f"{login.user}\n", result.stderr
    assert f'identity="{login.user}" method=md5' in pg_private.log_text(start)
    refused = run_psql(login.replace(password="wrong"), "-c", "SELECT 1")
    assert refused.returncode == 2 and "password authentication failed" in refused.stderr
    # Other roles still need SCRAM.
    other = _login(pg_private)
    start = pg_private.log_offset()
    assert run_psql(other, "-c", "SELECT 1").returncode == 0
    assert "method=scram-sha-256" in pg_private.log_text(start)


def test_a_role_switched_to_trust_needs_no_password(pg_private: PgCluster) -> None:
    login = _login(pg_private, prefix="trust")
    pg_private.set_role_auth(login.user, "trust")
    result = run_psql(login.replace(password="anything"), "-At", "-c", "SELECT 1")
    assert result.stdout == "1\n", result.stderr
    pg_private.set_role_auth(login.user, None)
    refused = run_psql(login.replace(password="anything"), "-c", "SELECT 1")
    assert refused.returncode == 2


def test_set_hba_replaces_the_tcp_rules(pg_private: PgCluster) -> None:
    login = _login(pg_private)
    pg_private.set_hba(["host all all 127.0.0.1/32 reject"])
    refused = run_psql(login, "-c", "SELECT 1")
    assert refused.returncode == 2 and "rejects connection" in refused.stderr
    assert pg_private.sql("SELECT 1") == [(1,)]  # the socket stays trusted
    with pytest.raises(ValueError, match=r"bad pg_hba\.conf"):
        pg_private.set_hba(["host all all 127.0.0.1/32 no-such-method"])
    pg_private.set_hba(["host all all 127.0.0.1/32 scram-sha-256"])
    assert run_psql(login, "-c", "SELECT 1").returncode == 0


def test_the_superuser_connects_over_tcp_with_its_password(pg_cluster: PgCluster) -> None:
    query = "SELECT current_setting('is_superuser')"
    result = run_psql(pg_cluster.superuser_database(), "-At", "-c", query)
    assert result.stdout == "on\n", result.stderr


def test_ssl_cluster_accepts_sslmode_require_and_verify_full(
    pg_cluster_factory: PgClusterFactory,
) -> None:
    cluster = pg_cluster_factory(ssl=True)
    assert cluster.ca_cert_path is not None
    key = cluster.data_dir / "server.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    login = _login(cluster)
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    required = run_psql(login, "-At", "-c", query, env={"PGSSLMODE": "require"})
    assert required.stdout == "t\n", required.stderr
    verified = run_psql(
        login,
        "-At",
        "-c",
        query,
        env={"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(cluster.ca_cert_path)},
    )
    assert verified.stdout == "t\n", verified.stderr
    plain = run_psql(login, "-At", "-c", query, env={"PGSSLMODE": "disable"})
    assert plain.stdout == "f\n", plain.stderr
    with psycopg_connect(login, sslmode="verify-full", sslrootcert=str(cluster.ca_cert_path)) as c:
        assert c.execute(query).fetchone() == (True,)


def test_plain_cluster_refuses_sslmode_require(pg: PgDatabase) -> None:
    result = run_psql(pg, "-c", "SELECT 1", env={"PGSSLMODE": "require"})
    assert result.returncode == 2 and "does not support SSL" in result.stderr


def test_make_big_table_builds_rows_of_the_asked_size(pg: PgDatabase) -> None:
    assert pg.cluster is not None
    pg.cluster.make_big_table(pg, 20_000)
    with psycopg_connect(pg) as conn:
        row = conn.execute("SELECT count(*), max(id), min(length(pad)) FROM big").fetchone()
        assert row == (20_000, 20_000, 500)
        size = conn.execute("SELECT pg_table_size('big')").fetchone()
        assert size is not None and size[0] > 20_000 * 500
        with contextlib.closing(conn.cursor()) as cur:
            cur.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'big'")
            assert cur.fetchone() == (pg.user,)


def test_clusters_left_by_a_dead_test_run_are_reaped() -> None:
    base = Path(tempfile.mkdtemp(prefix="bastion-reap-"))
    base.chmod(0o711)  # the server's OS user must traverse it
    cluster = PgCluster(base_dir=base)
    try:
        cluster.start()
        pid = cluster.pid
        assert pid is not None
        assert reap_stale_clusters(base) == []  # its owner (this process) is alive
        (cluster.dir / "owner").write_text("999999999 0")
        assert reap_stale_clusters(base) == [cluster.dir]
        assert not cluster.dir.exists() and not _alive(pid)
    finally:
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)
