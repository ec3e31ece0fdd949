"""`bastion export status` and `bastion export verify`: the SIEM feed's cursors, and records
as a SIEM holds them checked against the chain key."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from bastion.audit import ChainKey
from bastion.cli_common import Parser, command, json_flag
from bastion.commands.app import App
from bastion.config_export import ExportSink
from bastion.errors import Exit, NotFound
from bastion.export.formats import SinkFilter
from bastion.export.verify import check_lines, explain_gaps

CURSOR = {True: "ok", False: "MOVED OUTSIDE THE BASTION", None: "not checked"}


def export_status(app: App, args: argparse.Namespace) -> int:
    """Each sink's cursor against the chain's head: how far behind it is, and whether its
    MAC holds (a cursor edited in the database without the chain key exits 7)."""
    head = app.store.chain_head()[0]
    cursors = app.store.export_cursors()
    rows = [{"sink": c.sink, "kind": c.kind, "enabled": c.enabled,
             "delivered_seq": c.delivered_seq, "behind": head - c.delivered_seq,
             "updated_at": c.updated_at, "intact": c.intact}
            for c in cursors]  # fmt: skip
    shown = [{**row, "cursor": CURSOR[c.intact]} for row, c in zip(rows, cursors, strict=True)]
    columns = ["sink", "kind", "enabled", "delivered_seq", "behind", "updated_at", "cursor"]
    if app.as_json:
        app.emit(rows, "")
    else:
        app.table(shown, columns, "no export sink has run yet")
    return Exit.TAMPERED if any(c.intact is False for c in cursors) else Exit.OK


def _lines(files: list[Path]) -> Iterator[bytes]:
    for file in files:
        try:
            with file.open("rb") as handle:
                yield from handle
        except OSError as exc:
            raise NotFound(f"cannot read {file}: {exc.strerror or exc}") from None


def _sink(app: App, name: str) -> ExportSink:
    for sink in app.config.export:
        if sink.name == name:
            return sink
    raise NotFound(f"no sink [export.{name}] in {app.config_path}")


def export_verify(app: App, args: argparse.Namespace) -> int:
    """Check JSON-lines records (a file sink's files, oldest first, or a SIEM's extract)."""
    found = check_lines(_lines(args.files), ChainKey.of(app.box))
    if args.sink is not None:
        sink = _sink(app, args.sink)
        explain_gaps(found, app.store.export_cursor(sink.name), app.store.events_between,
                     SinkFilter(sink.min_severity, sink.kinds).takes)  # fmt: skip
    ok = not found.problems and found.records > 0 and (args.allow_gaps or not found.gaps)
    data = {"ok": ok, "records": found.records, "first_seq": found.first,
            "last_seq": found.last, "repeats": found.repeats,
            "gaps": [f"{a + 1}-{b - 1}" for a, b in found.gaps][:100],
            "filtered": [f"{a + 1}-{b - 1}" for a, b in found.filtered][:100],
            "problems": found.problems[:100]}  # fmt: skip
    if found.records == 0:
        text = "NOT CHECKED: no exported record found"
    elif ok:
        text = (f"intact: {found.records} records, events {found.first} to {found.last}, each"
                f" MAC holds; {found.repeats} repeats dropped")  # fmt: skip
        if found.filtered:
            text += f"; {len(found.filtered)} gaps the sink's filter explains"
    else:
        shown = [*found.problems[:5], *(f"events {a + 1}-{b - 1} missing" for a, b in
                                        found.gaps[:5])]  # fmt: skip
        text = "NOT INTACT: " + "; ".join(shown)
    app.emit(data, text)
    return Exit.OK if ok else Exit.TAMPERED


def add_export_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("export", help="the live feed of audit events to SIEM sinks")
    cmds = group.add_subparsers(dest="export_command", required=True, parser_class=Parser)
    status = command(cmds, "status", export_status, "each sink's cursor and how far behind")
    json_flag(status)
    verify = command(cmds, "verify", export_verify,
                     "check exported records: each MAC, each link, no event missing")  # fmt: skip
    verify.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="JSON-lines records, oldest first (a file sink's NAME.N ... NAME)",
    )
    verify.add_argument(
        "--sink",
        metavar="NAME",
        help="the [export.NAME] sink the records are from: a gap its filter explains (every"
        " event in it one the filter passes over) is no failure, and records ending short of"
        " its cursor are",
    )
    verify.add_argument(
        "--allow-gaps",
        action="store_true",
        help="events missing between records are no failure (blunt: prefer --sink)",
    )
    json_flag(verify)
