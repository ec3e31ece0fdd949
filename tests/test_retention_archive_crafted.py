"""Red team, `audit verify --archive` on crafted files: whatever the file holds (JSON nested
past Python's recursion limit, a header seq of Infinity or NaN, duplicate keys), verify
answers with one problem line and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion import retention_archive as ra
from bastion.privatefiles import write_new
from tests.test_retention_archive import archive, chain, check

DEEP = "[" * 100_000 + "]" * 100_000


def crafted(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "crafted.jsonl"
    write_new(path, "".join(line + "\n" for line in lines).encode(), 0o600)
    return path


def header(**fields: object) -> str:
    base: dict[str, object] = {"archive": ra.FORMAT, "from_seq": 1, "to_seq": 1,
                               "start_head": "", "made_at": "m", "node": "n"}  # fmt: skip
    return json.dumps({**base, **fields})


SEAL = json.dumps({"seal": {"seq": None, "sig": "x"}})
CASES = {
    "deep body line": [header(), DEEP, SEAL],
    "deep event": [header(), '{"event": ' + DEEP + "}", SEAL],
    "deep seal": [header(), '{"seal": {"seq": ' + DEEP + "}}"],
    "infinite from_seq": [header(from_seq=float("inf")), '{"event": {"seq": 1}}', SEAL],
    "nan from_seq": [header(from_seq=float("nan")), '{"event": {"seq": 1}}', SEAL],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_crafted_archive_is_one_problem_line(tmp_path: Path, case: str) -> None:
    facts, problem = check(crafted(tmp_path, CASES[case]))
    assert problem and "\n" not in problem, (facts, problem)


def test_a_duplicate_key_cannot_hide_an_event_from_a_signed_archive(tmp_path: Path) -> None:
    """The signature covers the bytes: a second "event" key in a line (the parser keeps the
    last) changes the body, so the archive fails as edited."""
    path = tmp_path / "a.jsonl"
    archive(path, chain(3))
    lines = path.read_bytes().split(b"\n")
    inner = json.dumps(json.loads(lines[2])["event"]).encode()
    lines[2] = b'{"event": ' + inner + b', "event": ' + inner + b"}"
    out = tmp_path / "b.jsonl"
    write_new(out, b"\n".join(lines), 0o600)
    assert check(out)[1] == "its content differs from what the seal signed (edited)"
