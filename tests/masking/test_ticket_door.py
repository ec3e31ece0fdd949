"""A reusable ticket's connections are masked exactly as a login with a fresh code is."""

from __future__ import annotations

from datetime import timedelta

from tests.harness import Bastion
from tests.masking.shop import SECRETS
from tests.realpg import PgDatabase, run_psql


def test_each_ticket_connection_is_masked_and_guarded(bastion: Bastion) -> None:
    token, _, _ = bastion.core.tickets.mint("alice", "shop", bastion.code("alice"),
                                            duration=timedelta(hours=1), bind=None,
                                            via="test")  # fmt: skip
    via = PgDatabase("127.0.0.1", bastion.pg_port, "shop", "alice", token)
    for _ in range(2):
        done = run_psql(via, "-At", "-c", "SELECT email, ssn FROM customers ORDER BY id",
                        env={"PGSSLMODE": "require"})  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert not [s for s in SECRETS if s in done.stdout]
        assert "j*******@example.com" in done.stdout
    refused = run_psql(via, "-v", "VERBOSITY=verbose", "-c",
                       "SELECT set_config('search_path', 'x', false)",
                       env={"PGSSLMODE": "require"})  # fmt: skip
    assert refused.returncode != 0 and "42501" in refused.stderr, refused.stderr
    assert len({s.id for s in bastion.store.sessions()}) == 3
