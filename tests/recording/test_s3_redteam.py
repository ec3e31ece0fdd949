"""Red-team tests of recordings in S3-compatible storage (issue 18): a hostile object store,
someone with write access to the bucket, and nodes that share or differ in their spools.
Real servers only: moto_server, or a hostile HTTP server on loopback (tests/hostiles3.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from bastion.config import load_config
from bastion.config_policies import RecordingsPolicy
from bastion.errors import ConfigError
from bastion.recording.fetch import Fetcher
from bastion.recording.model import RecordingError
from bastion.recording.objects import ObjectStore
from bastion.recording.upload import Uploader
from tests import reals3
from tests.hostiles3 import HostileS3
from tests.reals3 import BUCKET, MotoS3
from tests.recording.test_objects import drain, store_for, wait_until

DAY = Path("2026") / "12" / "07"


moto = reals3.moto


def spooled(spool: Path, name: str, data: bytes) -> Path:
    path = spool / DAY / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- (c) a hostile object store ---------------------------------------------------------------


def test_a_store_sending_more_than_it_announced_cannot_fill_the_disk(tmp_path: Path) -> None:
    """HEAD says 100 bytes (room is checked for that), GET then sends 20 MiB: the copy must
    stop at what was announced and checked, else a hostile store fills the disk of whoever
    replays, exports, verifies or serves the console (often the bastion's own disk)."""
    with HostileS3(head_size=100, body_size=20 << 20) as hostile:
        hostile.write_credentials(tmp_path / "s3.credentials")
        (tmp_path / "bastion.toml").write_text(hostile.config("s3.credentials"), "utf-8")
        config = load_config(tmp_path / "bastion.toml")
        with Fetcher(config) as fetcher:
            try:
                copy = fetcher.local(config.paths.recordings / DAY / "s-big.cast")
                written = copy.stat().st_size
            except RecordingError:
                written = 0
        assert written <= 100, f"the copy took {written} bytes; the store announced 100"
        assert hostile.sent <= 1 << 20, f"{hostile.sent} bytes were read from the store"


# --- (b) someone with write access to the bucket --------------------------------------------


def test_keep_spool_never_takes_an_object_it_did_not_check(moto: MotoS3, tmp_path: Path) -> None:
    """With keep_spool, an object already at the key with the spool file's size is taken as
    'uploaded before and checked then' and never read: someone who can write the bucket
    plants an object of the right size first and the true recording never reaches it."""
    spool = tmp_path / "recordings"
    real = os.urandom(4000)
    spooled(spool, "s-kept.cast", real)
    moto.client().put_object(Bucket=BUCKET, Key="node-a/2026/12/07/s-kept.cast",
                             Body=b"\0" * len(real))  # fmt: skip
    uploader = Uploader(store_for(moto, tmp_path), spool, keep=True, poll=0.05)
    drain(uploader)
    assert moto.read("node-a/2026/12/07/s-kept.cast") == real, "a planted object was kept"


def test_a_planted_object_is_replaced_and_the_spool_kept_until_checked(
    moto: MotoS3, tmp_path: Path
) -> None:
    """Held (keep_spool off): an object planted at the key with the spool file's size is read
    and compared, found different, uploaded again; the spool copy goes only once the
    object holds exactly its bytes."""
    spool = tmp_path / "recordings"
    real = os.urandom(4000)
    path = spooled(spool, "s-planted.cast", real)
    key = "node-a/2026/12/07/s-planted.cast"
    moto.client().put_object(Bucket=BUCKET, Key=key, Body=b"\0" * len(real))
    uploader = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    drain(uploader)
    assert moto.read(key) == real
    assert not path.exists()


# --- nodes and spools ---------------------------------------------------------------------------


def test_a_second_uploader_on_a_spool_never_removes_a_live_recording(
    moto: MotoS3, tmp_path: Path
) -> None:
    """Node A's session is live (its writer holds the file open, idle for a moment). A second
    `bastion serve` on the same spool (started by mistake, or nodes sharing a network spool:
    nothing stops either) queues every spool file as finished at start, uploads the live
    one, finds it matches, and unlinks it under the live writer: the rest of the session is
    written to a file no name reaches, and the close finds no recording to hash."""
    spool = tmp_path / "recordings"
    path = spooled(spool, "s-live.cast", b"header and first chunks " * 100)
    node_a = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    node_a.start()
    node_a.track(path)  # the live session's recording, as the SSH tap does
    node_b = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    node_b.start()
    try:
        with path.open("ab") as writer:  # the live writer
            node_b.recover()
            wait_until(lambda: not node_b.pending())
            writer.write(b"the rest of the session")
    finally:
        node_b.stop()
        node_a.stop()
    assert path.exists(), "a live session's recording was removed from the spool"


def test_a_node_with_another_spool_path_reads_a_recording_from_the_bucket(
    moto: MotoS3, tmp_path: Path
) -> None:
    """Node A (spool /a/recordings) uploaded a session's recording and removed its spool copy;
    the session row holds A's absolute path. Node B shares the bucket, prefix and store but
    has its spool elsewhere (each node's own home): replay, export, audit verify and the
    console on B must still find the object. Today the object's name is made by cutting
    the row's path against the *reader's* spool, so B says the recording is not there."""
    node_a, node_b = tmp_path / "a", tmp_path / "b"
    for home in (node_a, node_b):
        home.mkdir()
        moto.write_credentials(home / "s3.credentials")
        (home / "bastion.toml").write_text(moto.config(), encoding="utf-8")
    spool_a = load_config(node_a / "bastion.toml").paths.recordings
    moto.client().put_object(Bucket=BUCKET, Key="node-a/2026/12/07/s-a1.cast", Body=b"rec")
    with Fetcher(load_config(node_b / "bastion.toml")) as fetcher:
        found = fetcher.local(spool_a / DAY / "s-a1.cast")  # the row's path, as A wrote it
        assert found.exists(), f"node B did not find the uploaded recording ({found})"
        assert found.read_bytes() == b"rec"


def test_the_uploader_never_follows_a_link_out_of_the_spool(moto: MotoS3, tmp_path: Path) -> None:
    """Someone who can write the spool folder (a network mount, a careless group mode) but
    not the bastion's secrets puts a link named like a recording: the uploader opens it as
    the bastion's user, sends what it points at (here the secrets key, which decrypts every
    recording) to the bucket, checks it, and removes the link. A spool entry that is not a
    regular file must be refused (O_NOFOLLOW), never uploaded."""
    secret = tmp_path / "secrets.key"
    secret.write_bytes(b"the key that opens every recording")
    secret.chmod(0o600)
    link = tmp_path / "recordings" / DAY / "s-link.cast"
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)
    uploader = Uploader(store_for(moto, tmp_path), tmp_path / "recordings", poll=0.05)
    drain(uploader)
    sent = [moto.read(key) for key in moto.object_keys()]
    assert secret.read_bytes() not in sent, "a file outside the spool went to the bucket"


def test_health_says_failing_while_a_broken_store_takes_no_upload(tmp_path: Path) -> None:
    """A store (or a proxy before it) that answers every write 200 with an empty document:
    no upload id comes back, the step fails with an error bastion did not foresee, and the
    uploader retries for ever, but /healthz keeps saying the object store is 'ok' (only
    ObjectStoreError sets it failing), so monitoring never learns that nothing uploads."""
    with HostileS3(head_size=None, empty_answers=True) as hostile:
        hostile.write_credentials(tmp_path / "s3.credentials")
        (tmp_path / "bastion.toml").write_text(hostile.config("s3.credentials"), "utf-8")
        config = load_config(tmp_path / "bastion.toml")
        spooled(config.paths.recordings, "s-stuck.cast", b"a whole recording")
        with Fetcher(config) as fetcher:
            assert fetcher.store is not None
            uploader = Uploader(fetcher.store, config.paths.recordings, poll=0.05)
            uploader.start()
            try:
                [path] = uploader.recover()
                wait_until(lambda: hostile.writes >= 1 and uploader.health()["uploads_waiting"])
                wait_until(lambda: uploader._uploads[path].failures >= 1)
                health = uploader.health()
            finally:
                uploader.stop()
    assert path.exists()  # the spool keeps it: that part holds
    assert health["object_store"] == "failing", health


def test_health_does_not_count_live_sessions_for_anyone_who_asks(
    moto: MotoS3, tmp_path: Path
) -> None:
    """/healthz answers anyone who reaches the port (no login). 'uploads_waiting' counts every
    tracked recording, live sessions included: an outsider polling it learns how many people
    are in production right now and when they come and go. Only what waits (finished,
    not yet uploaded) should be counted, or the number kept for signed-in operators."""
    spool = tmp_path / "recordings"
    live = [spooled(spool, f"s-live-{n}.cast", b"so far") for n in range(3)]
    uploader = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    for path in live:
        uploader.track(path)  # three sessions open, as the SSH tap does; nothing waits
    assert uploader.health()["uploads_waiting"] == 0


def test_no_secret_of_the_object_store_reaches_any_log_even_at_debug(
    moto: MotoS3,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Every logger at DEBUG (botocore logs its requests and headers there) while a recording
    is uploaded, checked and read back, and a wrong key is refused: the secret is in no
    line (held: botocore logs the signature, never the secret)."""
    caplog.set_level(logging.DEBUG)
    spool = tmp_path / "recordings"
    path = spooled(spool, "s-logged.cast", b"a recording")
    uploader = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    uploader.start()
    try:
        uploader.finish(path)
        wait_until(lambda: not uploader.pending())
    finally:
        uploader.stop()
    moto.write_credentials(tmp_path / "wrong.credentials", secret="wrong-secret-77aa")
    policy = RecordingsPolicy(url=f"s3://{BUCKET}", endpoint=moto.endpoint,
                              credentials_file="wrong.credentials")  # fmt: skip
    ObjectStore.from_policy(policy, tmp_path).check()  # moto without auth takes any key
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err):
        assert moto.secret not in text
        assert "wrong-secret-77aa" not in text
    assert "Authorization" in caplog.text or "s3" in caplog.text.lower()  # logs were on


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1.nip.io:9000",  # looks like loopback, is not
        "http://localhost.evil.example:9000",
        "http://0x7f000001:9000",
        "https://AKIDEXAMPLE:secret-in-url@store.example",  # a secret in the endpoint
        "https://store.example/?X-Amz-Credential=AKID",
    ],
)
def test_an_endpoint_that_only_looks_safe_is_refused(tmp_path: Path, endpoint: str) -> None:
    """Held: plain http only to loopback (a look-alike host is not), no user info and no
    query (nothing secret ever sits in the endpoint, which errors and logs show)."""
    text = f'[recordings]\nurl = "s3://bucket/p"\nendpoint = "{endpoint}"\n'
    (tmp_path / "bastion.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "bastion.toml")
    assert "recordings.endpoint" in str(caught.value)
    assert "secret-in-url" not in str(caught.value)
