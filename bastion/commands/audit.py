"""`bastion audit verify [--anchors FILE]` and `bastion audit tail [--follow]`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bastion.audit import anchors
from bastion.audit.anchors import anchor_key, parse_spec, read_anchors
from bastion.audit.chain import ChainedEvent, Verdict
from bastion.commands.app import App
from bastion.errors import Exit
from bastion.recording.check import chained_recording_problems
from bastion.reports import pack
from bastion.reports.signing import ReportKeyError, load_private_key


def _anchor_files(app: App, args: argparse.Namespace) -> list[Path]:
    """--anchors FILE..., else the file sinks of [audit] anchors."""
    if args.anchors:
        return list(args.anchors)
    specs = [parse_spec(spec) for spec in app.config.audit.anchors]
    return [Path(where) for kind, where in specs if kind == "file"]


def anchor_problems(app: App, files: list[Path], head_seq: int) -> tuple[int, list[str]]:
    """How many signed heads the files hold, and everything that disagrees with the chain."""
    key = anchor_key(app.box)
    count, problems = 0, []
    for path in files:
        found, bad = read_anchors(path, key)
        count += len(found)
        problems += bad + anchors.check(found, head_seq, app.store.mac_at)
    return count, problems


def pack_problems(app: App, head_seq: int) -> tuple[int, list[str]]:
    """The weekly review packs' signed chain heads: how many packs, and every one the chain
    contradicts (the latest end head first) or whose signature fails. They outlive the head
    file: a tail deleted before the last signed head shows even if that file was rewritten."""
    reports = app.config.paths.reports
    if not any(pack.pack_dirs(reports)):
        return 0, []
    try:
        public = load_private_key(app.config.paths.report_signing_key).public_key()
    except ReportKeyError as exc:
        return 0, [f"the review packs in {reports} cannot be checked: {exc.message}"]
    good, bad = pack.signed_heads(reports, public)
    return len(good), bad + pack.anchor_problems(good, head_seq, app.store.mac_at)


def recording_problems(app: App, head_seq: int) -> tuple[int, list[str]]:
    """Check every recording against the hash in its chained session.closed event (not the
    editable session row), and each session row against the chain."""
    chained = dict(app.store.chained_recordings(head_seq))
    rows = dict(app.store.recordings())
    problems = [
        p for sid, d in chained.items() for p in chained_recording_problems(app.box, sid, d)
    ]
    for session_id, info in rows.items():
        detail = chained.get(session_id)
        if detail is None:
            problems.append(
                f"session {session_id}'s row names a recording hash no chained event holds"
            )
        elif (info.sha256, info.size) != (detail["recording_sha256"], detail["recording_size"]):
            problems.append(f"session {session_id}'s row was edited: its recording hash"
                            " differs from the one in the chain")  # fmt: skip
    return len(chained), problems


def audit_verify(app: App, args: argparse.Namespace) -> int:
    """Walk the chain (MACs, head file), check the anchors, re-check every closed recording."""
    verdict = app.store.verify_chain()
    files = _anchor_files(app, args)
    anchored, anchor_bad = anchor_problems(app, files, verdict.head_seq) if verdict.ok else (0, [])
    packs, pack_bad = pack_problems(app, verdict.head_seq) if verdict.ok else (0, [])
    anchor_bad = pack_bad + anchor_bad
    recorded, rec_bad = recording_problems(app, verdict.head_seq) if verdict.ok else (0, [])
    data = {
        "ok": verdict.ok and not anchor_bad and not rec_bad,
        "checked": verdict.checked,
        "head_seq": verdict.head_seq,
        "head_hash": verdict.head_hash,
        "keyed_from": verdict.keyed_from,
        "problem": verdict.problem or None,
        "bad_seq": verdict.bad_seq,
        "anchor_checked": verdict.ok,
        "anchors_files": [str(f) for f in files],
        "anchors_checked": anchored,
        "anchor_problems": anchor_bad,
        "review_packs_checked": packs,
        "recording_problems": rec_bad,
    }
    if not verdict.ok:
        app.emit(data, f"AUDIT CHAIN BROKEN: {verdict.problem}")
        return Exit.TAMPERED
    if anchor_bad:
        app.emit(data, "AUDIT ANCHORS DISAGREE: " + "; ".join(anchor_bad))
        return Exit.TAMPERED
    if app.config.audit.anchors and not files:
        # Anchors are sent somewhere this command cannot read: without them a deleted tail
        # with a rewritten head file would pass, so this is not a pass.
        app.emit(data, "AUDIT ANCHORS NOT CHECKED: [audit] anchors has no file this command"
                       " can read; pass --anchors FILE (the sink's copy, e.g. the syslog"
                       " server's log)")  # fmt: skip
        return Exit.TAMPERED
    if rec_bad:
        app.emit(data, "RECORDINGS CHANGED: " + "; ".join(rec_bad))
        return Exit.TAMPERED
    text = _intact_text(verdict, anchored, len(files), recorded)
    app.emit(data, text + (f"; {packs} signed review pack(s) agree" if packs else ""))
    return Exit.OK


def _intact_text(verdict: Verdict, anchored: int, files: int, recorded: int) -> str:
    text = (
        f"audit chain intact: {verdict.checked} events, head {verdict.head_seq}"
        f" {verdict.head_hash[:16]}; {recorded} recordings match"
    )
    if verdict.keyed_from is not None and verdict.keyed_from > 1:
        text += (
            f"; events 1-{verdict.keyed_from - 1} predate the key (unkeyed SHA-256, bound by"
            f" event {verdict.keyed_from}: only external anchors vouch for them)"
        )
    if files:
        text += f"; {anchored} anchors in {files} file(s) agree"
    else:
        text += "; no external anchors checked (see [audit] anchors)"
    return text


def _line(event: ChainedEvent) -> str:
    detail = json.loads(event.detail)
    extra = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(detail.items()))
    subject = f" {event.subject}" if event.subject else ""
    head = f"{event.seq:>7} {event.at} {event.severity:<7} {event.kind} by {event.actor}"
    return f"{head}{subject} {extra}".rstrip()


def _print(app: App, events: list[ChainedEvent]) -> None:
    for event in events:
        if app.as_json:
            app.out.write(json.dumps(event.as_dict(), sort_keys=True) + "\n")
        else:
            app.out.write(_line(event) + "\n")
    app.out.flush()


def audit_tail(app: App, args: argparse.Namespace) -> int:
    """The last N events; with --follow, keep printing new ones (JSON lines with --json)."""
    events = app.store.last_events(args.lines)
    _print(app, events)
    if not args.follow:
        return Exit.OK
    last = events[-1].seq if events else 0
    try:
        while True:
            fresh = app.store.events(after=last, limit=1000)
            if fresh:
                _print(app, fresh)
                last = fresh[-1].seq
            else:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return Exit.OK
