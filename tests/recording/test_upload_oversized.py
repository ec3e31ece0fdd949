"""The uploader's check of an object against its spool file reads no more of the object than
the spool file holds (red team red18c 5): a store, or someone who can write the bucket,
serving an endless object at a recording's key never holds the node's one uploader thread
(every recording of the node waits behind it) nor streams it gigabytes."""

from __future__ import annotations

from pathlib import Path

from bastion.config_policies import RecordingsPolicy
from bastion.recording.objects import ObjectStore
from bastion.recording.upload import Uploader
from tests.hostiles3 import BUCKET, HostileS3
from tests.recording.test_objects import wait_until

SIZE = 1000


def test_an_object_larger_than_the_spool_file_is_not_read_to_its_end(tmp_path: Path) -> None:
    spool = tmp_path / "recordings"
    path = spool / "2026" / "12" / "07" / "s-1.cast"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"r" * SIZE)
    with HostileS3(head_size=SIZE, body_size=256 << 20) as hostile:  # HEAD says the file's size
        hostile.write_credentials(tmp_path / "s3.credentials")
        policy = RecordingsPolicy(url=f"s3://{BUCKET}/node-a", endpoint=hostile.endpoint,
                                  credentials_file="s3.credentials")  # fmt: skip
        uploader = Uploader(ObjectStore.from_policy(policy, tmp_path), spool, poll=0.02)
        uploader.start()
        try:
            uploader.finish(path)  # found at its key, then checked against the spool file
            wait_until(lambda: uploader.failing is not None)
        finally:
            uploader.stop()
        assert hostile.gets >= 1
        assert hostile.sent <= 16 << 20, f"{hostile.sent} bytes were read from the store"
    assert "does not match" in (uploader.failing or "")  # taken as another object: sent again
    assert path.exists()  # the spool keeps it
