"""The target's side of a relayed channel: output, exit status, flow control."""

from __future__ import annotations

from typing import Any, Protocol

import asyncssh

from bastion.ssh.flow import Valve


class Downstream(Protocol):
    """What the target's side needs of the engineer's (ChannelSession): no import of it."""

    chan: Any
    exit_status: int | None
    exit_signal: tuple[str, bool, str, str] | None
    client_valve: Valve

    def from_target(self, data: bytes, datatype: int | None) -> None: ...

    def send_outgoing(self) -> None: ...

    def target_closed(self) -> None: ...


class UpstreamSession(asyncssh.SSHClientSession):  # type: ignore[type-arg]
    def __init__(self, down: Downstream) -> None:
        self.down = down

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.down.from_target(data, datatype)

    def eof_received(self) -> bool:
        self.down.send_outgoing()  # its last output first
        if self.down.chan is not None:
            self.down.chan.write_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self.down.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.down.exit_signal = (signal, core_dumped, msg, lang)

    def pause_writing(self) -> None:
        self.down.client_valve.hold("target")  # the target's side is full

    def resume_writing(self) -> None:
        self.down.client_valve.release("target")

    def connection_lost(self, exc: Any) -> None:
        self.down.target_closed()
