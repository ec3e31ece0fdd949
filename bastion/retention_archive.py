"""The retention archive: what a prune removed, one canonical JSON line each, sealed and signed.

    {"archive": 1, "from_seq": A, "to_seq": B, "start_head": MAC, ...}   the header
    {"event": {...}}        each cut event as stored, with its keyed MAC (row_hash)
    {"query": {...}}        each deleted query-log row, as stored
    {"recording": {...}}    each deleted recording: session, path, SHA-256, size
    {"seal": {...}}         the checkpoint: the last event's seq and MAC (None: no event was
                            cut), the SHA-256 of every byte before this line, and its
                            signature under the anchor key (bastion/audit/anchors.py)

An archive of any size streams: it is written a batch of lines at a time and read back in
chunks (its length and SHA-256 against what was written), and `verify` reads it a line at a
time (a line over LINE_LIMIT is damage), so memory does not grow with the archive.

`verify` proves a file on its own: the events' MACs recompute from the header's start head
under the chain key, with no gap; the last one is the seal's head; the body hashes to the
seal's digest; the seal's signature holds.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bastion.audit.chain import ChainedEvent, canonical_json
from bastion.privatefiles import NotPrivate, created, opened_private, write_all
from bastion.retention_check import Checker

FORMAT = 1
MODE = 0o600
CHUNK = 1 << 20  # bytes written or read at a time
LINE_LIMIT = 256 << 20  # the longest line (with its newline) written or read


def signed_body(seal: Mapping[str, Any]) -> bytes:
    """What the seal's signature covers: every field but the signature, canonical."""
    body = {k: v for k, v in seal.items() if k != "sig"}
    return canonical_json({"bastion_checkpoint": FORMAT, **body}).encode()


def sign(seal: Mapping[str, Any], key: bytes) -> str:
    return hmac.digest(key, signed_body(seal), "sha256").hex()


class Body:
    """The archive's body (everything but the seal line) as lines, each ending in a newline,
    made as they are taken; notes the last event taken (the seal names it)."""

    def __init__(self, header: Mapping[str, Any], events: Iterable[ChainedEvent],
                 queries: Iterable[Mapping[str, Any]],
                 recordings: Iterable[Mapping[str, Any]]) -> None:  # fmt: skip
        self.header, self.events, self.queries = header, events, queries
        self.recordings = recordings
        self.last: ChainedEvent | None = None

    def __iter__(self) -> Iterator[bytes]:
        yield _line({"archive": FORMAT, **self.header})
        for event in self.events:
            self.last = event
            yield _line({"event": {k: getattr(event, k) for k in event.__dataclass_fields__}})
        for query in self.queries:
            yield _line({"query": dict(query)})
        for recording in self.recordings:
            yield _line({"recording": dict(recording)})


def _line(value: Mapping[str, Any]) -> bytes:
    return canonical_json(value).encode() + b"\n"


def render(header: Mapping[str, Any], events: Iterable[ChainedEvent],
           queries: Iterable[Mapping[str, Any]], recordings: Iterable[Mapping[str, Any]]
           ) -> bytes:  # fmt: skip
    """The archive's body in one piece (small archives: tests and tools)."""
    return b"".join(Body(header, events, queries, recordings))


SealFor = Callable[[str], Mapping[str, Any]]  # the body's SHA-256 -> the signed seal


def write(path: Path, body: Iterable[bytes], seal_for: SealFor, *, chunk: int | None = None,
          line_limit: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Write the archive new (never over another): the body's lines as they come, then the
    seal `seal_for` makes from their SHA-256; synced, then read back. Returns the seal;
    OSError or ValueError unless the disk holds exactly what was meant (a file written
    only in part, or that reads back otherwise, is removed: it holds nothing deleted)."""
    chunk, line_limit = chunk or CHUNK, line_limit or LINE_LIMIT
    digest = hashlib.sha256()
    size = 0
    with created(path, MODE) as fd:
        written = ident(os.fstat(fd))
        batch = bytearray()
        for line in body:
            if len(line) > line_limit:
                raise ValueError(f"a line of {len(line)} bytes is over the archive's line"
                                 f" limit of {line_limit}")  # fmt: skip
            digest.update(line)
            batch += line
            if len(batch) >= chunk:
                write_all(fd, batch)
                size, batch = size + len(batch), bytearray()
        seal = dict(seal_for(digest.hexdigest()))
        last = _line({"seal": seal})
        digest.update(last)  # now the whole file's
        write_all(fd, batch + last)
        size += len(batch) + len(last)
    _sync_dir(path.parent)  # the file's name too survives a power cut the deletes outlive
    try:
        read_back(path, written, size, digest.hexdigest(), chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return seal


def ident(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def read_back(path: Path, written: tuple[int, int], size: int, sha256: str,
              chunk: int = CHUNK) -> None:  # fmt: skip
    """The file at path is the one written, private, and holds exactly `size` bytes whose
    SHA-256 is `sha256` (read in chunks: any size); ValueError if not."""
    digest, seen = hashlib.sha256(), 0
    try:
        with opened_private(path, follow=False) as (fd, info):
            if ident(info) != written:
                raise ValueError(f"the archive {path} is not the file written (replaced)")
            while part := os.read(fd, min(chunk, size + 1 - seen)):
                digest.update(part)
                seen += len(part)
                if seen > size:
                    break
    except NotPrivate as exc:
        raise ValueError(f"the archive {path} is {exc}") from exc
    if seen != size or digest.hexdigest() != sha256:
        raise ValueError(f"the archive {path} reads back other than it was written")


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify(path: Path, chain_key: bytes, anchor_key: bytes, *, chunk: int | None = None,
           line_limit: int | None = None) -> tuple[dict[str, Any], str]:  # fmt: skip
    """(what the archive holds, '' or the first problem found): see the module's doc."""
    chunk, line_limit = chunk or CHUNK, line_limit or LINE_LIMIT
    try:
        with opened_private(path) as (fd, _):
            reader = io.BufferedReader(io.FileIO(fd, closefd=False), buffer_size=chunk)
            checker = Checker(chain_key, FORMAT)
            seal = checker.read(_lines(reader, line_limit))
    except NotPrivate as exc:
        return {}, f"the archive {path} is {exc} (it must be a private file)"
    except OSError as exc:
        return {}, f"the archive {path} cannot be read: {exc.strerror}"
    except (ValueError, TypeError) as exc:
        return {}, f"the archive {path} is damaged: {exc}"
    facts: dict[str, Any] = {"seal": seal, "counts": checker.counts, "header": checker.header}
    if not hmac.compare_digest(str(seal.get("sig", "")), sign(seal, anchor_key)):
        return facts, "its seal is not signed with this bastion's anchor key (forged or edited)"
    if checker.body_sha256 != seal.get("archive_sha256"):
        return facts, "its content differs from what the seal signed (edited)"
    return facts, checker.problem(seal)


def _lines(reader: io.BufferedReader[io.FileIO], limit: int) -> Iterator[bytes]:
    """The file's lines, each with its newline; ValueError for a line over `limit` bytes or
    a last line without its newline."""
    number = 0
    while line := reader.readline(limit + 1):
        number += 1
        if len(line) > limit:
            raise ValueError(f"line {number} is longer than {limit} bytes")
        if not line.endswith(b"\n"):
            raise ValueError("it does not end with a whole line")
        yield line
