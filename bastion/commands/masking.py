"""`bastion masking show TARGET`: every column of a database target and what masking does to it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bastion.audit import catalog as catalog_sql
from bastion.audit import harden as harden_sql
from bastion.audit.records import Target
from bastion.commands.app import App
from bastion.errors import NotFound, Unreachable, UsageError
from bastion.masking.catalog import KINDS, Catalog, ColumnVerdict, verdicts
from bastion.masking.freetext import scan_reason
from bastion.masking.policy import MaskingPolicy
from bastion.masking.values import TEXT_LIKE
from bastion.pgproxy import upstream

CONNECT_TIMEOUT = 10.0  # seconds


async def connect_as(app: App, target: Target, user: str, password: str) -> upstream.Upstream:
    """A connection to a database target as `user`, logged in as the door does: the target's
    TLS policy, only the login methods it allows, the SCRAM server signature checked. The
    target is read from the store before the event loop runs (a store call blocks, and the
    PostgreSQL store refuses one made from a thread running a loop)."""
    name = target.name
    policy = app.config.target_policy(name)
    try:
        return await upstream.connect(target.host, target.port, user=user, password=password,
                                      database=target.database or name, params={},
                                      tls=upstream.tls_context(policy),
                                      auth=policy.upstream_auth)  # fmt: skip
    except upstream.UpstreamError as exc:
        shown = f"{target.host}:{target.port}"
        raise Unreachable(f"cannot log in to {name} ({shown}) as {user}: {exc.message}") from exc


async def rows(up: upstream.Upstream, sql: str) -> list[dict[str, str | None]]:
    """One statement's rows as text; a refusal is one line with the server's reason."""
    try:
        return await upstream.simple_rows(up, sql)
    except upstream.UpstreamError as exc:
        raise Unreachable(f"{exc.message}: {exc.detail}") from exc


async def read_catalog(up: upstream.Upstream) -> Catalog:
    """The target's tables, views and partitions, as the connected role sees them."""
    return Catalog.from_rows(await rows(up, catalog_sql.COLUMNS),
                             await rows(up, catalog_sql.INHERITS),
                             await rows(up, catalog_sql.VIEWS))  # fmt: skip


async def fetch_catalog(app: App, target: Target, password: str) -> Catalog:
    """Log in to the target as its service role and read its catalog."""
    up = await connect_as(app, target, target.login, password)
    try:
        return await read_catalog(up)
    finally:
        up.close()


def masking_show(app: App, args: argparse.Namespace) -> int:
    target = app.store.target(args.target)
    if target.kind != "postgres":
        raise UsageError(f"{args.target} is an {target.kind} target; masking is for databases")
    policy = app.config.target_policy(args.target).masking
    password = app.box.open(app.store.target_secret(args.target), context=f"target:{args.target}")
    catalog = asyncio.run(fetch_catalog(app, target, password.decode()))
    rows = [_row(found, policy, text_types(catalog)) for found in verdicts(catalog, policy)]
    app.table(rows, ["schema", "relation", "kind", "column", "type", "masked", "style", "rule",
                     "scanned", "why"],
              f"{args.target} has no tables or views outside the system schemas")  # fmt: skip
    if not app.as_json:
        count = sum(1 for r in rows if r["masked"])
        scanned = sum(1 for r in rows if r["scanned"])
        state = "" if policy.enabled else " (masking is switched off for this target)"
        detectors = ", ".join(policy.detectors.kinds) or "none"
        app.out.write(f"{count} of {len(rows)} columns masked{state}; {scanned} scanned for"
                      f" personal data in free text (detectors: {detectors})\n")  # fmt: skip
        sensitive = [(f.relation.relid, f.attribute.attnum)
                     for f in verdicts(catalog, policy) if f.verdict.sensitive]  # fmt: skip
        login, door_password = door_login(app, args.target)
        missing = asyncio.run(missing_protections(app, target, login, door_password, sensitive))
        if missing:
            app.out.write(f"the door reads {args.target} as {login}, which PostgreSQL does not"
                          f" hold back: {'; '.join(missing)}. Masking in the door still applies;"
                          f" run bastion target harden {args.target} for the database's own"
                          " protections\n")  # fmt: skip
        else:
            app.out.write(f"the door reads {args.target} as {login}, which PostgreSQL itself"
                          " stops from reading sensitive columns\n")  # fmt: skip
    return 0


def text_types(catalog: Catalog) -> frozenset[int]:
    """Types whose values are plain strings (citext too), as the door reads them."""
    return TEXT_LIKE | {a.type_oid for r in catalog.relations.values() for a in r.attributes
                        if a.text_like}  # fmt: skip


def _row(found: ColumnVerdict, policy: MaskingPolicy, texts: frozenset[int]) -> dict[str, Any]:
    """One column: masked (and how), else whether the content detectors scan it, and why."""
    masked = found.verdict.sensitive and policy.enabled
    text_like = found.attribute.text_like
    if masked:
        scanned, why = False, "masked as a whole"
    elif not policy.enabled:
        scanned, why = False, "masking is switched off"
    else:
        rule = found.verdict.rule if found.verdict.rule.startswith("clean = ") else None
        scanned, why = scan_reason(found.attribute.type_oid, found.attribute.type_name, texts,
                                   rule)  # fmt: skip
        if scanned and not policy.detectors.kinds:
            scanned, why = False, "no detectors are turned on"
    return {
        "schema": found.relation.schema, "relation": found.relation.name,
        "kind": KINDS[found.relation.kind], "column": found.attribute.name,
        "type": found.attribute.type_name, "masked": masked,
        "style": (found.verdict.style if text_like else "null") if masked else None,
        "category": found.verdict.category, "rule": found.verdict.rule,
        "scanned": scanned, "why": why,
    }  # fmt: skip


def door_login(app: App, name: str) -> tuple[str, str]:
    """The role the door logs in as for masked sessions, and its password."""
    try:
        login, sealed = app.store.target_role(name, "masked")
    except NotFound:
        target = app.store.target(name)
        return target.login, app.box.open(app.store.target_secret(name),
                                           context=f"target:{name}").decode()  # fmt: skip
    return login, app.box.open(sealed, context=f"target:{name}:masked").decode()


async def missing_protections(
    app: App, target: Target, login: str, password: str, sensitive: list[tuple[int, int]]
) -> list[str]:
    """What the database lets the door's masked-session role (`login`) do that it should not."""
    up = await connect_as(app, target, login, password)
    try:
        [found] = await rows(up, harden_sql.CHECK_ROLE)
        role = {key: value == "t" for key, value in found.items()}
        [count] = await rows(up, harden_sql.readable_columns(sensitive)) if sensitive else [{}]
        readable = int(count.get("readable") or 0)
    finally:
        up.close()
    missing = [f"it can read {readable} sensitive column(s)"] if readable else []
    missing += [text for key, text in LACKS if role[key]]
    missing += [text for key, text in NOT_SET if not role[key]]
    return missing


LACKS = (("powerful", "it is a superuser or bypasses row security"),
         ("can_temp", "it can create temporary tables"),
         ("can_create", "it can create objects in the database"),
         ("server_files", "it can read server files or run programs"),
         ("monitoring", "it can read other sessions' statements and statistics"),
         ("all_settings", "it can read every server setting (SHOW, current_setting and"
                          " pg_settings then show connection strings and paths)"))  # fmt: skip
NOT_SET = (("read_only", "it is not read-only by default"),
           ("pinned_path", "its search_path is not pinned"))  # fmt: skip
