"""`bastion target harden NAME`: create the least-privilege roles the PostgreSQL door uses."""

from __future__ import annotations

import argparse
import asyncio
import secrets
from dataclasses import dataclass

from bastion.audit import harden as harden_sql
from bastion.audit.records import Target
from bastion.commands.app import App, read_secret_line
from bastion.commands.masking import connect_as, read_catalog, rows
from bastion.errors import Conflict, UsageError
from bastion.masking.catalog import Catalog, verdicts

CONNECT_TIMEOUT = 10.0  # seconds
HIDDEN = "<generated, sealed in the store>"


@dataclass(frozen=True)
class Outcome:
    plan: harden_sql.Hardening
    statements: list[str]
    withheld: int  # sensitive columns the masked role cannot read


def role_names(target: str, args: argparse.Namespace) -> tuple[str, str]:
    base = "bastion_" + target.replace("-", "_").replace(".", "_")
    return args.masked_role or f"{base}_masked", args.unmasked_role or f"{base}_unmasked"


def build(app: App, target: Target, catalog: Catalog, roles: tuple[str, str],
          keep_temp: list[str]) -> harden_sql.Hardening:  # fmt: skip
    """What to create, from the catalog and the target's masking policy."""
    policy = app.config.target_policy(target.name).masking
    clean: dict[tuple[str, str], list[str]] = {}
    schemas: set[str] = set()
    for found in verdicts(catalog, policy):
        key = (found.relation.schema, found.relation.name)
        schemas.add(found.relation.schema)
        columns = clean.setdefault(key, [])
        if not found.verdict.sensitive:
            columns.append(found.attribute.name)
    database = target.database or ""
    return harden_sql.Hardening(database, roles[0], roles[1], sorted(schemas), clean,
                                [r for r in keep_temp if r not in roles])  # fmt: skip


async def run(
    app: App, args: argparse.Namespace, target: Target, password: str
) -> tuple[Outcome, dict[str, str]]:
    """Read the catalog as the admin, then (unless --dry-run) create the roles in one
    transaction. Returns the outcome and the new roles' passwords (never printed). No store
    call in here: the target was read before the loop started."""
    up = await connect_as(app, target, args.admin_user, password)
    try:
        roles = role_names(args.name, args)
        for role in roles:
            if await rows(up, harden_sql.role_exists(role)):
                raise Conflict(f"role {role} exists already on {args.name}; drop it first or"
                               " name other roles with --masked-role/--unmasked-role")  # fmt: skip
        catalog = await read_catalog(up)
        keep = [str(r["rolname"]) for r in await rows(up, harden_sql.TEMP_THROUGH_PUBLIC)]
        plan = build(app, target, catalog, roles, keep)
        passwords = {"masked": secrets.token_urlsafe(24), "unmasked": secrets.token_urlsafe(24)}
        statements = harden_sql.statements(plan, passwords["masked"], passwords["unmasked"])
        withheld = sum(1 for v in verdicts(catalog, app.config.target_policy(args.name).masking)
                       if v.verdict.sensitive)  # fmt: skip
        if not args.dry_run:  # one transaction: an error, and the connection closing, undo it
            for statement in ["BEGIN", *statements, "COMMIT"]:
                await rows(up, statement)
    finally:
        up.close()
    shown = harden_sql.statements(plan, HIDDEN, HIDDEN)
    return Outcome(plan, shown, withheld), passwords


def target_harden(app: App, args: argparse.Namespace) -> int:
    target = app.store.target(args.name)
    if target.kind != "postgres":
        raise UsageError(f"{args.name} is an {target.kind} target; harden is for databases")
    if not args.password_stdin:
        raise UsageError("give the admin's password on standard input with --password-stdin")
    outcome, passwords = asyncio.run(run(app, args, target, read_secret_line("password")))
    plan = outcome.plan
    if not args.dry_run:
        sealed = {purpose: (role, app.box.seal(passwords[purpose].encode(),
                                               context=f"target:{args.name}:{purpose}"))
                  for purpose, role in (("masked", plan.masked_role),
                                        ("unmasked", plan.unmasked_role))}  # fmt: skip
        app.store.set_target_roles(args.name, sealed, app.actor,
                                   {"withheld_columns": outcome.withheld,
                                    "relations": len(plan.clean_columns)})  # fmt: skip
    data = {"target": args.name, "dry_run": args.dry_run, "masked_role": plan.masked_role,
            "unmasked_role": plan.unmasked_role, "withheld_columns": outcome.withheld,
            "statements": outcome.statements}  # fmt: skip
    verb = "would create" if args.dry_run else "created"
    text = [*(s + ";" for s in outcome.statements)] if args.dry_run else []
    text.append(f"{args.name}: {verb} {plan.masked_role} (reads {len(plan.clean_columns)}"
                f" relations, {outcome.withheld} sensitive columns withheld) and"
                f" {plan.unmasked_role} (used only under an unmask grant)")  # fmt: skip
    app.emit(data, "\n".join(text))
    return 0
