"""The live feed to a real syslog receiver over TLS (RFC 5425): taken down during activity
and brought back, it ends up with every event once, in order, each MAC holding."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bastion.audit import ChainedEvent, ChainKey, Store
from bastion.audit.chain import keyed_row_holds
from bastion.pki import make_tls
from bastion.server import ServeError
from tests.export.receivers import SyslogReceiver, tls_receiver
from tests.harness import Bastion


def wait_until(check: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def caught_up(b: Bastion, sink: str, what: str) -> None:
    """Wait until `sink`'s cursor in the store reaches the chain's head."""
    wait_until(lambda: b.store.export_cursor(sink) == b.store.chain_head()[0], what)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[SyslogReceiver]:
    with tls_receiver(tmp_path / "siem-tls") as server:
        yield server


def syslog_config(receiver: SyslogReceiver, **extra: str) -> str:
    lines = [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join([
        "[export.siem]", 'kind = "syslog"', f'address = "127.0.0.1:{receiver.port}"',
        f'tls_ca = "{receiver.cert.parent / "bastion-ca.pem"}"', 'server_name = "localhost"',
        'retry_after = "1s"', 'retry_max = "1s"', 'alert_after = "5m"', *lines, "",
    ])  # fmt: skip


def chained(b: Bastion) -> list[ChainedEvent]:
    """The whole chain, from the store reopened after the bastion stopped."""
    store = Store.open(b.store_at, b.clock, ChainKey.of(b.box))
    try:
        return store.events()
    finally:
        store.close()


def activity(b: Bastion, names: range) -> None:
    """Admin actions, each chaining events: people enrolled, targets granted, disabled."""
    for n in names:
        b.core.identity.enrol(f"user{n}", "engineer", None, "test")
        if n % 3 == 0:
            b.store.disable_user(f"user{n}", actor="test", reason="left the company")


@pytest.mark.parametrize("batch", [500, 4])
def test_every_event_arrives_once_in_order_across_an_outage(
    tmp_path: Path, receiver: SyslogReceiver, batch: int
) -> None:
    b = Bastion(tmp_path / "bastion", syslog_config(receiver, batch=str(batch)))
    b.start()
    try:
        activity(b, range(0, 10))
        wait_until(lambda: receiver.highest() == b.store.chain_head()[0], "the first events")
        receiver.stop()
        activity(b, range(10, 30))  # the receiver is down: the doors and the chain go on
        exporter = b.core.exporting
        assert exporter is not None
        wait_until(lambda: exporter.health()[0]["status"] == "failing", "the sink to fail")
        [state] = exporter.health()
        assert state["error"] in ("connection refused", "connection reset", "TLS error",
                                  "the receiver closed the connection")  # fmt: skip
        assert str(receiver.port) not in str(state)
        b.clock.advance(301)  # failing for longer than alert_after: one event says so
        wait_until(lambda: b.events("export.sink_failing"), "the failing event")
        activity(b, range(30, 40))
        receiver.start()
        wait_until(lambda: b.events("export.sink_recovered"), "the recovered event")
        wait_until(lambda: receiver.highest() == b.store.chain_head()[0], "every event")
        assert exporter.health()[0]["status"] == "ok"
    finally:
        b.stop()
    events = chained(b)
    got = receiver.deduped()
    assert [m.seq for m in got] == [e.seq for e in events[: len(got)]]
    assert [m.seq for m in got] == list(range(1, len(got) + 1))  # contiguous, from the first
    assert got[-1].seq >= events[-1].seq - 1  # bastion.stopped may be chained after the close
    assert receiver.connections[-1][0].seq == 1  # the replay: everything before it (< 1000)
    for connection in receiver.connections:  # in order on each connection; a repeat only as
        seqs = [m.seq for m in connection]  # the replay that opens a new connection
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True, str(seqs)
    assert not receiver.errors
    assert [e.kind for e in events].count("export.sink_failing") == 1
    assert [e.kind for e in events].count("export.sink_recovered") == 1
    key = ChainKey.of(b.box)
    stored = {e.seq: e for e in events}
    for message in got:
        assert keyed_row_holds(message.event(), key)  # the MAC holds, under the chain key
        assert message.event() == stored[message.seq]  # the stored (redacted) detail, as is
        assert message.msgid == stored[message.seq].kind[:32]
    for previous, message in itertools.pairwise(got):
        assert message.record["prev"] == previous.mac  # and each links to the one before
    for seed in b.seeds.values():
        assert seed.encode() not in receiver.raw
    assert key.secret.hex().encode() not in receiver.raw


def test_a_filtered_sink_takes_only_its_kinds_and_severities(
    tmp_path: Path, receiver: SyslogReceiver
) -> None:
    config = syslog_config(receiver, min_severity='"notice"', kinds='["user.*", "bastion.*"]')
    b = Bastion(tmp_path / "bastion", config)
    b.start()
    try:
        activity(b, range(0, 6))
        caught_up(b, "siem", "the cursor")
    finally:
        b.stop()
    wanted = [e.seq for e in chained(b) if e.kind.startswith("export.") or (e.severity != "info"
              and e.kind.split(".")[0] in ("user", "bastion"))]  # fmt: skip
    assert chained(b)[0].kind == "export.sink_configured"  # the feed's own: every filter's
    assert [m.seq for m in receiver.deduped()] == wanted[: len(receiver.deduped())]
    assert wanted and len(receiver.deduped()) >= len(wanted) - 1  # bastion.stopped: after


@pytest.mark.parametrize("wrong", ["another CA", "another name"])
def test_a_receiver_that_cannot_prove_itself_gets_nothing(
    tmp_path: Path, receiver: SyslogReceiver, wrong: str
) -> None:
    config = syslog_config(receiver)
    if wrong == "another CA":
        other = make_tls(tmp_path / "other-tls").ca_cert
        config = config.replace(str(receiver.cert.parent / "bastion-ca.pem"), str(other))
    else:
        config = config.replace('server_name = "localhost"', 'server_name = "siem.example.com"')
    b = Bastion(tmp_path / "bastion", config)
    b.start()
    try:
        activity(b, range(0, 3))
        exporter = b.core.exporting
        assert exporter is not None
        wait_until(lambda: exporter.health()[0]["status"] == "failing", "the sink to fail")
        assert exporter.health()[0]["error"] == "TLS: the receiver's certificate is not trusted"
        assert b.store.export_cursor("siem") == 0
    finally:
        b.stop()
    assert receiver.seqs() == [] and bytes(receiver.raw) == b""


def test_a_sinks_unreadable_ca_stops_the_start_with_one_line(
    tmp_path: Path, receiver: SyslogReceiver
) -> None:
    config = syslog_config(receiver).replace(
        str(receiver.cert.parent / "bastion-ca.pem"), str(tmp_path / "missing-ca.pem")
    )
    b = Bastion(tmp_path / "bastion", config)
    try:
        with pytest.raises(ServeError) as caught:
            b.start()
        assert str(caught.value) == (
            "export.siem.tls_ca: cannot read it (No such file or directory)"
        )
        assert not b.events("bastion.started")
    finally:
        b.stop()
