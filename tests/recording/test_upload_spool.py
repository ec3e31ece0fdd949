"""The uploader and its spool (issue 18, red-team findings 5 and 6): only regular files below
the spool are read, through no link (a linked folder, a FIFO); one uploader per spool; the
spool copy goes only when the object is what the session row holds. Real moto_server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bastion.errors import NotFound, StoreError
from bastion.recording.objects import PART_SIZE
from bastion.recording.upload import Uploader
from tests import reals3
from tests.reals3 import BUCKET, MotoS3
from tests.recording.test_objects import drain, store_for, wait_until

DAY = Path("2026") / "12" / "07"


moto = reals3.moto


def test_a_linked_day_folder_is_never_read(moto: MotoS3, tmp_path: Path) -> None:
    """The day folder is a link to a folder outside the spool holding a file named like a
    recording: nothing of it reaches the bucket, and the file outside stays."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "s-x.cast"
    secret.write_bytes(b"not a recording: a file the bastion's user may read")
    spool = tmp_path / "recordings"
    (spool / DAY).parent.mkdir(parents=True)
    (spool / DAY).symlink_to(outside, target_is_directory=True)
    drain(Uploader(store_for(moto, tmp_path), spool, poll=0.05))
    assert moto.object_keys() == []
    assert secret.exists()


def test_a_fifo_in_the_spool_never_holds_the_uploader(moto: MotoS3, tmp_path: Path) -> None:
    """A FIFO named like a recording is refused (opening it does not wait for a writer), and
    the real recording beside it is still uploaded."""
    spool = tmp_path / "recordings"
    (spool / DAY).mkdir(parents=True)
    os.mkfifo(spool / DAY / "s-fifo.cast")
    (spool / DAY / "s-real.cast").write_bytes(b"a real recording")
    drain(Uploader(store_for(moto, tmp_path), spool, poll=0.05))
    assert moto.object_keys() == ["node-a/2026/12/07/s-real.cast"]
    assert (spool / DAY / "s-fifo.cast").exists()


def test_a_second_uploader_refuses_in_one_line_and_the_next_takes_the_spool(
    moto: MotoS3, tmp_path: Path
) -> None:
    """While one uploader holds the spool a second refuses (one line, in its health too) and
    queues nothing; once the first stops, a new one takes the spool."""
    spool = tmp_path / "recordings"
    (spool / DAY).mkdir(parents=True)
    (spool / DAY / "s-one.cast").write_bytes(b"a recording")
    first = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    first.start()
    second = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    try:
        second.start()
        assert second.refused is not None
        assert f"another bastion (pid {os.getpid()}) holds the spool" in second.refused
        assert "\n" not in second.refused
        assert second.health()["object_store"] == "failing"
        assert second.recover() == []
        assert second.pending() == []
    finally:
        second.stop()
        first.stop()
    third = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    third.start()
    try:
        assert third.refused is None
        assert third.recover() == [spool / DAY / "s-one.cast"]
        wait_until(lambda: not third.pending())
    finally:
        third.stop()
    assert moto.object_keys() == ["node-a/2026/12/07/s-one.cast"]


def test_the_spool_copy_goes_only_when_the_object_is_what_the_session_row_holds(
    moto: MotoS3, tmp_path: Path
) -> None:
    """Every file is uploaded and checked; only the one whose session row holds the object's
    hash leaves the spool: an open session's row (no hash yet) and a row holding another
    hash (the spool file changed after the session closed) keep their copies. A file no
    session row names goes once checked; a store that cannot answer keeps the copy."""
    spool = tmp_path / "recordings"
    (spool / DAY).mkdir(parents=True)
    rows: dict[str, str | None] = {}
    for name, row in (("s-closed", "same"), ("s-open", None), ("s-changed", "other"),
                      ("s-norow", "none"), ("s-down", "down")):  # fmt: skip
        data = name.encode() * 100
        (spool / DAY / f"{name}.cast").write_bytes(data)
        rows[name] = hashlib.sha256(data).hexdigest() if row == "same" else row

    def recorded(path: Path) -> str | None:
        if rows[path.stem] == "none":
            raise NotFound(f"no session with id {path.stem}")
        if rows[path.stem] == "down":
            raise StoreError("the store is unreachable")
        return rows[path.stem]

    drain(Uploader(store_for(moto, tmp_path), spool, poll=0.05, recorded=recorded))
    assert len(moto.object_keys()) == 5
    assert sorted(p.stem for p in (spool / DAY).iterdir()) == ["s-changed", "s-down", "s-open"]


def test_uploads_a_crash_left_are_aborted_and_the_recording_sent_whole(
    moto: MotoS3, tmp_path: Path
) -> None:
    """A node killed mid-upload leaves a multipart upload begun, a part in it, its id lost
    with the process: billed for ever, and a completer could make half a recording of it.
    On restart the node aborts it and uploads the spool file whole; another node's upload
    under the same prefix (a key not in this spool) is left alone."""
    spool = tmp_path / "recordings"
    data = os.urandom(PART_SIZE + 1000)  # two parts
    path = spool / DAY / "s-crashed.cast"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    store = store_for(moto, tmp_path)
    key = store.key(f"{DAY.as_posix()}/s-crashed.cast")
    left = store.create_upload(key)  # what the killed node had sent
    store.upload_part(key, left, 1, data[:PART_SIZE])
    elsewhere = store.key(f"{DAY.as_posix()}/s-live-on-node-b.cast")
    live = store.create_upload(elsewhere)
    drain(Uploader(store, spool, poll=0.05))
    uploads = moto.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [(u.get("Key"), u.get("UploadId")) for u in uploads] == [(elsewhere, live)]
    assert moto.read(key) == data and not path.exists()


def test_the_uploader_tells_how_far_it_got_and_a_failed_write_loses_no_byte(
    moto: MotoS3, tmp_path: Path
) -> None:
    """After each part the object store acknowledged: the bytes sent and their SHA-256. The
    store failing to take it (the first time) is made good by the next write; the recording
    is uploaded whole all the same."""
    spool = tmp_path / "recordings"
    data = os.urandom(2 * PART_SIZE + 1000)  # three parts
    path = spool / DAY / "s-long.cast"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    told: list[tuple[str, int, str]] = []

    def progress(session_id: str, size: int, sha256: str) -> None:
        if not told and size == PART_SIZE and not getattr(progress, "failed", False):
            progress.failed = True  # type: ignore[attr-defined]
            raise StoreError("the store is unreachable")
        told.append((session_id, size, sha256))

    store = store_for(moto, tmp_path)
    drain(Uploader(store, spool, poll=0.05, progress=progress))
    assert moto.read(store.key(f"{DAY.as_posix()}/s-long.cast")) == data
    assert getattr(progress, "failed", False) and told, "no write failed, or none was told"
    assert [size for _, size, _ in told][-1] == len(data)
    for session_id, size, sha256 in told:
        assert session_id == "s-long" and hashlib.sha256(data[:size]).hexdigest() == sha256
