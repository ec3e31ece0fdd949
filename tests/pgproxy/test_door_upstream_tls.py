"""TLS from the bastion to the target database, as the target's policy asks: verified, refused
on a certificate from another CA, refused when the server offers no TLS."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, alice_on
from tests.realpg import PgClusterFactory, PgDatabase, psycopg_connect


def policy(tls: str, ca: Path | None) -> str:
    lines = ["[targets.orders-prod]", f'tls = "{tls}"']
    if ca is not None:
        lines.append(f'tls_ca = "{ca}"')
    return "\n" + "\n".join(lines) + "\n"


def started(home: Path, db: PgDatabase, extra: str) -> Bastion:
    return alice_on(home, db, extra).start()


def test_verify_full_reaches_the_database_over_tls(
    tmp_path: Path, pg_cluster_factory: PgClusterFactory
) -> None:
    cluster = pg_cluster_factory(ssl=True)
    db = cluster.fresh_orders()
    b = started(tmp_path / "bastion", db, policy("verify-full", cluster.ca_cert_path))
    try:
        with psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD)) as conn:
            row = conn.execute(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
        assert row == (True,)
    finally:
        b.stop()


@pytest.mark.parametrize("tls", ["verify-full", "require"])
def test_refused_when_the_database_cannot_prove_itself_or_has_no_tls(
    tmp_path: Path, pg_cluster_factory: PgClusterFactory, pg: PgDatabase, tls: str
) -> None:
    if tls == "verify-full":  # a TLS server whose certificate another CA signed
        db = pg_cluster_factory(ssl=True).fresh_orders()
        ca: Path | None = tmp_path / "other-ca.pem"
        other = pg_cluster_factory(ssl=True)
        assert other.ca_cert_path is not None and ca is not None
        ca.write_bytes(other.ca_cert_path.read_bytes())
        expected = "TLS to the database failed"
    else:  # the shared test cluster has no TLS at all
        db, ca, expected = pg, None, "does not accept TLS"
    b = started(tmp_path / "bastion", db, policy(tls, ca))
    try:
        with pytest.raises(psycopg.OperationalError, match=expected):
            psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD))
        [failed] = b.events("session.upstream_failed")
        assert failed.subject == "orders-prod"
    finally:
        b.stop()
