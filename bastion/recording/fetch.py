"""A recording where a reader can open it: the spool file, or a private copy from the bucket.

Readers (replay, export, `audit verify`) take the path the store holds. When that file is
gone from the spool (uploaded, then removed), `Fetcher.local` downloads the object of the
same name into a private temporary folder (0700, files 0600, removed at exit) and returns
that path; every check a reader makes on a local file (chunk authentication, the hash the
chain holds) is made on the copy in the same way.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

from bastion.config import Config
from bastion.recording.model import RecordingError
from bastion.recording.objects import ObjectStore


class Fetcher:
    """Finds recordings for one process; the object store is reached only when needed."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._store: ObjectStore | None = None
        self._folder: Path | None = None
        self._copies: dict[Path, Path] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> ObjectStore | None:
        """The object store [recordings] url names (None without one)."""
        policy = self._config.recordings
        if self._store is None and policy.url:
            self._store = ObjectStore.from_policy(policy, self._config.path.parent)
        return self._store

    def local(self, recorded: Path) -> Path:
        """The recording's local file: the spool's, or a fresh copy from the object store.
        A path the spool does not hold and no object store is configured comes back as it
        is (the reader then says it is missing); RecordingError when the bucket has none."""
        spool = self._config.paths.recordings
        if recorded.exists() or not self._config.recordings.url:
            return recorded
        try:
            name = recorded.relative_to(spool).as_posix()
        except ValueError:
            return recorded
        with self._lock:
            if recorded not in self._copies:
                self._copies[recorded] = self._download(name, recorded.name)
            return self._copies[recorded]

    def _download(self, name: str, file_name: str) -> Path:
        store = self.store
        assert store is not None
        key = store.key(name)
        if store.head(key) is None:
            raise RecordingError(
                f"the recording {name} is neither in the spool nor at {store.url(key)}"
            )
        folder = self._private_folder()
        copy = folder / f"{len(self._copies)}-{file_name}"
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            store.download(key, out)
        return copy

    def _private_folder(self) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="bastion-recordings-"))  # mode 0700
            atexit.register(self.close)
        return self._folder

    def close(self) -> None:
        """Remove the copies made (decrypting them needs the secrets key; still, tidy)."""
        folder, self._folder = self._folder, None
        self._copies.clear()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
