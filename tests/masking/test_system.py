"""The system relations a masked session may read (the catalog's description of itself, for
psql's \\d), the ones it may not, and names PostgreSQL would find in pg_catalog first."""

from __future__ import annotations

import re

import pytest

from bastion.masking.catalog import Catalog, sensitive_sources, verdicts
from bastion.masking.lineage import Analyzer, Refused
from tests.masking.test_lineage import POLICY

ROWS = [
    {"relid": 1259, "schema": "pg_catalog", "relation": "pg_class", "kind": "r", "attnum": n,
     "column_name": c, "type_oid": 19, "type_name": "name", "text_like": True}
    for n, c in enumerate(["oid", "relname", "relnamespace"], 1)
] + [
    {"relid": 20000, "schema": "public", "relation": name, "kind": "r", "attnum": n,
     "column_name": c, "type_oid": 25, "type_name": "text", "text_like": True}
    for name in ("pg_stats",) for n, c in enumerate(["attname", "histogram_bounds"], 1)
]  # fmt: skip
CATALOG = Catalog.from_rows(ROWS, system_names=["pg_class", "pg_stats", "pg_statistic"])


def analyse(sql: str) -> list[str]:
    sensitive = sensitive_sources(CATALOG, POLICY)
    return [c.name for c in Analyzer(CATALOG, sensitive.__contains__).statement(sql)]


def test_the_catalogs_description_is_readable_and_never_classified() -> None:
    assert analyse("SELECT c.relname FROM pg_class c WHERE c.relname ~ '^cust'") == ["relname"]
    assert analyse("SELECT relname FROM pg_catalog.pg_class ORDER BY 1") == ["relname"]
    assert {v.relation.schema for v in verdicts(CATALOG, POLICY)} == {"public"}


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        # PostgreSQL finds pg_catalog.pg_stats first, not the table of that name in public.
        ("SELECT histogram_bounds FROM pg_stats", "pg_catalog.pg_stats is not allowed"),
        ("SELECT * FROM pg_catalog.pg_statistic", "pg_catalog.pg_statistic is not allowed"),
        ("SELECT * FROM information_schema.role_table_grants",
         "information_schema.role_table_grants is not allowed"),
        ("SELECT * FROM pg_catalog.pg_partition_ancestors(1)", "* cannot be expanded"),
    ],
)  # fmt: skip
def test_other_system_relations_are_refused(sql: str, needle: str) -> None:
    with pytest.raises(Refused, match=re.escape(needle)):
        analyse(sql)


def test_a_function_in_from_names_its_own_columns() -> None:
    sql = "SELECT relid, relname FROM pg_catalog.pg_partition_ancestors(1), pg_class"
    assert analyse(sql) == ["relid", "relname"]
    assert analyse("SELECT x FROM unnest(ARRAY[1, 2]) x") == ["x"]
    with pytest.raises(Refused, match="function pg_read_file"):
        analyse("SELECT * FROM pg_read_file('/etc/passwd') f(x)")
    assert analyse("SELECT public.pg_stats.attname FROM public.pg_stats") == ["attname"]
