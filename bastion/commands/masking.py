"""`bastion masking show TARGET`: every column of a database target and what masking does to it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg

from bastion.audit import catalog as catalog_sql
from bastion.commands.app import App
from bastion.errors import Unreachable, UsageError
from bastion.masking.catalog import KINDS, Catalog, verdicts
from bastion.pgproxy.upstream import tls_context

CONNECT_TIMEOUT = 10.0  # seconds


async def connect_as(app: App, name: str, user: str, password: str) -> Any:
    """An asyncpg connection to a database target as `user`, with the target's TLS policy."""
    target = app.store.target(name)
    try:
        return await asyncpg.connect(host=target.host, port=target.port, user=user,
                                     password=password, database=target.database,
                                     ssl=tls_context(app.config.target_policy(name)) or False,
                                     timeout=CONNECT_TIMEOUT)  # fmt: skip
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        shown = f"{target.host}:{target.port}"
        raise Unreachable(f"cannot log in to {name} ({shown}) as {user}: {exc}") from exc


async def read_catalog(conn: Any) -> Catalog:
    """The target's tables, views and partitions, as the connected role sees them."""
    return Catalog.from_rows(await conn.fetch(catalog_sql.COLUMNS),
                             await conn.fetch(catalog_sql.INHERITS),
                             await conn.fetch(catalog_sql.VIEWS))  # fmt: skip


async def fetch_catalog(app: App, name: str) -> Catalog:
    """Log in to the target as its service role and read its catalog."""
    target = app.store.target(name)
    password = app.box.open(app.store.target_secret(name), context=f"target:{name}").decode()
    conn = await connect_as(app, name, target.login, password)
    try:
        return await read_catalog(conn)
    finally:
        await conn.close()


def masking_show(app: App, args: argparse.Namespace) -> int:
    target = app.store.target(args.target)
    if target.kind != "postgres":
        raise UsageError(f"{args.target} is an {target.kind} target; masking is for databases")
    policy = app.config.target_policy(args.target).masking
    catalog = asyncio.run(fetch_catalog(app, args.target))
    rows: list[dict[str, Any]] = []
    for found in verdicts(catalog, policy):
        masked = found.verdict.sensitive and policy.enabled
        text_like = found.attribute.text_like
        rows.append({
            "schema": found.relation.schema, "relation": found.relation.name,
            "kind": KINDS[found.relation.kind], "column": found.attribute.name,
            "type": found.attribute.type_name, "masked": masked,
            "style": (found.verdict.style if text_like else "null") if masked else None,
            "category": found.verdict.category, "rule": found.verdict.rule,
        })  # fmt: skip
    app.table(rows, ["schema", "relation", "kind", "column", "type", "masked", "style", "rule"],
              f"{args.target} has no tables or views outside the system schemas")  # fmt: skip
    if not app.as_json:
        count = sum(1 for r in rows if r["masked"])
        state = "" if policy.enabled else " (masking is switched off for this target)"
        app.out.write(f"{count} of {len(rows)} columns masked{state}\n")
    return 0
