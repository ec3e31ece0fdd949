"""The read grant's function allow-list, held against the real catalog of PostgreSQL 15."""

from __future__ import annotations

import psycopg

from bastion.masking.lineage import SAFE_FUNCTIONS
from bastion.sqlparse.functions import ALLOWED, BUILTIN_OPERATORS, FAMILIES
from tests.realpg import PgDatabase

# Volatile built-ins on the list, each known not to write: they read a clock, a generator,
# this session's sequences, sizes on disk, or wait.
VOLATILE_BUT_SAFE = frozenset({
    "random", "gen_random_uuid", "clock_timestamp", "timeofday", "pg_sleep", "pg_sleep_for",
    "pg_sleep_until", "currval", "lastval", "lo_get", "current_query", "pg_database_size",
    "pg_relation_size", "pg_table_size", "pg_total_relation_size", "pg_indexes_size",
    "pg_tablespace_size", "pg_partition_ancestors", "pg_partition_tree", "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids", "pg_get_wal_replay_pause_state", "pg_is_in_recovery",
    "pg_is_wal_replay_paused", "pg_jit_available", "pg_last_committed_xact", "pg_lock_status",
    "pg_notification_queue_usage", "pg_prepared_xact", "pg_sequence_last_value",
    "pg_get_multixact_members", "pg_xact_status", "txid_status", "table_to_xml",
    "table_to_xml_and_xmlschema", "table_to_xmlschema",
})  # fmt: skip
# Words the grammar turns into expressions (COALESCE, TRIM, CURRENT_DATE), never a call.
KEYWORDS = frozenset({"coalesce", "nullif", "greatest", "least", "current_date", "trim"})


def test_every_allowed_name_has_one_family_and_a_reason() -> None:
    names = [name for _, _, listed in FAMILIES for name in listed.split()]
    assert sorted(set(names)) == sorted(ALLOWED)
    assert all(why.split(": ", 1)[1] for why in ALLOWED.values())


def test_masked_mode_allows_nothing_a_read_grant_refuses() -> None:
    assert SAFE_FUNCTIONS - ALLOWED.keys() <= KEYWORDS


def test_the_allow_list_holds_real_read_only_built_ins(pg: PgDatabase) -> None:
    with psycopg.connect(pg.dsn) as conn:
        rows = conn.execute(
            "SELECT p.proname, bool_or(p.provolatile = 'v') FROM pg_proc p"
            " WHERE p.pronamespace = 'pg_catalog'::regnamespace GROUP BY p.proname"
        ).fetchall()
        operators = {r[0] for r in conn.execute("SELECT DISTINCT oprname FROM pg_operator")}
    volatile = {name: is_volatile for name, is_volatile in rows}
    assert sorted(ALLOWED.keys() - volatile.keys()) == []  # all real pg_catalog functions
    assert sorted(n for n in ALLOWED if volatile[n] and n not in VOLATILE_BUT_SAFE) == []
    assert operators == BUILTIN_OPERATORS
