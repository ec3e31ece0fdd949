"""The hash chain on its own: linking, and naming the first broken row."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bastion.audit import chain
from bastion.audit.chain import ChainedEvent, Event


def build(count: int) -> list[ChainedEvent]:
    rows: list[ChainedEvent] = []
    prev = chain.GENESIS
    for seq in range(1, count + 1):
        row = chain.link(
            Event("test.event", "tester", detail={"n": seq}),
            seq,
            "2026-01-05T09:00:00.000000Z",
            prev,
        )
        rows.append(row)
        prev = row.row_hash
    return rows


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
        Event("test.event", "tester", detail={"n": 999}), 3, rows[2].at, rows[2].prev_hash
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
