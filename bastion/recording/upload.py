"""Stream spooled recordings to the object store in parts, off the sessions' path.

The recordings folder is the spool: sessions write there exactly as without an object store.
One thread per node uploads each recording as a multipart upload while it grows (a part
once PART_SIZE new bytes are there), and at its end sends the rest, completes the upload,
and checks the object's SHA-256 and size against the local file before the spool copy goes.
The object store being down never reaches a session: the thread retries with backoff and the
spool keeps the bytes. On start-up, recover() queues what the spool holds (a node killed
mid-session left a readable prefix: it is uploaded as it is). Only regular files below the
spool are read, through no link, and hashed and sent from one descriptor. An upload started
over (a crash's leftover, or one the store no longer knows) never replaces an object whose
hash the session row holds when the spool file is another: the upload completer finished
it for a node it found lost, and the chain holds that object (the spool copy is kept).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from bastion.errors import NotFound
from bastion.recording.model import RecordingError
from bastion.recording.objects import LARGER, PART_SIZE, ObjectStore, ObjectStoreError

log = structlog.get_logger("bastion.recording.upload")

POLL = 1.0  # seconds between looks at growing recordings
MAX_BACKOFF = 60.0
_BLOCK = 1 << 20
SUPERSEDED = "superseded"  # _send: the chain holds the object there, not this spool file
LOCK_NAME = ".uploader.lock"  # in the spool: one uploader per spool, for its whole life


def hold_spool(spool: Path) -> int | str:
    """Take the spool's lock (exclusive, for as long as the descriptor stays open): the
    descriptor, or one line saying why not (another process holds it: a bastion serving
    this spool, or its uploader; or the lock cannot be made)."""
    path = spool / LOCK_NAME
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        return f"recordings: cannot open the spool's lock {path} ({exc.strerror})"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        said = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        holder = said if said.isdigit() else "?"  # the file is the spool's: only a number
        os.close(fd)
        return (f"recordings: another bastion (pid {holder}) holds the spool {spool}: this"
                " one closes, uploads and removes nothing; run one bastion per spool")  # fmt: skip
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def open_spooled(spool: Path, path: Path) -> int:
    """A read-only descriptor of a regular file below the spool, every folder and the file
    itself opened without following a link: a link planted in the spool (to the secrets
    key, say) is refused, never read."""
    parts = path.relative_to(spool).parts
    if not parts or ".." in parts:
        raise RecordingError(f"{path} is not a recording in the spool")
    where = os.open(spool, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=where)
            os.close(where)
            where = inner
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=where)
    except OSError as exc:
        raise RecordingError(f"{path}: not opened as a spool file ({exc.strerror})") from None
    finally:
        os.close(where)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordingError(f"{path} is not a regular file: refused, never uploaded")
    return fd


def fd_digest(fd: int) -> tuple[str, int]:
    """SHA-256 (hex) and size of what the descriptor reads from its first byte."""
    digest, size = hashlib.sha256(), 0
    while block := os.pread(fd, _BLOCK, size):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


@dataclass
class Upload:
    """One spool file on its way to the object store (the uploader thread's own state)."""

    path: Path
    key: str
    finished: bool = False  # the writer closed it: no more bytes come
    upload_id: str | None = None
    etags: list[str] = field(default_factory=list)
    sent: int = 0
    failures: int = 0
    retry_at: float = 0.0
    again: bool = False  # started over: never take an object already there for this one
    leftover: bool = False  # queued at start-up: a crash may have left uploads of its key
    suspect: bool = False  # left by a crash or started over: the completer may have finished it
    digest: Any = field(default_factory=hashlib.sha256)  # of the `sent` bytes
    noted: int = 0  # bytes whose progress the store holds (written by this process)

    def restart(self) -> None:
        """Start again from the first byte (the upload was lost or came out wrong)."""
        self.upload_id, self.etags, self.sent, self.again = None, [], 0, True
        self.digest, self.suspect = hashlib.sha256(), True


def next_part(sent: int, available: int, finished: bool) -> int:
    """How many bytes the next part takes (0: none now). Every part but the last is
    PART_SIZE; the last, sent once the file is finished, takes what is left."""
    left = available - sent
    if left >= PART_SIZE:
        return PART_SIZE
    return left if finished and left > 0 else 0


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` failures in a row: 1, 2, 4 ... MAX_BACKOFF."""
    return float(min(MAX_BACKOFF, 2 ** max(0, failures - 1)))


class Uploader:
    """The node's uploader thread; track() a recording when it opens, finish() when closed.

    `recorded` (the server's: the SHA-256 the session row holds for a spool file, None while
    the session is open) guards the spool copy: it goes only when the object's hash is the
    row's (NotFound: no row names the file). Without it the local file's hash stands in."""

    def __init__(
        self, store: ObjectStore, spool: Path, *, keep: bool = False,
        monotonic: Callable[[], float] = time.monotonic, poll: float = POLL,
        recorded: Callable[[Path], str | None] | None = None,
        alarm: Callable[[str, dict[str, object]], None] | None = None,
        progress: Callable[[str, int, str], object] | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self._progress = progress  # the server's: (session id, bytes sent, their SHA-256)
        self.spool = spool
        self.keep = keep
        self._recorded = recorded
        self._alarm = alarm  # the server's: an audit event of this kind with this detail
        self._hold: int | None = None  # the spool's lock, held from start() to stop()
        self.refused: str | None = None  # why this uploader does nothing (the spool is held)
        self._monotonic = monotonic
        self._poll = poll
        self._uploads: dict[Path, Upload] = {}
        self._kept: set[Path] = set()  # superseded: never uploaded again by this process
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.failing: str | None = None  # the last error while the object store fails

    def name(self, path: Path) -> str:
        """The object key of a spool file."""
        return self.store.key(path.relative_to(self.spool).as_posix())

    def start(self, held: int | None = None) -> None:
        """Hold the spool's lock (or take over `held`, hold_spool's descriptor: the server
        takes it before it closes crashed sessions) and start the thread. When another
        uploader holds the spool, refuse (one line, in the log, `refused` and the health
        check): this one then queues, uploads and removes nothing, and the spool keeps every
        byte for the holder."""
        lock = hold_spool(self.spool) if held is None else held
        if isinstance(lock, str):
            self.refused = self.failing = lock
            log.error("recording.upload_refused", error=lock)
            return
        self._hold = lock
        self._thread = threading.Thread(target=self._run, name="recording-upload", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; what is not uploaded stays in the spool for the next start."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # still in a store call: it keeps the spool's lock
                return
            self._thread = None
        if self._hold is not None:
            os.close(self._hold)
            self._hold = None

    def track(self, path: Path) -> None:
        """A recording opened in the spool: upload its parts as they come."""
        if self.refused:
            return
        with self._wake:
            if path not in self._kept:
                self._uploads.setdefault(path, Upload(path, self.name(path)))

    def finish(self, path: Path) -> None:
        """The recording's writer closed it (or failed): send the rest and complete."""
        if self.refused:
            return
        with self._wake:
            if path in self._kept:
                return
            upload = self._uploads.setdefault(path, Upload(path, self.name(path)))
            upload.finished = True
            upload.retry_at = 0.0
            self._wake.notify_all()

    def recover(self) -> list[Path]:
        """Queue every recording the spool holds (none is being written at start-up); an
        entry that is not a regular file (a link, a folder) is left where it is, unread."""
        found: list[Path] = []
        if self.refused:
            return found
        for path in sorted(self.spool.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.cast")):
            if stat.S_ISREG(path.lstat().st_mode):  # the folders: open_spooled checks them
                found.append(path)
                self.finish(path)
                with self._lock:
                    self._uploads[path].leftover = self._uploads[path].suspect = True
            else:
                log.error("recording.upload_refused", path=str(path),
                          error="not a regular file in the spool: never uploaded")  # fmt: skip
        return found

    def health(self) -> dict[str, object]:
        """For /healthz: whether the object store takes uploads (failing too while the thread
        is not running or a step failed in a way not foreseen), and how many finished
        recordings wait. Live sessions are not counted, and no name is given: the health
        check answers anyone who reaches the port."""
        with self._lock:
            waiting = sum(1 for upload in self._uploads.values() if upload.finished)
        running = self._thread is not None and self._thread.is_alive() and not self._stopping
        failing = self.failing is not None or not running
        return {"object_store": "failing" if failing else "ok", "uploads_waiting": waiting}

    def pending(self) -> list[Path]:
        """Spool files not yet uploaded and checked."""
        with self._lock:
            return sorted(self._uploads)

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                uploads = list(self._uploads.values())
            for upload in uploads:
                if self._stopping:
                    return
                if self._monotonic() >= upload.retry_at:
                    self._step(upload)
            with self._wake:
                if not self._stopping:
                    self._wake.wait(self._poll)

    def _step(self, upload: Upload) -> None:
        """Send what is due of one upload; a failure waits its backoff, the spool keeps all."""
        try:
            fd = open_spooled(self.spool, upload.path)
            try:
                sent = self._send(upload, fd)
                if sent == SUPERSEDED:
                    self._keep_superseded(upload)
                elif sent:
                    self._done(upload, fd)
            finally:
                os.close(fd)
            upload.failures = 0
            if self.failing is not None:
                log.info("recording.upload_resumed", object=self.store.url(upload.key))
                self.failing = None
        except ObjectStoreError as exc:
            upload.failures += 1
            upload.retry_at = self._monotonic() + backoff(upload.failures)
            if exc.code == "NoSuchUpload":
                upload.restart()
            elif exc.code == "InvalidPart":
                self._start_over(upload)
            if self.failing != exc.message:
                log.warning("recording.upload_failed", error=exc.message, retry=True)
            self.failing = exc.message
        except (OSError, RecordingError) as exc:  # the spool file itself: nothing to retry
            log.error("recording.upload_abandoned", path=str(upload.path), error=str(exc))
            self._forget(upload)
        except Exception as exc:  # not foreseen: the thread goes on, the upload waits
            upload.failures += 1
            upload.retry_at = self._monotonic() + backoff(upload.failures)
            said = f"{type(exc).__name__}: {exc}"[:300]
            log.error("recording.upload_error", path=str(upload.path), error=said)
            self.failing = f"object store: an unforeseen error: {said}"

    def _send(self, upload: Upload, fd: int) -> str:
        """Upload every part due from the spool file's descriptor: "sent" once the object is
        complete, "found" when it was there already, SUPERSEDED when the object the chain
        holds is there and the spool file is another, "" while more is to come."""
        size = os.fstat(fd).st_size
        finished = upload.finished
        if self._before_send(upload, fd):
            return SUPERSEDED
        fresh = finished and upload.upload_id is None and not upload.again
        if fresh and self.store.head(upload.key) == size:
            return "found"  # uploaded before: kept, or stopped before the spool copy went
        if finished and size == 0:  # created, then killed before its first byte
            self.store.put(upload.key, b"")
            return "sent"
        while length := next_part(upload.sent, size, finished):
            if upload.upload_id is None:
                upload.upload_id = self.store.create_upload(upload.key)
            data = os.pread(fd, length, upload.sent)
            if len(data) != length:
                raise RecordingError(f"{upload.path} shrank while being uploaded")
            tag = self.store.upload_part(upload.key, upload.upload_id, len(upload.etags) + 1, data)
            upload.etags.append(tag)
            upload.sent += length
            upload.digest.update(data)
            self._note(upload)
        self._note(upload)  # one that failed before: tried again
        if not finished or upload.upload_id is None:
            return ""
        self.store.complete(upload.key, upload.upload_id, upload.etags)
        return "sent"

    def _note(self, upload: Upload) -> None:
        """Tell the store how far this upload got (parts acknowledged), for whoever completes
        it; a failed write loses nothing (the spool keeps all): logged, tried next step."""
        if self._progress is None or upload.noted >= upload.sent:
            return
        try:
            self._progress(upload.path.stem, upload.sent, upload.digest.hexdigest())
        except Exception as exc:
            said = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("recording.progress_failed", path=str(upload.path), error=said)
            return
        upload.noted = upload.sent

    def _before_send(self, upload: Upload, fd: int) -> bool:
        """What a crash or a failure left is settled before a byte is sent: a crash's uploads
        of the key aborted, an upload that lost parts started over; True when the object
        the chain holds is there and this spool file is another (nothing is sent then)."""
        if upload.leftover:  # before anything is sent: a crash's uploads of this key go
            self._abort_leftovers(upload.key)
            upload.leftover = False
        if upload.failures and upload.upload_id is not None:  # did the upload outlive it?
            held = self.store.parts(upload.key, upload.upload_id)
            if held is None or held < len(upload.etags):
                if held is not None:  # parts lost: this upload is never completed
                    self._abort(upload.key, upload.upload_id)
                upload.restart()
        if upload.upload_id is None and upload.suspect:
            if self._superseded(upload, fd):
                return True
            upload.suspect = False
        return False

    def _superseded(self, upload: Upload, fd: int) -> bool:
        """Whether the session row holds a hash that is not the spool file's and the object
        at the key has it: the upload completer completed this node's upload from its parts
        while the node was lost, and closed the session with that object's hash. Replacing
        it would change a recording the chain holds; it stays. With an object there, a row
        that cannot be read now is retried (ObjectStoreError: the spool keeps every byte
        meanwhile); with none, there is nothing to keep and the upload goes on."""
        if self._recorded is None or self.store.head(upload.key) is None:
            return False
        try:
            expected = self._recorded(upload.path)
        except NotFound:
            return False
        except Exception as exc:
            said = f"{type(exc).__name__}: {exc}"[:200]
            raise ObjectStoreError(f"recordings: the session row of {upload.path.name} could"
                                   f" not be read ({said}); retrying") from None  # fmt: skip
        if expected is None or fd_digest(fd)[0] == expected:
            return False
        return self.store.sha256(upload.key)[0] == expected

    def _keep_superseded(self, upload: Upload) -> None:
        """The object the chain holds stays; the spool copy (this node's fuller one) too."""
        url = self.store.url(upload.key)
        why = "completed for this node while it was lost; the spool copy stays"
        log.warning("recording.upload_superseded", object=url, path=str(upload.path), reason=why)
        if self._alarm is not None:
            detail: dict[str, object] = {"object": url, "session": upload.path.stem,
                                         "kept": str(upload.path)}  # fmt: skip
            try:
                self._alarm("recording.upload_superseded", detail)
            except Exception as exc:  # the log line above says it
                log.error("recording.alarm_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        with self._lock:
            self._kept.add(upload.path)
        self._forget(upload)

    def _start_over(self, upload: Upload) -> None:
        """A part this node sent is no longer there as it sent it (someone holding the
        bucket's credentials replaced it): that upload can never be completed, so it goes,
        and the recording is uploaded again from the spool (never retried as it is for ever)."""
        log.warning("recording.upload_part_replaced", object=self.store.url(upload.key),
                    reason="a part is not what this node sent; uploading it again")  # fmt: skip
        if upload.upload_id is not None:
            try:
                self._abort(upload.key, upload.upload_id)
            except ObjectStoreError as exc:  # left to the bucket's lifecycle rule
                log.warning("recording.upload_abort_failed", error=exc.message)
        upload.restart()

    def _abort_leftovers(self, key: str) -> None:
        """Abort the multipart uploads of `key` a crash of this node left (its id died with
        the process): the spool holds every byte, so the recording is uploaded whole again,
        and no upload is left to be billed for ever or completed into half a recording.
        Only keys of this node's own spool files come here (the spool's lock is held), never
        another node's live upload. Uploads whose node and spool are gone for good are the
        upload completer's (bastion/recording/completer.py)."""
        for found, upload_id in self.store.uploads_in_progress(key):
            if found == key:
                self._abort(key, upload_id)
                log.info("recording.upload_aborted", object=self.store.url(key),
                         reason="left by a crash; uploaded again from the spool")  # fmt: skip

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.store.abort(key, upload_id)
        except ObjectStoreError as exc:
            if exc.code not in ("NoSuchUpload", "404"):
                raise

    def _done(self, upload: Upload, fd: int) -> None:
        """Check the object against the spool file; then the spool copy may go. An object
        found at the key (uploaded before, or planted by someone who can write the bucket)
        is read and checked too, kept spool or not: a different one is uploaded again."""
        local = fd_digest(fd)
        try:  # no more than the spool file holds is read: a larger object is another
            remote = self.store.sha256(upload.key, limit=local[1])
        except ObjectStoreError as exc:
            if exc.code != LARGER:
                raise
            remote = ("", local[1] + 1)  # at least: not read further
        if remote != local:
            upload.restart()
            self._raise_alarm(upload, remote[1], local[1])
            size = f"more than {local[1]}" if remote[1] > local[1] else str(remote[1])
            raise ObjectStoreError(
                f"object store: {self.store.url(upload.key)} does not match {upload.path}"
                f" (size {size}, local {local[1]}): uploading it again"
            )
        log.info("recording.uploaded", object=self.store.url(upload.key), size=local[1])
        if not self.keep and self._may_remove(upload.path, remote[0]):
            upload.path.unlink(missing_ok=True)
        self._forget(upload)

    def _raise_alarm(self, upload: Upload, size: int, local: int) -> None:
        """An object at the key is not the spool file (someone wrote the bucket, or the store
        kept something else): an audit event, not only a log line. Never stops the thread."""
        if self._alarm is None:
            return
        detail = {"object": self.store.url(upload.key), "session": upload.path.stem,
                  "size": size, "local_size": local}  # fmt: skip
        try:
            self._alarm("recording.object_mismatch", detail)
        except Exception as exc:  # the log line below the raise still says it
            log.error("recording.alarm_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def _may_remove(self, path: Path, sha256: str) -> bool:
        """Whether the spool copy may go: the session row holds the object's very hash (a
        live session's row holds none yet; a changed spool file, another). When it may not,
        the copy stays for the next start to check again. A file no session row names (no
        session opened with it) goes once its object is checked against it."""
        if self._recorded is None:
            return True
        try:
            expected = self._recorded(path)
        except NotFound:
            return True
        except Exception as exc:  # the store could not say: keep the copy
            why = f"the session row could not be read: {type(exc).__name__}: {exc}"[:300]
        else:
            if expected == sha256:
                return True
            why = ("the session row holds no hash yet (open session)" if expected is None
                   else "the session row holds another hash")  # fmt: skip
        log.warning("recording.spool_kept", path=str(path), reason=why)
        return False

    def _forget(self, upload: Upload) -> None:
        with self._lock:
            self._uploads.pop(upload.path, None)
