"""The upload completer: one node at a time finishes what a node that never returns left.

A node killed mid-session leaves its session rows open, its database cancel keys, and (with
an object store) a multipart upload holding the parts its uploader had sent. The node itself
finishes all of that when it restarts. When it stays down, the node holding the store's
"upload-completer" lease does: once the lost node's presence lease has been expired for
[cluster] lost_after (by then a node merely cut off from the store has ended its sessions
itself), it completes each upload from the parts already there (the recording then replays
to its last uploaded part: cut short, without its final chunk), hashes the object, and
closes the session as interrupted with that hash, chained with `recording.completed`. A
node still alive is never touched: the lease is checked (and renewed) before each step, and
each close re-checks in the store, in one transaction, that the node is still lost. A node
that comes back after its upload was completed finds the object the chain holds and leaves
it (bastion/recording/upload.py); a node back before its session was closed keeps it.
Object-store calls never run on the store's thread: `on_store` carries each store call there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import structlog

from bastion.audit.chain import Event
from bastion.audit.cluster import Lease
from bastion.audit.lostnodes import HeldSession, LostClose
from bastion.audit.sessions import RecordingInfo
from bastion.recording.fetch import object_name
from bastion.recording.objects import ObjectStore, ObjectStoreError

if TYPE_CHECKING:
    from bastion.audit import Store

log = structlog.get_logger("bastion.recording.completer")
LEASE = "upload-completer"
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
    aborted: list[str] = field(default_factory=list)  # object keys whose upload had no part
    closed: list[str] = field(default_factory=list)  # session ids closed
    stopped: str = ""  # why the round stopped early (the lease was lost)


class LeaseLost(Exception):
    """The completer's lease is no longer this node's: the round stops at once."""


class Completer:
    """One node's completer; round() is called every `every(lost_after)` seconds."""

    def __init__(
        self, store: Store, on_store: OnStore, objects: ObjectStore | None, node: str,
        lost_after: timedelta, *, left: Callable[[str], RecordingInfo | None] | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.on_store = on_store
        self.objects = objects
        self.node = node
        self.lost_after = lost_after
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
            return LostClose(node, self.node, self.lost_after, info, None if info else path)
        key, parts = self._complete(held, uploads, done)
        if key is None:
            return LostClose(node, self.node, self.lost_after, missing=path)
        info = self._object(key, path)
        if info is None:
            return LostClose(node, self.node, self.lost_after, missing=path)
        if not parts:  # its node completed it (its last act): no recording.completed
            return LostClose(node, self.node, self.lost_after, info)
        detail = self._detail(key, node, info, parts, cut_short=True)
        return LostClose(node, self.node, self.lost_after, info, completed=detail)

    def _complete(self, held: HeldSession, uploads: list[tuple[str, str]],
                  done: Round) -> tuple[str | None, int]:  # fmt: skip
        """Complete the session's upload with the most parts (the others are aborted): the
        object's key and how many parts it took (0: none completed here); (None, 0) when
        its key is not the spool's shape."""
        assert self.objects is not None and held.recording_path is not None
        name = object_name(Path(held.recording_path))
        if name is None:
            return None, 0
        key = self.objects.key(name)
        mine = [(upload_id, self._tags(key, upload_id)) for k, upload_id in uploads if k == key]
        mine.sort(key=lambda found: len(found[1]), reverse=True)
        parts = 0
        for number, (upload_id, tags) in enumerate(mine):
            self._check(f"complete {key}")
            if number == 0 and tags:
                if self._completed(key, upload_id, tags):
                    parts = len(tags)
                    done.completed.append(key)
                continue
            self._abort(key, upload_id)
            done.aborted.append(key)
        return key, parts

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

    def _object(self, key: str, path: str) -> RecordingInfo | None:
        """The hash and size of the object at key (None: there is none)."""
        assert self.objects is not None
        if self.objects.head(key) is None:
            return None
        digest, size = self.objects.sha256(key)
        return RecordingInfo(path, digest, size)

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
            key, parts = self._complete(held, found, done)
            info = self._object(key, held.recording_path) if key is not None and parts else None
            if key is None or info is None:
                continue
            whole = (info.sha256, info.size) == (held.recording_sha256, held.recording_size)
            detail = self._detail(key, held.node, info, parts, cut_short=not whole)
            detail["session_size"] = held.recording_size
            severity = "info" if whole else "high"
            self._check(f"chain the completion of {key}")
            event = Event("recording.completed", f"node:{self.node}", "", severity,
                          session_id, detail)  # fmt: skip
            self.on_store(self.store.append_events, [event])
