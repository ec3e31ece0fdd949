"""A part of a live upload replaced by someone else holding the bucket's credentials (red team
red18c 4): the upload can no longer be completed as this node sent it, so it is started over
from the spool, not retried for ever while the recording waits. Real moto_server."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

from bastion.recording.objects import PART_SIZE
from bastion.recording.upload import Uploader
from tests import reals3
from tests.reals3 import MotoS3
from tests.recording.test_objects import store_for, wait_until

moto = reals3.moto


def test_a_replaced_part_makes_the_upload_start_over(moto: MotoS3, tmp_path: Path) -> None:
    objects = store_for(moto, tmp_path)
    spool = tmp_path / "recordings"
    path = spool / "2026" / "12" / "07" / "s-1.cast"
    path.parent.mkdir(parents=True)
    data = os.urandom(PART_SIZE + 4096)
    path.write_bytes(data)
    key = objects.key("2026/12/07/s-1.cast")
    ticks = itertools.count(step=1000)  # every backoff has passed at each look
    uploader = Uploader(objects, spool, poll=0.02, monotonic=lambda: float(next(ticks)))
    uploader.start()
    try:
        uploader.track(path)  # the session is live: its first part goes
        wait_until(lambda: [u for k, u in objects.uploads_in_progress(key) if k == key
                            and objects.parts(k, u) == 1])  # fmt: skip
        [(_, upload_id)] = objects.uploads_in_progress(key)
        objects.upload_part(key, upload_id, 1, os.urandom(PART_SIZE))  # not this node's bytes
        uploader.finish(path)
        wait_until(lambda: uploader.pending() == [])
    finally:
        uploader.stop()
    assert objects.sha256(key) == (hashlib.sha256(data).hexdigest(), len(data))
    assert uploader.failing is None
    assert objects.uploads_in_progress(key) == []  # the spoilt upload was aborted, not left
