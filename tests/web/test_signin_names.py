"""The console's sign-in with a password typed into the user-name field: the reviewers' audit
log page and API show a keyed digest for it, never the text; a known user keeps their name."""

from __future__ import annotations

import re

from tests.web.conftest import PASSWORDS, Console

DIGEST = re.compile(r"unknown:[0-9a-f]{12}")


async def test_a_password_typed_as_the_name_never_reaches_the_reviewers_page(
    console: Console,
) -> None:
    typed = PASSWORDS["alice"]
    async with console.http() as http:
        for name in (typed, "alice"):
            body = {"username": name, "password": typed + "x", "code": "123456"}
            async with http.post("/api/v1/signin", json=body) as r:
                assert r.status == 401
        await console.sign_in(http, "rita")
        async with http.get("/api/v1/events") as r:
            assert r.status == 200
            shown = await r.text()
        async with http.get("/review/events") as r:
            assert r.status == 200
            page = await r.text()
    for text in (shown, page):
        assert typed not in text
    failed = [e for e in console.store.events() if e.kind == "auth.failed"]
    assert [DIGEST.fullmatch(e.subject) is not None for e in failed] == [True, False]
    assert failed[1].subject == "alice"
    assert DIGEST.search(shown) and DIGEST.search(page)
