"""The upload completer and a multipart upload someone else started for a lost node's
recording (anyone holding the bucket's credentials can start one; red team red18c 3): the
parts the node uploaded are what the chain is made to hold, never a planted upload's."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from bastion.audit import Store
from bastion.clock import FakeClock
from bastion.identity.sealing import SecretBox
from bastion.recording.completer import CUT_TAIL
from bastion.recording.objects import MIN_PART, PART_SIZE, ObjectStore
from bastion.recording.reader import file_digest, read_extent, read_info
from bastion.recording.store import CHUNK_BYTES
from tests.recording.test_completer import (
    GRACE,
    LOST_AFTER,
    SESSION,
    b_killed,
    clock,
    completer,
    store,
)
from tests.recording.test_objects import moto

__all__ = ["b_killed", "clock", "moto", "store"]


def test_a_planted_upload_with_more_parts_never_replaces_the_nodes_own(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path], box: SecretBox,
    tmp_path: Path,
) -> None:  # fmt: skip
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    planted = objects.create_upload(key)  # b is down; the bucket's credentials are not only b's
    for number in (1, 2):
        objects.upload_part(key, planted, number, os.urandom(MIN_PART))
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    done = completer(store, objects, box=box).round()
    assert done.closed == [SESSION]
    copy = tmp_path / "copy.cast"
    with copy.open("wb") as out:
        objects.download(key, out)
    row = store.session(SESSION)
    assert (row.recording_sha256, row.recording_size) == file_digest(copy)
    assert copy.read_bytes() == path.read_bytes()[: row.recording_size]  # b's own bytes
    assert read_info(copy, box, SESSION).chunks > 1  # the chain holds a recording of it
    rejected = rejections(store)
    assert len(rejected) == 1
    assert rejected[0]["upload"] == planted and "bad header" in rejected[0]["problem"]
    kept = rejected[0]["kept"].removeprefix(f"s3://{objects.bucket}/")
    assert kept != key and objects.head(kept) == 2 * MIN_PART  # set aside, not destroyed
    assert objects.uploads_in_progress(key) == []


def rejections(store: Store) -> list[dict[str, Any]]:
    """The chained alarms for objects that did not open as their session's recording."""
    found = [e for e in store.events() if e.kind == "recording.rejected"]
    assert all(e.severity == "high" and e.actor == "node:a" for e in found)
    return [json.loads(e.detail) for e in found]


def test_a_planted_upload_starting_with_the_real_first_part_then_junk_is_rejected(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path], box: SecretBox,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The attacker holds b's first part (a copy of its spool, say), cuts it after a whole
    record and follows it with junk that reads as a cut record: every chunk authenticates,
    but far more than one cut-short record follows them."""
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    planted = objects.create_upload(key)
    (tmp_path / "first.cast").write_bytes(path.read_bytes()[:PART_SIZE])
    _, whole = read_extent(tmp_path / "first.cast", box, SESSION)
    first = path.read_bytes()[:whole] + b"\xff" * 4 + os.urandom(1 << 20)  # "a damaged length"
    for number, data in enumerate((first, os.urandom(MIN_PART), b"junk"), 1):
        objects.upload_part(key, planted, number, data)
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    done = completer(store, objects, box=box).round()
    assert done.closed == [SESSION] and done.rejected == [key] and done.completed == [key]
    assert "more than a cut-short record" in rejections(store)[0]["problem"]
    row = store.session(SESSION)
    assert row.recording_size == PART_SIZE  # b's own part, completed after the planted one
    assert objects.sha256(key, PART_SIZE) == (row.recording_sha256, PART_SIZE)


def test_an_object_planted_at_the_key_is_never_chained_and_stays_for_a_human(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path], box: SecretBox,
) -> None:  # fmt: skip
    """No upload left (b's own is gone), an object put straight at the key before the
    completer runs: it is not taken for b's completion; the session closes with no hash,
    a high alarm says why, and the object stays where it is (nothing is destroyed)."""
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    for found, upload_id in objects.uploads_in_progress(key):
        objects.abort(found, upload_id)
    junk = os.urandom(1 << 20)
    objects.put(key, junk)
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    done = completer(store, objects, box=box).round()
    assert done.closed == [SESSION] and done.rejected == [key] and done.completed == []
    row = store.session(SESSION)
    assert row.state == "interrupted" and row.recording_sha256 is None
    closed = [json.loads(e.detail) for e in store.events() if e.kind == "session.closed"][-1]
    assert closed["recording_missing"] == str(path)
    rejected = rejections(store)
    assert len(rejected) == 1 and rejected[0]["upload"] is None
    assert rejected[0]["kept"] == objects.url(key)
    assert objects.sha256(key, len(junk))[0] == file_digest_of(junk)
    assert not [e for e in store.events() if e.kind == "recording.completed"]


def test_without_the_secrets_key_nothing_is_chained(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path]
) -> None:
    """A completer that cannot open recordings fails closed: b's upload is completed and
    kept, its hash is not chained."""
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    done = completer(store, objects).round()
    assert done.closed == [SESSION] and done.rejected == [key]
    assert store.session(SESSION).recording_sha256 is None
    assert objects.head(key) == PART_SIZE


def file_digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_cut_short_tail_is_less_than_a_part() -> None:
    """No whole part of junk (S3's smallest part) can pass as a crash's cut-short tail."""
    assert CHUNK_BYTES * 2 < CUT_TAIL < MIN_PART
