"""A recording where a reader can open it: the spool file, or a private copy from the bucket.

Readers (replay, export, `audit verify`) take the path the store holds. When that file is
gone from the spool (uploaded, then removed), `Fetcher.local` downloads the object of the
same name into a private folder (0700, files 0600) below the spool's COPIES folder, on the
bastion's own disk (never /tmp: often tmpfs, memory), and returns that path; every
check a reader makes on a local file (chunk authentication, the hash the chain holds) is
made on the copy in the same way. Copies go with drop(), close() or the `with` block's end
(at the latest when the process exits; a killed process's folder goes at the next fetch
of any process). The web console fetches through `fetched`: in
threads of its own, a bounded number at once, each waited for a bounded time.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from bastion.config import Config
from bastion.recording.model import RecordingError

if TYPE_CHECKING:
    from bastion.recording.objects import ObjectStore

_SPARE_DISK = 256 << 20  # bytes a copy must leave free on the copies folder's disk
COPIES = ".fetched"  # below the spool (paths.recordings): one <pid>-<random> folder a process
# The console's downloads at once: as many as asyncio's default pool holds, never in it (the
# SSH door seals recordings in threads too); more are refused, not queued.
CONSOLE_DOWNLOADS = min(32, (os.cpu_count() or 1) + 4)
CONSOLE_DEADLINE = 120.0  # seconds the console waits for one download, all told
CONSOLE_PER_USER = 2  # downloads one console user may have under way at once


# The spool's layout (bastion/recording/store.py recording_path): YYYY/MM/DD/<session id>.cast
_SPOOL_NAME = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}/[A-Za-z0-9][A-Za-z0-9._-]*\.cast")


def object_name(recorded: Path) -> str | None:
    """The recording's name below the bucket's prefix: the spool's last four parts, whichever
    node's spool the row names (each node has its own home); None for a path not of the
    spool's shape."""
    name = "/".join(recorded.parts[-4:])
    return name if _SPOOL_NAME.fullmatch(name) and ".." not in name else None


def _spooled(recorded: Path, limit: int | None) -> bool:
    """Whether the spool holds the recording, of the size the session row holds (if known)."""
    try:
        size = recorded.stat().st_size
    except OSError:
        return False
    return limit is None or size == limit


class Fetcher:
    """Finds recordings for one process; the object store is reached only when needed."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._store: ObjectStore | None = None
        self._folder: Path | None = None
        self._copies: dict[Path, Path] = {}
        self._made = 0
        self._lock = threading.Lock()

    @property
    def store(self) -> ObjectStore | None:
        """The object store [recordings] url names (None without one)."""
        policy = self._config.recordings
        if self._store is None and policy.url:
            from bastion.recording.objects import ObjectStore  # noqa: PLC0415 - boto3 if used

            self._store = ObjectStore.from_policy(policy, self._config.path.parent)
        return self._store

    def local(self, recorded: Path, limit: int | None = None) -> Path:
        """The recording's local file: the spool's, or a fresh copy from the object store.
        A path the spool does not hold and no object store is configured comes back as it
        is (the reader then says it is missing). A spool file of another size than `limit`
        is not the recording the row holds (a node back after the upload completer finished
        its recording from the parts it had uploaded keeps its fuller copy): the bucket's
        object is read, and the spool file only when the bucket has none. RecordingError
        when the bucket has none,
        or when it holds (or sends) more than it announced or than `limit` (bytes: the size
        the session row holds, when the caller has it): no copy is kept then."""
        if not self._config.recordings.url or _spooled(recorded, limit):
            return recorded
        name = object_name(recorded)
        if name is None:  # a row edited to reach outside the spool's names
            return recorded
        with self._lock:
            if recorded not in self._copies:
                try:
                    self._copies[recorded] = self._download(name, recorded.name, limit)
                except RecordingError:
                    if recorded.exists():  # the spool's, of another size: checked as it is
                        return recorded
                    raise
            return self._copies[recorded]

    def _download(self, name: str, file_name: str, limit: int | None) -> Path:
        store = self.store
        assert store is not None
        key = store.key(name)
        size = store.head(key)
        if size is None:
            raise RecordingError(
                f"the recording {name} is neither in the spool nor at {store.url(key)}"
            )
        if limit is not None:
            size = min(size, limit)  # the row's size: a larger object is not the recording
        folder = self._private_folder()
        if shutil.disk_usage(folder).free < size + _SPARE_DISK:  # an object blown up
            raise RecordingError(f"{store.url(key)} holds {size} bytes: no room to copy it"
                                 f" into {folder.parent}")  # fmt: skip
        self._made += 1
        copy = folder / f"{self._made}-{file_name}"
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                store.download(
                    key, out, size
                )  # at most what was announced (and checked room for) or the row holds
        except BaseException:
            copy.unlink(missing_ok=True)
            raise
        return copy

    def _private_folder(self) -> Path:
        if self._folder is None:
            copies = copies_folder(self._config.paths.recordings)
            self._folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=copies))  # 0700
            atexit.register(self.close)
        return self._folder

    def found(self, recorded: Path, limit: int | None = None) -> Path:
        """The copy local() made of the recording, else the path as it is; never downloads
        (for a thread that must not wait on the object store: the store's). limit: as for
        local(), which made the copy with it."""
        with self._lock:
            return self._copies.get(recorded, recorded)

    def drop(self, recorded: Path) -> None:
        """Remove the copy made of one recording, if any (a checker done with it)."""
        with self._lock:
            copy = self._copies.pop(recorded, None)
        if copy is not None:
            copy.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the copies made (decrypting them needs the secrets key; still, tidy)."""
        with self._lock:
            folder, self._folder = self._folder, None
            self._copies.clear()
        if folder is not None:
            atexit.unregister(self.close)
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def copies_folder(spool: Path) -> Path:
    """The spool's folder for copies from the bucket (made 0700; refused when it is a link or
    not the process's own), after removing what processes no longer running left there."""
    copies = spool / COPIES
    try:
        spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            copies.mkdir(mode=0o700)
        found = copies.lstat()
    except OSError as exc:
        raise RecordingError(f"cannot make {copies} for copies from the object store"
                             f" ({exc.strerror})") from None  # fmt: skip
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
        raise RecordingError(f"{copies} is not a folder of this user's: no copy is made there")
    for left in copies.iterdir():
        pid = left.name.partition("-")[0]
        if pid.isdigit() and not _running(int(pid)):  # killed before its copies went
            shutil.rmtree(left, ignore_errors=True)
    return copies


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not ours to judge
        return True
    return True


class _Last:
    """Runs `fn` when the last of its holders lets go (a request and its download thread)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._held = 1
        self._lock = threading.Lock()

    def hold(self) -> None:
        with self._lock:
            self._held += 1

    def release(self) -> None:
        with self._lock:
            self._held -= 1
            last = self._held == 0
        if last:
            self._fn()


class ConsoleDownloads:
    """Recordings fetched for the web console, each in a daemon thread of its own: never in
    asyncio's default pool nor on the store's thread, at most `slots` at once and at most
    `per_user` for one user (one more is refused at once: a hostile or hanging store cannot
    pile threads up, nor can one user take every slot from the others), each waited for at
    most `deadline` seconds (its thread ends with the object store's own timeouts)."""

    def __init__(
        self, slots: int = CONSOLE_DOWNLOADS, deadline: float = CONSOLE_DEADLINE,
        per_user: int = CONSOLE_PER_USER,
    ) -> None:  # fmt: skip
        self._slots = threading.BoundedSemaphore(slots)
        self.deadline = deadline
        self.per_user = per_user
        self._users: dict[str, int] = {}
        self._lock = threading.Lock()

    def _take(self, who: str) -> None:
        """A slot for `who`, or RecordingError at once."""
        with self._lock:
            if self._users.get(who, 0) >= self.per_user:
                raise RecordingError(f"you are fetching {self.per_user} recordings from the"
                                     " object store already: wait for them")  # fmt: skip
            if not self._slots.acquire(blocking=False):
                raise RecordingError(
                    "the console is fetching as many recordings from the object store as it"
                    " may at once: try again shortly"
                )
            self._users[who] = self._users.get(who, 0) + 1

    def _give_back(self, who: str) -> None:
        with self._lock:
            left = self._users.pop(who, 1) - 1
            if left:
                self._users[who] = left
            self._slots.release()

    async def fetch(
        self, fetcher: Fetcher, recorded: Path, limit: int, last: _Last, who: str = ""
    ) -> None:
        """fetcher.local(recorded, limit) in a thread for the console user `who`;
        RecordingError if no slot is free (for anyone, or for `who`) or the deadline passes
        (the copy then goes when the thread ends: `last`)."""
        self._take(who)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        last.hold()

        def work() -> None:
            failed: BaseException | None = None
            try:
                fetcher.local(recorded, limit)
            except BaseException as exc:  # handed to the request, raised there
                failed = exc
            finally:
                self._give_back(who)
                last.release()
            with contextlib.suppress(RuntimeError):  # a loop gone: nobody waits any more
                loop.call_soon_threadsafe(_settle, done, failed)

        threading.Thread(target=work, name="bastion-console-fetch", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(done), self.deadline)
        except TimeoutError:
            done.add_done_callback(_unheard)  # its late outcome is nobody's any more
            raise RecordingError(f"the object store did not deliver the recording within"
                                 f" {self.deadline:.0f} s: try again later") from None  # fmt: skip


def _settle(done: asyncio.Future[None], failed: BaseException | None) -> None:
    if done.done():
        return
    if failed is None:
        done.set_result(None)
    else:
        done.set_exception(failed)


def _unheard(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()  # taken: asyncio would log it as never retrieved


_console = ConsoleDownloads()


@asynccontextmanager
async def fetched(
    config: Config, recorded: Path | None, limit: int, who: str = ""
) -> AsyncIterator[Callable[[Path, int | None], Path]]:
    """For the web console user `who`: the recording found (the spool's file, or a copy of
    at most `limit` bytes from the object store) in a download thread; yields a locate() for
    the store's thread that only looks up what was found. The copy goes when both the block
    and the thread are done."""
    fetcher = Fetcher(config)
    last = _Last(fetcher.close)
    try:
        if recorded is not None:
            await _console.fetch(fetcher, recorded, limit, last, who)
        yield fetcher.found
    finally:
        last.release()
