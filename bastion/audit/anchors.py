"""Signed chain heads kept outside the machine: the record, its sinks, and checking against them.

An anchor is one line of JSON, MACed with a key derived from the secrets key for this purpose
only: which node wrote it (its `[cluster] node` name; anchors written before nodes had names
carry the host name there, and verify all the same: the name is only a label), when, and the
chain's head (seq and that row's MAC). `bastion serve` sends one to every configured sink at
start, at least every minute, and when it stops. Someone with the store's files can rewrite
the head file beside the store, but not an anchor already sent to another machine or an
append-only file on another mount; `bastion audit verify --anchors FILE` then shows events
deleted after the last anchor.

Sinks, as written in `[audit] anchors`:
    "file:/mnt/audit/bastion-anchors.log"   appended to (O_APPEND) and fsynced
    "syslog" or "syslog:/dev/log"           the local syslog socket (facility authpriv)
    "syslog:udp://HOST:PORT"                a remote syslog server (RFC 3164 over UDP)
    "webhook:https://HOST/PATH"             POSTed as the JSON body (2xx expected)
A syslog server's log file can be given to --anchors as it is: each line's anchor is found
after its "bastion-anchor: " tag.
"""

from __future__ import annotations

import errno
import hmac
import json
import os
import re
import socket
import stat
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bastion.audit.chain import KeySource, canonical_json
from bastion.audit.restores import Restore, explaining, understated
from bastion.privatefiles import write_all

ANCHOR_PURPOSE = "bastion audit anchor v1"
TAG = "bastion-anchor"
FORMAT = 1
_SYSLOG_PRI = 10 * 8 + 5  # facility authpriv, severity notice
_SPEC = re.compile(
    r"file:(/\S+)|syslog(?::(/\S+)|:udp://([\w.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5}))?"
    r"|webhook:(https?://[^\s/]+(?:/\S*)?)"
)
_WEBHOOK_TIMEOUT = 5.0
_MAX_LINE = 4096


class AnchorError(Exception):
    """An anchor sink spec is malformed."""


@dataclass(frozen=True)
class Anchor:
    """One signed head: the chain reached event `seq`, whose MAC is `mac`, at `at`."""

    node: str
    seq: int
    mac: str
    at: str

    def _body(self) -> dict[str, object]:
        return {"bastion_anchor": FORMAT, "node": self.node, "seq": self.seq, "mac": self.mac,
                "at": self.at}  # fmt: skip

    def signed(self, key: bytes) -> str:
        """The anchor's line (no newline): its fields and their MAC."""
        body = self._body()
        sig = hmac.digest(key, canonical_json(body).encode(), "sha256").hex()
        return canonical_json({**body, "sig": sig})


def anchor_key(box: KeySource) -> bytes:
    return box.hkdf(ANCHOR_PURPOSE)


def parse_line(line: str, key: bytes) -> Anchor | str | None:
    """The anchor in one line of a sink's file; None if the line holds none; a problem (str)
    if it holds one that is malformed or not signed with this key."""
    tagged = line.find(f"{TAG}: ")
    text = line[tagged + len(TAG) + 2 :] if tagged >= 0 else line
    if '"bastion_anchor"' not in text:
        return None
    try:
        doc = json.loads(text.strip())
        sig = doc.pop("sig")
        anchor = Anchor(str(doc["node"]), int(doc["seq"]), str(doc["mac"]), str(doc["at"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "a damaged anchor"
    if doc != anchor._body() or not isinstance(sig, str):
        return "a damaged anchor"
    expected = hmac.digest(key, canonical_json(doc).encode(), "sha256").hex()
    if not hmac.compare_digest(expected, sig):
        return "an anchor not signed with this bastion's key (forged, or another bastion's)"
    return anchor


def read_anchors(path: Path, key: bytes) -> tuple[list[Anchor], list[str]]:
    """Every anchor in a file, and a problem for each line that is not a good one; a file
    that is missing, unreadable or holds no anchor at all is a problem too."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [], [f"the anchors file {path} cannot be read: {exc.strerror}"]
    anchors: list[Anchor] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        found = parse_line(line, key)
        if isinstance(found, Anchor):
            anchors.append(found)
        elif found is not None:
            problems.append(f"{path} line {number} holds {found}")
    if not anchors and not problems:
        problems.append(f"the anchors file {path} holds no anchor")
    return anchors, problems


def check(
    anchors: Sequence[Anchor],
    head_seq: int,
    mac_at: Callable[[int], str | None],
    restores: Sequence[Restore] = (),
) -> list[str]:
    """What the chain contradicts: an anchored event that is gone or differs, or a chain that
    ends before the last anchor (events deleted from its end). An anchor of an event that a
    chained restore dropped (sent before the restore) is explained, not contradicted."""
    anchors = [anchor for anchor in anchors if explaining(restores, anchor.seq, anchor.at) is None]
    over = [anchor for anchor in anchors if understated(restores, anchor.seq, anchor.at)]
    if over:  # a loss larger than the restore admitted: named by its furthest witness
        last = max(over, key=lambda anchor: anchor.seq)
        return [understated(restores, last.seq, last.at)]
    problems = []
    beyond = [anchor for anchor in anchors if anchor.seq > head_seq]
    if beyond:
        last = max(beyond, key=lambda anchor: anchor.seq)
        problems.append(
            f"the chain ends at event {head_seq}, but {last.node} anchored event {last.seq}"
            f" at {last.at} (events were deleted from the end)"
        )
    for anchor in anchors:
        if 0 < anchor.seq <= head_seq and mac_at(anchor.seq) != anchor.mac:
            problems.append(
                f"event {anchor.seq} differs from the head {anchor.node} anchored at {anchor.at}"
                " (the chain was rewritten)"
            )
            break
    return problems


# -- sinks ---------------------------------------------------------------------------------


class Sink(Protocol):
    name: str

    def send(self, line: str) -> None:
        """Deliver one anchor line; OSError if it cannot."""

    def close(self) -> None: ...


def parse_spec(spec: str) -> tuple[str, str]:
    """("file", path), ("syslog", socket path), ("udp", "host:port") or ("webhook", url);
    AnchorError if the spec is none of them."""
    found = _SPEC.fullmatch(spec)
    if found is None:
        raise AnchorError(  # only its kind is shown: a mistyped webhook URL holds a secret
            f"{spec.partition(':')[0][:20]!r}... is not an anchor sink: use 'file:/absolute/path',"
            " 'syslog', 'syslog:/dev/log', 'syslog:udp://host:514' or 'webhook:https://host/path'"
        )
    path, unix, host, port, url = found.groups()
    if path is not None:
        return "file", path
    if url is not None:
        return "webhook", url
    if host is not None:
        if not 0 < int(port) < 65536:
            raise AnchorError(f"{spec!r}: port {port} is out of range")
        return "udp", f"{host.strip('[]')}:{port}"
    return "syslog", unix or "/dev/log"


class FileSink:
    """Appends to a file (meant for another mount), fsynced: a line is kept once sent."""

    def __init__(self, path: str) -> None:
        self.name = f"file:{path}"
        self.path = path

    def send(self, line: str) -> None:
        """Append one line to the file itself: never through a symlink, never into a FIFO or
        a device (opening one would hang, or send the anchor nowhere it is kept)."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(exc.errno, "is a symlink: name the file itself") from None
            if exc.errno == errno.ENXIO:  # a FIFO nobody reads
                raise OSError(exc.errno, "is not a regular file") from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EPERM, "is not a regular file")
            write_all(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        pass


class SyslogSink:
    """Sends RFC 3164 messages over a datagram socket: the local syslog or a remote server."""

    def __init__(self, kind: str, where: str) -> None:
        self.name = f"syslog:{where}" if kind == "syslog" else f"syslog:udp://{where}"
        self._kind, self._where = kind, where
        self._sock: socket.socket | None = None
        self._address: str | tuple[Any, ...] = where

    def _connect(self) -> socket.socket:
        """The socket, made at the first send (a name that does not resolve yet is retried)."""
        if self._kind == "syslog":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        else:
            host, port = self._where.rsplit(":", 1)
            family, _, _, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[
                0
            ]
            sock, self._address = socket.socket(family, socket.SOCK_DGRAM), address
        sock.setblocking(False)  # sent on the store's thread: a full queue fails the sink
        return sock

    def send(self, line: str) -> None:
        if self._sock is None:
            self._sock = self._connect()
        stamp = time.strftime("%b %d %H:%M:%S", time.gmtime())
        message = f"<{_SYSLOG_PRI}>{stamp} {socket.gethostname()} {TAG}: {line}"
        try:
            self._sock.sendto(message.encode()[:_MAX_LINE], self._address)
        except BlockingIOError:
            raise OSError(errno.EAGAIN, "its queue is full: nothing is reading it") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class WebhookSink:
    """POSTs each anchor as a JSON body; anything but a 2xx answer is a failure."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)  # logged and chained: no credentials, no query
        self.name = f"webhook:{parts.scheme}://{parts.hostname}{_port(parts)}{parts.path}"
        self.url = url

    def send(self, line: str) -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is http(s), checked
            self.url, data=line.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=_WEBHOOK_TIMEOUT) as answer:  # noqa: S310
            if not 200 <= answer.status < 300:
                raise OSError(f"the webhook answered {answer.status}")

    def close(self) -> None:
        pass


def _port(parts: urllib.parse.SplitResult) -> str:
    try:
        return "" if parts.port is None else f":{parts.port}"
    except ValueError:
        return ""


def open_sink(spec: str) -> Sink:
    kind, where = parse_spec(spec)
    if kind == "file":
        return FileSink(where)
    return WebhookSink(where) if kind == "webhook" else SyslogSink(kind, where)


class Anchorer:
    """Signs the chain's head and sends it to every sink; returns what failed, to be logged.

    A sink that fails does not stop the bastion (its sessions keep their own durable audit);
    the failure is logged each time, and `audit verify` later shows the gap in the anchors.
    """

    def __init__(
        self,
        specs: Sequence[str],
        key: bytes,
        node: str,
        now: Callable[[], str],
    ) -> None:
        self.sinks = [open_sink(spec) for spec in specs]
        self._key, self.node, self._now = key, node, now
        self.sent = 0
        self.delivered: list[bool] = []  # the last round: which sinks took the head

    def anchor(self, head: tuple[int, str]) -> list[str]:
        """Send the signed head (seq, MAC), read by the caller on the store's own thread."""
        seq, mac = head
        line = Anchor(self.node, seq, mac, self._now()).signed(self._key)
        failed, delivered = [], []
        for sink in self.sinks:
            try:
                sink.send(line)
            except OSError as exc:
                failed.append(f"{sink.name}: {exc.strerror or exc}")
                delivered.append(False)
            else:
                delivered.append(True)
        self.sent += 1
        self.delivered = delivered
        return failed

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
