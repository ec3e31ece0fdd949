"""Recordings in S3-compatible storage against a real server (moto_server): the settings,
the object-store calls, the uploader's parts, and credentials that are wrong or exposed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bastion.config import load_config
from bastion.config_policies import RecordingsPolicy
from bastion.errors import ConfigError
from bastion.recording.fetch import Fetcher
from bastion.recording.model import RecordingError
from bastion.recording.objects import MIN_PART, PART_SIZE, ObjectStore, ObjectStoreError
from bastion.recording.upload import Uploader, backoff, next_part
from tests.reals3 import BUCKET, MotoS3

DEADLINE = 60.0  # a safety net for waits, never a timing assertion


@pytest.fixture
def moto(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path, auth=getattr(request, "param", False))
    try:
        yield server.start()
    finally:
        server.close()


def drain(uploader: Uploader) -> list[Path]:
    """Start the uploader, hand it what the spool holds, wait until it has sent it all, stop
    it; what it found to send."""
    uploader.start()
    try:
        found = uploader.recover()
        wait_until(lambda: not uploader.pending())
    finally:
        uploader.stop()
    return found


def wait_until(predicate: Callable[[], object], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)


def store_for(moto: MotoS3, home: Path, prefix: str = "node-a") -> ObjectStore:
    moto.write_credentials(home / "s3.credentials")
    policy = RecordingsPolicy(url=f"s3://{BUCKET}/{prefix}", endpoint=moto.endpoint,
                              credentials_file="s3.credentials")  # fmt: skip
    return ObjectStore.from_policy(policy, home)


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ('url = "https://bucket/x"', "recordings.url: must be s3://BUCKET"),
        ('url = "s3://Bad_Bucket/x"', "is not an S3 bucket name"),
        ('url = "s3://bucket/../x"', "prefix '../x'"),
        ('url = "s3://bucket"\nendpoint = "ftp://store:9000"', "recordings.endpoint: must be"),
        ('url = "s3://bucket"\nendpoint = "http://store.internal:9000"', "must use https"),
        ('url = "s3://bucket"\nendpoint = "https://h/path"', "no path"),
        ('endpoint = "https://store:9000"', "recordings.url: is needed"),
        ('url = "s3://bucket"\nregion = "us east"', "not a region name"),
    ],
)
def test_a_bad_object_store_setting_is_refused_in_one_line(
    tmp_path: Path, table: str, said: str
) -> None:
    (tmp_path / "bastion.toml").write_text(f"[recordings]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "bastion.toml")
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


def test_good_object_store_settings_load(tmp_path: Path) -> None:
    text = ('[recordings]\nurl = "s3://rec.ords-1/eu/node-a/"\nendpoint = "http://127.0.0.1:9000"'
            '\nregion = "eu-west-1"\nkeep_spool = true\n')  # fmt: skip
    (tmp_path / "bastion.toml").write_text(text, encoding="utf-8")
    policy = load_config(tmp_path / "bastion.toml").recordings
    assert (policy.url, policy.region, policy.keep_spool) == (
        "s3://rec.ords-1/eu/node-a/", "eu-west-1", True)  # fmt: skip


# --- parts ------------------------------------------------------------------------------------


def test_every_part_but_the_last_is_at_least_five_mib() -> None:
    assert PART_SIZE >= MIN_PART
    assert next_part(0, PART_SIZE - 1, finished=False) == 0  # a growing file waits for more
    assert next_part(0, PART_SIZE * 2 + 5, finished=False) == PART_SIZE
    assert next_part(PART_SIZE * 2, PART_SIZE * 2 + 5, finished=False) == 0
    assert next_part(PART_SIZE * 2, PART_SIZE * 2 + 5, finished=True) == 5  # the last
    assert next_part(10, 10, finished=True) == 0
    assert [backoff(n) for n in (1, 2, 3, 10)] == [1.0, 2.0, 4.0, 60.0]


# --- the object store ---------------------------------------------------------------------


def test_object_store_calls_against_a_real_server(moto: MotoS3, tmp_path: Path) -> None:
    store = store_for(moto, tmp_path)
    store.check()
    key = store.key("2026/12/07/s1.cast")
    assert key == "node-a/2026/12/07/s1.cast"
    assert store.head(key) is None
    first, last = os.urandom(MIN_PART), b"the end"
    upload = store.create_upload(key)
    tags = [store.upload_part(key, upload, 1, first), store.upload_part(key, upload, 2, last)]
    store.complete(key, upload, tags)
    assert store.head(key) == len(first + last)
    assert moto.read(key) == first + last
    assert store.keys() == [key]
    dropped = store.create_upload(store.key("dropped.cast"))
    store.upload_part(store.key("dropped.cast"), dropped, 1, b"x")
    assert store.parts(store.key("dropped.cast"), dropped) == 1
    store.abort(store.key("dropped.cast"), dropped)
    assert store.parts(store.key("dropped.cast"), dropped) is None


def test_the_uploader_sends_parts_while_the_file_grows(moto: MotoS3, tmp_path: Path) -> None:
    spool = tmp_path / "recordings"
    path = spool / "2026" / "12" / "07" / "s1.cast"
    path.parent.mkdir(parents=True)
    uploader = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    uploader.start()
    try:
        path.write_bytes(os.urandom(PART_SIZE + 1000))
        uploader.track(path)
        client = moto.client()

        def parts_sent() -> int:
            found = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
            if not found:
                return 0
            listed = client.list_parts(Bucket=BUCKET, Key=found[0]["Key"],
                                       UploadId=found[0]["UploadId"])  # fmt: skip
            return len(listed.get("Parts", []))

        wait_until(lambda: parts_sent() == 1)  # before the session ends
        with path.open("ab") as more:
            more.write(os.urandom(3000))
        data = path.read_bytes()
        uploader.finish(path)
        wait_until(lambda: not uploader.pending())
    finally:
        uploader.stop()
    assert moto.read("node-a/2026/12/07/s1.cast") == data
    assert not path.exists()  # checked, so the spool copy is gone


def test_the_uploader_keeps_the_spool_copy_when_told(moto: MotoS3, tmp_path: Path) -> None:
    spool = tmp_path / "recordings"
    path = spool / "2026" / "12" / "07" / "s2.cast"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a small recording")
    uploader = Uploader(store_for(moto, tmp_path), spool, keep=True, poll=0.05)
    assert drain(uploader) == [path]
    assert moto.read("node-a/2026/12/07/s2.cast") == path.read_bytes()


# --- credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize("moto", [True], indirect=True)
def test_wrong_credentials_are_one_clear_line_without_the_secret(
    moto: MotoS3, tmp_path: Path
) -> None:
    moto.write_credentials(tmp_path / "s3.credentials", secret="wrong-secret-4f9a")
    policy = RecordingsPolicy(url=f"s3://{BUCKET}", endpoint=moto.endpoint,
                              credentials_file="s3.credentials")  # fmt: skip
    store = ObjectStore.from_policy(policy, tmp_path)
    with pytest.raises(ObjectStoreError) as caught:
        store.check()
    assert caught.value.lasting
    message = str(caught.value)
    assert message.startswith("object store: check the bucket s3://bastion-recordings/")
    assert "\n" not in message
    assert "wrong-secret-4f9a" not in message
    assert moto.secret not in message
    assert "wrong-secret-4f9a" not in repr(store.__dict__)
    store_for(moto, tmp_path).check()  # the right key passes


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s3.credentials").write_text("AKIDEXAMPLE\nsecret-value-77\n", encoding="utf-8")
    (tmp_path / "s3.credentials").chmod(0o644)
    policy = RecordingsPolicy(url="s3://bucket", credentials_file="s3.credentials")
    with pytest.raises(ObjectStoreError, match=r"only its owner can read \(mode 0644; chmod 600"):
        ObjectStore.from_policy(policy, tmp_path)


def test_no_credentials_at_all_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(ObjectStoreError, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        ObjectStore.from_policy(RecordingsPolicy(url="s3://bucket"), tmp_path)


def test_an_upload_the_store_lost_is_started_again(moto: MotoS3, tmp_path: Path) -> None:
    """The object store restarts empty between two parts: the upload id is gone, so the
    uploader starts the object again from the spool, which still holds every byte."""
    spool = tmp_path / "recordings"
    path = spool / "2026" / "12" / "07" / "s3.cast"
    path.parent.mkdir(parents=True)
    uploader = Uploader(store_for(moto, tmp_path), spool, poll=0.05)
    uploader.start()
    try:
        path.write_bytes(os.urandom(PART_SIZE + 10))
        uploader.track(path)
        client = moto.client()
        wait_until(lambda: client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"))
        wait_until(lambda: uploader._uploads[path].sent == PART_SIZE)
        moto.stop()
        moto.start()
        with path.open("ab") as more:
            more.write(b"the rest")
        data = path.read_bytes()
        uploader.finish(path)
        wait_until(lambda: not uploader.pending())
    finally:
        uploader.stop()
    assert moto.read("node-a/2026/12/07/s3.cast") == data


# --- reading back ---------------------------------------------------------------------------


def test_reading_back_fetches_only_the_spools_names(moto: MotoS3, tmp_path: Path) -> None:
    """A path the store names outside the spool (a row edited by someone with the files) is
    never turned into an object name; a name the bucket lacks is one clear error."""
    moto.write_credentials(tmp_path / "s3.credentials")
    (tmp_path / "bastion.toml").write_text(moto.config(), encoding="utf-8")
    config = load_config(tmp_path / "bastion.toml")
    spool = config.paths.recordings
    with Fetcher(config) as fetcher:
        for outside in (spool / ".." / "secrets.key", Path("/etc/x.cast")):
            assert fetcher.local(outside) == outside
        with pytest.raises(RecordingError, match="neither in the spool nor at s3://"):
            fetcher.local(spool / "2026" / "12" / "07" / "gone.cast")
        moto.client().put_object(Bucket=BUCKET, Key="node-a/2026/12/07/s4.cast", Body=b"rec")
        copy = fetcher.local(spool / "2026" / "12" / "07" / "s4.cast")
        assert copy.read_bytes() == b"rec"
        assert copy.stat().st_mode & 0o777 == 0o600
        assert copy.parent.stat().st_mode & 0o777 == 0o700
    assert not copy.exists()  # the copies go with the fetcher
