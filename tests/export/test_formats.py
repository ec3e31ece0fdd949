"""The export's formats: RFC 5424 messages, RFC 5425 frames read strictly, filters."""

from __future__ import annotations

import json
import re

import pytest

from bastion.audit.chain import ChainedEvent, ChainKey, Event, canonical_json, keyed_row_holds, link
from bastion.export.formats import (
    FrameError,
    FrameReader,
    SinkFilter,
    json_line,
    kind_pattern_problem,
    octet_frame,
    syslog_message,
    webhook_body,
)
from tests.export.receivers import parse_message

KEY = ChainKey(bytes(range(32)))


def chained(kind: str = "session.opened", severity: str = "info", seq: int = 7) -> ChainedEvent:
    event = Event(kind, "alice", "web-1", severity, "s-1", {"note": 'a "quoted" ] é'})
    return link(event, seq, "2026-12-07T09:00:00.000001Z", "ab" * 32, KEY.secret)


def test_a_syslog_message_is_rfc5424_with_seq_and_mac_in_structured_data() -> None:
    event = chained(severity="high")
    message = syslog_message(event, "node-1", "auth").decode("ascii")
    pri, rest = re.fullmatch(r"<(\d+)>1 (.*)", message).groups()  # type: ignore[union-attr]
    assert int(pri) == 4 * 8 + 2  # auth, critical
    at, host, app, procid, msgid, sd_and_msg = rest.split(" ", 5)
    assert (at, host, app, procid, msgid) == (event.at, "node-1", "bastion", "-", "session.opened")
    sd = re.match(r'\[bastion@32473 seq="(\d+)" mac="([0-9a-f]{64})" prev="([0-9a-f]{64})"'
                  r' alg="hmac-sha256"\] ', sd_and_msg)  # fmt: skip
    assert sd is not None and sd.groups() == ("7", event.row_hash, event.prev_hash)
    body = json.loads(sd_and_msg[sd.end() :])
    assert body["detail"] == json.loads(event.detail) and body["mac"] == event.row_hash


def test_severities_map_to_syslog_severities() -> None:
    found = {s: int(syslog_message(chained(severity=s), "n").split(b">")[0][1:]) % 8
             for s in ("info", "notice", "warning", "high")}  # fmt: skip
    assert found == {"info": 6, "notice": 5, "warning": 4, "high": 2}


def test_a_record_rebuilds_the_mac_with_the_key() -> None:
    event = chained()
    line = json.loads(json_line(event))
    again = ChainedEvent(line["seq"], line["at"], line["kind"], line["severity"], line["actor"],
                         line["subject"], line["session_id"], canonical_json(line["detail"]),
                         line["prev"], line["mac"], line["alg"])  # fmt: skip
    assert keyed_row_holds(again, KEY)
    assert not keyed_row_holds(again, ChainKey(bytes(32)))


def test_frames_are_read_whole_byte_by_byte_and_with_trailing_data() -> None:
    messages = [syslog_message(chained(seq=n), "n") for n in range(1, 4)]
    stream = b"".join(octet_frame(m) for m in messages)
    assert FrameReader().feed(stream) == messages
    reader, got = FrameReader(), []
    for byte in stream:
        got += reader.feed(bytes([byte]))
    assert got == messages and reader.pending == 0
    reader = FrameReader()
    assert reader.feed(stream + b"12 abc") == messages and reader.pending == 6


@pytest.mark.parametrize("garbage", [b"<14>1 no length", b"012 leading zero",
                                     b"999999999 too long", b"12x3 abc", b" 3 abc"])  # fmt: skip
def test_a_receiver_refuses_what_is_not_a_frame(garbage: bytes) -> None:
    with pytest.raises(FrameError):
        FrameReader(max_frame=1 << 20).feed(garbage)


def test_filters_by_minimum_severity_and_kind() -> None:
    audit = SinkFilter("warning", ("session.*", "grant.approved"))
    assert audit.takes("session.opened", "high")
    assert not audit.takes("session.opened", "notice")
    assert audit.takes("grant.approved", "warning")
    assert not audit.takes("grant.approved_x", "high")
    assert not audit.takes("sessionx.opened", "high")  # a prefix ends at the dot
    assert SinkFilter().takes("anything.at_all", "info")
    assert kind_pattern_problem("session.*") == ""
    assert kind_pattern_problem("sess*") != "" and kind_pattern_problem("") != ""


def test_a_webhook_batch_names_the_sink_and_keeps_seq_order() -> None:
    body = json.loads(webhook_body("siem", "node-1", [chained(seq=1), chained(seq=2)]))
    assert body["sink"] == "siem" and [e["seq"] for e in body["events"]] == [1, 2]


def test_what_a_user_typed_cannot_forge_a_frame_or_structured_data() -> None:
    forged = '"] 12 <13>1 - - - - fake\n77 [bastion@32473 seq="1"]'
    event = link(Event("session.opened", forged, forged, "info", forged, {"sql": forged}), 9,
                 "2026-12-07T09:00:00.000001Z", "ab" * 32, KEY.secret)  # fmt: skip
    message = syslog_message(event, forged)
    [frame] = FrameReader().feed(octet_frame(message))
    assert frame == message and b"\n" not in message
    parsed = parse_message(frame)  # the receiver's strict reading: header, SD, then JSON
    assert (parsed.seq, parsed.mac, parsed.msgid) == (9, event.row_hash, "session.opened")
    assert parsed.record["actor"] == forged and parsed.record["detail"] == {"sql": forged}
    host = message.split(b" ")[2]
    assert host == b'"]12<13>1----fake77[bastion@32473seq="1"]'  # printable, no space
