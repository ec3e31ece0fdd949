"""A review pack an auditor can check offline: the week's files, a manifest, its signature.

`manifest.json` lists each file's name, size and SHA-256, the audit chain's head at the start
and end of the week, the counts, and the hash of every recording by session id; `manifest.sig`
is the raw Ed25519 signature over manifest.json's exact bytes. Without the bastion:

    openssl pkeyutl -verify -pubin -inkey report-key.pem -rawin -in manifest.json \\
        -sigfile manifest.sig
    jq -r '.files[] | "\\(.sha256)  \\(.name)"' manifest.json | sha256sum --strict -c -

`verify_pack` does both, refuses a file the manifest does not list, and, with the store, checks
that the chain still holds both heads and the recordings' hashes, and that the counts agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.audit import Verdict
from bastion.audit.chain import GENESIS
from bastion.audit.restores import Restore, explaining, understated
from bastion.errors import Conflict, UsageError
from bastion.privatefiles import write_new
from bastion.reports.model import ChainHead, utc
from bastion.reports.signing import key_id

FORMAT = "bastion-review-pack/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# A file in a pack is a plain name: no directory, no "..", nothing a shell or a path join
# would read as more than one name (an attacker who edits files edits the manifest too).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = {"format", "week", "made_at", "key_id", "files", "chain", "counts", "recordings"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a pack holds and what the store held when it was made; signed as JSON bytes."""

    week: str
    made_at: str
    key_id: str
    files: tuple[PackFile, ...]
    chain_start: ChainHead
    chain_end: ChainHead
    counts: Mapping[str, int]
    recordings: Mapping[str, str]  # session id -> SHA-256 of its recording
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "week": self.week,
            "made_at": self.made_at,
            "key_id": self.key_id,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
            "chain": {
                "start": {"seq": self.chain_start.seq, "mac": self.chain_start.mac},
                "end": {"seq": self.chain_end.seq, "mac": self.chain_end.mac},
            },
            "counts": dict(self.counts),
            "recordings": dict(self.recordings),
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse a manifest strictly; ValueError naming what is malformed."""
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
        if not isinstance(doc, dict) or set(doc) != _KEYS:
            raise ValueError("its fields are not those of a review pack manifest")
        if doc["format"] != FORMAT:
            raise ValueError(f"format {doc['format']!r} is not {FORMAT!r}")
        chain = _dict(doc["chain"], "chain")
        return cls(
            week=_str(doc["week"], "week"),
            made_at=_str(doc["made_at"], "made_at"),
            key_id=_str(doc["key_id"], "key_id"),
            files=tuple(_pack_file(item) for item in _list(doc["files"], "files")),
            chain_start=_head(chain.get("start"), "chain.start"),
            chain_end=_head(chain.get("end"), "chain.end"),
            counts={k: _int(v, f"counts.{k}") for k, v in _dict(doc["counts"], "counts").items()},
            recordings={
                k: _digest(v, f"recordings.{k}")
                for k, v in _dict(doc["recordings"], "recordings").items()
            },
        )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"field {key!r} appears twice")
        out[key] = value
    return out


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} is not a count")
    return value


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _digest(value: object, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"{what} is not a SHA-256 in hex")
    return value


def _head(value: object, what: str) -> ChainHead:
    doc = _dict(value, what)
    if set(doc) != {"seq", "mac"}:
        raise ValueError(f"{what} is not a chain head")
    seq = _int(doc["seq"], f"{what}.seq")
    if seq == 0:  # before the first event (the store's first week): the chain's start value
        if doc["mac"] != GENESIS:
            raise ValueError(f"{what} is event 0, whose MAC can only be the chain's start")
        return ChainHead(0, GENESIS)
    return ChainHead(seq, _digest(doc["mac"], f"{what}.mac"))


def _pack_file(value: object) -> PackFile:
    doc = _dict(value, "a file entry")
    if set(doc) != {"name", "size", "sha256"}:
        raise ValueError("a file entry is not a name, size and sha256")
    name = _str(doc["name"], "a file's name")
    return PackFile(name, _int(doc["size"], f"{name}'s size"), _digest(doc["sha256"], name))


def name_problem(name: str) -> str:
    """'' for a plain file name a pack may hold; else why not."""
    if name in (MANIFEST, SIGNATURE):
        return f"{name!r}, the pack's own manifest"
    if not _NAME.fullmatch(name):
        return f"{name!r}, which is not a plain file name (letters, digits, '.', '_', '-')"
    return ""


# -- writing -------------------------------------------------------------------------------


def _write_file(path: Path, data: bytes) -> None:
    write_new(path, data, 0o640)


def write_pack(
    out_dir: Path,
    files: Mapping[str, bytes],
    *,
    week: str,
    chain_start: ChainHead,
    chain_end: ChainHead,
    counts: Mapping[str, int],
    recordings: Mapping[str, str],
    key: Ed25519PrivateKey,
    now: datetime | None = None,
) -> Manifest:
    """Write each file, then manifest.sig, then manifest.json (renamed into place last: a
    pack is found by its manifest, so a half-written one is never read as tampered).
    out_dir must be new or empty: a stale file would be one the manifest does not list."""
    for name in files:
        if problem := name_problem(name):
            raise UsageError(f"a review pack cannot hold {problem}")
    out_dir = Path(out_dir)
    out_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise Conflict(f"{out_dir} is not empty; a review pack is written into a new directory")
    listed = []
    for name in sorted(files):
        data = files[name]
        _write_file(out_dir / name, data)
        listed.append(PackFile(name, len(data), hashlib.sha256(data).hexdigest()))
    manifest = Manifest(
        week=week,
        made_at=utc(now or datetime.now(UTC)) or "",
        key_id=key_id(key.public_key()),
        files=tuple(listed),
        chain_start=chain_start,
        chain_end=chain_end,
        counts={name: int(counts[name]) for name in sorted(counts)},
        recordings={sid: recordings[sid] for sid in sorted(recordings)},
    )
    Manifest.from_bytes(manifest.to_bytes())  # what verify reads must parse: fail here first
    body = manifest.to_bytes()
    _write_file(out_dir / SIGNATURE, key.sign(body))
    part = out_dir / f".{MANIFEST}.part"
    _write_file(part, body)
    os.rename(part, out_dir / MANIFEST)  # a pack is found by its manifest: whole, or not yet
    dir_fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return manifest


def manifest_sha256(directory: Path) -> str:
    """The SHA-256 of a pack's manifest.json: what a week's sign-off is bound to."""
    return hashlib.sha256((Path(directory) / MANIFEST).read_bytes()).hexdigest()


# -- verifying -----------------------------------------------------------------------------


class ChainView(Protocol):
    """What verify_pack reads from the store (the Store has all of it)."""

    def verify_chain(self) -> Verdict: ...

    def mac_at(self, seq: int) -> str | None: ...

    def chained_recordings(
        self, up_to: int, session_id: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]: ...


Recount = Callable[[str], Mapping[str, int]]  # a week's counts, as the store holds them now


@dataclass(frozen=True)
class PackVerdict:
    """The first thing that does not match (None: the pack is intact), and what was checked."""

    problem: str | None
    manifest: Manifest | None = None
    store_checked: bool = False
    counts_checked: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None


def _read_small(path: Path) -> bytes | None:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        return path.read_bytes()
    except OSError:
        return None


def signed_manifest(directory: Path, public_key: Ed25519PublicKey) -> Manifest | str:
    """The pack's manifest if its signature is this key's; else what is wrong (one line)."""
    body, sig = _read_small(directory / MANIFEST), _read_small(directory / SIGNATURE)
    if body is None or sig is None:
        missing = MANIFEST if body is None else SIGNATURE
        return f"{directory} has no {missing}: it is not a review pack, or it was removed"
    try:
        public_key.verify(sig, body)
    except InvalidSignature:
        return _bad_signature(body, public_key)
    try:
        return Manifest.from_bytes(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"{MANIFEST} is signed but malformed: {exc}"


def _bad_signature(body: bytes, public_key: Ed25519PublicKey) -> str:
    mine = key_id(public_key)
    try:
        claimed = json.loads(body).get("key_id")
    except (ValueError, UnicodeDecodeError, AttributeError):
        claimed = None
    if isinstance(claimed, str) and claimed != mine:
        return (
            f"{MANIFEST} is signed by another key ({claimed[:16]}), not this bastion's"
            f" ({mine[:16]}): it was not made here, or was re-signed"
        )
    return (
        f"{SIGNATURE} does not verify {MANIFEST}: the manifest was edited or its signature replaced"
    )


def _file_digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest(), size


def _file_problem(directory: Path, entry: PackFile) -> str:
    if problem := name_problem(entry.name):
        return f"the manifest names {problem}"
    path = directory / entry.name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return f"{entry.name} is missing from the pack"
    if not stat.S_ISREG(info.st_mode):
        return f"{entry.name} is not a regular file (a link or directory was put in its place)"
    digest, size = _file_digest(path)
    if size != entry.size:
        return f"{entry.name} was changed: it holds {size} bytes, the manifest says {entry.size}"
    if digest != entry.sha256:
        return f"{entry.name} was changed: its SHA-256 differs from the manifest's"
    return ""


def files_problem(directory: Path, manifest: Manifest) -> str:
    """The first listed file that is missing or differs, or a file the manifest does not list."""
    names = [entry.name for entry in manifest.files]
    if len(set(names)) != len(names):
        return "the manifest lists a file twice"
    for entry in manifest.files:
        if problem := _file_problem(directory, entry):
            return problem
    extra = sorted(set(os.listdir(directory)) - {*names, MANIFEST, SIGNATURE})
    if extra:
        return f"{extra[0]} is not in the manifest: it was added to the pack after signing"
    return ""


def head_problem(
    which: str, head: ChainHead, head_seq: int, mac_at: Callable[[int], str | None]
) -> str:
    """'' when the chain (ending at head_seq) holds this head; else what is wrong."""
    if head.seq == 0:
        return ""
    if head.seq > head_seq:
        return (
            f"the chain ends at event {head_seq}, but the pack's {which} head is event"
            f" {head.seq} (events were deleted from the end)"
        )
    if mac_at(head.seq) != head.mac:
        return f"event {head.seq} differs from the pack's {which} head (the chain was rewritten)"
    return ""


def store_problem(manifest: Manifest, store: ChainView) -> str:
    """The chain must be intact, hold both heads, and hold the same recording hashes."""
    verdict = store.verify_chain()
    if not verdict.ok:
        return f"the audit chain is broken: {verdict.problem}"
    for which, head in (("start", manifest.chain_start), ("end", manifest.chain_end)):
        if problem := head_problem(which, head, verdict.head_seq, store.mac_at):
            return problem
    chained = dict(store.chained_recordings(manifest.chain_end.seq))
    for session_id, digest in manifest.recordings.items():
        held = chained.get(session_id, {}).get("recording_sha256")
        if held is None:
            return f"recording of session {session_id}: the chain holds no hash for it"
        if held != digest:
            return f"recording of session {session_id}: the chain's hash differs from the pack's"
    return ""


def counts_problem(manifest: Manifest, recount: Recount) -> str:
    now = recount(manifest.week)
    for name in sorted(manifest.counts):  # what the signer counted (the signature covers it)
        signed, held = manifest.counts.get(name), now.get(name)
        if signed != held:
            return f"count {name!r}: the pack says {signed}, the store now holds {held}"
    return ""


def verify_pack(
    directory: Path,
    public_key: Ed25519PublicKey,
    store: ChainView | None = None,
    recount: Recount | None = None,
) -> PackVerdict:
    """Check a pack; the verdict names the first thing that does not match."""
    directory = Path(directory)
    if not directory.is_dir():
        return PackVerdict(f"{directory} is not a directory")
    manifest = signed_manifest(directory, public_key)
    if isinstance(manifest, str):
        return PackVerdict(manifest)
    if problem := files_problem(directory, manifest):
        return PackVerdict(problem, manifest)
    if store is not None and (problem := store_problem(manifest, store)):
        return PackVerdict(problem, manifest)
    if recount is not None and (problem := counts_problem(manifest, recount)):
        return PackVerdict(problem, manifest, store_checked=store is not None)
    return PackVerdict(None, manifest, store is not None, recount is not None)


# -- the signed heads, as anchors for `audit verify` ---------------------------------------


def pack_dirs(reports: Path) -> Iterator[Path]:
    """Every directory under reports (one or two levels down) that holds a manifest."""
    for pattern in (f"*/{MANIFEST}", f"*/*/{MANIFEST}"):
        for found in sorted(reports.glob(pattern)):
            yield found.parent


def signed_heads(
    reports: Path, public_key: Ed25519PublicKey
) -> tuple[list[tuple[Path, Manifest]], list[str]]:
    """Each pack's signed manifest, and a problem for each pack whose signature fails."""
    good: list[tuple[Path, Manifest]] = []
    problems: list[str] = []
    for directory in pack_dirs(reports):
        found = signed_manifest(directory, public_key)
        if isinstance(found, str):
            problems.append(f"review pack {directory}: {found}")
        else:
            good.append((directory, found))
    return good, problems


def anchor_problems(
    packs: list[tuple[Path, Manifest]],
    head_seq: int,
    mac_at: Callable[[int], str | None],
    restores: Sequence[Restore] = (),
) -> list[str]:
    """What the chain contradicts: the latest signed end head first, then any other. A head
    that a chained restore dropped (the pack made before the restore) is explained."""
    ordered = sorted(packs, key=lambda pack: pack[1].chain_end.seq, reverse=True)
    for directory, manifest in ordered:
        for which, head in (("end", manifest.chain_end), ("start", manifest.chain_start)):
            if explaining(restores, head.seq, manifest.made_at) is not None:
                continue
            if text := understated(restores, head.seq, manifest.made_at):
                return [f"review pack {manifest.week} ({directory}): {text}"]
            if problem := head_problem(which, head, head_seq, mac_at):
                return [f"review pack {manifest.week} ({directory}): {problem}"]
    return []
