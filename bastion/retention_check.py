"""A retention archive checked in one pass, a line at a time: its shape, its events' chain
walk and its body's SHA-256 (bastion/retention_archive.py reads the file and checks the seal).

What it finds, and in what order it says so, is as if the whole file were parsed first: the
seal line's shape, then the first line that is not JSON, then the header; then (once the
seal's signature and digest hold) the first event that is not one, then the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from bastion.audit.chain import GENESIS, ChainedEvent, Walk

KINDS = ("event", "query", "recording")


def loads(line: bytes) -> Any:
    """One line's JSON; ValueError for any line that is not, one nested past Python's
    recursion limit included (a crafted line of 100,000 '[' is damage, not a traceback)."""
    try:
        return json.loads(line)
    except RecursionError as exc:
        raise ValueError("a line is nested too deep to be JSON the bastion wrote") from exc


class Checker:
    """One archive's lines taken in order; `read` returns its seal."""

    def __init__(self, chain_key: bytes, archive_format: int) -> None:
        self.key, self.format = chain_key, archive_format
        self.header: dict[str, Any] = {}
        self.counts = dict.fromkeys(KINDS, 0)
        self.body_sha256 = ""
        self._digest = hashlib.sha256()
        self._not_json: ValueError | None = None  # the first line that is not JSON
        self._misshapen: ValueError | None = None  # no header, or a line not an object
        self._built: Exception | None = None  # the first event line that is not an event
        self._chain = ""  # the first problem of the chain walk
        self._walk: Walk | None = None

    def read(self, lines: Iterable[bytes]) -> dict[str, Any]:
        """Take every line (each with its newline); the seal, or ValueError or TypeError when
        the archive is not of its shape."""
        pending: bytes | None = None
        number = 0
        for line in lines:
            if pending is not None:
                self._body(pending, number)
            pending, number = line, number + 1
        if pending is None:
            raise ValueError("it does not end with a whole line")
        self.body_sha256 = self._digest.hexdigest()
        seal = loads(pending)
        if not isinstance(seal, dict) or not isinstance(seal.get("seal"), dict):
            raise ValueError("its last line is not a seal")
        if number == 1:
            raise ValueError("its first line is not an archive header")
        for exc in (self._not_json, self._misshapen):
            if exc is not None:
                raise exc
        found: dict[str, Any] = seal["seal"]
        return found

    def _body(self, line: bytes, number: int) -> None:
        """One line before the seal's: hashed, parsed, counted, and walked if an event."""
        self._digest.update(line)
        try:
            value = loads(line)
        except ValueError as exc:  # JSONDecodeError, bytes that are not UTF-8, too deep
            self._not_json = self._not_json or exc
            return
        if self._not_json or self._misshapen:
            return  # damaged already: the rest is only hashed and parsed
        if number == 1:
            if not isinstance(value, dict) or value.get("archive") != self.format:
                self._misshapen = ValueError("its first line is not an archive header")
            else:
                self.header = value
            return
        if not isinstance(value, dict):
            self._misshapen = ValueError(f"line {number} is not a JSON object")
            return
        for kind in KINDS:
            self.counts[kind] += kind in value
        if "event" in value:
            self._event(value["event"])

    def _event(self, raw: Any) -> None:
        if self._built is not None:
            return
        try:
            event = ChainedEvent(**raw)
        except (TypeError, ValueError) as exc:
            self._built = exc
            return
        if self._chain:
            return
        try:
            if self._walk is None:
                self._walk = self._start()
                if self._walk is None:
                    return
            failed = self._walk.step(event)
        except (KeyError, TypeError, ValueError) as exc:
            self._chain = f"an archived event is damaged ({exc})"
            return
        if failed is not None:
            self._chain = f"the archived chain does not recompute: {failed.problem}"

    def _start(self) -> Walk | None:
        """The walk from the header's start (None, the problem noted, when it is wrong)."""
        first = int(self.header["from_seq"])
        start = None if first == 1 else (first - 1, str(self.header["start_head"]))
        if first == 1 and self.header["start_head"] != GENESIS:
            self._chain = "the header's start head is not the chain's start"
            return None
        return Walk(self.key, start)

    def problem(self, seal: dict[str, Any]) -> str:
        """'' when the events walked end at the seal's head and the header's last seq."""
        if self._built is not None:
            return f"an archived event is damaged ({self._built})"
        if self._chain:
            return self._chain
        walk = self._walk
        if walk is None:
            return "" if seal.get("seq") is None else "the seal names an event the archive lacks"
        if (walk.prev_seq, walk.prev_hash) != (seal.get("seq"), seal.get("head")):
            return f"the archive's last event {walk.prev_seq} is not the checkpoint's head"
        if walk.prev_seq != self.header.get("to_seq"):
            return "the header's last seq is not the archive's last event"
        return ""
