"""Red-team tests of the web console reading recordings from S3-compatible storage (issue 18):
an insider with a console login and a hostile or slow object store (tests/hostiles3.py), and
someone who can write the bucket (moto_server)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from bastion.access.viewing import Viewer
from bastion.console import reviewer
from bastion.core import Core
from bastion.recording import fetch
from bastion.recording.fetch import Fetcher
from bastion.recording.upload import Uploader
from tests.hostiles3 import HostileS3
from tests.reals3 import BUCKET, MotoS3
from tests.web.conftest import Console, running, signed_in

SAFETY_NET = 10.0  # seconds: a net for a hang, never a timing assertion


async def get_json(http: aiohttp.ClientSession, path: str) -> tuple[int, object]:
    async with http.get(path) as answer:
        return answer.status, await answer.json()


def spool_file(found: Console, session_id: str) -> Path:
    session = found.store.session(session_id)
    assert session is not None and session.recording_path is not None
    return Path(session.recording_path)


async def until(predicate: Callable[[], object], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not predicate():
        assert loop.time() < deadline, f"safety net: {what}"
        await asyncio.sleep(0.05)


async def test_a_hanging_object_store_never_holds_the_threads_sessions_flush_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engineer asks the console for their own recording many times at once while the
    object store trickles (a hostile store, or a slow one and a big recording). Each ask
    downloads in asyncio's default thread pool (asyncio.to_thread), the very pool in which
    the SSH door flushes and closes every live recording (bastion/ssh/tap.py): once the
    downloads hold all its threads, no session's recording is flushed or closed until the
    store lets go. A job put in that pool must still run while the store hangs."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports conftest)

    workers = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default
    monkeypatch.setattr(fetch._console, "per_user", workers + 2)  # bob's own cap aside
    with HostileS3(head_size=2000, hang=True) as hostile:
        credentials = hostile.write_credentials(tmp_path / "s3.credentials")
        extra = hostile.config(str(credentials))
        async with running(tmp_path / "bastion", before=reviewed_world, extra=extra) as found:
            spool_file(found, "s-bob").unlink()  # uploaded, checked and removed (as on a node)
            http, _ = await signed_in(found, "bob")
            async with http:
                asks = [asyncio.ensure_future(get_json(http, "/api/v1/review/recording?"
                                                             "session=s-bob"))
                        for _ in range(workers + 2)]  # fmt: skip
                try:
                    await until(lambda: hostile.hanging >= workers, "downloads held")
                    probe = asyncio.ensure_future(asyncio.to_thread(lambda: "flushed"))
                    done, _ = await asyncio.wait({probe}, timeout=SAFETY_NET)
                finally:
                    hostile.release()
                    await asyncio.gather(*asks, return_exceptions=True)
                await probe
    assert probe in done, "the object store held every thread a session's flush runs in"


async def test_a_recording_too_large_for_the_browser_is_refused_before_it_is_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console refuses a recording larger than its player takes, but only after the
    whole object has been copied from the bucket: an engineer can make a huge session of
    their own and have the console download it again and again (disk, bandwidth, threads)
    for an answer it could give from the session row's size before any download."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports conftest)

    monkeypatch.setattr(reviewer, "MAX_BROWSER_RECORDING", 100)  # bytes; s-bob's holds more
    with HostileS3(head_size=5000) as hostile:
        credentials = hostile.write_credentials(tmp_path / "s3.credentials")
        extra = hostile.config(str(credentials))
        async with running(tmp_path / "bastion", before=reviewed_world, extra=extra) as found:
            spool_file(found, "s-bob").unlink()
            http, _ = await signed_in(found, "bob")
            async with http:
                status, refused = await get_json(http, "/api/v1/review/recording?session=s-bob")
    assert status == 400 and "bastion replay s-bob" in str(refused)
    assert hostile.gets == 0, "the object was downloaded before the size was checked"


async def test_an_unauthorised_viewer_makes_no_download(tmp_path: Path) -> None:
    """bob may not read alice's session: the console answers 404 without touching the bucket
    (no download, no temporary copy)."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports conftest)

    with HostileS3(head_size=5000) as hostile:
        credentials = hostile.write_credentials(tmp_path / "s3.credentials")
        extra = hostile.config(str(credentials))
        async with running(tmp_path / "bastion", before=reviewed_world, extra=extra) as found:
            spool_file(found, "s-alice").unlink()
            http, _ = await signed_in(found, "bob")
            async with http:
                status, _ = await get_json(http, "/api/v1/review/recording?session=s-alice")
            assert status == 404
    assert hostile.gets == 0


async def test_another_sessions_valid_recording_swapped_into_the_bucket_is_refused(
    tmp_path: Path,
) -> None:
    """Someone who can write the bucket copies alice's (valid, encrypted) recording over the
    object of bob's session: bob's player must refuse it (the chunks are bound to their
    session), chain no viewing, and show nothing of alice's session."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports conftest)

    with MotoS3(tmp_path) as moto:
        moto.start()
        credentials = moto.write_credentials(tmp_path / "s3.credentials")
        extra = moto.config(credentials=str(credentials))
        async with running(tmp_path / "bastion", before=reviewed_world, extra=extra) as found:
            spool = found.core.config.paths.recordings
            await until(lambda: not list(spool.rglob("*.cast")), "uploads done")
            keys = moto.object_keys()
            [alice] = [k for k in keys if k.endswith("/s-alice.cast")]
            [bob] = [k for k in keys if k.endswith("/s-bob.cast")]
            moto.client().put_object(Bucket=BUCKET, Key=bob, Body=moto.read(alice))
            http, _ = await signed_in(found, "bob")
            async with http:
                status, answer = await get_json(http, "/api/v1/review/recording?session=s-bob")
            assert status != 200, answer
            assert "ls /srv" not in str(answer) and "backups" not in str(answer)
            assert found.events("recording.replayed") == []


async def test_a_spool_copy_removed_mid_request_is_never_downloaded_on_the_stores_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console asks 'is the spool copy there?' in one store call and reads the recording
    in the next; the uploader removes spool copies at any moment in between (it does so
    right after checking an upload). Then fetcher.local downloads the object inside the
    second call, on the store's single thread, which every door waits on (logins, session
    rows, the audit chain): an engineer who asks for a session that has just closed stalls
    the whole bastion for as long as the download takes (a big recording, a slow store).
    The uploader's removal is put in that window here (the real check runs first)."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports conftest)

    checked = reviewer.recording_to_fetch

    def check_then_uploaded(core: Core, who: Viewer, session_id: str) -> Path | None:
        found = checked(core, who, session_id)
        spool_file(running_console[0], session_id).unlink()  # the uploader, just then
        return found

    running_console: list[Console] = []
    monkeypatch.setattr(reviewer, "recording_to_fetch", check_then_uploaded)
    with HostileS3(head_size=2000, hang=True) as hostile:
        credentials = hostile.write_credentials(tmp_path / "s3.credentials")
        extra = hostile.config(str(credentials))
        async with running(tmp_path / "bastion", before=reviewed_world, extra=extra) as found:
            running_console.append(found)
            http, _ = await signed_in(found, "bob")
            async with http:
                ask = asyncio.ensure_future(
                    get_json(http, "/api/v1/review/recording?session=s-bob")
                )
                try:
                    await until(lambda: hostile.hanging >= 1, "the download begun")
                    probe = asyncio.ensure_future(found.core.run(lambda: "the store answers"))
                    done, _ = await asyncio.wait({probe}, timeout=SAFETY_NET)
                finally:
                    hostile.release()
                    await asyncio.gather(ask, return_exceptions=True)
                await probe
    assert probe in done, "a download from the object store held the store's thread"


async def test_a_hanging_object_store_does_not_hold_the_doors_shut_at_start(
    tmp_path: Path,
) -> None:
    """The object store accepts connections and never answers (a brown-out, a proxy that
    hangs). `bastion serve` checks the bucket before it opens any door and waits for that
    check (connect 5 s, read 30 s, two attempts: about a minute, each restart): during an
    incident that takes the store down, every node restarted locks everyone out for that
    long. Only credentials the store refuses should stop the start; a store that does
    not answer must only delay uploads, as an unreachable one does."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports conftest)

    with HostileS3(hang_bucket=True) as hostile:
        credentials = hostile.write_credentials(tmp_path / "s3.credentials")
        extra = hostile.config(str(credentials))
        serving = running(tmp_path / "bastion", before=reviewed_world, extra=extra)
        start = asyncio.ensure_future(serving.__aenter__())
        try:
            await until(lambda: hostile.hanging >= 1 or start.done(), "the start-up check")
            done, _ = await asyncio.wait({start}, timeout=SAFETY_NET)
        finally:
            hostile.release()
            await start
            await serving.__aexit__(None, None, None)
    assert start in done, "the doors stayed shut while the object store did not answer"


async def test_a_spool_copy_removed_after_it_was_found_is_read_from_the_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker finds the spool's file; the uploader removes it before the store's thread
    reads it: the console fetches it from the bucket once more (in the worker) and shows it,
    rather than answering that the recording is missing."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports conftest)

    real = Fetcher.local

    def found_then_uploaded(fetcher: Fetcher, recorded: Path, limit: int | None = None) -> Path:
        path = real(fetcher, recorded, limit)
        if path == recorded:
            recorded.unlink()  # the uploader, just then
        return path

    monkeypatch.setattr(Fetcher, "local", found_then_uploaded)
    with MotoS3(tmp_path) as moto:
        moto.start()
        credentials = moto.write_credentials(tmp_path / "s3.credentials")
        extra = moto.config(credentials=str(credentials)) + "keep_spool = true\n"
        async with running(tmp_path / "bastion", before=reviewed_world, extra=extra) as found:
            uploads = found.core.uploads
            assert isinstance(uploads, Uploader)
            await until(lambda: not uploads.pending(), "uploads done")
            assert spool_file(found, "s-bob").exists()
            http, _ = await signed_in(found, "bob")
            async with http:
                status, answer = await get_json(http, "/api/v1/review/recording?session=s-bob")
            assert status == 200, answer
            assert not spool_file(found, "s-bob").exists()
            assert len(found.events("recording.replayed")) == 1


async def test_one_user_cannot_take_every_download_slot_of_the_console(tmp_path: Path) -> None:
    """bob asks for his own recording again and again while the object store hangs: each ask
    held a download thread and a slot until the deadline, so one engineer could take every
    slot and lock every reviewer out of the recordings. Past his own cap bob is refused at
    once, and alice still gets hers fetched."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports conftest)

    cap = fetch._console.per_user
    with HostileS3(head_size=100, hang=True) as hostile:  # less than either recording
        credentials = hostile.write_credentials(tmp_path / "s3.credentials")
        extra = hostile.config(str(credentials))
        async with running(tmp_path / "bastion", before=reviewed_world, extra=extra) as found:
            for session_id in ("s-bob", "s-alice"):
                spool_file(found, session_id).unlink()  # uploaded, checked and removed
            bob, _ = await signed_in(found, "bob")
            alice, _ = await signed_in(found, "alice")
            async with bob, alice:
                asks = [asyncio.ensure_future(get_json(bob, "/api/v1/review/recording?"
                                                            "session=s-bob"))
                        for _ in range(cap + 1)]  # fmt: skip
                try:
                    await until(lambda: hostile.hanging >= cap, "bob's downloads held")
                    first = asyncio.FIRST_COMPLETED
                    refused, _ = await asyncio.wait(asks, timeout=SAFETY_NET, return_when=first)
                    hers = asyncio.ensure_future(get_json(alice, "/api/v1/review/recording?"
                                                                 "session=s-alice"))  # fmt: skip
                    await until(lambda: hostile.hanging >= cap + 1 or hers.done(), "alice's")
                    held = hostile.hanging
                finally:
                    hostile.release()
                    await asyncio.gather(*asks, return_exceptions=True)
    assert len(refused) == 1, "bob's ask past his cap was not refused at once"
    status, said = next(iter(refused)).result()
    assert status != 200 and "already" in str(said), said
    assert held == cap + 1, "alice's download was refused while only bob's were under way"
    await asyncio.gather(hers, return_exceptions=True)
