"""Red team (red18d): someone holding the bucket's credentials cuts a lost node's recording
shorter than the node had uploaded, and the chain vouches for the cut as a crash's.

The completer cannot tell the node's own parts from anyone's: it chains whatever opens as the
session's recording (authentic chunks, one cut record at most after them). An attacker who
completes b's upload with b's own parts (ListParts, CompleteMultipartUpload), reads the object
back, cuts it after a whole chunk and puts the prefix back at the key (or offers it as a new
upload) makes the session close as interrupted with the prefix's hash: `audit verify` passes,
and `sessions replay` exits 0, its warning saying the chain records the cut (a crash), while
the attacker removed everything past the cut that b had uploaded (red18d 1).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bastion.audit import Store
from bastion.clock import FakeClock
from bastion.identity.sealing import SecretBox
from bastion.recording.objects import PART_SIZE, ObjectStore
from bastion.recording.reader import read_extent, read_info
from bastion.reviewing.recordings import recording_check
from bastion.serve_helpers import recording_left as _recording_left
from tests.recording.helpers import make_writer
from tests.recording.test_completer import (
    GRACE,
    LOST_AFTER,
    SESSION,
    b_killed,
    clock,
    completer,
    open_on_b,
    store,
)
from tests.recording.test_objects import moto

__all__ = ["b_killed", "clock", "moto", "store"]


@pytest.mark.parametrize("how", ["put", "upload"])
def test_a_recording_cut_shorter_than_its_node_uploaded_is_never_a_crash_the_chain_explains(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path], box: SecretBox,
    tmp_path: Path, *, how: str,
) -> None:  # fmt: skip
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    for found, upload_id in objects.uploads_in_progress(key):  # b's own, completed by the attacker
        objects.complete(found, upload_id, objects.part_tags(found, upload_id))
    whole = tmp_path / "whole.cast"
    with whole.open("wb") as out:
        objects.download(key, out)
    assert objects.head(key) == PART_SIZE
    half = tmp_path / "half.cast"
    half.write_bytes(whole.read_bytes()[: PART_SIZE // 2])
    _, extent = read_extent(half, box, SESSION)
    cut = whole.read_bytes()[:extent]  # ends after a whole authentic chunk: no tail at all
    if how == "put":
        objects.put(key, cut)
    else:
        planted = objects.create_upload(key)
        objects.upload_part(key, planted, 1, cut)
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    done = completer(store, objects, box=box).round()
    assert done.closed == [SESSION]
    row = store.session(SESSION)
    copy = tmp_path / "copy.cast"
    with copy.open("wb") as out:
        objects.download(key, out)
    assert copy.read_bytes() == cut  # what the bucket now holds: half of what b uploaded
    if row.recording_sha256 is None:
        return  # closed with its recording missing, for a human: fail closed
    _, tampered = recording_check(store, row, copy, read_info(copy, box, SESSION))
    assert tampered, "replay exits 0: the cut reads as a crash's, not as removed content"


def test_a_local_recording_cut_while_its_node_was_down_is_never_a_crash_the_chain_explains(
    store: Store, box: SecretBox, tmp_path: Path
) -> None:
    """b crashed mid-session with its recording flushed to disk; before b restarts, someone
    with the disk cuts the file after a whole chunk. The restart closes the session as
    interrupted with the cut file's hash: replay then exits 0."""
    path = crashed_locally(store, box, tmp_path)
    half = tmp_path / "half.cast"
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _, extent = read_extent(half, box, SESSION)
    path.write_bytes(path.read_bytes()[:extent])  # b is down; its disk is not only b's
    assert store.close_interrupted("serve:1", _recording_left, node="b") == [SESSION]
    row = store.session(SESSION)
    _, tampered = recording_check(store, row, path, read_info(path, box, SESSION))
    assert tampered, "replay exits 0: the cut reads as a crash's, not as removed content"


def crashed_locally(store: Store, box: SecretBox, tmp_path: Path) -> Path:
    """b records a session locally, telling the store how far its file is durable after each
    flush (as its door does every few MiB or 30 s), then crashes. The file's path."""
    writer = make_writer(tmp_path / "b-spool", box, session_id=SESSION)
    open_on_b(store, writer.path)
    for second in range(1, 9):
        writer.output(f"secret line {second}\n".encode() * 64, float(second))
        writer.flush()
        assert store.note_recording_progress(SESSION, "b", *writer.durable)
    assert writer.durable[0] == writer.path.stat().st_size
    return writer.path


def test_a_local_recording_a_crash_left_whole_is_closed_with_its_hash_and_replays(
    store: Store, box: SecretBox, tmp_path: Path
) -> None:
    """No one touched the file: the restart chains its hash, and replay finds nothing wrong."""
    path = crashed_locally(store, box, tmp_path)
    assert store.close_interrupted("serve:1", _recording_left, node="b") == [SESSION]
    row = store.session(SESSION)
    assert row.recording_sha256 is not None and row.recording_size == path.stat().st_size
    _, tampered = recording_check(store, row, path, read_info(path, box, SESSION))
    assert not tampered


def test_a_local_recording_changed_within_what_its_node_wrote_is_closed_as_missing(
    store: Store, box: SecretBox, tmp_path: Path
) -> None:
    """Same length, one byte of what the node had made durable changed: no hash is chained."""
    path = crashed_locally(store, box, tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    assert store.close_interrupted("serve:1", _recording_left, node="b") == [SESSION]
    assert store.session(SESSION).recording_sha256 is None


def test_only_the_sessions_own_node_moves_its_progress_only_forward_only_while_open(
    store: Store, box: SecretBox, tmp_path: Path
) -> None:
    open_on_b(store, tmp_path / "x.cast")
    assert store.note_recording_progress(SESSION, "b", 100, "a" * 64)
    assert not store.note_recording_progress(SESSION, "c", 200, "b" * 64)  # another node
    assert not store.note_recording_progress(SESSION, "b", 50, "c" * 64)  # shrinking
    assert not store.note_recording_progress(SESSION, "b", 100, "d" * 64)  # not growing
    assert store.recording_progress(SESSION) == (100, "a" * 64)
    store.close_session(SESSION, "closed", "done")
    assert not store.note_recording_progress(SESSION, "b", 200, "e" * 64)  # closed
    assert store.recording_progress(SESSION) == (100, "a" * 64)
