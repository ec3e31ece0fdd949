"""The access lifecycle end to end, through the real SSH door and an OpenSSH target: a request
made over SSH, refused self-approval, approval by another admin, the grant expiring under a
streaming shell, a pending request expiring, break-glass announced to a real webhook receiver,
and every step, in order, in the verified audit chain."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bastion.identity import totp
from bastion.ssh import selfservice
from tests.harness import Bastion
from tests.realssh import Sshd, free_port
from tests.ssh.test_door_admin import wait_until
from tests.ssh.test_door_expiry import streaming_until
from tests.ssh.test_door_sessions import closed_sessions

REASON = "INC-4411 refund stuck in queue"


class Receiver(ThreadingHTTPServer):
    """A local webhook endpoint that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", free_port()), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def lifecycle(tmp_path: Path, sshd: Sshd, receiver: Receiver) -> Iterator[Bastion]:
    policy = f"""
[notify]
webhook_url = "http://127.0.0.1:{receiver.server_address[1]}/hook"
[requests]
pending_for = "1h"
[targets.web-1]
approvals = 1
break_glass = true
break_glass_max = "30m"
"""
    b = Bastion(tmp_path / "bastion", policy)
    for name, role in (("alice", "engineer"), ("bob", "admin"), ("carol", "admin")):
        b.add_user(name, role)
    b.add_target("web-1", sshd)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def over_ssh(b: Bastion, tmp_path: Path, login: str, command: str) -> tuple[int, str, str]:
    """OpenSSH as the person in `login` (user or user+target), answering with fresh codes; a
    decision's own fresh code goes on stdin."""
    user = login.split("+", maxsplit=1)[0]
    ssh = b.openssh(user, tmp_path / user)
    code = None
    if selfservice.needs_code(command):
        code = f"{totp.code_for_step(b.seeds[user], totp.step_at(b.clock.now()) + 2)}\n"
    done = ssh.run_ssh(command, login=login, answers=b.answers(user),
                       input=code.encode() if code else None)  # fmt: skip
    return done.returncode, done.out, done.err


def test_request_approve_expire_and_break_glass(
    lifecycle: Bastion, receiver: Receiver, tmp_path: Path
) -> None:
    b = lifecycle
    asking = f'request web-1 --for 1h --mode read --reason "{REASON}"'
    status, out, _ = over_ssh(b, tmp_path, "alice", asking)
    assert status == 0 and "request 1: alice -> web-1 read for 1h: pending" in out

    status, _, err = over_ssh(b, tmp_path, "alice", "approve 1")
    assert status != 0 and "only admins may approve" in err
    over_ssh(b, tmp_path, "bob", f'request web-1 --for 2h --reason "{REASON}"')
    status, _, err = over_ssh(b, tmp_path, "bob", "approve 2")
    assert status != 0 and "bob asked for request 2; another admin must approve it" in err

    _, listing, _ = over_ssh(b, tmp_path, "carol", "requests")
    assert "pending, for you to decide:" in listing and REASON in listing
    status, out, _ = over_ssh(b, tmp_path, "carol", "approve 1")
    assert status == 0 and "approved (grant 1)" in out
    assert b.core.access.decide("alice", "web-1").allowed

    # The grant (1 h from approval) runs out under a streaming shell; bob's request, pending
    # for an hour, expires at the same time.
    err = streaming_until(b, lambda: b.clock.advance(timedelta(minutes=61)))
    assert "bastion: access to web-1 ended: grant 1 expired" in err
    [closed] = closed_sessions(b)
    assert closed.state == "grant_expired"
    wait_until(lambda: b.store.request(2).state == "expired")

    status, out, _ = over_ssh(
        b, tmp_path, "alice", 'break-glass web-1 --reason "INC-4412 site down"'
    )
    assert status == 0 and "BREAK-GLASS grant 2" in out
    status, out, _ = over_ssh(b, tmp_path, "alice+web-1", "echo still-here")
    assert status == 0 and out == "still-here\n"

    wait_until(lambda: len(receiver.bodies) == 4)
    events = [body["event"] for body in receiver.bodies]
    assert events == ["request.created", "request.created", "request.approved",
                      "breakglass.opened"]  # fmt: skip
    assert receiver.bodies[3]["severity"] == "high" and "alice" in receiver.bodies[3]["text"]

    wait_until(lambda: not b.store.sessions(open_only=True))
    assert b.store.verify_chain().ok
    # alice's steps happen one after another; bob's request expires on its own clock.
    alice = [e.kind for e in b.events() if e.subject in ("alice", "web-1")
             and e.kind.startswith(("request.", "grant.", "session.", "breakglass."))]  # fmt: skip
    assert alice == ["request.created", "grant.created", "request.approved", "session.opened",
                     "session.closed", "breakglass.opened", "session.opened",
                     "session.closed"]  # fmt: skip
    everyone = [(e.kind, e.subject) for e in b.events()]
    expired = everyone.index(("request.expired", "bob"))
    assert everyone.index(("request.created", "bob")) < expired
    assert expired < everyone.index(("breakglass.opened", "alice"))
