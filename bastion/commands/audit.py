"""`bastion audit verify [--anchors FILE]` and `bastion audit tail [--follow]`."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bastion.audit import anchors
from bastion.audit.anchors import anchor_key, parse_spec, read_anchors
from bastion.audit.chain import ChainedEvent, Verdict
from bastion.audit.qlogbind import EVERYTHING
from bastion.audit.restores import Restore, restore_problems
from bastion.commands.app import App
from bastion.commands.audit_retention import archive_verify, checkpoint_problems, checkpoint_text
from bastion.commands.reviewing import record_reading, record_verification
from bastion.errors import Exit
from bastion.progress import Progress, counted, every, quiet, terminal_progress
from bastion.recording.check import chained_recording_problems
from bastion.reports import pack, querycheck
from bastion.reports.signing import ReportKeyError, load_private_key


def anchor_files(app: App, args: argparse.Namespace) -> list[Path]:
    """--anchors FILE..., else the file sinks of [audit] anchors."""
    if args.anchors:
        return list(args.anchors)
    specs = [parse_spec(spec) for spec in app.config.audit.anchors]
    return [Path(where) for kind, where in specs if kind == "file"]


def anchor_problems(
    app: App, files: list[Path], head_seq: int, restores: Sequence[Restore] = (),
    since: int = 0,
) -> tuple[Counter[str], list[str]]:  # fmt: skip
    """How many signed heads the files hold, by the node that signed each (anchors written
    before anchors named the node name the host), and everything that disagrees with the
    chain."""
    key = anchor_key(app.box)
    signers: Counter[str] = Counter()
    problems: list[str] = []
    for path in files:
        found, bad = read_anchors(path, key)
        if since:  # a checkpoint: the anchors of what it archived are --archive's to prove
            found = [anchor for anchor in found if anchor.seq > since]
        signers.update(anchor.node for anchor in found)
        problems += bad + anchors.check(found, head_seq, app.store.mac_at, restores)
    return signers, problems


def pack_problems(
    app: App, head_seq: int, restores: Sequence[Restore] = (), since: int = 0
) -> tuple[int, list[str]]:
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
    good = [(where, made) for where, made in good if made.chain_start.seq > since]
    return len(good), bad + pack.anchor_problems(good, head_seq, app.store.mac_at, restores)


# Chained with a statement's text, or its outcome (the server's message may quote values).
# A commit event (queries.committed) names the sessions that ran statements, and may hold the
# server's error text for a statement.
STATEMENT_KINDS = ("query", "query.refused", "query.done", "queries.committed")
RECORDINGS_EVERY = 100  # a progress line per this many recordings checked


def walk_chain(app: App, progress: Progress) -> Verdict:
    """The store's chain walk, with a progress line every so many events (and the total)."""
    total = app.store.chain_head()[0]
    progress(f"audit chain: walking {total:,} events")
    walked = counted(progress, "audit chain", total, "events checked")
    return app.store.verify_chain(progress=walked)


def recording_problems(
    app: App, head_seq: int, progress: Progress = quiet
) -> tuple[int, list[str]]:
    """Check every recording against the hash in its chained session.closed event (not the
    editable session row), and each session row against the chain."""
    pruned = app.store.recording_pruned_at()  # deleted by retention: not tampering
    chained = {sid: d for sid, d in app.store.chained_recordings(head_seq) if sid not in pruned}
    rows = {sid: info for sid, info in app.store.recordings() if sid not in pruned}
    total = len(chained)
    tick = every(counted(progress, "recordings", total, "checked"), RECORDINGS_EVERY, total)
    problems = []
    for done, (sid, detail) in enumerate(chained.items(), 1):
        problems += chained_recording_problems(app.box, sid, detail, app.fetcher.local)
        app.fetcher.drop(Path(str(detail.get("recording"))))  # a copy from the object store
        tick(done)
    for session_id, info in rows.items():
        held = chained.get(session_id)
        if held is None:
            problems.append(
                f"session {session_id}'s row names a recording hash no chained event holds"
            )
        elif (info.sha256, info.size) != (held["recording_sha256"], held["recording_size"]):
            problems.append(f"session {session_id}'s row was edited: its recording hash"
                            " differs from the one in the chain")  # fmt: skip
    return len(chained), problems


def query_log_problems(app: App, progress: Progress = quiet) -> list[str]:
    """Every query-log row against the chain: rows of the second form against their commit
    events (each named), then the first row of the first form that differs, if any."""
    progress("query log: checking every statement row against the chain")
    found, people = app.store.commit_findings(EVERYTHING, EVERYTHING)
    problems = [str(f) for f in found]
    if people is not None:
        problems.append(querycheck.people_text(people))
    first_form = querycheck.first_form_problem(app.store, EVERYTHING, EVERYTHING)
    return problems + ([first_form] if first_form else [])


def audit_verify(app: App, args: argparse.Namespace) -> int:
    """Walk the chain (MACs, head file), check the anchors, re-check every closed recording;
    the check and its result are chained as `audit.verified` (unless the chain is in doubt)."""
    if args.archive is not None:
        return archive_verify(app, args.archive)
    progress = quiet if app.as_json else terminal_progress()
    verdict = walk_chain(app, progress)
    point, point_bad = checkpoint_problems(app)
    since = point.seq if point else 0
    files = anchor_files(app, args)
    restores = app.store.restores(verdict.head_seq) if verdict.ok else []
    signers, anchor_bad = (
        anchor_problems(app, files, verdict.head_seq, restores, since)
        if verdict.ok else (Counter(), [])
    )  # fmt: skip
    anchored = sum(signers.values())
    packs, pack_bad = (
        pack_problems(app, verdict.head_seq, restores, since) if verdict.ok else (0, [])
    )
    anchor_bad = point_bad + restore_problems(restores, app.store.mac_at) + pack_bad + anchor_bad
    recorded, rec_bad = (
        recording_problems(app, verdict.head_seq, progress) if verdict.ok else (0, [])
    )
    query_bad = query_log_problems(app, progress) if verdict.ok else []
    if verdict.ok and (index_bad := app.store.index_problem()):
        anchor_bad = [*anchor_bad, index_bad]  # a rebuilt index hides rows from every read
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
        "anchors_by_node": dict(sorted(signers.items())),
        "anchor_problems": anchor_bad,
        "review_packs_checked": packs,
        "recording_problems": rec_bad,
        "query_log_problems": query_bad,
        "restores": [found.describe() for found in restores],
        "checkpoint": point.public() if point else None,
    }
    data["ok"] = data["ok"] and not query_bad
    result, text = _outcome(app, verdict, files, anchor_bad, rec_bad)
    if query_bad and result in ("intact", "anchors not checked"):
        result, text = "query log edited", "QUERY LOG EDITED: " + "; ".join(query_bad)
    if result == "intact":
        text = _intact_text(verdict, signers, len(files), recorded, since) + checkpoint_text(point)
        text += f"; {packs} signed review pack(s) agree" if packs else ""
        text += "".join(f"\nRESTORED: {found.describe()}" for found in restores)
    detail = {"command": "audit verify", "ok": result == "intact", "result": result,
              "from_seq": since + 1, "to_seq": verdict.head_seq, "events": verdict.checked,
              "recordings": recorded, "anchors": anchored, "review_packs": packs}  # fmt: skip
    record_verification(app, detail, end_in_doubt=not verdict.ok or bool(anchor_bad))
    app.emit(data, text)
    return Exit.OK if result == "intact" else Exit.TAMPERED


def _outcome(
    app: App, verdict: Verdict, files: list[Path], anchor_bad: list[str], rec_bad: list[str]
) -> tuple[str, str]:
    """The result in a few words (for the audit event) and the line printed, when not intact."""
    if not verdict.ok:
        return "chain broken", f"AUDIT CHAIN BROKEN: {verdict.problem}"
    if any("indexes disagree" in problem for problem in anchor_bad):
        return "store edited", "STORE EDITED: " + "; ".join(anchor_bad)
    if anchor_bad:
        return "anchors disagree", "AUDIT ANCHORS DISAGREE: " + "; ".join(anchor_bad)
    if app.config.audit.anchors and not files:
        # Anchors are sent somewhere this command cannot read: without them a deleted tail
        # with a rewritten head file would pass, so this is not a pass.
        return "anchors not checked", (
            "AUDIT ANCHORS NOT CHECKED: [audit] anchors has no file this command can read;"
            " pass --anchors FILE (the sink's copy, e.g. the syslog server's log)"
        )
    if rec_bad:
        return "recordings changed", "RECORDINGS CHANGED: " + "; ".join(rec_bad)
    return "intact", ""


def _intact_text(
    verdict: Verdict, signers: Counter[str], files: int, recorded: int, since: int = 0
) -> str:
    text = (
        f"audit chain intact: {verdict.checked} events, head {verdict.head_seq}"
        f" {verdict.head_hash[:16]}; {recorded} recordings match"
    )
    if verdict.keyed_from is not None and verdict.keyed_from > since + 1:
        text += (
            f"; events 1-{verdict.keyed_from - 1} predate the key (unkeyed SHA-256, bound by"
            f" event {verdict.keyed_from}: only external anchors vouch for them)"
        )
    if files:
        text += f"; {signers.total()} anchors in {files} file(s) agree"
        if signers:  # by the node that signed them (the host, for anchors from before)
            text += f" ({', '.join(f'{n} from {node}' for node, n in sorted(signers.items()))})"
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


def _record_statements_shown(
    app: App, events: list[ChainedEvent], args: argparse.Namespace
) -> None:
    """The chain's statement events hold what the query log holds: showing them, or
    following the chain (statements to come), is a reading of the query log, chained first."""
    seqs = [e.seq for e in events if e.kind in STATEMENT_KINDS]
    if seqs or args.follow:
        filters = {"via": "audit tail", "lines": args.lines, "follow": args.follow or None}
        record_reading(app, filters, len(seqs), "seqs", (min(seqs), max(seqs)) if seqs else None)


def audit_tail(app: App, args: argparse.Namespace) -> int:
    """The last N events; with --follow, keep printing new ones (JSON lines with --json)."""
    events = app.store.last_events(args.lines)
    _record_statements_shown(app, events, args)
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
