"""The SFTP observer on built packets (whole, byte by byte, split anywhere) and real sftp-server."""

from __future__ import annotations

import ast
import hashlib
import os
import struct
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.ssh import sftp
from bastion.ssh.sftp import SftpObserver, SftpOp, SftpProtocolError

SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")  # from the openssh-server package
WRITE_NEW = sftp.FXF_WRITE | sftp.FXF_CREAT | sftp.FXF_TRUNC
Field = int | bytes | str
Event = tuple[str, bytes]  # ("c" client or "s" server, bytes)


# A tiny test-only encoder: u32 for ints (u64 when wrapped in U64), strings length-prefixed.


class U64(int):
    pass


def field(value: Field) -> bytes:
    if isinstance(value, U64):
        return struct.pack(">Q", value)
    if isinstance(value, int):
        return struct.pack(">I", value)
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack(">I", len(raw)) + raw


def packet(kind: int, *fields: Field) -> bytes:
    body = bytes([kind]) + b"".join(field(f) for f in fields)
    return struct.pack(">I", len(body)) + body


def version(*extensions: str) -> bytes:
    return packet(sftp.VERSION, 3, *extensions)


def status(rid: int, code: int = 0, message: str = "") -> bytes:
    return packet(sftp.STATUS, rid, code, message, "en")


HELLO: list[Event] = [("c", packet(sftp.INIT, 3)), ("s", version("posix-rename@openssh.com", "1"))]


def feed(events: Iterable[Event], observer: SftpObserver | None = None) -> list[SftpOp]:
    observer = observer or SftpObserver()
    ops: list[SftpOp] = []
    for side, data in events:
        ops += observer.feed_client(data) if side == "c" else observer.feed_server(data)
    return ops


def byte_by_byte(events: list[Event]) -> list[Event]:
    return [(side, data[i : i + 1]) for side, data in events for i in range(len(data))]


def grouped(events: list[Event]) -> list[Event]:
    """Consecutive events in one direction joined: packets then straddle chunk boundaries."""
    out: list[Event] = []
    for side, data in events:
        if out and out[-1][0] == side:
            out[-1] = (side, out[-1][1] + data)
        else:
            out.append((side, data))
    return out


def opened(path: str, pflags: int, handle: bytes = b"h") -> list[Event]:
    return [("c", packet(sftp.OPEN, 1, path, pflags, 0)), ("s", packet(sftp.HANDLE, 1, handle))]


def asked(rid: int, request: bytes, answer: bytes) -> list[Event]:
    return [("c", request), ("s", answer)]


def closed(handle: bytes = b"h", rid: int = 99) -> list[Event]:
    return asked(rid, packet(sftp.CLOSE, rid, handle), status(rid))


def upload(path: str, content: bytes, chunk: int = 32768) -> list[Event]:
    """OPEN for writing, pipelined WRITEs, their statuses, CLOSE: like OpenSSH's sftp put."""
    events = opened(path, WRITE_NEW, b"\0\0\0\1")
    offsets = range(0, len(content), chunk)
    events += [
        ("c", packet(sftp.WRITE, 10 + i, b"\0\0\0\1", U64(o), content[o : o + chunk]))
        for i, o in enumerate(offsets)
    ]
    events += [("s", status(10 + i)) for i in range(len(offsets))]
    return events + closed(b"\0\0\0\1", 2)


def download(path: str, content: bytes, order: list[int], chunk: int = 32768) -> list[Event]:
    """OPEN for reading, pipelined READs past the end, answers in the given order, CLOSE."""
    events = opened(path, sftp.FXF_READ)
    offsets = list(range(0, len(content) + chunk, chunk))
    events += [("c", packet(sftp.READ, 10 + i, b"h", U64(o), chunk)) for i, o in enumerate(offsets)]
    for i in order + [i for i in range(len(offsets)) if i not in order]:
        part = content[offsets[i] : offsets[i] + chunk]
        events.append(
            ("s", packet(sftp.DATA, 10 + i, part) if part else status(10 + i, sftp.FX_EOF, "EOF"))
        )
    return events + closed(b"h", 2)


CONTENT = os.urandom(200_000)
DIGEST = hashlib.sha256(CONTENT).hexdigest()


def test_a_full_upload_yields_one_write_op_with_the_sha256() -> None:
    events = HELLO + upload("/srv/app/release.tar", CONTENT)
    written = len(CONTENT)
    expected = [SftpOp("write", "/srv/app/release.tar", None, 0, written, DIGEST, pflags=WRITE_NEW)]
    assert feed(events) == expected
    assert feed(byte_by_byte(events)) == expected
    assert feed(grouped(events)) == expected


def test_a_pipelined_download_answered_out_of_order_yields_the_sha256() -> None:
    ops = feed(HELLO + download("/etc/hosts", CONTENT, order=[3, 0, 6, 5, 1, 4, 2]))
    assert ops == [
        SftpOp("read", "/etc/hosts", bytes_read=len(CONTENT), sha256=DIGEST, pflags=sftp.FXF_READ)
    ]


def test_the_end_of_a_file_can_come_from_fstat_instead_of_eof() -> None:
    content = CONTENT[:65536]
    events = HELLO + opened("/f", sftp.FXF_READ)
    events += asked(
        2, packet(sftp.FSTAT, 2, b"h"), packet(sftp.ATTRS, 2, sftp.ATTR_SIZE, U64(65536))
    )
    events += asked(3, packet(sftp.READ, 3, b"h", U64(0), 65536), packet(sftp.DATA, 3, content))
    ops = feed(events + closed())
    assert ops[0].op == "fstat" and ops[0].path == "/f"
    assert ops[1].sha256 == hashlib.sha256(content).hexdigest()


def test_a_read_not_from_offset_zero_has_no_sha256() -> None:
    events = HELLO + opened("/var/log/syslog", sftp.FXF_READ)
    events += asked(2, packet(sftp.READ, 2, b"h", U64(4096), 100), packet(sftp.DATA, 2, b"x" * 100))
    [op] = feed(events + closed())
    assert (op.op, op.bytes_read, op.sha256, op.hash_incomplete) == ("read", 100, None, True)


def test_a_read_that_never_reaches_the_end_has_no_sha256() -> None:
    events = [*download("/f", CONTENT, order=[])[:3], ("s", packet(sftp.DATA, 10, CONTENT[:32768]))]
    [op] = feed(HELLO + events + closed())
    assert (op.bytes_read, op.sha256, op.hash_incomplete) == (32768, None, True)


def test_too_many_out_of_order_answers_give_up_the_hash() -> None:
    chunks = sftp.REORDER_CHUNKS + 2
    order = [*range(1, chunks + 1), 0]  # everything arrives before offset 0
    [op] = feed(HELLO + download("/f", CONTENT[: chunks * 1000 + 500], order, chunk=1000))
    assert (op.bytes_read, op.sha256, op.hash_incomplete) == (chunks * 1000 + 500, None, True)


def test_writes_that_are_not_a_whole_new_file_have_no_sha256() -> None:
    appended = [
        (s, d.replace(field(WRITE_NEW), field(sftp.FXF_WRITE))) for s, d in upload("/f", b"abc")
    ]
    [op] = feed(HELLO + appended)
    assert (op.op, op.bytes_written, op.sha256, op.hash_incomplete) == ("write", 3, None, True)
    seek = upload("/f", b"abcdef", chunk=3)
    seek[2], seek[3] = seek[3], seek[2]  # second chunk sent first
    assert feed(HELLO + seek)[0].sha256 is None


def in_place(content: bytes, cut: int) -> list[Event]:
    """OpenSSH 9 scp: OPEN without TRUNC, writes, FSETSTAT size, CLOSE."""
    events = upload("/srv/f", content)
    events[0] = ("c", packet(sftp.OPEN, 1, "/srv/f", sftp.FXF_WRITE | sftp.FXF_CREAT, 0))
    fsetstat = asked(3, packet(sftp.FSETSTAT, 3, b"\0\0\0\1", sftp.ATTR_SIZE, U64(cut)), status(3))
    return events[:-2] + fsetstat + events[-2:]


def test_an_in_place_upload_cut_to_its_length_yields_the_sha256() -> None:
    fsetstat, write = feed(HELLO + in_place(CONTENT, len(CONTENT)))
    assert (fsetstat.op, fsetstat.path) == ("fsetstat", "/srv/f")
    assert (write.op, write.sha256, write.bytes_written) == ("write", DIGEST, len(CONTENT))
    assert feed(HELLO + in_place(CONTENT, len(CONTENT) - 1))[1].sha256 is None
    assert feed(HELLO + upload("/srv/f", CONTENT)[:-2] + in_place(b"", 5)[-4:])[0].sha256 is None


def test_a_failed_write_is_reported_with_its_status() -> None:
    events = upload("/full/disk", CONTENT, chunk=100_000)
    events[-3] = ("s", status(11, 4, "No space left on device"))
    [op] = feed(HELLO + events)
    assert (op.bytes_written, op.sha256, op.status, op.code, op.message) == (
        100_000, None, "failure", 4, "No space left on device",
    )  # fmt: skip


def test_an_empty_upload_is_a_write_of_nothing() -> None:
    [op] = feed(HELLO + upload("/tmp/empty", b""))
    assert (op.op, op.sha256) == ("write", hashlib.sha256(b"").hexdigest())


def test_a_failed_open_and_open_close() -> None:
    denied = status(1, 3, "Permission denied")
    events = HELLO + asked(1, packet(sftp.OPEN, 1, "/etc/shadow", 1, 0), denied)
    ops = feed(events + opened("/tmp/x", sftp.FXF_READ) + closed())
    refused = {"status": "permission-denied", "code": 3, "message": "Permission denied"}
    assert [(o.op, o.path, o.pflags, o.status, o.code, o.message) for o in ops] == [
        ("open", "/etc/shadow", 1, *refused.values()),
        ("open-close", "/tmp/x", 1, "ok", 0, ""),
    ]


def test_path_operations_with_their_status() -> None:
    requests = [
        packet(sftp.RENAME, 1, "/a", "/b"), packet(sftp.REMOVE, 2, "/gone"),
        packet(sftp.MKDIR, 3, "/d", 0), packet(sftp.RMDIR, 4, "/d"), packet(sftp.STAT, 5, "/etc"),
        packet(sftp.LSTAT, 6, "/l"), packet(sftp.SETSTAT, 7, "/a", 4, 0o600),
        packet(sftp.REALPATH, 8, "."), packet(sftp.READLINK, 9, "/l"),
        packet(sftp.SYMLINK, 10, "/target", "/link"), packet(sftp.FSTAT, 11, b"nohandle"),
    ]  # fmt: skip
    answers = [
        status(1), status(2, 2, "No such file"), status(3), status(4), packet(sftp.ATTRS, 5, 0),
        packet(sftp.ATTRS, 6, 0), status(7), packet(sftp.NAME, 8, 1, "/home/alice", "", 0),
        packet(sftp.NAME, 9, 1, "/target", "", 0), status(10), status(11, 4, "bad handle"),
    ]  # fmt: skip
    ops = feed([*HELLO, *(("c", r) for r in requests), *(("s", a) for a in answers)])
    assert [(o.op, o.path, o.path2, o.status) for o in ops] == [
        ("rename", "/a", "/b", "ok"), ("remove", "/gone", None, "no-such-file"),
        ("mkdir", "/d", None, "ok"), ("rmdir", "/d", None, "ok"), ("stat", "/etc", None, "ok"),
        ("lstat", "/l", None, "ok"), ("setstat", "/a", None, "ok"),
        ("realpath", ".", "/home/alice", "ok"), ("readlink", "/l", "/target", "ok"),
        ("symlink", "/link", "/target", "ok"), ("fstat", None, None, "failure"),
    ]  # fmt: skip
    assert ops[1].code == 2 and ops[1].message == "No such file"


def test_a_listed_directory_is_one_op_with_its_entry_count() -> None:
    events = [*HELLO, ("c", packet(sftp.OPENDIR, 1, "/srv")), ("s", packet(sftp.HANDLE, 1, b"d"))]
    for rid, names in ((2, ["a", "b", "c"]), (3, ["d", "e"])):
        entries = [f for name in names for f in (name, f"-rw-r--r-- {name}", 0)]
        events += asked(
            rid, packet(sftp.READDIR, rid, b"d"), packet(sftp.NAME, rid, len(names), *entries)
        )
    events += asked(4, packet(sftp.READDIR, 4, b"d"), status(4, 1, "EOF"))
    assert feed(events + closed(b"d")) == [SftpOp("list", "/srv", entries=5)]


def test_extended_requests_keep_their_name_and_known_paths() -> None:
    events = HELLO + opened("/f", WRITE_NEW)
    requests = [
        packet(sftp.EXTENDED, 2, "posix-rename@openssh.com", "/old", "/new"),
        packet(sftp.EXTENDED, 3, "hardlink@openssh.com", "/f", "/g"),
        packet(sftp.EXTENDED, 4, "statvfs@openssh.com", "/"),
        packet(sftp.EXTENDED, 5, "fsync@openssh.com", b"h"),
        packet(sftp.EXTENDED, 6, "limits@openssh.com"),
    ]  # fmt: skip
    events += [("c", r) for r in requests]
    answers = [status(2), status(3, 8, "Unsupported"), packet(sftp.EXTENDED_REPLY, 4, U64(4096))]
    answers += [status(5), packet(sftp.EXTENDED_REPLY, 6, U64(1), U64(2), U64(3), U64(4))]
    events += [("s", a) for a in answers]
    ops = feed(events)
    assert [(o.op, o.name, o.path, o.path2, o.status) for o in ops] == [
        ("rename", "posix-rename@openssh.com", "/old", "/new", "ok"),
        ("hardlink", "hardlink@openssh.com", "/f", "/g", "op-unsupported"),
        ("extended", "statvfs@openssh.com", "/", None, "ok"),
        ("extended", "fsync@openssh.com", "/f", None, "ok"),
        ("extended", "limits@openssh.com", None, None, "ok"),
    ]


def test_unknown_packet_types_pass_as_unknown_ops() -> None:
    ops = feed([*HELLO, ("c", packet(99, 7, "x")), ("s", packet(150, 7)), ("s", status(12345))])
    assert ops == [SftpOp("unknown", name="type-99"), SftpOp("unknown", name="type-150")]


def test_answers_to_unknown_ids_are_counted() -> None:
    observer = SftpObserver()
    assert feed([*HELLO, ("s", status(42)), ("s", packet(sftp.DATA, 43, b"x"))], observer) == []
    assert observer.unmatched == 2


def test_the_hello_is_recorded() -> None:
    observer = SftpObserver()
    feed(HELLO, observer)
    assert (observer.client_version, observer.version) == (3, 3)
    assert observer.extensions == {"posix-rename@openssh.com": "1"}


def test_trailing_partial_packets_wait_for_more() -> None:
    observer = SftpObserver()
    tail = packet(sftp.REMOVE, 1, "/x")
    assert feed([*HELLO, ("c", tail[:3]), ("c", tail[3:9])], observer) == []
    assert feed([("c", tail[9:]), ("s", status(1)[:20])], observer) == []
    assert feed([("s", status(1)[20:])], observer) == [SftpOp("remove", "/x")]


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([("c", struct.pack(">I", sftp.MAX_PACKET + 1))], "packet length"),
        ([("c", struct.pack(">I", 0))], "packet length"),
        ([("c", packet(sftp.OPEN, 1, "/x"))], "SSH_FXP_INIT must come first"),
        ([HELLO[0], HELLO[0]], "SSH_FXP_INIT must come first"),
        ([HELLO[0], ("s", packet(sftp.VERSION, 4))], "version 4"),
        ([HELLO[0], ("s", status(1))], "SSH_FXP_VERSION must come first"),
        ([*HELLO, ("c", packet(sftp.OPEN, 1, "/x")[:-4] + struct.pack(">I", 1000))], "truncated"),
        ([*HELLO, ("c", packet(sftp.READ, 1, b"h", 0))], "truncated type 5 request"),
        ([*HELLO, ("c", packet(sftp.CLOSE, 1, b"h" * 257))], "handle longer"),
        ([*HELLO, ("c", packet(sftp.STAT, 1, "/a")), ("c", packet(sftp.STAT, 1, "/b"))], "reused"),
        (
            [*HELLO, ("c", packet(sftp.OPEN, 1, "/x", 1, 0)), ("s", packet(sftp.STATUS, 1))],
            "truncated type 101",
        ),
    ],
)
def test_structural_violations_raise(events: list[Event], message: str) -> None:
    with pytest.raises(SftpProtocolError, match=message):
        feed(events)


def test_a_failed_observer_stays_failed_and_keeps_what_it_had_finished() -> None:
    observer = SftpObserver()
    feed([*HELLO, ("c", packet(sftp.REMOVE, 1, "/x"))], observer)
    with pytest.raises(SftpProtocolError) as failure:
        observer.feed_server(status(1) + struct.pack(">I", 1 << 30))
    assert failure.value.ops == [SftpOp("remove", "/x")]
    with pytest.raises(SftpProtocolError, match="failed earlier"):
        observer.feed_client(packet(sftp.REMOVE, 2, "/y"))


def test_pending_requests_are_bounded() -> None:
    stats = b"".join(packet(sftp.STAT, i, "/") for i in range(sftp.MAX_PENDING + 1))
    with pytest.raises(SftpProtocolError, match="requests pending"):
        feed([*HELLO, ("c", stats)])


def test_paths_that_are_not_utf8_stay_readable() -> None:
    [op] = feed([*HELLO, ("c", packet(sftp.REMOVE, 1, b"/tmp/caf\xe9")), ("s", status(1))])
    assert op.path == "/tmp/caf\\xe9"


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_any_chunk_boundaries_give_the_same_ops(data: st.DataObject) -> None:
    events = grouped(
        HELLO
        + upload("/u", CONTENT[:70_000], chunk=9000)
        + download("/d", CONTENT[:50_000], [2, 0, 1, 5, 3], chunk=9000)
    )
    expected = feed(events)
    pieces: list[Event] = []
    for side, blob in events:
        cuts = sorted(data.draw(st.sets(st.integers(1, len(blob) - 1), max_size=12)))
        pieces += [(side, blob[a:b]) for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]
    assert feed(pieces) == expected
    assert [o.sha256 for o in expected] == [
        hashlib.sha256(CONTENT[:n]).hexdigest() for n in (70_000, 50_000)
    ]


def test_the_observer_is_pure() -> None:
    tree = ast.parse(Path(sftp.__file__).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    top = {name.split(".")[0] for name in names} - {"__future__"}
    assert (
        top
        <= {"hashlib", "struct", "collections", "dataclasses", "typing"}
        <= sys.stdlib_module_names
    )


# The real thing: OpenSSH's sftp-server on stdin/stdout, driven by a small client.


class RealServer:
    """sftp-server as a subprocess; every byte each way is also fed to an observer."""

    def __init__(self) -> None:
        assert SFTP_SERVER.exists(), f"{SFTP_SERVER} is missing: install openssh-server"
        self.proc = subprocess.Popen(
            [str(SFTP_SERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.observer = SftpObserver()
        self.ops: list[SftpOp] = []
        self.next_id = 0

    def send(self, kind: int, *fields: Field) -> int:
        assert self.proc.stdin is not None
        self.next_id += 1
        raw = packet(kind, *fields) if kind == sftp.INIT else packet(kind, self.next_id, *fields)
        self.ops += self.observer.feed_client(raw)
        self.proc.stdin.write(raw)
        self.proc.stdin.flush()
        return self.next_id

    def receive(self) -> tuple[int, int, bytes]:
        """An answer's type, request id and the rest of its body."""
        assert self.proc.stdout is not None
        head = self.proc.stdout.read(4)
        body = self.proc.stdout.read(struct.unpack(">I", head)[0])
        for i in range(0, len(head + body), 7777):  # odd chunks, as a relay might see them
            self.ops += self.observer.feed_server((head + body)[i : i + 7777])
        return body[0], struct.unpack(">I", body[1:5])[0], body[5:]

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        finally:
            self.proc.kill() if self.proc.poll() is None else None
            self.proc.stdout.close()


def real_session(server: RealServer, path: Path, content: bytes) -> bytes:
    """Upload content with pipelined writes, read it back with pipelined reads, rename, remove."""
    server.send(sftp.INIT, 3)
    assert server.receive()[0] == sftp.VERSION
    server.send(sftp.OPEN, str(path), WRITE_NEW, 0)
    handle = server.receive()[2][4:]
    for offset in range(0, len(content), 32768):
        server.send(sftp.WRITE, handle, U64(offset), content[offset : offset + 32768])
    for _ in range(0, len(content), 32768):
        assert server.receive()[0] == sftp.STATUS
    server.send(sftp.CLOSE, handle)
    server.receive()
    server.send(sftp.OPEN, str(path), sftp.FXF_READ, 0)
    handle = server.receive()[2][4:]
    got: dict[int, bytes] = {}
    asked: dict[int, int] = {}  # request id -> offset
    offset, at_end = 0, False
    while asked or not at_end:
        while not at_end and len(asked) < 8:  # eight reads in flight, like sftp's default
            asked[server.send(sftp.READ, handle, U64(offset), 20000)] = offset
            offset += 20000
        kind, rid, rest = server.receive()
        if kind == sftp.DATA:
            got[asked.pop(rid)] = rest[4:]
        else:
            at_end, _ = True, asked.pop(rid)
    server.send(sftp.CLOSE, handle)
    server.receive()
    server.send(sftp.OPEN, str(path), sftp.FXF_WRITE | sftp.FXF_CREAT, 0)  # scp: in place
    handle = server.receive()[2][4:]
    server.send(sftp.WRITE, handle, U64(0), content[:1000])
    server.send(sftp.FSETSTAT, handle, sftp.ATTR_SIZE, U64(1000))
    assert [server.receive()[0] for _ in range(2)] == [sftp.STATUS] * 2
    server.send(sftp.CLOSE, handle)
    server.receive()
    assert path.read_bytes() == content[:1000]
    server.send(sftp.EXTENDED, "posix-rename@openssh.com", str(path), f"{path}.old")
    server.receive()
    server.send(sftp.REMOVE, f"{path}.old")
    server.receive()
    return b"".join(got[k] for k in sorted(got))


def test_a_real_sftp_server_session_is_logged_with_matching_hashes(tmp_path: Path) -> None:
    server = RealServer()
    content = os.urandom(300_001)
    try:
        read_back = real_session(server, tmp_path / "report.bin", content)
    finally:
        server.close()
    digest = hashlib.sha256(content).hexdigest()
    assert read_back == content
    path = str(tmp_path / "report.bin")
    seen = [
        (o.op, o.path, o.path2, o.bytes_read, o.bytes_written, o.sha256, o.status)
        for o in server.ops
    ]
    assert seen == [
        ("write", path, None, 0, len(content), digest, "ok"),
        ("read", path, None, len(content), 0, digest, "ok"),
        ("fsetstat", path, None, 0, 0, None, "ok"),
        ("write", path, None, 0, 1000, hashlib.sha256(content[:1000]).hexdigest(), "ok"),
        ("rename", path, f"{path}.old", 0, 0, None, "ok"),
        ("remove", f"{path}.old", None, 0, 0, None, "ok"),
    ]
    assert server.ops[0].message == "Success" and server.ops[4].name == "posix-rename@openssh.com"
    assert server.observer.version == 3 and "limits@openssh.com" in server.observer.extensions
