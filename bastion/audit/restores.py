"""Backups of the store, and restores as the chain records them: which lost events each explains.

A restore puts back an older copy of the store: every event after the backup's head is gone.
The witnesses kept outside the store (anchors, the head file, the review packs' signed heads)
still name those lost events, so `audit verify` would rightly call it a deletion. A restore is
therefore written into the chain itself, as the first event after the backup's head, naming
who restored, why, the backup's head and the furthest lost event any witness saw. A witness
written before that event and naming an event after the backup's head is then explained, and
shown, instead of failing: the loss stays visible in every verify and weekly review, but it
is an admitted, signed loss rather than a silent one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bastion.audit.base import StoreBase
from bastion.audit.chain import ChainedEvent, Event, Verdict
from bastion.audit.chainwalk import walk_store
from bastion.clock import iso
from bastion.errors import StoreError
from bastion.privatefiles import write_new
from bastion.text import printable_line

RESTORED_KIND = "store.restored"
# What a restore undoes silently unless someone redoes it: every decision that ends or
# refuses access (listen.DECISION_KINDS, the kinds each node listens for), and each change of
# a credential.
CREDENTIAL_KINDS = frozenset({"user.totp_reset", "user.password_set", "user.password_removed"})
UNDONE_SHOWN = 200  # the most a restore event lists by name (the count is always whole)


@dataclass(frozen=True)
class Restore:
    """One restore, as chained: event `seq` at `at`; the backup held events up to `kept_seq`."""

    seq: int
    at: str
    actor: str
    kept_seq: int
    kept_mac: str
    lost_seq: int  # the furthest event a witness named when restoring (kept_seq if none)
    source: str
    reason: str
    # The time of the event after it, or the reading's own time when none: a restore dated
    # later than that was dated by a clock set ahead, and would excuse later witnesses too.
    followed_at: str = ""

    def explains(self, seq: int, at: str) -> bool:
        """Whether a witness written at `at`, naming event `seq`, saw an event this restore
        dropped and admitted: written before the restore, about an event after the backup's
        head and no further than the loss the restore chained."""
        return self.kept_seq < seq <= self.lost_seq and at < self.at

    def understates(self, seq: int, at: str) -> bool:
        """Whether a witness from before the restore names an event beyond the loss it
        admitted: the restore did not see every witness (or was shown only some)."""
        return seq > max(self.lost_seq, self.kept_seq) and at < self.at

    def describe(self) -> str:
        lost = self.lost_seq - self.kept_seq
        what = f"events {self.kept_seq + 1} to {self.lost_seq} were lost" if lost > 0 else (
            "no witness named a later event")  # fmt: skip
        actor, source = printable_line(self.actor), printable_line(self.source)
        return (  # written by whoever restored: no escape may hide the line on a terminal
            f"the store was restored at {self.at} by {actor} from {source}, which"
            f" ends at event {self.kept_seq}: {what} (reason: {printable_line(self.reason, 300)})"
        )


def explaining(restores: Sequence[Restore], seq: int, at: str) -> Restore | None:
    """The restore that explains a witness of event `seq` written at `at`, if any."""
    return next((r for r in restores if r.explains(seq, at)), None)


def understated(restores: Sequence[Restore], seq: int, at: str) -> str:
    """'' unless a witness of event `seq` written at `at` is beyond a restore's admitted loss;
    then what to say (it fails verify: the loss was larger than the restore chained)."""
    found = next((r for r in restores if r.understates(seq, at)), None)
    if found is None:
        return ""
    return (
        f"event {seq} was witnessed at {at}, before the restore at {found.at} (event"
        f" {found.seq}), which admitted events only up to {max(found.lost_seq, found.kept_seq)}"
        " lost: the restore did not see every witness"
    )


def restore_problems(restores: Sequence[Restore], mac_at: Callable[[int], str | None]) -> list[str]:
    """A restore event must be the first event after the backup's head it names; one that is
    not cannot explain anything (it was written into a chain it does not describe)."""
    problems = []
    for found in restores:
        if found.seq != found.kept_seq + 1 or mac_at(found.kept_seq) != found.kept_mac:
            problems.append(
                f"event {found.seq} says the store was restored from a backup ending at event"
                f" {found.kept_seq}, but it does not follow that event"
            )
        elif found.followed_at and found.followed_at < found.at:
            problems.append(
                f"event {found.seq} says the store was restored at {found.at}, later than"
                f" {found.followed_at} (what follows it): its clock was ahead"
            )
    return problems


def _restore(event: ChainedEvent) -> Restore | None:
    try:
        detail = json.loads(event.detail)
        kept, lost = detail["kept"], detail["lost_seq"]
        return Restore(event.seq, event.at, event.actor, int(kept["seq"]), str(kept["mac"]),
                       int(lost), str(detail["source"]), str(detail["reason"]))  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


class RestoreQueries(StoreBase):
    """The store's side of backups and restores."""

    def restores(self, up_to: int) -> list[Restore]:
        """Every restore the chain records up to seq `up_to` (a verified head), oldest first;
        a restore event whose detail cannot be read explains nothing."""
        rows = self._rows(
            "SELECT * FROM audit_events WHERE kind = ? AND seq <= ? ORDER BY seq",
            [RESTORED_KIND, up_to],
        )
        found = (_restore(ChainedEvent(**row)) for row in rows)
        return [replace(r, followed_at=self._followed_at(r.seq)) for r in found if r is not None]

    def _followed_at(self, seq: int) -> str:
        rows = self._rows("SELECT at FROM audit_events WHERE seq = ?", [seq + 1])
        return str(rows[0]["at"]) if rows else iso(self.clock.now())

    def undone_after(self, seq: int) -> list[dict[str, Any]]:
        """The events after `seq` of a decision or credential kind, oldest first: what a restore
        to a backup ending at `seq` brings back (an offboarding, a revocation, a lockout)."""
        from bastion.audit.listen import DECISION_KINDS  # noqa: PLC0415 - asyncpg: only here

        kinds = sorted(DECISION_KINDS | CREDENTIAL_KINDS)
        marks = ",".join("?" * len(kinds))
        rows = self._rows(
            "SELECT seq, at, kind, actor, subject FROM audit_events"
            f" WHERE seq > ? AND kind IN ({marks}) ORDER BY seq",
            [seq, *kinds],
        )
        return [{k: (int(v) if k == "seq" else str(v)) for k, v in row.items()} for row in rows]

    def walk(self) -> Verdict:
        """The chain walked and its table checked, without a head file (a backup has none)."""
        key = None if self.chain_key is None else self.chain_key.secret
        verdict = walk_store(self.events, self.path, key)
        if verdict.ok and (problem := self._table_problem(verdict)):
            return replace(verdict, ok=False, problem=problem, bad_seq=verdict.head_seq)
        return verdict

    def backup_to(self, dest: Path) -> None:
        """A consistent copy of the whole store in a new file (0600), while others write."""
        if self.path is None:
            raise StoreError(f"the store at {self.where} is on PostgreSQL: back it up with pg_dump")
        new_backup_file(dest)
        try:
            with self._lock:
                self.conn.execute("VACUUM INTO ?", [str(dest)])
        except Exception as exc:
            dest.unlink(missing_ok=True)
            raise StoreError(f"the backup to {dest} failed: {exc}") from exc

    def record_restore(
        self, actor: str, source: str, reason: str, lost_seq: int, extra: dict[str, Any]
    ) -> ChainedEvent:
        """Chain the restore as the first event after the restored head; refuses once anything
        else has been written after it (the restore must describe the chain it sits in)."""
        with self._write() as conn:
            head = conn.execute(
                "SELECT seq, row_hash, kind FROM audit_events ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            if head is None:
                raise StoreError("the restored store holds no event: nothing to restore to")
            seq, mac = int(head[0]), str(head[1])
            detail = {"kept": {"seq": seq, "mac": mac}, "lost_seq": max(lost_seq, seq),
                      "source": source, "reason": reason, **extra}  # fmt: skip
            event = Event(RESTORED_KIND, actor, source, "high", None, detail)
            return self._append(conn, [event])[0]


def new_backup_file(dest: Path) -> None:
    """`dest` made, empty and 0600, for a backup; StoreError when it exists or can't be."""
    try:
        write_new(dest, b"", 0o600)
    except FileExistsError as exc:
        raise StoreError(f"{dest} exists already; refusing to overwrite it") from exc
    except OSError as exc:
        raise StoreError(f"cannot write the backup {dest}: {exc.strerror}") from exc
