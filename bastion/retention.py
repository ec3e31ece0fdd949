"""Retention: prune recordings, query-log rows and audit events past their periods, never
what a legal hold keeps, and never so that `bastion audit verify` stops proving what is kept.

A run first verifies the whole chain (fail closed), then writes one archive of everything it
is about to remove (bastion/retention_archive.py: synced, read back), then marks and deletes
recordings, deletes query-log rows, and cuts the chain: the checkpoint row, the delete and
the chained retention.checkpoint event in one transaction. The cut never passes an event
newer than the oldest evidence kept: a held session's or event's time, an open session's
start, a kept recording's or query row's time, nor `low_water` (the SIEM export's hook).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion import retention_archive
from bastion.audit import Store
from bastion.audit.anchors import anchor_key
from bastion.audit.chain import GENESIS, KeySource
from bastion.audit.qlogbind import EVERYTHING
from bastion.audit.retention import Checkpoint, DueRecording
from bastion.clock import iso, parse_iso
from bastion.config_retention import RetentionPolicy
from bastion.errors import Conflict, StoreError
from bastion.recording.fetch import object_name
from bastion.recording.model import RecordingError

if TYPE_CHECKING:
    from bastion.recording.objects import ObjectStore

LEASE = "retention"  # on a shared store, one node prunes at a time
LowWater = Callable[[], int | None]  # the highest seq a prune may cut (None: no limit)


def no_limit() -> int | None:
    """The default low water: nothing outside the store holds the cut back."""
    return None


@dataclass
class Plan:
    """What a run would remove, and where the chain cut stops and why."""

    now: str
    recordings: list[DueRecording] = field(default_factory=list)
    query_runs: list[tuple[int, int]] = field(default_factory=list)  # of due row ids
    query_before: str | None = None
    cut_from: int = 0  # the chain starts after this event now
    cut_to: int = 0  # and after this one once cut (== cut_from: nothing cut)
    events_before: str | None = None
    stopped_by: list[str] = field(default_factory=list)

    @property
    def queries(self) -> int:
        """How many query-log rows are due."""
        return sum(hi - lo + 1 for lo, hi in self.query_runs)

    def public(self) -> dict[str, Any]:
        return {"now": self.now, "recordings": len(self.recordings),
                "queries": self.queries, "events": self.cut_to - self.cut_from,
                "cut_from": self.cut_from, "cut_to": self.cut_to,
                "query_before": self.query_before, "events_before": self.events_before,
                "stopped_by": self.stopped_by}  # fmt: skip


def _before(now: datetime, policy: RetentionPolicy, kind: str) -> str | None:
    period = policy.period(kind)
    return None if period is None else iso(now - period)


def plan(store: Store, policy: RetentionPolicy, low_water: LowWater = no_limit,
         *, pruned: bool = False) -> Plan:  # fmt: skip
    """What is due now; `pruned`: recordings and query rows were just pruned (the kept ones
    are then read as they are, not as they will be)."""
    now = store.store_time()  # on PostgreSQL the database's clock: not this host's alone
    found = Plan(now=iso(now), query_before=_before(now, policy, "queries"))
    rec_before = _before(now, policy, "recordings")
    if rec_before is not None:
        found.recordings = store.recordings_due(rec_before)
    if found.query_before is not None:
        found.query_runs = store.query_runs_due(found.query_before)
    point = store.checkpoint()
    found.cut_from = found.cut_to = point.seq if point else 0
    found.events_before = _before(now, policy, "events")
    if found.events_before is not None:
        found.cut_to = max(found.cut_from, _cut(store, found, rec_before, low_water, pruned))
    return found


def _cut(store: Store, found: Plan, rec_before: str | None, low_water: LowWater,
         pruned: bool) -> int:  # fmt: skip
    """The last event the chain may be cut after (see the module's doc)."""
    assert found.events_before is not None
    limit = found.events_before
    kept = store.oldest_kept(None if pruned else rec_before, None if pruned else found.query_before)
    for why, when in (("a legal hold", store.held_since()), ("kept evidence", kept)):
        if when is not None and when < limit:
            limit = when
            found.stopped_by.append(f"{why} from {when}")
    cut = store.last_seq_before(limit)
    waters = [w for w in (low_water(), store.export_low_water()) if w is not None]
    if waters and min(waters) < cut:  # an enabled SIEM sink has not taken what follows
        cut = min(waters)
        found.stopped_by.append(f"events not yet exported after event {cut}")
    first_keyed = store.first_keyed_seq()
    if first_keyed is None or cut < first_keyed - 1:
        found.stopped_by.append("the chain is not keyed there")
        return found.cut_from
    return cut


@dataclass
class Outcome:
    """What a run did (or, dry, would do)."""

    plan: Plan
    dry_run: bool
    archive: Path | None = None
    recordings_deleted: int = 0
    queries_deleted: int = 0
    events_deleted: int = 0
    warnings: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "plan": self.plan.public(),
                "archive": str(self.archive) if self.archive else None,
                "recordings_deleted": self.recordings_deleted,
                "queries_deleted": self.queries_deleted, "events_deleted": self.events_deleted,
                "warnings": self.warnings}  # fmt: skip


@dataclass(frozen=True)
class Runner:
    """One retention run's surroundings: the store, the secrets (anchor key), the node."""

    store: Store
    box: KeySource
    policy: RetentionPolicy
    node: str
    actor: str
    objects: ObjectStore | None = None
    low_water: LowWater = no_limit

    def run(self, dry_run: bool = False) -> Outcome:
        """Verify, plan, archive, prune; StoreError (nothing deleted) when the chain fails."""
        verdict = self.store.verify_chain()
        if not verdict.ok:
            raise StoreError(
                f"retention refused: the audit chain does not verify ({verdict.problem})"
            )
        if problem := self.store.hold_problem():
            raise StoreError(f"retention refused: {problem}")
        found = plan(self.store, self.policy, self.low_water)
        if found.queries and found.query_before is not None:
            self._queries_proven(found.query_before)
        done = Outcome(found, dry_run)
        if dry_run:
            return done
        self._finish_marked(done)
        if not (found.recordings or found.queries or found.cut_to > found.cut_from):
            return done
        seal, done.archive = self._archive(found)
        self._prune_recordings(found, done)
        self._prune_queries(found, done)
        if seal["seq"] is not None:
            again = plan(self.store, self.policy, self.low_water, pruned=True)
            if again.cut_to < found.cut_to:
                done.warnings.append(
                    f"the chain was not cut: evidence before event"
                    f" {found.cut_to} is still kept ({again.stopped_by})"
                )
                return done
            point = Checkpoint(**{k: seal[k] for k in Checkpoint.__dataclass_fields__})
            detail = {"archive": point.archive, "from_seq": found.cut_from + 1,
                      "to_seq": found.cut_to, "before": found.events_before,
                      "policy": self.said()}  # fmt: skip
            try:
                done.events_deleted = self.store.cut_chain(point, detail, self.actor)
            except Conflict as exc:  # a hold or another node's cut came between
                done.warnings.append(f"the chain was not cut: {exc.message}")
        return done

    def _queries_proven(self, before: str) -> None:
        """Every query-log row written (as its row says) before `before` matches its commit
        event: a recent row dated back by an admin is never pruned as old (StoreError)."""
        bad, _ = self.store.commit_findings(("", before), EVERYTHING)
        if bad:
            raise StoreError(
                f"retention refused: the query log does not agree with the chain ({bad[0]});"
                " nothing was deleted"
            )

    def said(self) -> dict[str, Any]:
        """The periods this run keeps to, chained with what it deletes (the review shows them)."""
        policy = self.policy
        return {"recordings": policy.recordings, "queries": policy.queries,
                "events": policy.events, "allow_short": policy.allow_short}  # fmt: skip

    def _archive(self, found: Plan) -> tuple[dict[str, Any], Path]:
        """Write and read back the archive of everything this run removes, streamed: the
        events and query rows are read from the store a page at a time as they are written."""
        folder = Path(self.policy.archive_dir)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = parse_iso(found.now).strftime("%Y%m%dT%H%M%SZ")
        cut = (
            f"-events-{found.cut_from + 1}-{found.cut_to}" if found.cut_to > found.cut_from else ""
        )
        name = f"bastion-archive-{stamp}{cut}.jsonl"
        start = self.store.checkpoint()
        header = {"from_seq": found.cut_from + 1, "to_seq": found.cut_to,
                  "start_head": start.head if start else GENESIS, "made_at": found.now,
                  "node": self.node}  # fmt: skip
        events = self.store.events_between(found.cut_from, found.cut_to)
        queries = self.store.queries_in(found.query_runs)
        recordings = [r.__dict__ for r in found.recordings]
        body = retention_archive.Body(header, events, queries, recordings)

        def seal_for(body_sha256: str) -> dict[str, Any]:
            last = body.last
            seal: dict[str, Any] = {
                "seq": last.seq if last else None, "head": last.row_hash if last else None,
                "cut_at": last.at if last else None, "made_at": found.now, "archive": name,
                "archive_sha256": body_sha256, "node": self.node,
            }  # fmt: skip
            seal["sig"] = retention_archive.sign(seal, anchor_key(self.box))
            return seal

        path = folder / name
        try:
            seal = retention_archive.write(path, body, seal_for)
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"retention refused: the archive {path} could not be written"
                f" whole ({exc}); nothing was deleted"
            ) from exc
        self._proven(path)
        return seal, path

    def _proven(self, path: Path) -> None:
        """The archive just written proves itself as `audit verify --archive` would, before
        anything it holds is deleted (a cut made meanwhile by another run shows here)."""
        key = self.store.chain_key
        _, problem = retention_archive.verify(
            path, key.secret if key else b"", anchor_key(self.box)
        )
        if problem:
            path.unlink(missing_ok=True)  # it holds nothing deleted
            raise StoreError(
                f"retention refused: the archive written did not verify ({problem});"
                " nothing was deleted"
            )

    def _prune_recordings(self, found: Plan, done: Outcome) -> None:
        """Mark the recordings pruned (chained), then delete their files and objects."""
        as_chained = self._as_chained(found.recordings, done)
        if not as_chained:
            return
        ids = [r.session_id for r in as_chained]
        detail = {
            "archive": done.archive.name if done.archive else None,
            "count": len(ids),
            "sessions": ids,
            "policy": self.said(),
        }
        marked = set(self.store.prune_recordings(ids, detail, self.actor))
        for due in (r for r in as_chained if r.session_id in marked and r.path):  # not held
            self._delete(due.session_id, due.path, done)  # meanwhile, and a file to delete

    def _delete(self, session_id: str, path: str, done: Outcome) -> None:
        """A pruned recording's object, then its file (a crash between leaves the file, which
        the next run's _finish_marked sees)."""
        try:
            name = object_name(Path(path))
            if self.objects is not None and name is not None:
                self.objects.delete(self.objects.key(name))
            Path(path).unlink(missing_ok=True)
        except (OSError, RecordingError) as exc:  # reported; the file stays for a look
            done.warnings.append(f"recording of session {session_id}: {exc}")
            return
        done.recordings_deleted += 1

    def _finish_marked(self, done: Outcome) -> None:
        """Delete what a run that died between its chained mark and its delete left: the file
        the chain names for each recording a chained retention.pruned names, if still here."""
        head = self.store.chain_head()[0]
        chained = {sid: d.get("recording") for sid, d in self.store.chained_recordings(head)}
        for sid in self.store.recording_pruned_at():
            path = chained.get(sid)
            if isinstance(path, str) and Path(path).exists():
                self._delete(sid, path, done)

    def _as_chained(self, found: list[DueRecording], done: Outcome) -> list[DueRecording]:
        """The due recordings, each with the file its chained session.closed names ('' when
        the chain names none: nothing to delete). One whose row names another file is kept
        and named (the row was edited: never delete a file the chain did not record to, say
        a held recording or the bastion's own)."""
        head = self.store.chain_head()[0]
        chained = {sid: d.get("recording") for sid, d in self.store.chained_recordings(head)}
        out = []
        for due in found:
            said = chained.get(due.session_id)
            if said is not None and said != due.path:
                done.warnings.append(
                    f"recording of session {due.session_id} not deleted: its row names a file"
                    " its chained session.closed does not"
                )
                continue
            out.append(replace(due, path=str(said or "")))
        return out

    def _prune_queries(self, found: Plan, done: Outcome) -> None:
        if not found.query_runs or found.query_before is None:
            return
        spans = found.query_runs
        detail = {"archive": done.archive.name if done.archive else None,
                  "runs": [list(s) for s in spans], "before": found.query_before,
                  "policy": self.said()}  # fmt: skip
        done.queries_deleted = self.store.prune_queries(
            spans, found.query_before, detail, self.actor
        )
