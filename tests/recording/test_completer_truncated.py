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
from bastion.server import _recording_left
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


@pytest.mark.xfail(
    strict=True,
    reason="red18d 1 (local recordings): a node's restart chains the hash of whatever its"
    " crash left on disk, cut shorter by anyone with the disk meanwhile, as the crash's cut",
)
def test_a_local_recording_cut_while_its_node_was_down_is_never_a_crash_the_chain_explains(
    store: Store, box: SecretBox, tmp_path: Path
) -> None:
    """b crashed mid-session with its recording flushed to disk; before b restarts, someone
    with the disk cuts the file after a whole chunk. The restart closes the session as
    interrupted with the cut file's hash: replay then exits 0."""
    writer = make_writer(tmp_path / "b-spool", box, session_id=SESSION)
    for second in range(1, 9):
        writer.output(f"secret line {second}\n".encode() * 64, float(second))
        writer.flush()
    path = writer.path
    open_on_b(store, path)
    half = tmp_path / "half.cast"
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _, extent = read_extent(half, box, SESSION)
    path.write_bytes(path.read_bytes()[:extent])  # b is down; its disk is not only b's
    assert store.close_interrupted("serve:1", _recording_left, node="b") == [SESSION]
    row = store.session(SESSION)
    _, tampered = recording_check(store, row, path, read_info(path, box, SESSION))
    assert tampered, "replay exits 0: the cut reads as a crash's, not as removed content"
