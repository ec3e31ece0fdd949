"""A masked session's checks in the door: plans at Query and Parse, masks on DataRows, scrubbed
errors and notices, dropped notifications, and what the query log records (thin glue over the
sans-I/O bastion.masking)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion import pgwire
from bastion.audit import UnmaskGrant
from bastion.masking.copyrows import CopyError
from bastion.masking.flow import Flow, FlowError
from bastion.masking.lineage import Refused, UnknownRelation
from bastion.masking.rows import RowError
from bastion.masking.scrub import scrubbed
from bastion.masking.session import Masking, ResultMask, mask_data_rows
from bastion.masking.subject import resolve
from bastion.pgproxy.tracker import Pending
from bastion.pgwire.state import MAX_STATEMENTS, ProtocolState

UNMASK_HINT = ("; to see values, ask for unmasking (the unmask command on the bastion's SSH"
               " door, or bastion unmask request)")  # fmt: skip


class MaskingLost(Exception):
    """A reply the checks cannot vouch for (one the masking cannot attribute, a row it cannot
    parse, a setting that changes how SQL is read): the session must end, and nothing of
    the read reaches the client. `told` is what the client is told, if not the usual line."""

    def __init__(self, detail: str, told: str | None = None) -> None:
        super().__init__(detail)
        self.told = told


@dataclass
class Guard:
    masking: Masking
    subject_keys: tuple[str, ...]
    on_miss: Callable[[], None] | None = None  # a relation the snapshot lacks: read it again
    flow: Flow = field(init=False)
    grant_ids: tuple[int, ...] = ()
    max_prepared: int = MAX_STATEMENTS  # statements, and portals, the session may hold

    def __post_init__(self) -> None:
        bound = self.max_prepared
        self.flow = Flow(self.masking, ProtocolState(max_statements=bound, max_portals=bound))

    # -- grants -----------------------------------------------------------------------

    def set_grants(self, grants: Sequence[UnmaskGrant]) -> None:
        """The engineer's live unmask grants on this target, as read for this statement."""
        ids = tuple(g.id for g in grants)
        if ids == self.grant_ids:
            return
        self.grant_ids = ids
        catalog, keys = self.masking.catalog, self.subject_keys
        self.flow.subjects = [
            resolve(catalog, g.id, g.columns, keys, (g.subject_key, g.subject_value))
            for g in grants
        ]

    # -- client to target (each returns the refusal's reason, or None) ----------------

    def query(self, sql: str) -> str | None:
        try:
            self.flow.query(sql)
        except Refused as exc:
            self.flow.refused(simple=True)
            return self._reason(exc)
        return None

    def parse(self, name: str, sql: str) -> str | None:
        try:
            self.flow.parse(name, sql)
        except Refused as exc:
            self.flow.refused(simple=False)
            return self._reason(exc)
        return None

    def _reason(self, exc: Refused) -> str:
        text = str(exc)
        if isinstance(exc, UnknownRelation):
            # Created since the snapshot, maybe: the next session reads the catalog again.
            if self.on_miss is not None:
                self.on_miss()
            return text + "; if it was created a moment ago, connect again"
        return text + UNMASK_HINT if "is sensitive" in text else text

    def function_call(self) -> str:
        self.flow.refused(simple=True)
        return "the fast-path function call is not allowed in masked mode"

    def message(self, frame: pgwire.Frame) -> bytes:
        """Bind, Describe, Execute, Close, Sync: tracked; the bytes to send (an Execute of an
        undescribed portal gets a Describe first, whose reply the client never sees)."""
        kind, flow = frame.type, self.flow
        message = pgwire.decode_frontend(frame)
        if isinstance(message, pgwire.Bind):
            flow.bind(message.portal, message.statement, message.result_formats, message.params)
        elif isinstance(message, pgwire.Describe):
            flow.describe(message.kind, message.name)
        elif isinstance(message, pgwire.Execute):
            if flow.execute(message.portal):
                return pgwire.describe("P", message.portal) + bytes(frame.raw)
        elif isinstance(message, pgwire.Close):
            flow.close(message.kind, message.name)
        elif kind == b"S":
            flow.sync()
        return bytes(frame.raw)

    # -- target to client -------------------------------------------------------------

    def reply(self, item: pgwire.Frame | pgwire.Run, pending: Pending | None) -> bytes | None:
        """What the client gets instead of this reply (b"" for nothing), or None: as it is."""
        try:
            if isinstance(item, pgwire.Run):
                return self._rows(item, pending)
            return self._message(item, pending)
        except FlowError as exc:
            raise MaskingLost(str(exc)) from None
        except RowError as exc:
            raise MaskingLost(f"a row could not be masked: {exc}") from None
        except CopyError as exc:
            raise MaskingLost(f"a COPY row could not be masked: {exc}") from None

    def _rows(self, run: pgwire.Run, pending: Pending | None) -> bytes | None:
        if self.flow.copy is not None:  # a planned COPY TO STDOUT's CopyData
            return self.flow.copy.run(bytes(run.raw))
        if run.raw[0] == 0x64:  # "d": CopyData only ever follows a planned COPY's response
            raise FlowError("CopyData outside a planned COPY TO STDOUT")
        mask = self.flow.rows_mask()
        if mask is None:
            return None
        shown: dict[int, int] = pending.shown if pending is not None else {}
        if pending is not None and pending.mask is not mask:
            if pending.mask is not None:  # a later statement of the same simple Query
                pending.earlier.append(pending.mask.snapshot())
            mask.restart()  # the detectors' counts are this statement's own
            pending.mask = mask
        return mask_data_rows(run.raw, mask, self.flow.live(mask), shown, self.flow.formats)

    def _message(self, frame: pgwire.Frame, pending: Pending | None) -> bytes | None:
        kind, flow = frame.type, self.flow
        if kind == b"T":
            described = pgwire.decode_backend(frame)
            assert isinstance(described, pgwire.RowDescription)
            shown = flow.row_description(list(described.fields))
        elif kind == b"n":
            shown = flow.no_data()
        elif kind in (b"C", b"I", b"s"):
            if pending is not None and pending.mask is not None:
                pending.mask = pending.mask.snapshot()  # its counts, before a rerun restarts them
            notice = self._subject_notice(pending)
            flow.completed(kind)
            return None if notice is None else notice + bytes(frame.raw)
        elif kind in (b"E", b"N"):
            return self._problem(frame, pending)
        elif kind in (b"H", b"c"):
            shown = self._copy(frame, pending)
        else:
            shown = self._other(frame)
        return None if shown else b""

    def _copy(self, frame: pgwire.Frame, pending: Pending | None) -> bool:
        """CopyOutResponse (only after a planned COPY TO STDOUT) and CopyDone; never CopyIn or
        CopyBoth, which fall to _other's refusal."""
        if frame.type == b"c":
            if self.flow.copy is None:
                raise FlowError("a CopyDone outside a COPY")
            self.flow.copy.finish()
            return True
        response = pgwire.decode_backend(frame)
        assert isinstance(response, pgwire.CopyResponse)
        shown: dict[int, int] = pending.shown if pending is not None else {}
        copy = self.flow.copy_out(response.format, response.column_formats, shown)
        if pending is not None:
            if pending.mask is not None:  # a later statement of the same simple Query
                pending.earlier.append(pending.mask.snapshot())
            pending.mask = copy.mask
        return True

    def _other(self, frame: pgwire.Frame) -> bool:
        """Replies that carry nothing to mask; False for one the client must not see."""
        kind, flow = frame.type, self.flow
        if kind == b"t":
            flow.parameter_description()
        elif kind in (b"1", b"2", b"3"):
            flow.acknowledged(kind)
        elif kind == b"Z":
            flow.ready(chr(frame.raw[5]))
        elif kind == b"A":
            return False  # a notification's payload can carry any value
        elif kind not in (b"S", b"K"):
            raise FlowError(f"the server sent {kind!r}, which a masked session never expects")
        return True

    def _problem(self, frame: pgwire.Frame, pending: Pending | None) -> bytes | None:
        """An error (the statement ends; the pipeline skips to Sync) or a notice: scrubbed."""
        if frame.type == b"N":
            return self._scrub(frame, None)
        head = self.flow.state.head  # the request the error answers
        stand_in = pending is not None and pending.stand_in is not None
        self.flow.error()
        if stand_in and head is not None and head.note is pending:
            return None  # the relay swaps a refusal's stand-in error for its own
        return self._scrub(frame, pending)

    def _scrub(self, frame: pgwire.Frame, pending: Pending | None) -> bytes:
        fields = pgwire.error_fields(frame.body, "ErrorResponse")
        if pending is not None and pending.server_message is None:
            pending.server_message = fields.get("M", "")
        return scrubbed(fields, notice=frame.type == b"N")

    def _subject_notice(self, pending: Pending | None) -> bytes | None:
        """After a masked result, under a live grant: how many rows it showed, and why no more."""
        mask = pending.mask if pending is not None else None
        if mask is None or not self.flow.subjects:
            return None
        shown = pending.shown if pending is not None else {}
        parts = []
        for subject in self.flow.subjects:
            rows = shown.get(subject.grant_id, 0)
            if rows:
                parts.append(f"unmask grant {subject.grant_id} showed {rows} row(s)"
                             f" of {subject.shown} in clear; other rows stay masked")  # fmt: skip
            else:
                parts.append(f"unmask grant {subject.grant_id} shows values only in rows whose"
                             f" subject key, selected as it is from the same table, equals"
                             f" {subject.shown}; these rows stay masked")  # fmt: skip
        return pgwire.notice_response("NOTICE", "00000", "bastion: " + "; ".join(parts))


def masking_note(mask: ResultMask | None, shown: dict[int, int],
                 earlier: Sequence[ResultMask] = ()) -> str | None:  # fmt: skip
    """The query log's record of what was masked and shown: column names and counts only
    (over every result of a simple Query that holds several statements)."""
    if mask is None:
        return None
    results = [*earlier, mask]
    masked = [name for m in results for name in m.masked]
    detected: dict[str, dict[str, int]] = {}  # {column: {detector: matches}}
    for m in results:
        for column, counts in m.fired().items():
            into = detected.setdefault(column, {})
            for detector, matches in counts.items():
                into[detector] = into.get(detector, 0) + matches
    if not masked and not detected:
        return None
    note: dict[str, Any] = {"masked": masked}
    if detected:
        note["detected"] = detected
    unmasked = [{"grant": rows.subject.grant_id, "columns": list(rows.names),
                 "rows": shown.get(rows.subject.grant_id, 0)}
                for m in results for rows in m.subjects
                if shown.get(rows.subject.grant_id)]  # fmt: skip
    if unmasked:
        note["unmasked"] = unmasked
    return json.dumps(note, sort_keys=True)
