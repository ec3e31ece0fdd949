"""A hostile S3-compatible server for red-team tests: a real HTTP server on loopback that
answers the few calls bastion makes, but lies about sizes or hangs mid-download."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.realssh import LOOPBACK, ClosesOnExit

BUCKET = "bastion-recordings"
_CHUNK = 1 << 16
_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
              b"<Message>reduce your request rate</Message></Error>")  # fmt: skip


class HostileS3(ClosesOnExit):
    """HEAD of any object says `head_size` bytes; GET sends `body_size` bytes (a store that
    sends more than it announced), or, with `hang`, a first few bytes and then nothing
    until release(). Writes are refused with 503 SlowDown (the spool keeps its files), or
    with `empty_answers` taken with a 200 and an empty body (a broken store or proxy)."""

    def __init__(self, *, head_size: int | None = 1000, body_size: int | None = None,
                 hang: bool = False, empty_answers: bool = False,
                 hang_bucket: bool = False) -> None:  # fmt: skip
        self.head_size = head_size  # None: no such object (404)
        self.body_size = (head_size or 0) if body_size is None else body_size
        self.hang = hang
        self.empty_answers = empty_answers  # writes answered 200 with an empty document
        self.writes = 0
        self.hang_bucket = hang_bucket  # HEAD of the bucket (the start-up check) hangs
        self.gets = 0  # GETs of an object begun
        self.hanging = 0  # GETs now held
        self.sent = 0  # body bytes sent in all
        self._lock = threading.Lock()
        self._release = threading.Event()
        bound = type("Bound", (_Handler,), {"s3": self})
        self._server = ThreadingHTTPServer((LOOPBACK, 0), bound)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def config(self, credentials: str, prefix: str = "node-a") -> str:
        return (f'\n[recordings]\nurl = "s3://{BUCKET}/{prefix}"\nendpoint = "{self.endpoint}"\n'
                f'credentials_file = "{credentials}"\n')  # fmt: skip

    @staticmethod
    def write_credentials(path: Path) -> Path:
        path.write_text("hostile-key-id\nhostile-secret-0d1e\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def count(self, **more: int) -> None:
        with self._lock:
            for name, n in more.items():
                setattr(self, name, getattr(self, name) + n)

    def held(self) -> None:
        """Block one GET until release()."""
        self.count(hanging=1)
        self._release.wait(120)
        self.count(hanging=-1)

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    s3: HostileS3

    def setup(self) -> None:
        # `sent` should count what the client took in: keep the kernel from buffering
        # megabytes on this side of the connection (its send buffer grows to tcp_wmem's max)
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _CHUNK)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _is_object(self) -> bool:
        path = self.path.split("?", 1)[0].strip("/")
        return "/" in path and "?" not in self.path

    def _headers(self, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", "binary/octet-stream")
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        self.send_header("Last-Modified", "Mon, 07 Dec 2026 07:00:00 GMT")
        self.end_headers()

    def do_HEAD(self) -> None:
        if not self._is_object():
            if self.s3.hang_bucket:
                self.s3.held()
            return self._headers(200, 0)
        if self.s3.head_size is None:
            return self._headers(404, 0)
        return self._headers(200, self.s3.head_size)

    def do_GET(self) -> None:
        if not self._is_object():
            return self._refuse()
        self.s3.count(gets=1)
        self._headers(200, self.s3.body_size)
        left = self.s3.body_size
        try:
            if self.s3.hang:
                self.wfile.write(b"x" * min(16, left))
                self.wfile.flush()
                left -= min(16, left)
                self.s3.held()
            while left > 0:
                n = min(_CHUNK, left)
                self.wfile.write(b"\0" * n)
                self.s3.count(sent=n)
                left -= n
        except OSError:
            return None
        return None

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.s3.count(writes=1)
        if self.s3.empty_answers:
            return self._headers(200, 0)
        self.send_response(503)
        self.send_header("Content-Length", str(len(_SLOW_DOWN)))
        self.send_header("Content-Type", "application/xml")
        self.end_headers()
        self.wfile.write(_SLOW_DOWN)

    do_PUT = do_POST = do_DELETE = _refuse
