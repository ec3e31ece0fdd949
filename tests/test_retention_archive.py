"""The retention archive streams: written a batch of lines at a time, read back and verified in
chunks, so an archive of any size (past the ~2 GiB one read returns) is written and proven
with memory that does not grow with it. Tested with tiny chunks and line limits: lines split
across chunks, a file exactly a chunk long, truncated or with a byte appended, a line over
the limit, a FIFO or a link in its place, and a write that fails half way leaving no file."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion import retention_archive as ra
from bastion.audit.chain import GENESIS, ChainedEvent, Event, link
from bastion.privatefiles import NotPrivate, read_private, read_up_to, write_new

CHAIN, ANCHOR = b"c" * 32, b"a" * 32
REPO = Path(__file__).resolve().parent.parent


def chain(count: int, first: int = 1, head: str = GENESIS, note: str = "x") -> list[ChainedEvent]:
    """`count` keyed events from seq `first`, after the event whose MAC is `head`."""
    out: list[ChainedEvent] = []
    for seq in range(first, first + count):
        event = Event("session.opened", "alice", "web-1", detail={"n": seq, "note": note})
        out.append(link(event, seq, f"2026-01-01T00:00:{seq % 60:02d}+00:00", head, CHAIN))
        head = out[-1].row_hash
    return out


Rows = Sequence[Mapping[str, Any]]


def archive(path: Path, events: list[ChainedEvent], queries: Rows = (), recordings: Rows = (),
            **sizes: int) -> dict[str, Any]:  # fmt: skip
    """Write an archive of these as a retention run does; its seal."""
    first = events[0].seq if events else 1
    header = {"from_seq": first, "to_seq": events[-1].seq if events else 0,
              "start_head": events[0].prev_hash if events else GENESIS,
              "made_at": "2026-02-01T00:00:00+00:00", "node": "node-1"}  # fmt: skip
    body = ra.Body(header, iter(events), iter(queries), iter(recordings))

    def seal_for(sha: str) -> dict[str, Any]:
        last = body.last
        seal: dict[str, Any] = {"seq": last.seq if last else None,
                                "head": last.row_hash if last else None,
                                "cut_at": last.at if last else None,
                                "made_at": header["made_at"], "archive": "a.jsonl",
                                "archive_sha256": sha, "node": "node-1"}  # fmt: skip
        seal["sig"] = ra.sign(seal, ANCHOR)
        return seal

    return ra.write(path, body, seal_for, **sizes)


def check(path: Path, **sizes: int) -> tuple[dict[str, Any], str]:
    return ra.verify(path, CHAIN, ANCHOR, **sizes)


def edited(path: Path, data: bytes) -> Path:
    out = path.with_name(path.name + ".edited")
    out.unlink(missing_ok=True)
    write_new(out, data, 0o600)
    return out


QUERY = {"id": 7, "sql": "SELECT 1 /* é \n */", "session_id": "pg-alice-1"}
RECORDING = {"session_id": "ssh-alice-1", "path": "/r/x.cast", "sha256": "ab", "size": 3}


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_lines_split_across_any_chunk_size_write_and_verify(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "a.jsonl"
    events = chain(12)
    seal = archive(path, events, [QUERY], [RECORDING], chunk=chunk)
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1 + 12 + 1 + 1 + 1
    assert data.startswith(ra.render({}, [], [], [])[:12])  # the header line first
    facts, problem = check(path, chunk=chunk)
    assert problem == "", problem
    assert facts["counts"] == {"event": 12, "query": 1, "recording": 1}
    assert facts["seal"] == seal and seal["seq"] == 12 and seal["head"] == events[-1].row_hash
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_file_exactly_a_chunk_long_or_a_byte_either_side(tmp_path: Path) -> None:
    events = chain(5)
    archive(tmp_path / "probe", events)
    data = (tmp_path / "probe").read_bytes()
    size, longest = len(data), max(len(x) + 1 for x in data.split(b"\n"))
    for n, chunk in enumerate((size, size - 1, size + 1, size // 2 + size % 2, longest)):
        path = tmp_path / f"a{n}"
        archive(path, events, chunk=chunk)
        assert path.read_bytes() == data
        assert check(path, chunk=chunk)[1] == ""
    assert check(tmp_path / "probe", line_limit=longest, chunk=longest)[1] == ""


def test_an_empty_cut_archives_query_rows_and_recordings_alone(tmp_path: Path) -> None:
    path = tmp_path / "a"
    seal = archive(path, [], [QUERY], [RECORDING], chunk=3)
    assert seal["seq"] is None
    facts, problem = check(path, chunk=5)
    assert problem == "" and facts["counts"] == {"event": 0, "query": 1, "recording": 1}


def test_a_truncated_archive_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "a"
    archive(path, chain(6))
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    said = {
        "mid line": check(edited(path, data[:-1]), chunk=4)[1],
        "no seal": check(edited(path, b"".join(lines[:-1])), chunk=4)[1],
        "empty": check(edited(path, b""))[1],
        "seal alone": check(edited(path, lines[-1]))[1],
    }
    assert said["mid line"].endswith("is damaged: it does not end with a whole line")
    assert said["no seal"].endswith("is damaged: its last line is not a seal")
    assert said["empty"].endswith("is damaged: it does not end with a whole line")
    assert said["seal alone"].endswith("is damaged: its first line is not an archive header")


def test_a_byte_appended_is_damaged_even_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "a"
    archive(path, chain(3))
    data = path.read_bytes()
    assert "does not end with a whole line" in check(edited(path, data + b"x"))[1]
    assert "is damaged" in check(edited(path, data + b"\n"))[1]  # nothing after the seal
    assert "is damaged" in check(edited(path, data + data[-80:]))[1]


def test_an_edited_or_dropped_event_fails_as_before(tmp_path: Path) -> None:
    path = tmp_path / "a"
    archive(path, chain(6))
    lines = path.read_bytes().splitlines(keepends=True)
    dropped = check(edited(path, b"".join(lines[:3] + lines[4:])), chunk=3)[1]
    assert dropped == "its content differs from what the seal signed (edited)"
    notjson = check(edited(path, b"".join([*lines[:2], b"{not json\n", *lines[3:]])))[1]
    assert "is damaged: Expecting property name" in notjson
    scalar = check(edited(path, b"".join([*lines[:2], b"5\n", *lines[3:]])))[1]
    assert scalar.endswith("is damaged: line 3 is not a JSON object")


def test_a_line_over_the_limit_is_damaged_and_never_written(tmp_path: Path) -> None:
    path = tmp_path / "a"
    archive(path, chain(3, note="n" * 500))
    longest = max(len(x) + 1 for x in path.read_bytes().split(b"\n"))
    said = check(path, line_limit=longest - 1, chunk=16)[1]
    assert said.endswith(f"is damaged: line 2 is longer than {longest - 1} bytes"), said
    with pytest.raises(ValueError, match="over the archive's line limit"):
        archive(tmp_path / "b", chain(3, note="n" * 500), line_limit=longest - 1)
    assert not (tmp_path / "b").exists()


def test_verify_refuses_a_fifo_a_shared_file_and_a_missing_one(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    assert check(fifo)[1].endswith("is not a regular file (it must be a private file)")
    path = tmp_path / "a"
    archive(path, chain(2))
    path.chmod(0o644)
    assert check(path)[1].endswith("is mode 0644 (it must be a private file)")
    assert check(tmp_path / "none")[1].endswith("cannot be read: No such file or directory")


def _swapped(path: Path, put: str) -> Iterator[bytes]:
    """Body lines that, once written, have an insider put something else at the path."""
    yield from ra.Body({"from_seq": 1, "to_seq": 0, "start_head": GENESIS}, [], [], [])
    os.rename(path, path.with_name("moved"))
    if put == "link":
        path.symlink_to(path.with_name("moved"))
    elif put == "fifo":
        os.mkfifo(path, 0o600)
    else:  # the same bytes in another file
        write_new(path, path.with_name("moved").read_bytes(), 0o600)


def _seal(sha: str) -> dict[str, Any]:
    return {"seq": None, "archive_sha256": sha}


@pytest.mark.parametrize("put", ["link", "fifo", "copy"])
def test_an_archive_swapped_while_written_is_refused_at_read_back(tmp_path: Path, put: str) -> None:
    path = tmp_path / "a"
    with pytest.raises((ValueError, OSError)) as caught:
        ra.write(path, _swapped(path, put), _seal)
    assert not path.exists() and not path.is_symlink()  # what sat at its name is gone
    if put == "link":
        assert isinstance(caught.value, OSError)  # never followed
    else:
        assert "not a regular file" in str(caught.value) or "replaced" in str(caught.value)


def test_read_back_finds_a_byte_added_or_taken_after_the_write(tmp_path: Path) -> None:
    path = tmp_path / "a"
    archive(path, chain(4))
    data = path.read_bytes()
    written = ra.ident(os.stat(path))
    sha = hashlib.sha256(data).hexdigest()
    ra.read_back(path, written, len(data), sha, chunk=5)  # as written: holds
    with path.open("ab") as out:
        out.write(b"\n")
    with pytest.raises(ValueError, match="reads back other than it was written"):
        ra.read_back(path, written, len(data), sha, chunk=5)
    os.truncate(path, len(data) - 1)
    with pytest.raises(ValueError, match="reads back other than it was written"):
        ra.read_back(path, written, len(data), sha, chunk=len(data))
    path.chmod(0o640)
    with pytest.raises(ValueError, match="mode 0640"):
        ra.read_back(path, written, len(data), sha)


def test_a_body_that_fails_half_way_leaves_no_file(tmp_path: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield from ra.Body({"from_seq": 1}, chain(50), [], [])
        raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError, match="went away"):
        ra.write(tmp_path / "a", failing(), _seal, chunk=64)
    assert list(tmp_path.iterdir()) == []


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from bastion import retention_archive as ra
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
lines = (b'{"query":{"id":%d,"sql":"%s"}}\\n' % (i, b"x" * 100) for i in range(1000))
try:
    ra.write(Path(sys.argv[1]), lines, lambda sha: {"archive_sha256": sha}, chunk=512)
except OSError as exc:
    print(type(exc).__name__, exc.errno)
"""


def test_a_disk_that_fills_mid_write_leaves_no_file(tmp_path: Path) -> None:
    """The kernel refuses the write past 4 KiB (a real EFBIG, as a full disk gives ENOSPC)."""
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path / "a")], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["WriteFailed", str(errno.EFBIG)]
    assert list(tmp_path.iterdir()) == []


def test_read_private_reads_to_its_limit_however_short_each_read(tmp_path: Path) -> None:
    read, write = os.pipe()
    try:
        for part in (b"abc", b"defg", b"hij"):
            os.write(write, part)
        os.close(write)
        assert read_up_to(read, 100, chunk=2) == b"abcdefghij"
    finally:
        os.close(read)
    path = tmp_path / "k"
    write_new(path, b"0123456789", 0o600)
    assert read_private(path, 10) == b"0123456789"  # exactly at the limit
    assert read_private(path, 9) == b"012345678"
    assert read_private(path, 11) == b"0123456789"
    path.chmod(0o604)
    with pytest.raises(NotPrivate):
        read_private(path, 10)


texts = st.text(st.characters(codec="utf-8"), max_size=40)
details = st.dictionaries(st.sampled_from(["a", "b", "sql", "\n"]), texts, max_size=3)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    notes=st.lists(details, max_size=8),
    rows=st.lists(
        st.dictionaries(st.sampled_from(["id", "sql", "at"]), texts, max_size=3), max_size=4
    ),
    first=st.integers(1, 10**6),
    chunk=st.integers(1, 300),
)
def test_any_small_archive_round_trips_and_any_flipped_byte_fails(
    tmp_path: Path, notes: list[dict[str, str]], rows: list[dict[str, str]], first: int,
    chunk: int,
) -> None:  # fmt: skip
    path = tmp_path / f"a-{os.urandom(6).hex()}"
    head = GENESIS if first == 1 else "f" * 64
    events, prev = [], head
    for n, detail in enumerate(notes):
        e = link(Event("k.x", "alice", "s", detail=detail), first + n, "2026-01-01", prev, CHAIN)
        events.append(e)
        prev = e.row_hash
    archive(path, events, rows, [], chunk=chunk)
    facts, problem = check(path, chunk=chunk)
    assert problem == "" and facts["counts"]["event"] == len(events)
    data = path.read_bytes()
    at = len(data) // 3
    flipped = edited(path, data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
    assert check(flipped, chunk=chunk)[1] != ""


def test_the_archive_bench_runs_and_prints_its_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.retention_archive", "--events", "50", "200",
         "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert [row[:2] for row in rows] == [["50", "12"], ["200", "50"]]
    assert list(tmp_path.iterdir()) == []  # its archives are removed
