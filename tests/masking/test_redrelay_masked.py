"""Red-team, masked sessions through the real door: a server error that escapes the scrubbing
when a refusal's stand-in stands behind it."""

from __future__ import annotations

from bastion import pgwire as pw
from tests.harness import Bastion
from tests.masking.shop import SECRETS
from tests.pgproxy.test_door_admin import frames_until, logged_in


def test_a_bind_error_ahead_of_a_refused_parse_is_scrubbed_in_masked_mode(
    bastion: Bastion,
) -> None:
    """Bind with a parameter the server cannot read (its error quotes it), then a Parse the
    masking refuses, Sync: the guard takes the error for the stand-in's and passes the server's
    text to the client unscrubbed (alone, the same error is scrubbed)."""
    secret = SECRETS[0].encode()
    sock, reader = logged_in(bastion, "alice", "shop")
    with sock:
        sock.sendall(pw.parse("sid", "SELECT name FROM customers WHERE id = $1") + pw.sync())
        frames_until(sock, reader, 1, closing_ok=False)
        sock.sendall(pw.bind("", "sid", (secret,)) + pw.sync())
        alone = frames_until(sock, reader, 1, closing_ok=False)
        sock.sendall(pw.bind("", "sid", (secret,))
                     + pw.parse("", "SELECT lower(email) FROM customers") + pw.sync())  # fmt: skip
        behind = frames_until(sock, reader, 1, closing_ok=False)
        sock.sendall(pw.terminate())
    assert [f for f in alone if f.type == b"E"] and not [f for f in alone if secret in f.raw]
    assert [f for f in behind if f.type == b"E"]
    assert not [f for f in behind if secret in f.raw], [bytes(f.raw) for f in behind]
