"""Catalog reads in masked mode: what tools' catalog queries need is analysed (their functions,
system columns, nested WITH RECURSIVE, SELECT * over unnest), and no catalog read shows a
sensitive column's values: statistics stay refused, pg_attribute.attmissingval is masked."""

from __future__ import annotations

import re

import psycopg
import pytest

from bastion.masking.lineage import Refused
from bastion.masking.session import Masking
from tests.harness import Bastion
from tests.masking.door import PASSWORD
from tests.masking.shop import SECRETS
from tests.masking.test_corpus import shop_masking
from tests.realpg import PgCluster, PgDatabase, psycopg_connect


@pytest.fixture
async def masking(shop: PgDatabase) -> Masking:
    return await shop_masking(shop)


def names(masking: Masking, sql: str) -> list[str]:
    columns = masking.plan(sql).columns
    assert columns is not None
    return [c.name for c in columns]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # pgcli's schemata: a one-column function in FROM expands under *, named after it.
        ("SELECT * FROM unnest(current_schemas(true))", ["unnest"]),
        ("SELECT * FROM unnest(ARRAY[1, 2]) AS n", ["n"]),
        # psql's \dd and \dL join on a catalog's tableoid.
        ("SELECT l.lanname FROM pg_catalog.pg_language l JOIN pg_catalog.pg_description d"
         " ON d.classoid = l.tableoid AND d.objoid = l.oid", ["lanname"]),
        # psycopg's TypeInfo.fetch, SQLAlchemy's reflection, pgjdbc's getPrimaryKeys.
        ("SELECT typname, oid::regtype::text FROM pg_type WHERE oid = to_regtype('int4')",
         ["typname", "?column?"]),
        ("SELECT has_table_privilege(c.oid, 'SELECT'), pg_get_userbyid(c.relowner)"
         " FROM pg_class c WHERE c.relname = 'customers'", ["has_table_privilege",
                                                            "pg_get_userbyid"]),
        ("SELECT (information_schema._pg_expandarray(con.conkey)).n AS n FROM pg_constraint con",
         ["n"]),
        ("SELECT generate_subscripts(indkey, 1) FROM pg_index", ["generate_subscripts"]),
        # pgjdbc's getMaxIndexKeys and psql's \dconfig; pgAdmin's database comments.
        ("SELECT setting FROM pg_catalog.pg_settings WHERE name='max_index_keys'", ["setting"]),
        ("SELECT description FROM pg_shdescription WHERE classoid = 'pg_database'::regclass",
         ["description"]),
    ],
)  # fmt: skip
def test_what_catalog_queries_use_is_analysed(masking: Masking, sql: str,
                                               expected: list[str]) -> None:  # fmt: skip
    assert names(masking, sql) == expected


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        # The new functions still may not take a sensitive column.
        ("SELECT array_position(ARRAY[email], 'x') FROM customers", "public.customers.email"),
        ("SELECT * FROM unnest(ARRAY[ssn]) FROM customers", "cannot be parsed"),
        ("SELECT s FROM customers c, unnest(ARRAY[c.ssn]) s", "public.customers.ssn"),
        ("SELECT format('%s', phone) FROM customers", "public.customers.phone"),
        # A system column is no way round the whole-row or expression rules.
        ("SELECT ctid FROM customers WHERE email LIKE 'j%'", "public.customers.email"),
        # Only information_schema's own helper, not any function there or elsewhere.
        ("SELECT information_schema._pg_truetypid(a, t) FROM pg_attribute a, pg_type t",
         "not allowed"),
        ("SELECT public._pg_expandarray(ARRAY[1])", "not allowed"),
    ],
)  # fmt: skip
def test_a_sensitive_column_stays_out_of_the_new_reads(masking: Masking, sql: str,
                                                       needle: str) -> None:  # fmt: skip
    with pytest.raises(Refused, match=re.escape(needle)):
        masking.plan(sql)


def test_a_system_column_projected_is_masked_as_unproven(masking: Masking) -> None:
    columns = masking.plan("SELECT ctid, id FROM customers").columns
    assert (
        columns is not None
        and columns[0].sources
        and columns[0].sources <= {(s[0], -1) for s in columns[1].sources}
    )
    assert not (columns[0].sources & masking.known)  # masked by the origin cross-check


STATISTICS = [
    "SELECT attname, most_common_vals, histogram_bounds FROM pg_stats",
    "SELECT * FROM pg_catalog.pg_stats WHERE tablename = 'customers'",
    "SELECT stavalues1 FROM pg_catalog.pg_statistic",
    "SELECT most_common_vals FROM pg_stats_ext",
    "SELECT most_common_vals FROM pg_catalog.pg_stats_ext_exprs",
    "SELECT stxdmcv FROM pg_catalog.pg_statistic_ext_data",
    "SELECT m.* FROM pg_statistic_ext_data d, pg_mcv_list_items(d.stxdmcv) m",
    "SELECT query FROM pg_stat_activity",
    "SELECT * FROM pg_catalog.pg_user_mappings",
]


def test_statistics_and_attmissingval_never_show_values_through_the_door(
    bastion: Bastion, shop: PgDatabase
) -> None:
    with psycopg_connect(shop, autocommit=True) as owner:
        owner.execute("ALTER TABLE customers ADD COLUMN vip_email text"
                      " DEFAULT 'jane.doe@example.com'")  # fmt: skip
        owner.execute("CREATE STATISTICS customers_mcv (mcv) ON email, ssn FROM customers")
        owner.execute("ANALYZE customers")
        found = owner.execute("SELECT count(*) FROM pg_stats WHERE most_common_vals::text"
                              " LIKE '%jane.doe%'").fetchone()  # fmt: skip
        assert found is not None and found[0] >= 1  # the statistics do hold the values
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        for sql in STATISTICS:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="refused"):
                conn.execute(sql)
        rows = conn.execute("SELECT attname, attmissingval FROM pg_attribute"
                            " WHERE attrelid = 'customers'::regclass AND attnum > 0"
                            " ORDER BY attnum").fetchall()  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="sensitive"):
            conn.execute("SELECT attmissingval::text FROM pg_attribute")
        described = conn.execute("SELECT a.attname, pg_get_expr(d.adbin, d.adrelid)"
                                 " FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid ="
                                 " a.attrelid AND d.adnum = a.attnum WHERE a.attname ="
                                 " 'vip_email'").fetchall()  # fmt: skip
    assert rows[-1] == ("vip_email", None)  # the value old rows hold: masked
    assert [name for name, _ in rows][:3] == ["id", "name", "email"]
    assert not [s for s in SECRETS if s in str(rows)]
    # The default as the DDL wrote it is computed text: the content detectors see the email.
    assert [name for name, _ in described] == ["vip_email"]
    assert "jane.doe@example.com" not in str(described)


SETTING_SECRET = "AKIAEXAMPLESECRET0042"

# Catalog relations a masked session may not read at all: other roles' settings and password
# hashes, connection options and secrets of foreign servers and subscriptions.
SETTINGS_REFUSED = [
    "SELECT setconfig FROM pg_db_role_setting",
    "SELECT usename, useconfig FROM pg_user",
    "SELECT usename, passwd FROM pg_shadow",
    "SELECT rolname, rolpassword FROM pg_authid",
    "SELECT * FROM pg_user_mapping",
    "SELECT * FROM pg_catalog.pg_user_mappings",
    "SELECT srvname, srvoptions FROM pg_foreign_server",
    "SELECT fdwoptions FROM pg_foreign_data_wrapper",
    "SELECT ftoptions FROM pg_foreign_table",
    "SELECT subconninfo FROM pg_subscription",
    "SELECT pg_get_functiondef('keyed'::regproc)",  # prints the function's SET clauses
]

# A setting value held by an allowed catalog, in an expression or a predicate.
SETTINGS_USED = [
    "SELECT rolconfig::text FROM pg_roles",
    "SELECT rolname FROM pg_roles WHERE rolconfig::text LIKE '%AKIA%'",
    "SELECT array_to_string(rolconfig, ',') FROM pg_roles",
    "SELECT o.* FROM pg_roles r, pg_options_to_table(r.rolconfig) o",
    "SELECT proname FROM pg_proc WHERE 'app.k=" + SETTING_SECRET + "' = ANY (proconfig)",
    "SELECT attoptions::text FROM pg_attribute",
]


def test_other_roles_and_functions_settings_never_show_through_the_door(
    bastion: Bastion, shop: PgDatabase, pg_cluster: PgCluster
) -> None:
    """The red team's case: ALTER ROLE ... SET app.s3_secret_key = '...' is in every role's
    view of pg_roles.rolconfig; a function's SET clause in pg_proc.proconfig likewise."""
    pg_cluster.sql(f"ALTER ROLE \"{shop.user}\" SET app.s3_secret_key = '{SETTING_SECRET}'")
    pg_cluster.sql(
        "CREATE FUNCTION keyed() RETURNS int LANGUAGE sql"
        f" SET app.k = '{SETTING_SECRET}' AS 'SELECT 1'",
        db=shop.database,
    )
    with psycopg_connect(shop, autocommit=True) as owner:
        owner.execute("ALTER TABLE customers ALTER COLUMN email SET (n_distinct = 4242)")
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        shown = [
            conn.execute("SELECT rolname, rolconfig FROM pg_roles").fetchall(),
            conn.execute("SELECT * FROM pg_catalog.pg_roles").fetchall(),
            conn.execute(
                "SELECT proname, proconfig FROM pg_proc WHERE proname = 'keyed'"
            ).fetchall(),
            conn.execute(
                "SELECT attname, attoptions FROM pg_attribute"
                " WHERE attrelid = 'customers'::regclass"
            ).fetchall(),
        ]
        for sql in SETTINGS_REFUSED:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="refused"):
                conn.execute(sql)
        for sql in SETTINGS_USED:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="sensitive"):
                conn.execute(sql)
    assert shown[0] and shown[2] == [("keyed", None)]
    assert SETTING_SECRET not in str(shown)
    assert "n_distinct" not in str(shown)  # the option's name: an oid may hold its value


def test_an_ordered_set_aggregate_takes_only_clean_values(masking: Masking) -> None:
    assert names(masking, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY id) AS m"
                          " FROM customers") == ["m"]  # fmt: skip
    for sql in ("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ssn) FROM customers",
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY length(email))"
                " FROM customers"):  # fmt: skip
        with pytest.raises(Refused, match="sensitive"):
            masking.plan(sql)


def test_a_database_domain_is_refused_in_masked_mode_wherever_a_type_is_named(
    bastion: Bastion, shop: PgDatabase
) -> None:
    """Masked sessions run the same guard: a domain whose CHECK is the database's own code is
    refused in a column-definition list, XMLTABLE, a typed literal and Parse's types alike."""
    with psycopg_connect(shop, autocommit=True) as owner:
        owner.execute("CREATE FUNCTION touchx(int) RETURNS int LANGUAGE sql AS 'SELECT 1'")
        owner.execute("CREATE DOMAIN dd AS int CHECK (touchx(VALUE) = 1)")
        row = owner.execute("SELECT 'dd'::regtype::oid").fetchone()
    assert row is not None
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        for sql in ("SELECT * FROM json_to_record('{\"a\":1}') AS x(a dd)",
                    "SELECT * FROM XMLTABLE('/a' PASSING '<a>1</a>' COLUMNS c dd PATH '.') x",
                    "SELECT dd '1'", "SELECT '{1}'::_dd"):  # fmt: skip
            with pytest.raises(psycopg.Error, match="refused by the bastion"):
                conn.execute(sql)
        parsed = conn.pgconn.prepare(b"p", b"SELECT $1", [int(row[0])])
        assert b"refused by the bastion" in (parsed.error_message or b"")
