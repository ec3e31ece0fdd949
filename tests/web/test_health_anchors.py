"""/healthz reports the anchor sinks of a running `bastion serve`: when each last took the
chain's signed head and since when it fails, without naming where they are (a webhook's URL
may carry a token); and a round that hangs or a loop that stopped is failing, never the last
"ok" repeated (the injectable clock)."""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from bastion.anchoring import STALL, AnchorHealth
from bastion.clock import FakeClock, iso
from tests.harness import Bastion
from tests.realssh import free_port
from tests.test_store_grace import get, with_web

TOKEN = "hook-token-7f3a"


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def hook_on(port: int) -> Iterator[None]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def health_until(b: Bastion, url: str, predicate: Any, bound: float = 30) -> dict[str, Any]:
    """The health document once `predicate` holds for it (a safety net, not a timing)."""
    deadline = time.monotonic() + bound
    while True:
        status, said = get(b, url)
        if said["status"] != "starting" and predicate(said):  # "starting": a moment at most
            assert status == 200, said
            return dict(said)
        assert time.monotonic() < deadline, said
        time.sleep(0.1)


def test_healthz_reports_each_anchor_sink_of_a_running_serve(tmp_path: Path) -> None:
    mount = tmp_path / "anchors"
    mount.mkdir()
    hook = free_port()  # nothing listens there yet: the webhook fails
    sinks = f'["file:{mount}/anchors.log", "webhook:http://127.0.0.1:{hook}/h?token={TOKEN}"]'
    b = Bastion(tmp_path / "bastion", f'[audit]\nanchors = {sinks}\nanchor_every = "1s"\n')
    web = with_web(b)
    url = f"https://localhost:{web}/healthz"
    b.release()
    proc = b.serve_process()
    try:
        said = health_until(b, url, lambda s: s["anchors"]["sinks"][1]["status"] == "failing")
        assert said["status"] == "degraded" and TOKEN not in str(said)
        assert "127.0.0.1" not in str(said) and str(mount) not in str(said)
        anchors = said["anchors"]
        assert anchors["status"] == "failing" and anchors["failing_since"]
        assert anchors["last_written"] is None  # the webhook never took one
        file_sink, web_sink = anchors["sinks"]
        assert (file_sink["kind"], file_sink["status"]) == ("file", "ok")
        assert file_sink["last_written"] and file_sink["failing_since"] is None
        assert (web_sink["kind"], web_sink["last_written"]) == ("webhook", None)
        with hook_on(hook):  # the webhook answers: every sink took the head
            said = health_until(b, url, lambda s: s["anchors"]["status"] == "ok")
            assert said["status"] == "ok" and said["anchors"]["failing_since"] is None
            assert said["anchors"]["last_written"] >= anchors["failing_since"]
            shutil.rmtree(mount)  # the file sink's mount goes away
            said = health_until(b, url, lambda s: s["anchors"]["status"] == "failing")
        file_sink = said["anchors"]["sinks"][0]
        assert file_sink["status"] == "failing" and file_sink["failing_since"]
        assert file_sink["last_written"] < file_sink["failing_since"]  # kept: when it last took one
        assert said["status"] == "degraded"
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_round_that_hangs_or_a_loop_that_stopped_is_failing() -> None:
    clock = FakeClock()
    every = timedelta(minutes=1)
    health = AnchorHealth(["file:/mnt/a.log", "syslog"], every, clock)
    assert health.health()["status"] == "pending"  # before the first round
    health.began()
    health.ended([True, True])
    assert health.health()["status"] == "ok"
    assert health.health()["last_written"] == iso(clock.now())
    health.began()  # a round that never ends (a sink blocks on a dead mount)
    clock.advance(STALL + timedelta(seconds=1))
    said = health.health()
    assert said["status"] == "failing" and said["overdue"] is True
    assert said["failing_since"] == iso(clock.now() - timedelta(seconds=1))
    health.ended([True, True])  # it ended after all
    assert health.health()["status"] == "ok"
    clock.advance(every + STALL + timedelta(seconds=1))  # no round began since: the loop stopped
    assert health.health()["status"] == "failing"
    health.began()
    health.ended(None)  # the chain's head could not be read: no sink was tried
    said = health.health()
    assert said["status"] == "failing" and said["failing_since"] == iso(clock.now())


def test_a_wall_clock_step_does_not_make_a_round_overdue() -> None:
    clock = FakeClock()
    health = AnchorHealth(["syslog"], timedelta(minutes=1), clock)
    health.began()
    health.ended([True])
    clock.set(clock.now() + timedelta(days=1))  # a step: no time passed
    assert health.health()["status"] == "ok"
