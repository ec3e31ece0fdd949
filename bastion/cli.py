"""The `bastion` command line: parse arguments, run one command, turn errors into one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from bastion import __version__, logs, storelock
from bastion.cli_common import (
    Parser,
    command,
    decider,
    json_flag,
    optional_decider,
    page_flags,
    qr_flags,
)
from bastion.cli_reports import add_report_commands
from bastion.commands import (
    audit,
    doctor,
    harden,
    masking,
    people,
    queries,
    requests,
    resources,
    sessions,
    setup,
    unmask,
)
from bastion.commands.app import App, default_config_path
from bastion.commands.export import add_export_commands
from bastion.commands.reloading import reload_server
from bastion.commands.retention import add_retention_commands
from bastion.commands.store import add_store_commands
from bastion.config import Listeners
from bastion.core import Core
from bastion.errors import BastionError, ConfigError, Exit
from bastion.reports.signing import ensure_key


def _add_user_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("user", help="people: add, list, show, disable, unlock")
    users = group.add_subparsers(dest="user_command", required=True, parser_class=Parser)
    add = command(users, "add", people.user_add, "add a user and enrol their TOTP")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["engineer", "admin", "reviewer"])
    add.add_argument("--ssh-key", metavar="FILE", action="append", help="public key file(s)")
    add.add_argument("--password-stdin", action="store_true", help="read a password from stdin")
    qr_flags(add)
    json_flag(command(users, "list", people.user_list, "list users"))
    for name, handler, text in (
        ("show", people.user_show, "show one user, their keys and grants"),
        ("unlock", people.user_unlock, "clear a TOTP lockout"),
    ):
        cmd = command(users, name, handler, text)
        cmd.add_argument("name")
        json_flag(cmd)
    disable = command(
        users, "disable", people.user_disable, "offboard: block logins and revoke every grant"
    )
    disable.add_argument("name")
    disable.add_argument("--reason", default="")
    optional_decider(disable)
    json_flag(disable)
    reset = command(users, "reset-totp", people.user_reset_totp, "enrol a new TOTP seed")
    reset.add_argument("name")
    qr_flags(reset)
    key = command(users, "add-key", people.user_add_key, "register SSH public key(s)")
    key.add_argument("name")
    key.add_argument("file")
    json_flag(key)
    password = command(users, "set-password", people.user_set_password, "set a password")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true")
    json_flag(password)


def _add_target_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("target", help="SSH hosts and databases behind the bastion")
    targets = group.add_subparsers(dest="target_command", required=True, parser_class=Parser)
    ssh = command(targets, "add-ssh", resources.target_add_ssh, "add an SSH host")
    ssh.add_argument("name")
    ssh.add_argument("--host", required=True)
    ssh.add_argument("--port", type=int, default=22)
    ssh.add_argument("--login", required=True, help="account on the target")
    ssh.add_argument("--key", required=True, metavar="FILE", help="private key the bastion uses")
    json_flag(ssh)
    pg = command(targets, "add-postgres", resources.target_add_postgres, "add a database")
    pg.add_argument("name")
    pg.add_argument("--host", required=True)
    pg.add_argument("--port", type=int, default=5432)
    pg.add_argument("--database", required=True)
    pg.add_argument("--user", required=True, help="the service role the bastion logs in as")
    pg.add_argument("--password-stdin", action="store_true")
    json_flag(pg)
    json_flag(command(targets, "list", resources.target_list, "list targets"))
    show = command(targets, "show", resources.target_show,
                    "one target; for a database, its TLS and login methods")  # fmt: skip
    show.add_argument("name")
    json_flag(show)
    trust = command(targets, "trust", resources.target_trust,
                     "fetch an SSH target's host key and pin it")  # fmt: skip
    trust.add_argument("name")
    trust.add_argument("--yes", action="store_true", help="trust what it presents now")
    trust.add_argument("--fingerprint", metavar="SHA256:...", help="trust only this key")
    json_flag(trust)
    harden_cmd = command(targets, "harden", harden.target_harden,
                          "create the least-privilege roles the PostgreSQL door uses")  # fmt: skip
    harden_cmd.add_argument("name")
    harden_cmd.add_argument("--admin-user", required=True, help="a role that may create roles")
    harden_cmd.add_argument("--password-stdin", action="store_true")
    harden_cmd.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
    harden_cmd.add_argument("--masked-role", metavar="NAME")
    harden_cmd.add_argument("--unmasked-role", metavar="NAME")
    json_flag(harden_cmd)
    remove = command(targets, "remove", resources.target_remove, "retire a target")

    remove.add_argument("name")
    json_flag(remove)


def _add_access_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    grant = command(sub, "grant", resources.grant, "give USER time-boxed access to TARGET")
    grant.add_argument("user", help="a user's name, or group:NAME")
    grant.add_argument("target")
    window = grant.add_mutually_exclusive_group(required=True)
    window.add_argument(
        "--for", dest="duration", metavar="DURATION", help="how long, e.g. 30m, 2h, 1d"
    )
    window.add_argument("--until", metavar="WHEN", help="ISO end time, e.g. 2026-11-23T18:00Z")
    grant.add_argument("--reason", required=True, help="why; kept in the audit trail")
    grant.add_argument("--ticket", help="the incident or change it is for, e.g. INC-4411")
    grant.add_argument("--mode", choices=["read", "write"], default="read")
    grant.add_argument("--from", dest="start", metavar="WHEN", help="ISO start time (default now)")
    optional_decider(grant)
    json_flag(grant)
    revoke = command(sub, "revoke", resources.revoke, "end a grant now")
    revoke.add_argument("grant_id", type=int)
    optional_decider(revoke)
    json_flag(revoke)
    group = sub.add_parser("grants", help="list grants")
    grants = group.add_subparsers(dest="grants_command", required=True, parser_class=Parser)
    listing = command(grants, "list", resources.grants_list, "list grants")
    listing.add_argument("--active", action="store_true", help="only grants live now")
    listing.add_argument("--user", help="as they apply to this user, their groups' included")
    listing.add_argument("--group")
    listing.add_argument("--target")
    json_flag(listing)
    access_group = sub.add_parser("access", help="explain access decisions")
    access = access_group.add_subparsers(dest="access_command", required=True, parser_class=Parser)
    check = command(access, "check", resources.access_check, "may USER reach TARGET now?")
    check.add_argument("user")
    check.add_argument("target")
    json_flag(check)


def _add_group_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("group", help="groups of users that grants can go to")
    cmds = group.add_subparsers(dest="group_command", required=True, parser_class=Parser)
    add = command(cmds, "add", requests.group_add, "add a group")
    add.add_argument("name")
    json_flag(add)
    members = command(cmds, "members", requests.group_members,
                       "show a group's members; --add and --remove change them")  # fmt: skip
    members.add_argument("name")
    members.add_argument("--add", action="append", metavar="USER")
    members.add_argument("--remove", action="append", metavar="USER")
    json_flag(members)
    json_flag(command(cmds, "list", requests.group_list, "list groups and members"))


def _add_request_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    req = command(sub, "request", requests.request, "ask for USER's access to TARGET")
    req.add_argument("user")
    req.add_argument("target")
    req.add_argument("--for", dest="duration", required=True, metavar="DURATION")
    req.add_argument("--reason", required=True)
    req.add_argument("--ticket")
    req.add_argument("--mode", choices=["read", "write"], default="read")
    decider(req, "filing it")
    group = sub.add_parser("requests", help="access requests")
    cmds = group.add_subparsers(dest="requests_command", required=True, parser_class=Parser)
    listing = command(cmds, "list", requests.requests_list, "list requests")
    states = ["pending", "approved", "denied", "expired", "cancelled"]
    listing.add_argument("--state", choices=states)
    listing.add_argument("--user")
    listing.add_argument("--target")
    json_flag(listing)
    approve = command(sub, "approve", requests.approve, "approve a pending request")
    approve.add_argument("request_id", type=int)
    approve.add_argument("--for", dest="duration", metavar="DURATION", help="a shorter window")
    decider(approve)
    deny = command(sub, "deny", requests.deny, "deny a pending request")
    deny.add_argument("request_id", type=int)
    deny.add_argument("--reason", required=True)
    decider(deny)
    glass = sub.add_parser("break-glass", help="emergency access engineers opened")
    cmds = glass.add_subparsers(dest="glass_command", required=True, parser_class=Parser)
    listing = command(cmds, "list", requests.break_glass_list, "list break-glass grants")
    listing.add_argument("--unacknowledged", action="store_true")
    json_flag(listing)
    ack = command(cmds, "ack", requests.break_glass_ack, "acknowledge a break-glass grant")
    ack.add_argument("grant_id", type=int)
    ack.add_argument("--note", default="")
    decider(ack)


def _add_audit_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("audit", help="the tamper-evident audit trail")
    cmds = group.add_subparsers(dest="audit_command", required=True, parser_class=Parser)
    verify = command(cmds, "verify", audit.audit_verify, "check the chain, anchors, recordings")
    verify.add_argument("--anchors", type=Path, action="append", metavar="FILE",
                        help="signed chain heads to check against (default: the file sinks"
                        " of [audit] anchors); repeatable")  # fmt: skip
    verify.add_argument(
        "--archive",
        type=Path,
        metavar="FILE",
        help="prove a retention archive on its own instead of the store",
    )
    json_flag(verify)
    tail = command(cmds, "tail", audit.audit_tail, "print the latest audit events")
    tail.add_argument("-n", "--lines", type=int, default=20)
    tail.add_argument("-f", "--follow", action="store_true")
    tail.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    json_flag(tail)


def _add_session_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("sessions", help="SSH and database sessions")
    cmds = group.add_subparsers(dest="sessions_command", required=True, parser_class=Parser)
    listing = command(cmds, "list", sessions.sessions_list, "list sessions, newest first")
    listing.add_argument("--user")
    listing.add_argument("--target")
    listing.add_argument("--since", metavar="WHEN", help="open at or after: 7d back, or ISO")
    listing.add_argument("--until", metavar="WHEN", help="begun before: 7d back, or ISO")
    listing.add_argument("--text", help="in a command, statement or file path of the session")
    listing.add_argument("--protocol", choices=["ssh", "postgres"])
    listing.add_argument("--open", action="store_true", help="only sessions still open")
    page_flags(listing, 200)
    index = command(cmds, "index", sessions.sessions_index, "commands, statements, offsets")
    index.add_argument("session_id")
    page_flags(index, 500)
    show = command(cmds, "show", sessions.sessions_show, "a session with commands and files")
    show.add_argument("session_id")
    json_flag(show)
    kill = command(cmds, "kill", sessions.sessions_kill, "end a live session now")
    kill.add_argument("session_id")
    kill.add_argument("--reason", default="")
    optional_decider(kill)
    json_flag(kill)
    replay = command(sub, "replay", sessions.replay_command, "play a session's recording")
    replay.add_argument("session_id")
    replay.add_argument("--speed", type=float, default=1.0)
    replay.add_argument(
        "--from",
        dest="start",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="show the screen at this moment at once, then play from there",
    )
    replay.add_argument("--idle-limit", type=float, default=2.0, metavar="SECONDS")
    group = sub.add_parser("recordings", help="session recordings")
    rec = group.add_subparsers(dest="recordings_command", required=True, parser_class=Parser)
    export = command(rec, "export", sessions.recordings_export, "write plain asciicast v2")
    export.add_argument("session_id")
    export.add_argument("--out", required=True, metavar="FILE.cast")
    json_flag(export)


def _add_query_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    ticket = command(sub, "ticket", queries.ticket,
                      "a database password for TARGET after a TOTP code (one-use, or"
                      " --reusable); `ticket list [--user U]`, `ticket revoke ID`")  # fmt: skip
    ticket.add_argument("target", help="the database target, or list, or revoke")
    ticket.add_argument("ticket_id", nargs="?", type=int, help="revoke: the ticket's id")
    ticket.add_argument("--user", help="whose ticket (their code is asked)")
    ticket.add_argument("--reusable", action="store_true",
                        help="good for any number of connections until it expires")  # fmt: skip
    ticket.add_argument("--for", dest="duration", metavar="DURATION",
                        help="--reusable: how long (capped by the grant and the target's"
                             " reusable_ticket_max); default 1h")  # fmt: skip
    ticket.add_argument("--bind-address", metavar="ADDR[/BITS]",
                        help="--reusable: only clients from this address or network")  # fmt: skip
    ticket.add_argument("--all", action="store_true", help="list: expired and revoked too")
    ticket.add_argument("--reason", default="", help="revoke: why")
    optional_decider(ticket)
    json_flag(ticket)
    group = sub.add_parser("queries", help="the database query log")
    cmds = group.add_subparsers(dest="queries_command", required=True, parser_class=Parser)
    listing = command(cmds, "list", queries.queries_list, "statements, newest first")
    listing.add_argument("--user")
    listing.add_argument("--target")
    listing.add_argument("--since", metavar="WHEN", help="a duration back (7d) or an ISO time")
    listing.add_argument("--until", metavar="WHEN", help="before: 7d back, or an ISO time")
    listing.add_argument("--grep", metavar="TEXT", help="only statements containing TEXT")
    listing.add_argument("--session", metavar="ID", help="only this session's statements")
    page_flags(listing, 200)


def _add_masking_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("masking", help="what the PostgreSQL door masks")
    cmds = group.add_subparsers(dest="masking_command", required=True, parser_class=Parser)
    show = command(cmds, "show", masking.masking_show,
                    "every column of a database target, masked or clean, and why")  # fmt: skip
    show.add_argument("target")
    json_flag(show)


def _add_unmask_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("unmask", help="see one subject's sensitive values, with consent")
    cmds = group.add_subparsers(dest="unmask_command", required=True, parser_class=Parser)
    req = command(cmds, "request", unmask.unmask_request,
                   "ask for USER to see COLUMNS of TARGET in one subject's rows")  # fmt: skip
    req.add_argument("user")
    req.add_argument("target")
    req.add_argument("--columns", required=True, help="table.column,... (or a table)")
    req.add_argument("--subject", required=True, help="a subject key and value: customers.id=4711")
    req.add_argument("--reason", required=True)
    req.add_argument("--consent", required=True, metavar="REF", help="where consent is recorded")
    req.add_argument("--consent-file", metavar="FILE", help="the consent document (hashed)")
    req.add_argument("--for", dest="duration", metavar="DURATION", help="default 1h")
    decider(req, "filing it")
    listing = command(cmds, "list", unmask.unmask_list, "list unmask grants")
    listing.add_argument("--user")
    listing.add_argument("--target")
    listing.add_argument("--state", choices=["pending", "active", "expired", "approved",
                                             "denied", "revoked", "cancelled"])  # fmt: skip
    page_flags(listing, 500)
    approve = command(cmds, "approve", unmask.unmask_approve, "approve, confirming the consent")
    approve.add_argument("grant_id", type=int)
    approve.add_argument("--consent-confirmed", action="store_true",
                         help="you checked the subject's consent evidence")  # fmt: skip
    approve.add_argument("--for", dest="duration", metavar="DURATION", help="a shorter window")
    decider(approve)
    deny = command(cmds, "deny", unmask.unmask_deny, "deny an unmask request")
    deny.add_argument("grant_id", type=int)
    deny.add_argument("--reason", required=True)
    decider(deny)
    revoke = command(cmds, "revoke", unmask.unmask_revoke, "end an unmask grant now")
    revoke.add_argument("grant_id", type=int)
    optional_decider(revoke)
    json_flag(revoke)


def _add_doctor_command(sub: argparse._SubParsersAction[Parser]) -> None:
    cmd = command(sub, "doctor", doctor.doctor,
                  "check this host: files and modes, keys, clock, disk, store, targets,"
                  " anchor sinks; what to fix, one line each")  # fmt: skip
    cmd.add_argument(
        "--warn-free",
        default="10%",
        metavar="SIZE",
        help="warn when a volume has less free space: 10%% or 5G (default 10%%)",
    )
    cmd.add_argument(
        "--fail-free",
        default="2%",
        metavar="SIZE",
        help="fail when a volume has less free space (default 2%%)",
    )
    cmd.add_argument("--connect-timeout", type=float, default=3.0, metavar="SECONDS",
                     help="how long to wait for each target and sink (default 3)")  # fmt: skip
    json_flag(cmd)


ANCHORS_NEEDED = (
    "a store on PostgreSQL needs at least one anchor sink: the head file of one node cannot"
    " see a tail of the chain deleted by another"
)


def serve(app: App, args: argparse.Namespace) -> int:
    from bastion.server import run_server  # noqa: PLC0415 - keeps other commands quick to start

    logs.configure(app.config.logging.format, app.config.logging.level)
    config = app.config
    if config.store.on_postgresql and not config.audit.anchors:
        raise ConfigError(str(config.path), "audit.anchors", ANCHORS_NEEDED)
    held = (  # first: a restore waits for no store (PostgreSQL's are pg_dump's and pg_restore's)
        nullcontext() if config.store.on_postgresql else storelock.serving(config.paths.store)
    )
    with held:
        ensure_key(app.config.paths.report_signing_key, app.store, app.actor)  # gained on upgrade
        core = Core(app.config, app.store, app.box, app.clock)
        try:
            run_server(core)
        finally:
            core.shutdown()
    return Exit.OK


def build_parser() -> Parser:
    parser = Parser(prog="bastion", description="Production-access audit proxy.")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="configuration file (default: $BASTION_CONFIG or ./bastion.toml)",
    )
    parser.add_argument("--version", action="version", version=f"bastion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    init = command(sub, "init", setup.run_init, "create a new bastion in DIR")
    init.add_argument("directory", nargs="?", default=".", metavar="DIR")
    init.add_argument("--tls-name", action="append", metavar="NAME",
                      help="a DNS name or address the TLS certificate also covers (the load"
                           " balancer's name when several nodes share it); repeatable")  # fmt: skip
    for door in Listeners.DOORS:  # the ports' defaults, declared there
        init.add_argument(f"--{door}-port", type=int, default=getattr(Listeners(), door).port)
    json_flag(init)
    _add_user_commands(sub)
    _add_target_commands(sub)
    _add_access_commands(sub)
    _add_group_commands(sub)
    _add_request_commands(sub)
    _add_audit_commands(sub)
    _add_session_commands(sub)
    _add_query_commands(sub)
    _add_masking_commands(sub)
    _add_unmask_commands(sub)
    add_report_commands(sub)
    add_store_commands(sub)
    add_retention_commands(sub)
    add_export_commands(sub)
    command(sub, "serve", serve, "run every configured door until SIGINT/SIGTERM")
    _add_doctor_command(sub)
    command(sub, "reload", reload_server,
            "re-read the running server's configuration and TLS files (SIGHUP)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app = App(
        config_path=args.config or default_config_path(), as_json=getattr(args, "json", False)
    )
    try:
        return int(args.handler(app, args))
    except BastionError as exc:
        sys.stderr.write(f"bastion: {exc.message}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return Exit.OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
