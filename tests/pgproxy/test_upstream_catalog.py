"""The door reads a target's catalog on its own upstream connection (text protocol), and gets
the same snapshot as a typed read of the same queries through asyncpg."""

from __future__ import annotations

import asyncpg
import pytest

from bastion.audit import catalog as catalog_sql
from bastion.masking.catalog import METADATA_RELATIONS, SYSTEM_SCHEMAS, Catalog
from bastion.pgproxy import upstream
from tests.realpg import PgDatabase


async def read_with_asyncpg(conn: asyncpg.Connection) -> Catalog:
    """The same queries, their values typed by asyncpg rather than read as text."""
    return Catalog.from_rows(await conn.fetch(catalog_sql.COLUMNS),
                             await conn.fetch(catalog_sql.INHERITS),
                             await conn.fetch(catalog_sql.VIEWS))  # fmt: skip


def shape(catalog: Catalog) -> dict[str, object]:
    """The target's own relations (the door also reads the system relations it allows)."""
    return {f"{r.schema}.{r.name}": (r.kind, r.attributes, r.parents, bool(r.definition))
            for r in catalog.relations.values() if r.schema not in SYSTEM_SCHEMAS}  # fmt: skip


async def test_both_ways_of_reading_the_catalog_agree(shop: PgDatabase) -> None:
    up = await upstream.connect(shop.host, shop.port, user=shop.user, password=shop.password,
                                database=shop.database, params={})  # fmt: skip
    try:
        door_view = await upstream.read_catalog(up)
        with pytest.raises(upstream.UpstreamError, match="refused a catalog query"):
            await upstream.simple_rows(up, "SELECT * FROM no_such_table")
        assert await upstream.simple_rows(up, "SELECT 1 AS one") == [{"one": "1"}]  # still usable
    finally:
        up.close()
    conn = await asyncpg.connect(host=shop.host, port=shop.port, user=shop.user,
                                 password=shop.password, database=shop.database)  # fmt: skip
    try:
        cli_view = await read_with_asyncpg(conn)
    finally:
        await conn.close()
    assert shape(door_view) == shape(cli_view)
    system = {(r.schema, r.name) for r in door_view.relations.values()
              if r.schema in SYSTEM_SCHEMAS}  # fmt: skip
    wanted = {(schema, name) for schema, names in METADATA_RELATIONS.items() for name in names}
    assert system == wanted  # every allowed system relation, and nothing else
    assert {"pg_class", "pg_stats", "pg_statistic"} <= door_view.system_names
    customers = next(r for r in door_view.relations.values() if r.name == "customers")
    assert [a.name for a in customers.attributes if a.text_like] == ["name", "email", "phone",
                                                                   "ssn", "street"]  # fmt: skip
    partition = next(r for r in door_view.relations.values() if r.name == "orders_2025")
    assert [door_view.relations[p].name for p in partition.parents] == ["orders"]
