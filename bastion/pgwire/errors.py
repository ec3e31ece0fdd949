"""The one error the codec raises for bytes a peer should never have sent."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent bytes that are not valid protocol 3.0; the connection must end.

    ``message`` is one line, safe to put in an ErrorResponse; ``sqlstate`` is
    protocol_violation. Misuse by our own code (an encoder given a NUL inside a
    string, say) raises ValueError instead, never this.
    """

    sqlstate = "08P01"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
