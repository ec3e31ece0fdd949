"""The upload completer and a multipart upload someone else started for a lost node's
recording (anyone holding the bucket's credentials can start one; red team red18c 3): the
parts the node uploaded are what the chain is made to hold, never a planted upload's."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.audit import Store
from bastion.clock import FakeClock
from bastion.identity.sealing import SecretBox
from bastion.recording.objects import MIN_PART, ObjectStore
from bastion.recording.reader import file_digest, read_info
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


@pytest.mark.xfail(
    strict=True,
    reason="red18c 3: Completer._complete (bastion/recording/completer.py) completes the"
    " upload of the key with the most parts, whoever started it, and aborts the node's own",
)
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
    done = completer(store, objects).round()
    assert done.closed == [SESSION]
    copy = tmp_path / "copy.cast"
    with copy.open("wb") as out:
        objects.download(key, out)
    row = store.session(SESSION)
    assert (row.recording_sha256, row.recording_size) == file_digest(copy)
    assert copy.read_bytes() == path.read_bytes()[: row.recording_size]  # b's own bytes
    assert read_info(copy, box, SESSION).chunks > 1  # the chain holds a recording of it
