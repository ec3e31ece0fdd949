"""The upload completer: one node at a time finishes what a node that never returns left.

A node killed mid-session leaves its session rows open, its database cancel keys, and (with
an object store) a multipart upload holding the parts its uploader had sent. The node itself
finishes all of that when it restarts. When it stays down, the node holding the store's
"upload-completer" lease does: once the lost node's presence lease has been expired for
[cluster] lost_after (by then a node merely cut off from the store has ended its sessions
itself), it completes each upload from the parts already there (the recording then replays
to its last uploaded part: cut short, without its final chunk), hashes the object, and
closes the session as interrupted with that hash, chained with `recording.completed`.
Anyone with the bucket's credentials can start an upload at that key too, or put an object
there: a hash is chained only for an object that opens as the session's own recording (its
header names the session, its key unwraps, every chunk authenticates, at most one record's
cut tail follows) and holds, as its prefix, all the lost node's uploader had told the store
it sent (bytes and their SHA-256: a cut past a whole chunk is refused). An upload whose
object does not is copied aside under `rejected/` and chained as `recording.rejected`
(high), and the next is tried; when none opens, the session closes with no hash
(recording_missing) for a human to look at. A node still alive is never touched: the lease
is checked (and renewed) before each step, and each close re-checks in the store, in one
transaction, that the node is still lost. A node that comes back after its upload was
completed finds the object the chain holds and leaves it (bastion/recording/upload.py); a
node back before its session was closed keeps it. Object-store calls never run on the
store's thread: `on_store` carries each store call there.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import structlog

from bastion.audit.chain import Event
from bastion.audit.cluster import Lease
from bastion.audit.lostnodes import HeldSession, LostClose
from bastion.audit.sessions import RecordingInfo, short_of
from bastion.identity.sealing import SecretBox
from bastion.recording.fetch import object_name
from bastion.recording.model import RecordingError
from bastion.recording.objects import LARGER, ObjectStore, ObjectStoreError
from bastion.recording.reader import file_digest, read_extent
from bastion.recording.store import CHUNK_BYTES

if TYPE_CHECKING:
    from bastion.audit import Store

log = structlog.get_logger("bastion.recording.completer")
LEASE = "upload-completer"
# A cut-short tail is less than one record (a chunk of up to 2 CHUNK_BYTES; base64 in format 1),
# and less than S3's smallest part: a planted upload cannot add a whole part of junk.
CUT_TAIL = 3 * CHUNK_BYTES  # < MIN_PART
P = ParamSpec("P")
T = TypeVar("T")


class OnStore(Protocol):
    """Runs one store call on the store's thread and returns its result."""

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


def every(lost_after: timedelta) -> float:
    """Seconds between two rounds: a quarter of lost_after, between 1 s and 30 s."""
    return max(1.0, min(30.0, lost_after.total_seconds() / 4))


@dataclass
class Round:
    """What one round did (for the log and for tests)."""

    held: bool = False  # this node held the lease
    completed: list[str] = field(default_factory=list)  # object keys completed
    aborted: list[str] = field(default_factory=list)  # keys of uploads aborted (no part, or
    # another upload of the key opened as the session's recording)
    closed: list[str] = field(default_factory=list)  # session ids closed
    rejected: list[str] = field(default_factory=list)  # object keys not this session's recording
    stopped: str = ""  # why the round stopped early (the lease was lost)


class LeaseLost(Exception):
    """The completer's lease is no longer this node's: the round stops at once."""


class Completer:
    """One node's completer; round() is called every `every(lost_after)` seconds."""

    def __init__(
        self, store: Store, on_store: OnStore, objects: ObjectStore | None, node: str,
        lost_after: timedelta, *, box: SecretBox | None = None,
        left: Callable[[str], RecordingInfo | None] | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.on_store = on_store
        self.objects = objects
        self.node = node
        self.lost_after = lost_after
        self.box = box  # opens recordings: an object is hashed only once it opens as its own
        self.left = left  # without an object store: what a disk shared with it holds
        self._lease: Lease | None = None
        self.stopping = False  # set by the server as it stops: the round ends at its next step

    def round(self) -> Round:
        """Take (or renew) the lease; if this node holds it, finish what lost nodes left."""
        done = Round()
        if not self._hold():
            return done
        done.held = True
        try:
            uploads = self._uploads()
            for node in self.on_store(self.store.nodes_holding):
                since = self._lost(node)
                if since is not None:
                    self._finish_node(node, since, uploads, done)
            self._finish_closed(uploads, done)
        except LeaseLost as exc:
            done.stopped = str(exc)
            log.warning("completer.lease_lost", node=self.node, at=str(exc))
        return done

    @property
    def holds(self) -> bool:
        """Whether the last round took the lease (the server gives it up when it stops)."""
        return self._lease is not None

    def _hold(self) -> bool:
        """Take or renew the lease; False when another node holds it. A renewal in another
        term than the one held (lost and taken again meanwhile) holds too: what was started
        under the old term was finished or stopped at its next check."""
        self._lease = self.on_store(
            self.store.take_lease, LEASE, self.node, self.lost_after, quiet=True
        )
        return self._lease is not None

    def _check(self, step: str) -> None:
        """Before each step that changes anything: the lease is still this node's, in its
        term, unexpired; renewed for the next steps."""
        lease = self._lease
        if self.stopping:
            raise LeaseLost(f"{step}: stopping")
        if lease is None or not self.on_store(self.store.still_holds, lease):
            raise LeaseLost(step)
        renewed = self.on_store(
            self.store.take_lease, LEASE, self.node, self.lost_after, quiet=True
        )
        if renewed is None or renewed.term != lease.term:
            raise LeaseLost(step)
        self._lease = renewed

    def _lost(self, node: str) -> datetime | None:
        if node == self.node:
            return None  # this node's own: its start-up and uploader keep them
        return self.on_store(self.store.lost_since, node, self.lost_after)

    def _uploads(self) -> dict[str, list[tuple[str, str]]]:
        """Uploads in progress below the prefix, by the session id their key names."""
        if self.objects is None:
            return {}
        start = f"{self.objects.prefix}/" if self.objects.prefix else ""
        found: dict[str, list[tuple[str, str]]] = {}
        for key, upload_id in self.objects.uploads_in_progress(start):
            name = key[len(start) :]
            if object_name(Path(name)) == name:
                found.setdefault(Path(name).stem, []).append((key, upload_id))
        return found

    def _finish_node(self, node: str, since: datetime, uploads: dict[str, list[tuple[str, str]]],
                     done: Round) -> None:  # fmt: skip
        """Every open session of a lost node closed, its recording completed first; then its
        cancel keys go."""
        closed = 0
        for held in self.on_store(self.store.open_sessions_of, node):
            if self._lost(node) is None:  # back meanwhile: it keeps everything
                return
            close = self._recording(held, node, uploads.pop(held.id, []), done)
            self._check(f"close session {held.id}")
            if self.on_store(self.store.close_lost_session, held.id, close, since):
                done.closed.append(held.id)
                closed += 1
                log.warning("completer.session_closed", session=held.id, node=node,
                            recording=close.recording is not None)  # fmt: skip
        self._check(f"forget node {node}")
        self.on_store(self.store.forget_lost_node, node, self.lost_after, self.node, closed)

    def _recording(self, held: HeldSession, node: str, uploads: list[tuple[str, str]],
                   done: Round) -> LostClose:  # fmt: skip
        """What is left of an open session's recording, its upload completed first."""
        close = LostClose(node, self.node, self.lost_after)
        path = held.recording_path
        if path is None:
            return close
        if self.objects is None:
            info = self.left(path) if self.left is not None else None
            if info is not None and short_of(
                Path(info.path), self.on_store(self.store.recording_progress, held.id)
            ):
                info = None  # cut or changed since its node wrote it: for a human
            return LostClose(node, self.node, self.lost_after, info, None if info else path)
        found = self._complete(held, uploads, done)
        if found is None:  # nothing there opens as this session's recording: no hash is chained
            log.warning("completer.recording_unverified", session=held.id, node=node)
            return LostClose(node, self.node, self.lost_after, missing=path)
        key, info, parts = found
        if not parts:  # its node completed it (its last act): no recording.completed
            return LostClose(node, self.node, self.lost_after, info)
        detail = self._detail(key, node, info, parts, cut_short=True)
        return LostClose(node, self.node, self.lost_after, info, completed=detail)

    def _complete(self, held: HeldSession, uploads: list[tuple[str, str]], done: Round, *,
                  existing: bool = True) -> tuple[str, RecordingInfo, int] | None:  # fmt: skip
        """Complete the session's upload: of those with parts, most parts first, the first
        whose object opens as this session's recording (one that does not is set aside and
        chained as rejected, high); then the others are aborted. The object's key, what it
        holds and how many parts it took (0: its node had completed it; looked at only when
        `existing`); None when nothing at the key opens as the session's recording."""
        assert self.objects is not None and held.recording_path is not None
        name = object_name(Path(held.recording_path))
        if name is None:
            return None
        key = self.objects.key(name)
        mine = [(upload_id, self._tags(key, upload_id)) for k, upload_id in uploads if k == key]
        mine.sort(key=lambda found: len(found[1]), reverse=True)
        empty = [upload_id for upload_id, tags in mine if not tags]
        self._abort_all(key, empty, done)  # nothing in them to lose
        tried, candidates = False, mine[: len(mine) - len(empty)]
        for number, (upload_id, tags) in enumerate(candidates):
            self._check(f"complete {key}")
            if not self._completed(key, upload_id, tags):
                continue
            tried = True
            info = self._opens(held, key, upload_id, done)
            if info is not None:
                done.completed.append(key)
                self._abort_all(key, [found for found, _ in candidates[number + 1 :]], done)
                return key, info, len(tags)
        if tried or not existing:
            return None
        info = self._opens(held, key, None, done)
        return None if info is None else (key, info, 0)

    def _abort_all(self, key: str, upload_ids: list[str], done: Round) -> None:
        for upload_id in upload_ids:
            self._check(f"abort {key}")
            self._abort(key, upload_id)
            done.aborted.append(key)

    def _opens(self, held: HeldSession, key: str, upload_id: str | None,
               done: Round) -> RecordingInfo | None:  # fmt: skip
        """What the object at key holds (hash and size, read up to the size the store gives
        for it) when it opens as this session's recording; None when there is no object, or
        when it does not (then it is set aside and chained as rejected)."""
        assert self.objects is not None and held.recording_path is not None
        size = self.objects.head(key)
        if size is None:
            return None
        with tempfile.TemporaryDirectory(prefix="bastion-completer-") as tmp:
            copy = Path(tmp) / Path(held.recording_path).name
            try:
                with copy.open("wb") as out:
                    self.objects.download(key, out, size)
            except ObjectStoreError as exc:
                if exc.code != LARGER:
                    raise
                problem: str | None = f"it grew past the {size} bytes the store gave while read"
            else:
                problem = self._problem(copy, held.id, self.objects.url(key)) or short_of(
                    copy, self.on_store(self.store.recording_progress, held.id)
                )
            digest, got = file_digest(copy)
        if problem is None:
            return RecordingInfo(held.recording_path, digest, got)
        self._reject(held, key, upload_id, {"sha256": digest, "size": got, "problem": problem})
        done.rejected.append(key)
        return None

    def _problem(self, copy: Path, session_id: str, where: str) -> str | None:
        """Why the copy is not this session's recording (None: it is): its header names the
        session and its key unwraps, every chunk authenticates, and at most one record's cut
        tail follows the last authentic chunk."""
        if self.box is None:
            return "no secrets key here to open it with"
        try:
            info, extent = read_extent(copy, self.box, session_id)
        except RecordingError as exc:
            return str(exc).replace(str(copy), where)
        tail = copy.stat().st_size - extent
        if tail > CUT_TAIL:
            return (f"{tail} bytes follow its last authentic chunk ({info.chunks}): more than a"
                    " cut-short record")  # fmt: skip
        return None

    def _reject(self, held: HeldSession, key: str, upload_id: str | None,
                found: dict[str, Any]) -> None:  # fmt: skip
        """Alarm (a log line, a chained high event) for an object at key that is not the
        session's recording; a completed upload's object is first copied aside (the next
        candidate's completion would replace it), one already there stays where it is."""
        assert self.objects is not None
        url = self.objects.url(key)
        kept, failed = url, None
        if upload_id is not None:
            tag = hashlib.sha256(upload_id.encode()).hexdigest()[:16]
            name = object_name(Path(str(held.recording_path)))
            aside = self.objects.key(f"rejected/{name}.{tag}")
            try:
                self.objects.copy(key, aside)
                kept = self.objects.url(aside)
            except ObjectStoreError as exc:  # chained as failed, then the round stops here
                failed = exc
                found = {**found, "set_aside": f"failed: {exc}"}
        detail = {"object": url, "upload": upload_id, "kept": kept, "node": held.node, **found,
                  "reason": "not this session's recording: its hash is not chained"}  # fmt: skip
        log.warning("completer.recording_rejected", session=held.id, object=url, kept=kept,
                    problem=found["problem"])  # fmt: skip
        self._check(f"chain the rejection of {key}")
        event = Event("recording.rejected", f"node:{self.node}", "", "high", held.id, detail)
        self.on_store(self.store.append_events, [event])
        if failed is not None:
            raise failed

    def _tags(self, key: str, upload_id: str) -> list[str]:
        assert self.objects is not None
        try:
            return self.objects.part_tags(key, upload_id)
        except ObjectStoreError as exc:
            if exc.code in ("NoSuchUpload", "404"):
                return []  # completed or aborted meanwhile (by its node, back)
            raise

    def _completed(self, key: str, upload_id: str, tags: list[str]) -> bool:
        assert self.objects is not None
        try:
            self.objects.complete(key, upload_id, tags)
        except ObjectStoreError as exc:
            if exc.code in ("NoSuchUpload", "404"):
                return False  # completed or aborted meanwhile: the object says which
            raise
        log.warning("completer.upload_completed", object=self.objects.url(key), parts=len(tags))
        return True

    def _abort(self, key: str, upload_id: str) -> None:
        assert self.objects is not None
        try:
            self.objects.abort(key, upload_id)
        except ObjectStoreError as exc:
            if exc.code not in ("NoSuchUpload", "404"):
                raise

    def _detail(self, key: str, node: str, info: RecordingInfo, parts: int, *,
                cut_short: bool) -> dict[str, Any]:  # fmt: skip
        assert self.objects is not None
        return {"object": self.objects.url(key), "node": node, "completed_by": self.node,
                "parts": parts, "size": info.size, "sha256": info.sha256,
                "cut_short": cut_short, "reason": f"node {node} lost"}  # fmt: skip

    def _finish_closed(self, uploads: dict[str, list[tuple[str, str]]], done: Round) -> None:
        """Uploads left in progress for sessions closed already (their node stopped, or was
        killed after closing them, before the upload completed) whose node is lost: the
        parts there are completed so the bucket keeps what it can; when that is less than
        the row's hash covers, `recording.completed` says so (high) and `audit verify` shows
        the recording changed. The node, if it ever returns, uploads its spool copy whole.
        A node that stopped cleanly (it gave its presence up) is left alone: it is down for
        maintenance with its spool whole, and uploads it when it starts again."""
        for session_id, found in sorted(uploads.items()):
            held = self.on_store(self.store.held_session, session_id)
            if held is None or not held.ended or held.node is None or held.recording_path is None:
                continue  # no such session, still open (its node alive), or not a node's
            if self._lost(held.node) is None:
                continue
            if self.on_store(self.store.stopped_cleanly, held.node):
                continue
            completed = self._complete(held, found, done, existing=False)
            if completed is None:
                continue
            key, info, parts = completed
            whole = (info.sha256, info.size) == (held.recording_sha256, held.recording_size)
            detail = self._detail(key, held.node, info, parts, cut_short=not whole)
            detail["session_size"] = held.recording_size
            severity = "info" if whole else "high"
            self._check(f"chain the completion of {key}")
            event = Event("recording.completed", f"node:{self.node}", "", severity,
                          session_id, detail)  # fmt: skip
            self.on_store(self.store.append_events, [event])
