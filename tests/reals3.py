"""A real S3-compatible server for tests: moto in server mode, a subprocess on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from tests.realssh import LOOPBACK, ClosesOnExit, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "bastion-recordings"
READY_TIMEOUT = 30.0
_POLICY = {"Version": "2012-10-17",
           "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}  # fmt: skip


class MotoS3(ClosesOnExit):
    """moto_server with one bucket. With auth, requests are checked against an IAM user made
    at start (key_id/secret); without, any key pair is taken. stop() and start() again on
    the same port play an outage (moto keeps nothing: the bucket is made again)."""

    def __init__(self, log_dir: Path, *, auth: bool = False) -> None:
        self.port = free_port()
        self.auth = auth
        self.log_path = log_dir / "moto.log"
        self.key_id, self.secret = "bastion-test-key", "bastion-test-secret"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> MotoS3:
        env = {**os.environ, "MOTO_CALL_RESET_API": "false"}
        if self.auth:  # the first three calls (below) make the user; later ones need its key
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        self._wait_ready()
        if self.auth:
            self._make_user()
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310
                    return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not answer in time") from None
                time.sleep(0.1)

    def _make_user(self) -> None:
        iam: Any = boto3.client("iam", **self._kwargs("anyone", "anything"))
        iam.create_user(UserName="bastion")
        made = iam.create_access_key(UserName="bastion")["AccessKey"]
        iam.put_user_policy(UserName="bastion", PolicyName="s3",
                            PolicyDocument=json.dumps(_POLICY))  # fmt: skip
        self.key_id, self.secret = made["AccessKeyId"], made["SecretAccessKey"]

    def _kwargs(self, key_id: str, secret: str) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint, "region_name": "us-east-1",
                "aws_access_key_id": key_id, "aws_secret_access_key": secret}  # fmt: skip

    def client(self) -> S3Client:
        """A client with the good key (the test's own view of the bucket)."""
        return boto3.client("s3", **self._kwargs(self.key_id, self.secret))

    def object_keys(self) -> list[str]:
        found = self.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return sorted(item["Key"] for item in found)

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def write_credentials(self, path: Path, secret: str | None = None) -> Path:
        """A 0600 credentials file (key id, then secret) for [recordings] credentials_file."""
        path.write_text(f"{self.key_id}\n{secret or self.secret}\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def config(self, prefix: str = "node-a", credentials: str = "s3.credentials") -> str:
        """The [recordings] table of a bastion.toml for this server."""
        return (f'\n[recordings]\nurl = "s3://{BUCKET}/{prefix}"\nendpoint = "{self.endpoint}"\n'
                f'credentials_file = "{credentials}"\n')  # fmt: skip

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoS3]:
    """An S3 server of the test's own (moto in server mode, on loopback), stopped after."""
    server = MotoS3(tmp_path)
    try:
        yield server.start()
    finally:
        server.close()
