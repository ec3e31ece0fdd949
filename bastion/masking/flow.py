"""Which client message each server reply answers in a masked session, and so which mask its
DataRows get (sans-I/O: the relay reports messages both ways and asks what to do).

The server answers messages in the order they were sent. A simple Query owes one result per
statement it holds, each masked by that statement's own plan; an error ends the rest. After
an error in the extended protocol the server skips everything up to Sync, so the queue drops
those expectations too. A portal executed without a known RowDescription gets a Describe
injected before its Execute; the relay swallows that Describe's reply.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bastion.masking.copyflow import CopyOut, start_copy
from bastion.masking.session import Masking, Plan, ResultMask
from bastion.masking.settings import CUSTOM_HIDDEN
from bastion.masking.subject import Subject, SubjectRows, subject_rows
from bastion.pgwire import Field


@dataclass
class Expect:
    """A reply the server owes: to a Query, Parse, Bind, Describe, Execute, Close or Sync."""

    kind: str
    name: str = ""  # the statement or portal it is about
    plan: Plan | None = None
    swallow: bool = False  # an injected Describe: its reply is not the client's


class FlowError(Exception):
    """A reply that no sent message explains: the session must end, nothing is forwarded."""


@dataclass
class Flow:
    masking: Masking
    queue: deque[Expect] = field(default_factory=deque)
    plans: dict[str, Plan] = field(default_factory=dict)  # by statement name
    statement_masks: dict[str, ResultMask] = field(default_factory=dict)
    portals: dict[str, str] = field(default_factory=dict)  # portal -> statement
    portal_masks: dict[str, ResultMask] = field(default_factory=dict)
    current: ResultMask | None = None  # what the DataRows arriving now get
    formats: tuple[int, ...] = ()  # the result formats of the rows arriving now
    portal_formats: dict[str, tuple[int, ...]] = field(default_factory=dict)
    subjects: list[Subject] = field(default_factory=list)  # live unmask grants, kept current
    copy: CopyOut | None = None  # the planned COPY TO STDOUT whose CopyData arrives now
    bound: dict[str, Plan | None] = field(default_factory=dict)  # portal -> plan at its Bind

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

    def query(self, sql: str) -> None:
        """A simple Query: one result owed per statement, each masked by its own plan."""
        plans = self.masking.plans(sql)
        self.queue.extend(Expect("query", plan=plan) for plan in plans)
        self.queue.append(Expect("ready"))

    def refused(self, *, simple: bool) -> None:
        """A refused Query (or function call) or Parse went upstream as a failing stand-in."""
        self.queue.extend((Expect("query"), Expect("ready")) if simple else (Expect("parse"),))

    def parse(self, name: str, sql: str) -> None:
        self.plans[name] = self.masking.plan(sql)
        self.statement_masks.pop(name, None)
        self.queue.append(Expect("parse"))

    def bind(self, portal: str, statement: str, formats: tuple[int, ...] = (),
             params: tuple[bytes | None, ...] = ()) -> None:  # fmt: skip
        plan = self.plans.get(statement)
        for number in plan.setting_params if plan is not None else ():
            value = params[number - 1] if 0 < number <= len(params) else None
            if value is not None and b"." in value:
                raise FlowError(CUSTOM_HIDDEN)
        self.portals[portal] = statement
        self.bound[portal] = plan  # a later Parse does not change it
        self.portal_formats[portal] = formats
        self.portal_masks.pop(portal, None)
        self.queue.append(Expect("bind"))

    def describe(self, kind: str, name: str) -> None:
        self.queue.append(Expect("describe_s" if kind == "S" else "describe_p", name))

    def execute(self, portal: str) -> bool:
        """Queue an Execute; True when a Describe of the portal must be sent before it."""
        statement = self.portals.get(portal, "")
        known = portal in self.portal_masks or statement in self.statement_masks
        # Described in this same batch, its reply not here yet: no need to ask again.
        wanted = (("describe_p", portal), ("describe_s", statement))
        coming = any((e.kind, e.name) in wanted for e in self.queue)
        inject = not known and not coming
        if inject:
            self.queue.append(Expect("describe_p", portal, swallow=True))
        self.queue.append(Expect("execute", portal))
        return inject

    def close(self, kind: str, name: str) -> None:
        if kind == "S":
            self.plans.pop(name, None)
            self.statement_masks.pop(name, None)
        else:
            self.portals.pop(name, None)
            self.bound.pop(name, None)
            self.portal_masks.pop(name, None)
            self.portal_formats.pop(name, None)
        self.queue.append(Expect("close"))

    def sync(self) -> None:
        self.queue.append(Expect("ready"))

    # -- server to client -------------------------------------------------------------

    def _head(self, *kinds: str) -> Expect:
        if not self.queue or self.queue[0].kind not in kinds:
            found = self.queue[0].kind if self.queue else "nothing"
            raise FlowError(f"a reply for {'/'.join(kinds)} came while {found} was owed")
        return self.queue[0]

    def row_description(self, fields: list[Field]) -> bool:
        """A RowDescription; returns whether the client should see it."""
        head = self._head("query", "describe_s", "describe_p")
        if head.kind == "query":
            self.current = self._result(head.plan, fields)
            return True
        self.queue.popleft()
        if head.kind == "describe_s":
            self.statement_masks[head.name] = self._result(self.plans.get(head.name), fields)
            return True
        plan = self.plans.get(self.portals.get(head.name, ""))
        self.portal_masks[head.name] = self._result(plan, fields)
        return not head.swallow

    def no_data(self) -> bool:
        head = self._head("describe_s", "describe_p")
        self.queue.popleft()
        if head.kind == "describe_p":
            self.portal_masks[head.name] = ResultMask({}, [])
        else:
            self.statement_masks[head.name] = ResultMask({}, [])
        return not head.swallow

    def parameter_description(self) -> None:
        self._head("describe_s")

    def acknowledged(self) -> None:
        """ParseComplete, BindComplete or CloseComplete."""
        self._head("parse", "bind", "close")
        self.queue.popleft()

    def rows_mask(self) -> ResultMask | None:
        """The mask for DataRows arriving now (None: nothing to mask, forward as they are)."""
        head = self._head("query", "execute")
        self.formats = self.portal_formats.get(head.name, ()) if head.kind == "execute" else ()
        if head.kind == "query":
            mask = self.current
        else:
            statement = self.portals.get(head.name, "")
            mask = self.portal_masks.get(head.name) or self.statement_masks.get(statement)
            if mask is None:
                raise FlowError(f"rows for portal {head.name!r} with no description")
        return mask if mask is not None and mask.maskers else None

    def copy_out(self, overall: int, formats: tuple[int, ...], shown: dict[int, int]) -> CopyOut:
        """A CopyOutResponse: only as the reply to a planned COPY TO STDOUT."""
        head = self._head("query", "execute")
        plan = head.plan if head.kind == "query" else self.bound.get(head.name)
        if plan is None or plan.copy is None or self.copy is not None:
            raise FlowError("a CopyOutResponse that answers no planned COPY TO STDOUT")
        self.copy = start_copy(self.masking, plan, (overall, formats), subjects=self.subjects,
                               shown=shown)  # fmt: skip
        return self.copy

    def completed(self) -> None:
        """CommandComplete, EmptyQueryResponse or PortalSuspended: that statement's result
        ends (the next statement of a simple Query gets its own)."""
        self._head("query", "execute")
        if self.copy is not None and not self.copy.done:
            raise FlowError("a COPY ended without its CopyDone")
        self.queue.popleft()
        self.current = self.copy = None

    def error(self) -> None:
        """An ErrorResponse: a simple Query stops there, its later statements unrun; in the
        extended protocol, skip to the Sync."""
        if self.queue and self.queue[0].kind == "query":
            while self.queue and self.queue[0].kind == "query":
                self.queue.popleft()
        else:
            while self.queue and self.queue[0].kind != "ready":
                self.queue.popleft()
        self.current = self.copy = None

    def ready(self) -> None:
        if self.copy is not None:
            raise FlowError("ReadyForQuery inside a COPY")
        while self.queue and self.queue[0].kind == "query":  # statements that sent nothing
            self.queue.popleft()
        self._head("ready")
        self.queue.popleft()
        self.current = None
