"""A recording where a reader can open it: the spool file, or a private copy from the bucket.

Readers (replay, export, `audit verify`) take the path the store holds. When that file is
gone from the spool (uploaded, then removed), `Fetcher.local` downloads the object of the
same name into a private temporary folder (0700, files 0600) and returns that path; every
check a reader makes on a local file (chunk authentication, the hash the chain holds) is
made on the copy in the same way. Copies go with drop(), close() or the `with` block's end
(at the latest when the process exits).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from bastion.config import Config
from bastion.recording.model import RecordingError

if TYPE_CHECKING:
    from bastion.recording.objects import ObjectStore

_SPARE_DISK = 256 << 20  # bytes a copy must leave free on the temporary folder's disk


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
        is (the reader then says it is missing); RecordingError when the bucket has none,
        or when it holds (or sends) more than it announced or than `limit` (bytes: the size
        the session row holds, when the caller has it): no copy is kept then."""
        spool = self._config.paths.recordings
        if recorded.exists() or not self._config.recordings.url:
            return recorded
        try:
            name = recorded.relative_to(spool).as_posix()
        except ValueError:
            return recorded
        if ".." in name.split("/"):  # a row edited to reach outside the spool's names
            return recorded
        with self._lock:
            if recorded not in self._copies:
                self._copies[recorded] = self._download(name, recorded.name, limit)
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
            self._folder = Path(tempfile.mkdtemp(prefix="bastion-recordings-"))  # mode 0700
            atexit.register(self.close)
        return self._folder

    def found(self, recorded: Path) -> Path:
        """The copy local() made of the recording, else the path as it is; never downloads
        (for a thread that must not wait on the object store: the store's)."""
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
