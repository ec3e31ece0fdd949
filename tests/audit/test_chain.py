"""The hash chain on its own: linking, and naming the first broken row."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bastion.audit import chain
from bastion.audit.chain import ChainedEvent, Event

KEY = bytes(range(32))
AT = "2026-01-05T09:00:00.000000Z"


def build(
    count: int, key: bytes | None = None, after: list[ChainedEvent] | None = None
) -> list[ChainedEvent]:
    """count events after `after` (default none); with a key after unkeyed rows, a keying
    event comes first."""
    rows: list[ChainedEvent] = list(after or [])
    prev = rows[-1].row_hash if rows else chain.GENESIS
    events = [Event("test.event", "tester", detail={"n": n}) for n in range(1, count + 1)]
    if key is not None and rows:
        events.insert(0, Event(chain.KEYED_KIND, "bastion", detail={"unkeyed_head": prev}))
    for event in events:
        row = chain.link(event, len(rows) + 1, AT, prev, key)
        rows.append(row)
        prev = row.row_hash
    return rows


def rehash(rows: list[ChainedEvent], key: bytes | None) -> list[ChainedEvent]:
    """What someone with the files does after deleting rows: link what is left again."""
    out: list[ChainedEvent] = []
    prev = chain.GENESIS
    for seq, row in enumerate(rows, 1):
        event = Event(row.kind, row.actor, row.subject, row.severity, row.session_id,
                      json.loads(row.detail))  # fmt: skip
        out.append(chain.link(event, seq, row.at, prev, key))
        prev = out[-1].row_hash
    return out


def test_an_untouched_chain_verifies() -> None:
    rows = build(50)
    verdict = chain.verify(rows)
    assert verdict.ok
    assert verdict.checked == 50
    assert verdict.head_seq == 50
    assert verdict.head_hash == rows[-1].row_hash


def test_an_empty_chain_verifies() -> None:
    verdict = chain.verify([])
    assert verdict.ok and verdict.head_seq == 0 and verdict.head_hash == chain.GENESIS


def test_canonical_json_ignores_key_order() -> None:
    assert chain.canonical_json({"b": 1, "a": [1, "é"]}) == chain.canonical_json(
        {"a": [1, "é"], "b": 1}
    )


@given(st.integers(min_value=1, max_value=20), st.data())
def test_any_edit_is_named(count: int, data: st.DataObject) -> None:
    rows = build(count)
    victim = data.draw(st.integers(min_value=0, max_value=count - 1))
    field = data.draw(st.sampled_from(["at", "kind", "severity", "actor", "subject", "detail"]))
    value: str = getattr(rows[victim], field) + "x" if field != "severity" else "high"
    if field == "severity" and rows[victim].severity == "high":
        value = "info"
    changes: dict[str, Any] = {field: value}
    rows[victim] = dataclasses.replace(rows[victim], **changes)
    verdict = chain.verify(rows)
    assert not verdict.ok
    assert verdict.bad_seq == victim + 1
    assert f"event {victim + 1} was edited" in verdict.problem


@given(st.integers(min_value=2, max_value=20), st.data())
def test_any_deletion_is_named(count: int, data: st.DataObject) -> None:
    rows = build(count)
    victim = data.draw(st.integers(min_value=0, max_value=count - 2))
    del rows[victim]
    verdict = chain.verify(rows)
    assert not verdict.ok
    assert verdict.bad_seq == victim + 1
    assert f"event {victim + 1} is missing" in verdict.problem


def test_rehashing_an_edited_row_breaks_the_next_link() -> None:
    rows = build(5)
    edited = dataclasses.replace(rows[2], detail='{"n":999}')
    rehashed = chain.link(
        Event("test.event", "tester", detail={"n": 999}), 3, rows[2].at, rows[2].prev_hash, None
    )
    assert rehashed.detail == edited.detail
    rows[2] = rehashed
    verdict = chain.verify(rows)
    assert not verdict.ok
    assert verdict.bad_seq == 4
    assert "does not follow event 3" in verdict.problem


def test_swapped_rows_are_out_of_order() -> None:
    rows = build(6)
    a, b = rows[2], rows[3]
    rows[2] = dataclasses.replace(b, seq=3)
    rows[3] = dataclasses.replace(a, seq=4)
    verdict = chain.verify(rows)
    assert not verdict.ok
    assert verdict.bad_seq == 3
    assert "does not follow" in verdict.problem


def test_anchor_catches_a_truncated_tail() -> None:
    rows = build(10)
    verdict = chain.verify(rows[:8])
    assert verdict.ok
    problem = chain.check_anchor(verdict, 10, rows[9].row_hash, None)
    assert "deleted from the end" in problem
    assert chain.check_anchor(chain.verify(rows), 10, rows[9].row_hash, rows[9].row_hash) == ""
    assert "differs" in chain.check_anchor(chain.verify(rows), 10, "f" * 64, rows[9].row_hash)


def test_a_keyed_chain_verifies_with_its_key_only() -> None:
    rows = build(20, KEY)
    verdict = chain.verify(rows, KEY)
    assert verdict.ok and verdict.checked == 20 and verdict.keyed_from == 1
    wrong = chain.verify(rows, bytes(32))
    assert not wrong.ok and wrong.bad_seq == 1 and "re-hashed without the key" in wrong.problem
    assert "secrets key" in chain.verify(rows).problem  # without a key it cannot be checked


def test_a_chain_rehashed_without_the_key_is_caught() -> None:
    rows = build(30, KEY)
    kept = rows[:10] + rows[25:]  # 15 events deleted from the middle
    for guess in (bytes(32), b"k" * 32):
        verdict = chain.verify(rehash(kept, guess), KEY)
        assert not verdict.ok and verdict.bad_seq == 1
        assert "re-hashed without the key" in verdict.problem
    verdict = chain.verify(rehash(kept, None), KEY)  # re-hashed as an unkeyed chain
    assert not verdict.ok and "holds no keyed event" in verdict.problem


def test_an_unkeyed_prefix_verifies_up_to_the_keying_event() -> None:
    legacy = build(5)
    rows = build(4, KEY, after=legacy)
    assert rows[5].kind == chain.KEYED_KIND and rows[5].prev_hash == legacy[-1].row_hash
    verdict = chain.verify(rows, KEY)
    assert verdict.ok and verdict.keyed_from == 6 and verdict.checked == 10
    # an unkeyed row after the keying event is refused, however well it is hashed
    tail = rows[-1]
    forged = chain.link(Event("test.event", "tester"), 11, AT, tail.row_hash, None)
    verdict = chain.verify([*rows, forged], KEY)
    assert not verdict.ok and verdict.bad_seq == 11
    # the column saying how a row is MACed is checked against its place
    relabelled = dataclasses.replace(legacy[2], alg=chain.KEYED)
    verdict = chain.verify([*legacy[:2], relabelled, *rows[3:]], KEY)
    assert not verdict.ok and verdict.bad_seq == 3


@given(st.binary(min_size=1, max_size=100), st.text(max_size=50))
def test_the_row_mac_is_standard_hmac_sha256(key: bytes, text: str) -> None:
    content: list[Any] = [1, "at", "kind", "info", text, "", None, "{}"]
    message = f"{chain.GENESIS}\n{chain.canonical_json(content[:-1])}\n{{}}".encode()
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    assert chain.row_mac(key, chain.GENESIS, content) == expected


def test_an_empty_chain_fails_when_a_key_is_expected() -> None:
    verdict = chain.verify([], KEY)
    assert not verdict.ok and "empty" in verdict.problem


def test_events_refuse_unknown_severity() -> None:
    try:
        Event("x", "y", severity="urgent")
    except ValueError as exc:
        assert "severity" in str(exc)
    else:
        raise AssertionError("an unknown severity was accepted")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_is_the_standard_encoders_text(value: object) -> None:
    """The chain's hashes must not depend on how the encoder is reached: a store written
    before the prebuilt encoder verifies after it."""
    standard = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert chain.canonical_json(value) == standard
