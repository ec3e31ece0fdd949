"""Recordings in S3-compatible object storage: the few calls bastion makes, errors in one line."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from bastion.config_policies import RecordingsPolicy, parse_s3_url
from bastion.privatefiles import NotPrivate, read_private
from bastion.recording.model import RecordingError
from bastion.text import printable_line

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef

PART_SIZE = 8 << 20  # bytes per uploaded part; S3 wants >= 5 MiB for every part but the last
MIN_PART = 5 << 20
_READ = 1 << 20
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken"}
)
_ABSENT = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})  # answers, not errors
T = TypeVar("T")
LARGER = "bastion:larger"  # ObjectStoreError.code: the object holds more than it may


class ObjectStoreError(RecordingError):
    """The object store refused or could not be reached; the message holds no secret."""

    def __init__(self, message: str, *, code: str = "", lasting: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.lasting = lasting  # retrying will not help: credentials, bucket, configuration


@dataclass(frozen=True)
class Credentials:
    """An access key pair; repr never shows the secret."""

    key_id: str
    secret: str

    def __repr__(self) -> str:
        return f"Credentials(key_id={self.key_id!r}, secret=...)"


def read_credentials(path: Path) -> Credentials:
    """The key id (first line) and secret (second line) of a file only its owner can read."""
    where = f"[recordings] credentials_file {path}"
    try:
        data = read_private(path, 4096, follow=False)
    except NotPrivate as exc:
        raise ObjectStoreError(f"{where}: must be a file only its owner can read"
                               f" ({exc}; chmod 600 {path})", lasting=True) from None  # fmt: skip
    except OSError as exc:
        raise ObjectStoreError(f"{where}: cannot open ({exc.strerror})", lasting=True) from None
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    if len(lines) < 2 or not lines[0] or not lines[1]:
        raise ObjectStoreError(
            f"{where}: needs the access key id on line 1 and the secret on line 2", lasting=True
        )
    return Credentials(lines[0], lines[1])


def _credentials(policy: RecordingsPolicy, base: Path) -> Credentials:
    if policy.credentials_file:
        return read_credentials(base / policy.credentials_file)
    key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not key_id or not secret:
        raise ObjectStoreError(
            "[recordings] url is set but no credentials: set AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY, or [recordings] credentials_file",
            lasting=True,
        )
    return Credentials(key_id, secret)


def _printable(text: str) -> str:
    """What a store said, fit for one log line and a browser: no control characters (a
    hostile store's terminal escapes), at most 200 characters."""
    return printable_line(text, 200)


class ObjectStore:
    """One bucket and prefix; every call raises ObjectStoreError, never a boto3 exception."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.errors = 0  # calls that failed, "no such object" answers aside (bastion/metrics.py)

    @classmethod
    def from_policy(cls, policy: RecordingsPolicy, base: Path) -> ObjectStore:
        """The store [recordings] names (base: the config file's directory)."""
        bucket, prefix = parse_s3_url(policy.url)
        creds = _credentials(policy, base)
        settings = botocore.config.Config(
            connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"} if policy.endpoint else None,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )  # fmt: skip
        client = boto3.session.Session().client(
            "s3", region_name=policy.region, endpoint_url=policy.endpoint or None,
            aws_access_key_id=creds.key_id, aws_secret_access_key=creds.secret, config=settings,
        )  # fmt: skip
        return cls(client, bucket, prefix)

    def key(self, name: str) -> str:
        """The object key of a recording's path relative to the spool (YYYY/MM/DD/x.cast)."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except botocore.exceptions.ClientError as exc:
            error: dict[str, Any] = dict(exc.response.get("Error", {}))
            code = _printable(str(error.get("Code", "error")))[:60]
            self.errors += code not in _ABSENT
            said = _printable(str(error.get("Message", "")))
            if code in _CREDENTIAL_CODES:
                said += " (refused: check the access key, its secret and its rights on the bucket)"
            raise ObjectStoreError(
                f"object store: {what} {self.url(key)}: {code}: {said.strip()}",
                code=code, lasting=code in _CREDENTIAL_CODES or code == "NoSuchBucket",
            ) from None  # fmt: skip
        except botocore.exceptions.BotoCoreError as exc:
            self.errors += 1
            said = _printable(str(exc))
            raise ObjectStoreError(f"object store: {what} {self.url(key)}: {said}") from None

    def check(self) -> None:
        """Prove the bucket is there and the credentials may use it."""
        self._call("check the bucket", "", lambda: self._client.head_bucket(Bucket=self.bucket))

    def head(self, key: str) -> int | None:
        """The object's size, None when there is no such object."""
        try:
            found = self._call(
                "look up", key, lambda: self._client.head_object(Bucket=self.bucket, Key=key)
            )
        except ObjectStoreError as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(found["ContentLength"])

    def put(self, key: str, data: bytes) -> None:
        self._call(
            "write", key, lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data)
        )

    def delete(self, key: str) -> None:
        """Remove the object at key (retention); no such object is not an error."""
        self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=key))

    def copy(self, key: str, to: str) -> None:
        """A copy of the object at key, made by the store itself, at `to`."""
        source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": key}
        self._call("copy", key, lambda: self._client.copy_object(
            Bucket=self.bucket, Key=to, CopySource=source))  # fmt: skip

    def keys(self, under: str = "") -> list[str]:
        """Every key below the prefix (and `under`), sorted."""
        start = self.key(under) if under else (f"{self.prefix}/" if self.prefix else "")

        def walk() -> list[str]:
            pages = self._client.get_paginator("list_objects_v2")
            found = []
            for page in pages.paginate(Bucket=self.bucket, Prefix=start):
                found += [item["Key"] for item in page.get("Contents", [])]
            return sorted(found)

        return self._call("list", start, walk)

    def create_upload(self, key: str) -> str:
        """Start a multipart upload; its id."""
        made = self._call(
            "start uploading",
            key,
            lambda: self._client.create_multipart_upload(Bucket=self.bucket, Key=key),
        )
        return made["UploadId"]

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        """Upload part `number` (from 1); its ETag."""
        done = self._call("upload a part of", key, lambda: self._client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data,
        ))  # fmt: skip
        return done["ETag"]

    def parts(self, key: str, upload_id: str) -> int | None:
        """How many parts an upload holds; None when there is no such upload (any more)."""
        try:
            listed = self._call("list the parts of", key, lambda: self._client.list_parts(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MaxParts=10000,
            ))  # fmt: skip
        except ObjectStoreError as exc:
            if exc.code in ("NoSuchUpload", "404"):
                return None
            raise
        return len(listed.get("Parts", []))

    def part_tags(self, key: str, upload_id: str) -> list[str]:
        """The ETags of an upload's parts 1, 2, ... as far as they run without a gap (a gap:
        what follows is not the recording's next bytes); ObjectStoreError (NoSuchUpload)
        when there is no such upload (any more)."""

        def walk() -> list[tuple[int, str]]:
            pages = self._client.get_paginator("list_parts")
            found = []
            for page in pages.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                found += [(int(item["PartNumber"]), str(item["ETag"]))
                          for item in page.get("Parts", [])
                          if "PartNumber" in item and "ETag" in item]  # fmt: skip
            return found

        tags: list[str] = []
        for number, tag in sorted(self._call("list the parts of", key, walk)):
            if number != len(tags) + 1:
                break
            tags.append(tag)
        return tags

    def complete(self, key: str, upload_id: str, etags: list[str]) -> None:
        parts: list[CompletedPartTypeDef] = [
            {"PartNumber": n, "ETag": tag} for n, tag in enumerate(etags, 1)
        ]
        self._call("complete the upload of", key, lambda: self._client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts},
        ))  # fmt: skip

    def uploads_in_progress(self, under: str) -> list[tuple[str, str]]:
        """(key, upload id) of every multipart upload begun and neither completed nor
        aborted whose key starts with `under` (a full key: pass one to find its own)."""

        def walk() -> list[tuple[str, str]]:
            pages = self._client.get_paginator("list_multipart_uploads")
            found = []
            for page in pages.paginate(Bucket=self.bucket, Prefix=under):
                found += [(item["Key"], item["UploadId"]) for item in page.get("Uploads", [])
                          if "Key" in item and "UploadId" in item]  # fmt: skip
            return found

        return self._call("list the uploads in progress under", under, walk)

    def abort(self, key: str, upload_id: str) -> None:
        self._call("abort the upload of", key, lambda: self._client.abort_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id,
        ))  # fmt: skip

    def _chunks(self, key: str, limit: int | None = None) -> Iterator[bytes]:
        """The object's bytes; with limit, ObjectStoreError as soon as it proves larger (an
        announced length or the bytes themselves: at most limit + 1 are read)."""
        got = self._call("read", key, lambda: self._client.get_object(Bucket=self.bucket, Key=key))
        body, left = got["Body"], limit
        try:
            if left is not None and int(got.get("ContentLength", 0)) > left:
                raise self._larger(key, limit)
            while True:
                want = _READ if left is None else min(_READ, left + 1)
                chunk = self._call("read", key, partial(body.read, want))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                    if left < 0:
                        raise self._larger(key, limit)
                yield chunk
        finally:
            body.close()

    def _larger(self, key: str, limit: int | None) -> ObjectStoreError:
        return ObjectStoreError(f"object store: {self.url(key)} sends more than the {limit}"
                                " bytes it may hold: not read further", code=LARGER)  # fmt: skip

    def sha256(self, key: str, limit: int | None = None) -> tuple[str, int]:
        """The SHA-256 and size of the object's bytes, read as a stream; with limit,
        ObjectStoreError (code LARGER) once it proves larger, at most limit + 1 bytes read."""
        digest, size = hashlib.sha256(), 0
        for chunk in self._chunks(key, limit):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size

    def download(self, key: str, out: BinaryIO, limit: int | None = None) -> int:
        """Write the object's bytes to out; how many. ObjectStoreError, after at most limit
        bytes written, when it holds more than limit."""
        size = 0
        for chunk in self._chunks(key, limit):
            out.write(chunk)
            size += len(chunk)
        return size
