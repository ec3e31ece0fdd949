"""The upstream authentication exchange (sans-I/O) over arbitrary sequences of server
requests: the password, in any form, goes only to a method the target allows, and the login
ends only after a finished method (or with nothing asked, where "trust" is allowed)."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion import pgwire
from bastion.pgproxy.upstream_auth import METHODS, UpstreamAuth, UpstreamError

PASSWORD = "hunter2-service-Zq8"
SALT = base64.b64encode(b"0123456789abcdef").decode()

requests = st.lists(
    st.sampled_from(["ok", "cleartext", "md5", "sasl", "sasl-other", "continue", "final-bad",
                     "unknown"]),
    min_size=1, max_size=6,
)  # fmt: skip
allowed = st.sets(st.sampled_from(METHODS), min_size=1)
CODES = {
    "ok": (0, b""),
    "cleartext": (3, b""),
    "md5": (5, b"salt"),
    "sasl": (10, b"SCRAM-SHA-256\0\0"),
    "sasl-other": (10, b"SCRAM-SHA-1\0\0"),
    "final-bad": (12, b"v=" + base64.b64encode(b"\1" * 32)),  # never a valid signature
    "unknown": (7, b""),
}


def _request(kind: str, sent: list[bytes]) -> pgwire.Authentication:
    if kind == "continue":
        nonce = ""
        for reply in sent:  # the client-first nonce, when one was sent
            if b"r=" in reply:
                nonce = reply.split(b"r=", 1)[1].split(b",")[0].decode(errors="replace")
        return pgwire.Authentication(11, f"r={nonce}srv,s={SALT},i=4096".encode())
    code, data = CODES[kind]
    return pgwire.Authentication(code, data)


@settings(max_examples=400, deadline=None)
@given(requests, allowed)
def test_no_password_to_a_method_not_allowed_and_no_unproven_login(
    kinds: list[str], methods: set[str]
) -> None:
    exchange = UpstreamAuth("svc", PASSWORD, frozenset(methods))
    sent: list[bytes] = []
    steps: list[str] = []
    for kind in kinds:
        try:
            reply = exchange.answer(_request(kind, sent))
        except UpstreamError:
            break
        steps.append(kind)
        if reply:
            sent.append(reply)
        if exchange.finished:
            break
    clear = PASSWORD.encode()
    md5 = pgwire.md5_password("svc", PASSWORD, b"salt")
    for reply in sent:
        if clear in reply:
            assert "password" in methods and steps[0] == "cleartext"
        if md5 in reply:
            assert "md5" in methods and steps[0] == "md5"
    if exchange.finished:
        # Only a bad server signature was ever sent, so SCRAM can never end in a login.
        assert (steps == ["ok"] and "trust" in methods) or steps[0] in ("cleartext", "md5")
        assert steps[-1] == "ok" and len(steps) <= 2
