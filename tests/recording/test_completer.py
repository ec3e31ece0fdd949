"""The upload completer (issue 18): a node that never returns has its recording completed from
the parts it uploaded (cut short, marked so) and its sessions closed, by one node at a time,
never while the node may be alive. Real moto_server, the store on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bastion.audit import Store
from bastion.audit.cluster import node_lease
from bastion.audit.location import PgLocation
from bastion.audit.lostnodes import LostClose
from bastion.audit.sessions import RecordingInfo
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.identity.sealing import SecretBox
from bastion.recording.check import chained_recording_problems
from bastion.recording.completer import LEASE, Completer
from bastion.recording.fetch import Fetcher
from bastion.recording.objects import PART_SIZE, ObjectStore
from bastion.recording.reader import file_digest, read_info, read_recording
from bastion.recording.upload import Uploader
from bastion.reports.sessioncheck import session_log_problem
from bastion.reports.week import Week
from tests.reals3 import MotoS3
from tests.recording.helpers import make_writer
from tests.recording.test_objects import moto, store_for, wait_until

__all__ = ["moto"]

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
GRACE = timedelta(seconds=30)
LOST_AFTER = timedelta(minutes=2)
SESSION = "s-b-0001"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store(store_at: Path | PgLocation, clock: FakeClock) -> Iterator[Store]:
    made = Store.create(store_at, clock)
    if made.location is not None:  # the database's clock, which this test moves
        made.store_clock = clock  # (SQLite's is the store's own clock already)
    made.add_user("alice", "engineer", None, b"seed", "test")
    made.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="x",
                    database=None, secret_sealed=b"s", actor="test")  # fmt: skip
    try:
        yield made
    finally:
        made.close()


def direct(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """The test's store thread is its own: a store call runs where it is made."""
    return fn(*args, **kwargs)


def details(store: Store, kind: str) -> list[dict[str, Any]]:
    """The detail of every chained event of this kind, in order."""
    return [json.loads(e.detail) for e in store.events() if e.kind == kind]


def completer(store: Store, objects: ObjectStore | None, node: str = "a", **kw: Any) -> Completer:
    return Completer(store, direct, objects, node, LOST_AFTER, **kw)


def open_on_b(store: Store, path: Path | None, session_id: str = SESSION) -> None:
    """Node b is alive and holds a session (with its recording at path)."""
    store.take_lease(node_lease("b"), "b", GRACE, quiet=True)
    store.open_session(session_id=session_id, user="alice", target="web-1", grant_id=None,
                       protocol="ssh", client_addr="10.0.0.7", node="b",
                       recording_path=str(path) if path else None)  # fmt: skip


def record_past_a_part(spool: Path, box: SecretBox, session_id: str = SESSION) -> Path:
    """A live recording on b's spool, flushed past one part (its writer is never closed:
    b is killed mid-session). The file's path."""
    writer = make_writer(spool, box, session_id=session_id)
    elapsed = 0.0
    while writer.path.stat().st_size < PART_SIZE + (1 << 20):
        elapsed += 0.5
        writer.output(os.urandom(256 << 10).hex().encode(), elapsed)
        writer.flush()
    return writer.path


def upload_a_part_then_die(
    objects: ObjectStore, spool: Path, path: Path,
    progress: Callable[[str, int, str], object] | None = None,
) -> None:  # fmt: skip
    """b's uploader sends the first part of the live recording, then b is gone (its upload
    stays in progress)."""
    uploader = Uploader(objects, spool, poll=0.05, progress=progress)
    uploader.start()
    try:
        uploader.track(path)
        key = uploader.name(path)
        wait_until(lambda: any(objects.parts(key, upload_id) for found, upload_id
                               in objects.uploads_in_progress(key) if found == key))  # fmt: skip
    finally:
        uploader.stop()


@pytest.fixture
def b_killed(
    store: Store, moto: MotoS3, tmp_path: Path, box: SecretBox
) -> tuple[ObjectStore, Path, Path]:
    """b killed mid-session after uploading one part: (b's object store, spool, file)."""
    objects = store_for(moto, tmp_path, prefix="rec")
    spool = tmp_path / "b-spool"
    path = record_past_a_part(spool, box)
    open_on_b(store, path)
    upload_a_part_then_die(objects, spool, path, lambda *of: store.note_recording_progress(
        of[0], "b", of[1], of[2]))  # b's uploader tells the store how far it got  # fmt: skip
    assert store.recording_progress(SESSION) == (PART_SIZE, hashlib.sha256(
        path.read_bytes()[:PART_SIZE]).hexdigest())  # fmt: skip
    return objects, spool, path


def test_a_lost_nodes_recording_is_completed_cut_short_and_its_session_closed(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path], box: SecretBox,
    tmp_path: Path,
) -> None:  # fmt: skip
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    done = completer(store, objects, box=box).round()
    assert done.held and done.completed == [key] and done.closed == [SESSION]
    assert objects.uploads_in_progress(key) == []
    row = store.session(SESSION)
    assert row.state == "interrupted" and row.end_reason is not None
    assert row.end_reason.startswith("node b lost (not seen since")
    copy = tmp_path / "copy.cast"
    with copy.open("wb") as out:
        objects.download(key, out)
    assert (row.recording_sha256, row.recording_size) == file_digest(copy)
    assert row.recording_size == PART_SIZE  # the part b had uploaded, no more
    assert path.read_bytes()[:PART_SIZE] == copy.read_bytes()
    info = read_info(copy, box, SESSION)
    assert not info.complete and info.chunks > 1  # cut short: no final chunk
    assert read_recording(copy, box, SESSION).events  # replays up to the last whole chunk
    closed = details(store, "session.closed")[-1]
    assert closed["state"] == "interrupted"
    assert closed["lost_node"] == "b" and closed["closed_by"] == "a"
    completed = details(store, "recording.completed")
    assert len(completed) == 1 and completed[0]["cut_short"] is True
    assert completed[0]["parts"] == 1 and completed[0]["completed_by"] == "a"
    assert [e.actor for e in store.events() if e.kind == "recording.completed"] == ["node:a"]
    lost = details(store, "cluster.node_lost")
    assert len(lost) == 1 and lost[0]["sessions_closed"] == 1
    # `audit verify`'s check: the hash the chain holds, cut short but closed as interrupted
    assert chained_recording_problems(box, SESSION, closed, lambda p, s: copy) == []
    assert store.verify_chain().ok
    week = Week(START.strftime("%G-W%V"), START.date(), "UTC", START - timedelta(days=1),
                START + timedelta(days=6))  # fmt: skip
    assert session_log_problem(store, week) is None  # the row matches its chained close
    again = completer(store, objects, box=box).round()  # nothing left to do: nothing done twice
    assert again.completed == [] and again.closed == []
    assert len([e for e in store.events() if e.kind == "recording.completed"]) == 1


@pytest.mark.parametrize("silent", [timedelta(0), GRACE, GRACE + LOST_AFTER - timedelta(seconds=1)])
def test_a_node_that_may_still_be_alive_is_never_touched(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path],
    silent: timedelta,
) -> None:  # fmt: skip
    """b alive, or silent past its presence but not lost_after beyond: its upload stays in
    progress and its session open."""
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    clock.advance(silent)
    done = completer(store, objects).round()
    assert done.held and done.completed == [] and done.closed == [] and done.aborted == []
    assert len(objects.uploads_in_progress(key)) == 1
    assert store.session(SESSION).state == "open"
    assert not [e for e in store.events() if e.kind in ("recording.completed", "cluster.node_lost")]


def test_a_node_back_before_the_close_keeps_its_session(store: Store, clock: FakeClock) -> None:
    """The close re-checks in its own transaction that the node is still lost: b renewing
    its presence after the completer looked (partitioned, then back) keeps its session."""
    open_on_b(store, None)
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    since = store.lost_since("b", LOST_AFTER)
    assert since is not None
    store.take_lease(node_lease("b"), "b", GRACE, quiet=True)  # b is back
    assert store.lost_since("b", LOST_AFTER) is None
    assert not store.close_lost_session(SESSION, LostClose("b", "a", LOST_AFTER), since)
    assert store.forget_lost_node("b", LOST_AFTER, "a", 0) == 0
    assert store.session(SESSION).state == "open"


def test_two_completers_never_both_run(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path]
) -> None:
    """One lease: while a holds it, c does nothing; a that lost it mid-round (its lease
    expired, c took it) stops before its next step and completes nothing."""
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    a_first = completer(store, objects, "a")
    a_first._hold()  # a holds the lease (a round of its own began)
    assert completer(store, objects, "c").round().held is False
    steps: list[str] = []

    def stalls(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """a's store calls; a stalls past its lease after listing b's sessions, and c takes
        the lease meanwhile."""
        result = fn(*args, **kwargs)
        steps.append(fn.__name__)
        if fn.__name__ == "open_sessions_of":
            clock.advance(LOST_AFTER + timedelta(seconds=1))
            assert store.take_lease(LEASE, "c", LOST_AFTER, quiet=True) is not None
        return result

    stalled = Completer(store, stalls, objects, "a", LOST_AFTER)
    done = stalled.round()
    assert done.held and done.stopped.startswith("complete ") and done.completed == []
    assert len(objects.uploads_in_progress(key)) == 1
    assert store.session(SESSION).state == "open"
    assert "close_lost_session" not in steps


def test_sessions_without_a_recording_and_cancel_keys_of_a_lost_node_go(
    store: Store, clock: FakeClock
) -> None:
    """Without an object store: a lost node's sessions are closed (a recording on a disk
    no other node shares: missing, said so), and its database cancel keys go."""
    open_on_b(store, None, "s-pg")
    open_on_b(store, Path("/elsewhere/2026/12/07/s-ssh.cast"), "s-ssh")
    assert store.claim_cancel_pid(4242, "b", "10.0.0.2:6432", "s-pg")
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    done = completer(store, None, left=lambda path: None).round()
    assert sorted(done.closed) == ["s-pg", "s-ssh"]
    assert store.cancel_owner(4242) is None
    closes = {e.session_id: json.loads(e.detail) for e in store.events()
              if e.kind == "session.closed"}  # fmt: skip
    assert closes["s-ssh"]["recording_missing"] == "/elsewhere/2026/12/07/s-ssh.cast"
    assert "recording_missing" not in closes["s-pg"]
    lost = details(store, "cluster.node_lost")
    assert lost[0]["cancel_keys"] == 1 and lost[0]["sessions_closed"] == 2


def test_a_lost_recording_on_a_shared_disk_is_hashed_as_it_is(
    store: Store, clock: FakeClock, tmp_path: Path, box: SecretBox
) -> None:
    path = record_past_a_part(tmp_path / "shared", box)
    open_on_b(store, path)
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))

    def left(found: str) -> RecordingInfo:
        return RecordingInfo(found, *file_digest(Path(found)))

    assert completer(store, None, left=left).round().closed == [SESSION]
    row = store.session(SESSION)
    assert (row.recording_sha256, row.recording_size) == file_digest(path)


def test_the_node_itself_is_never_its_own_lost_node(store: Store, clock: FakeClock) -> None:
    open_on_b(store, None)
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    assert completer(store, None, "b").round().closed == []  # b's start-up closes its own


def test_a_node_returning_after_the_completer_keeps_the_object_the_chain_holds(  # noqa: PLR0917
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path], moto: MotoS3,
    tmp_path: Path, box: SecretBox,
) -> None:  # fmt: skip
    """b comes back after its recording was completed and its session closed: its uploader
    finds its crash's spool copy, but the object at the key is the one the chain holds:
    it is neither replaced nor re-uploaded; the spool copy stays, and an alarm says so."""
    objects, spool, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    assert completer(store, objects, box=box).round().completed == [key]
    held = store.session(SESSION).recording_sha256
    alarms: list[tuple[str, dict[str, object]]] = []

    def recorded(found: Path) -> str | None:
        return store.session(found.stem).recording_sha256

    back = Uploader(objects, spool, poll=0.05, recorded=recorded,
                    alarm=lambda kind, detail: alarms.append((kind, detail)))  # fmt: skip
    back.start()
    try:
        assert back.recover() == [path]
        wait_until(lambda: not back.pending())
        back.track(path)  # the path is never queued again by this process
        back.finish(path)
        assert back.pending() == []
    finally:
        back.stop()
    assert objects.sha256(key)[0] == held
    assert path.exists()
    assert [kind for kind, _ in alarms] == ["recording.upload_superseded"]
    assert objects.uploads_in_progress(key) == []
    # b's readers (replay, export, verify) read the object the chain holds, not its fuller
    # spool copy: the size the row holds tells them apart
    (tmp_path / "bastion.toml").write_text(
        moto.config(prefix="rec") + f'[paths]\nrecordings = "{spool}"\n', encoding="utf-8"
    )
    row = store.session(SESSION)
    with Fetcher(load_config(tmp_path / "bastion.toml")) as fetcher:
        found = fetcher.local(path, row.recording_size)
        assert found != path and file_digest(found) == (held, row.recording_size)
        assert fetcher.local(path) == path  # no size known: the spool's file, as before


def test_an_upload_left_for_a_closed_session_of_a_lost_node_is_completed_and_said_short(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path], box: SecretBox
) -> None:
    """b closed the session (with the whole spool file's hash), then died before its upload
    completed: the parts are completed so the bucket keeps what it can, and a high
    recording.completed says the object holds less than the session's recording."""
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    store.close_session(
        SESSION, "closed", "client left", RecordingInfo(str(path), *file_digest(path))
    )
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    done = completer(store, objects, box=box).round()
    assert done.completed == [key] and done.closed == []
    event = [e for e in store.events() if e.kind == "recording.completed"][-1]
    detail = json.loads(event.detail)
    assert event.severity == "high" and detail["cut_short"] is True
    assert detail["size"] == PART_SIZE and detail["session_size"] == path.stat().st_size


def test_a_partitioned_node_still_uploading_never_replaces_what_the_completer_finished(
    store: Store, clock: FakeClock, moto: MotoS3, tmp_path: Path, box: SecretBox
) -> None:
    """b was cut off from the store long enough to be lost, but its uploader still reaches
    the bucket: once the completer completed its upload and closed the session, b's next
    part finds no upload; it starts over, sees the object the chain holds, and stops there
    (the spool keeps b's fuller copy), so the object still matches the chain."""
    objects = store_for(moto, tmp_path, prefix="rec")
    spool = tmp_path / "b-spool"
    writer = make_writer(spool, box, session_id=SESSION)
    path = writer.path
    while path.stat().st_size < PART_SIZE + (1 << 20):
        writer.output(os.urandom(256 << 10).hex().encode(), 1.0)
        writer.flush()
    open_on_b(store, path)
    alarms: list[str] = []
    b = Uploader(objects, spool, poll=0.05,
                 recorded=lambda p: store.session(p.stem).recording_sha256,
                 alarm=lambda kind, _: alarms.append(kind))  # fmt: skip
    b.start()
    try:
        b.track(path)
        key = b.name(path)
        wait_until(
            lambda: [n for k, u in objects.uploads_in_progress(key) if (n := objects.parts(k, u))]
        )
        clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
        assert completer(store, objects, box=box).round().closed == [SESSION]
        held = store.session(SESSION).recording_sha256
        while path.stat().st_size < 2 * PART_SIZE + (1 << 20):  # b's session went on
            writer.output(os.urandom(256 << 10).hex().encode(), 2.0)
            writer.flush()
        writer.close()
        b.finish(path)  # b ended it on its own grace; its uploader sends the rest
        wait_until(lambda: not b.pending())
    finally:
        b.stop()
    assert alarms == ["recording.upload_superseded"]
    assert objects.sha256(key)[0] == held
    assert objects.uploads_in_progress(key) == []
    assert path.exists()


def test_an_upload_left_by_a_node_that_stopped_cleanly_waits_for_it(
    store: Store, clock: FakeClock, b_killed: tuple[ObjectStore, Path, Path]
) -> None:
    """b stopped cleanly (it gave its presence up) with an upload of a closed session still
    in progress: down for maintenance, its spool whole; nothing of it is completed."""
    objects, _, path = b_killed
    key = objects.key("/".join(path.parts[-4:]))
    store.close_session(SESSION, "closed", "client left",
                        RecordingInfo(str(path), *file_digest(path)))  # fmt: skip
    assert store.release_lease(node_lease("b"), "b")
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    done = completer(store, objects).round()
    assert done.completed == [] and done.aborted == []
    assert len(objects.uploads_in_progress(key)) == 1
    assert details(store, "recording.completed") == []


def test_cancel_keys_left_by_a_node_that_stopped_cleanly_go_without_calling_it_lost(
    store: Store, clock: FakeClock
) -> None:
    """b stopped cleanly (maintenance) and left a database cancel key: the key names nothing
    any more and goes, but b is not reported lost (no warning for a planned stop)."""
    store.take_lease(node_lease("b"), "b", GRACE, quiet=True)
    assert store.claim_cancel_pid(4243, "b", "10.0.0.2:6432", "s-gone")
    assert store.release_lease(node_lease("b"), "b")
    clock.advance(GRACE + LOST_AFTER + timedelta(seconds=1))
    completer(store, None).round()
    assert store.cancel_owner(4243) is None
    assert details(store, "cluster.node_lost") == []
