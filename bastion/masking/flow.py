"""Which client message each server reply answers in a masked session, and so which mask its
DataRows get (sans-I/O: the relay reports messages both ways and asks what to do).

The attribution is bastion.pgwire.state's: the server answers in order, a simple Query owes one
result per statement it holds (each masked by that statement's own plan), and after an error in
the extended protocol the server skips everything up to Sync. Plans and masks ride on the
machine's statement and portal tables, which follow the server's replies: a Parse the server
skipped or refused never replaces the statement a later Bind binds, and Close or the end of a
transaction takes a portal's mask with it. A portal executed without a known RowDescription
gets a Describe injected before its Execute; the relay swallows that Describe's reply.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bastion.masking.copyflow import CopyOut, start_copy
from bastion.masking.session import Masking, Plan, ResultMask
from bastion.masking.settings import CUSTOM_HIDDEN
from bastion.masking.subject import Subject, SubjectRows, subject_rows
from bastion.pgwire import Field
from bastion.pgwire.state import ProtocolState, Request, StateError

_LOOK_BACK = 256
"""How far back an Execute looks for its portal's Bind and Describe; past it, a Describe is
sent (so a long pipeline costs linear, not quadratic, time)."""


@dataclass(slots=True)
class Expect:
    """What the flow notes on a request: a Parse's plan, a Query's plans, a Bind's formats,
    and the masks the server's RowDescriptions gave a statement or a portal."""

    kind: str
    name: str = ""  # the statement or portal it is about
    plan: Plan | None = None  # Parse: its plan; Bind: its statement's, once the server bound it
    swallow: bool = False  # an injected Describe: its reply is not the client's
    plans: tuple[Plan | None, ...] = ()  # Query: one per statement
    formats: tuple[int, ...] = ()  # Bind: the result formats
    mask: ResultMask | None = None  # Parse, Bind: what a Describe of it said
    parsed: Expect | None = None  # Bind: the Parse whose statement the server bound


class FlowError(Exception):
    """A reply that no sent message explains: the session must end, nothing is forwarded."""


@dataclass
class Flow:
    masking: Masking
    state: ProtocolState = field(default_factory=ProtocolState)
    current: ResultMask | None = None  # what the DataRows arriving now get
    formats: tuple[int, ...] = ()  # the result formats of the rows arriving now
    subjects: list[Subject] = field(default_factory=list)  # live unmask grants, kept current
    copy: CopyOut | None = None  # the planned COPY TO STDOUT whose CopyData arrives now
    # Per statement name, the setting parameters ($n passed to current_setting as a name) of
    # its Parses sent since the conversation was last at rest: any of them may land.
    sent_settings: dict[str, set[int]] = field(default_factory=dict)

    @property
    def queue(self) -> deque[Request]:
        """The requests not yet answered (empty when the conversation is at rest)."""
        return self.state.queue

    def _result(self, plan: Plan | None, fields: list[Field]) -> ResultMask:
        mask = self.masking.result(plan, fields)
        if mask.maskers and self.subjects:
            mask.subjects = subject_rows(self.subjects, plan.columns if plan else None, fields)
        return mask

    def live(self, mask: ResultMask) -> list[tuple[SubjectRows, bytes]]:
        """The subject rows of `mask` whose grant is still live (expiry applies at once), each
        with its key's bytes in the formats of the rows arriving now."""
        if not mask.subjects:
            return []
        ids = {s.grant_id for s in self.subjects}
        found = []
        for rows in mask.subjects:
            key = rows.key(self.formats)
            if rows.subject.grant_id in ids and key is not None:
                found.append((rows, key))
        return found

    # -- client to server (plans raise Refused) ---------------------------------------

    def _send(self, kind: bytes, name: str, expect: Expect, target: bytes = b"",
              statement: str = "") -> Request:  # fmt: skip
        """Track a request (TooMany past the tables' bounds: the session ends, saying so)."""
        request = self.state.client(kind, name, target, statement, expect)
        assert request is not None
        return request

    def query(self, sql: str) -> None:
        """A simple Query: one result owed per statement, each masked by its own plan."""
        self._send(b"Q", "", Expect("query", plans=tuple(self.masking.plans(sql))))

    def refused(self, *, simple: bool) -> None:
        """A refused Query (or function call) or Parse went upstream as a failing stand-in
        (the Parse's is unnamed)."""
        if simple:
            self._send(b"Q", "", Expect("query", plans=(None,)))
        else:
            self._send(b"P", "", Expect("parse"))

    def parse(self, name: str, sql: str) -> None:
        plan = self.masking.plan(sql)
        self._send(b"P", name, Expect("parse", name, plan=plan))
        if plan.setting_params:
            self.sent_settings.setdefault(name, set()).update(plan.setting_params)

    def bind(self, portal: str, statement: str, formats: tuple[int, ...] = (),
             params: tuple[bytes | None, ...] = ()) -> None:  # fmt: skip
        for number in self._setting_params(statement):
            value = params[number - 1] if 0 < number <= len(params) else None
            if value is not None and b"." in value:
                raise FlowError(CUSTOM_HIDDEN)
        self._send(b"B", portal, Expect("bind", portal, formats=formats), statement=statement)

    def _setting_params(self, statement: str) -> set[int] | frozenset[int]:
        """The setting parameters of every plan the statement may have when the server binds
        it: the one in force and those of its Parses still in flight."""
        made = self.state.statements.get(statement)
        expect = made.tag if made is not None else None
        found = expect.plan.setting_params if isinstance(expect, Expect) and expect.plan else None
        sent = self.sent_settings.get(statement)
        if sent is None:
            return found or frozenset()
        return sent | found if found else sent

    def describe(self, kind: str, name: str) -> None:
        target = b"S" if kind == "S" else b"P"
        self._send(b"D", name, Expect("describe_s" if kind == "S" else "describe_p", name),
                   target)  # fmt: skip

    def execute(self, portal: str) -> bool:
        """Queue an Execute; True when a Describe of the portal must be sent before it."""
        inject = not self._will_know(portal)
        if inject:
            self._send(b"D", portal, Expect("describe_p", portal, swallow=True), b"P")
        self._send(b"E", portal, Expect("execute", portal))
        return inject

    def _will_know(self, portal: str) -> bool:
        """Whether the portal's RowDescription will be known when its rows come, whatever the
        server makes of the requests still in flight."""
        queue = self.state.queue
        for index in range(len(queue) - 1, max(len(queue) - _LOOK_BACK, 0) - 1, -1):
            request = queue[index]
            if request.name != portal or request.kind not in (b"B", b"C", b"D"):
                continue
            if request.kind == b"D":
                if request.target == b"P":
                    return True  # described after its last Bind
                continue
            if request.kind == b"C":
                if request.target == b"P":
                    return False  # closed after its last Bind
                continue
            return self._statement_will_know(request.statement, index)
        if len(queue) > _LOOK_BACK:
            return False  # older requests not looked at might change the portal
        bound = self.state.portals.get(portal)
        expect = bound.tag if bound is not None else None
        if not isinstance(expect, Expect):
            return False
        return expect.mask is not None or (expect.parsed is not None
                                           and expect.parsed.mask is not None)  # fmt: skip

    def _statement_will_know(self, statement: str, before: int) -> bool:
        queue = self.state.queue
        if len(queue) - before >= _LOOK_BACK:
            return False  # looked far enough: a Describe costs less than the search
        for index in range(before - 1, max(len(queue) - _LOOK_BACK, 0) - 1, -1):
            request = queue[index]
            if request.name != statement or request.kind not in (b"P", b"C", b"D"):
                continue
            if request.kind == b"P":
                return False
            if request.target == b"S":
                return request.kind == b"D"
        if len(queue) > _LOOK_BACK:
            return False  # older requests not looked at might change the statement
        made = self.state.statements.get(statement)
        expect = made.tag if made is not None else None
        return isinstance(expect, Expect) and expect.mask is not None

    def close(self, kind: str, name: str) -> None:
        self._send(b"C", name, Expect("close", name), b"S" if kind == "S" else b"P")

    def sync(self) -> None:
        self._send(b"S", "", Expect("ready"))

    # -- server to client -------------------------------------------------------------

    def _head(self, *kinds: str) -> Request:
        """The request the reply arriving now answers; FlowError unless it is of `kinds`."""
        queue = self.state.queue
        request = queue[0] if queue else None
        expect = request.tag if request is not None else None
        if request is None or not isinstance(expect, Expect) or expect.kind not in kinds:
            found = expect.kind if isinstance(expect, Expect) else "nothing"
            raise FlowError(f"a reply for {'/'.join(kinds)} came while {found} was owed")
        return request

    def _reply(self, kind: bytes, status: str | None = None) -> Request | None:
        try:
            return self.state.server(kind, status)
        except StateError as exc:
            raise FlowError(str(exc)) from None

    def _query_plan(self, request: Request) -> Plan | None:
        """The plan of the head Query's statement whose result arrives now."""
        plans = request.tag.plans if isinstance(request.tag, Expect) else ()
        if request.results >= len(plans):
            raise FlowError("a result came for a statement the Query does not hold")
        return plans[request.results]

    def _portal(self, name: str) -> Expect | None:
        bound = self.state.portals.get(name)
        return bound.tag if bound is not None and isinstance(bound.tag, Expect) else None

    def row_description(self, fields: list[Field]) -> bool:
        """A RowDescription; returns whether the client should see it."""
        head = self._head("query", "describe_s", "describe_p")
        if head.kind == b"Q":
            self.current = self._result(self._query_plan(head), fields)
            self._reply(b"T")
            return True
        expect = self._described(head)
        into = self._target(head)
        plan = into.plan if into is not None else None
        mask = self._result(plan, fields)
        if into is not None:
            into.mask = mask
        self._reply(b"T")
        return not expect.swallow

    def _described(self, head: Request) -> Expect:
        assert isinstance(head.tag, Expect)
        return head.tag

    def _target(self, head: Request) -> Expect | None:
        """The Parse (statement) or Bind (portal) a Describe is about, as the server has it."""
        if head.target == b"S":
            made = self.state.statements.get(head.name)
            return made.tag if made is not None and isinstance(made.tag, Expect) else None
        return self._portal(head.name)

    def no_data(self) -> bool:
        head = self._head("describe_s", "describe_p")
        into = self._target(head)
        if into is not None:
            into.mask = ResultMask({}, [])
        self._reply(b"n")
        return not self._described(head).swallow

    def parameter_description(self) -> None:
        self._head("describe_s")
        self._reply(b"t")

    def acknowledged(self, kind: bytes | None = None) -> None:
        """ParseComplete, BindComplete or CloseComplete (`kind` its type, or the head's)."""
        head = self._head("parse", "bind", "close")
        if kind is None:
            kind = {b"P": b"1", b"B": b"2"}.get(head.kind, b"3")
        self._reply(kind)
        if head.kind == b"B":  # bound: the plan and mask are those of the statement it bound
            made = self.state.statements.get(head.statement)
            expect = head.tag
            assert isinstance(expect, Expect)
            parsed = made.tag if made is not None and isinstance(made.tag, Expect) else None
            expect.parsed = parsed
            expect.plan = parsed.plan if parsed is not None else None

    def rows_mask(self) -> ResultMask | None:
        """The mask for DataRows arriving now (None: nothing to mask, forward as they are)."""
        head = self._head("query", "execute")
        self._reply(b"D")
        if head.kind == b"Q":
            self.formats = ()
            mask = self.current
        else:
            bound = self._portal(head.name)
            self.formats = bound.formats if bound is not None else ()
            mask = None
            if bound is not None:
                mask = bound.mask or (bound.parsed.mask if bound.parsed is not None else None)
            if mask is None:
                raise FlowError(f"rows for portal {head.name!r} with no description")
        return mask if mask is not None and mask.maskers else None

    def copy_out(self, overall: int, formats: tuple[int, ...], shown: dict[int, int]) -> CopyOut:
        """A CopyOutResponse: only as the reply to a planned COPY TO STDOUT."""
        head = self._head("query", "execute")
        if head.kind == b"Q":
            plan = self._query_plan(head)
        else:
            bound = self._portal(head.name)
            plan = bound.plan if bound is not None else None
        if plan is None or plan.copy is None or self.copy is not None:
            raise FlowError("a CopyOutResponse that answers no planned COPY TO STDOUT")
        self._reply(b"H")
        self.copy = start_copy(self.masking, plan, (overall, formats), subjects=self.subjects,
                               shown=shown)  # fmt: skip
        return self.copy

    def completed(self, kind: bytes = b"C") -> None:
        """CommandComplete, EmptyQueryResponse or PortalSuspended (`kind`): that statement's
        result ends (the next statement of a simple Query gets its own)."""
        self._head("query", "execute")
        if self.copy is not None:
            if not self.copy.done:
                raise FlowError("a COPY ended without its CopyDone")
            self._reply(b"c")  # the CopyDone that finished it
        self._reply(kind)
        self.current = self.copy = None

    def error(self) -> None:
        """An ErrorResponse: a simple Query stops there, its later statements unrun; in the
        extended protocol, skip to the Sync."""
        self._reply(b"E")
        self.current = self.copy = None

    def ready(self, status: str | None = None) -> None:
        """ReadyForQuery (`status`: its transaction status, when known)."""
        if self.copy is not None:
            raise FlowError("ReadyForQuery inside a COPY")
        self._head("query", "ready")
        self._reply(b"Z", status)
        self.current = None
        if not self.state.queue:
            self.sent_settings.clear()
