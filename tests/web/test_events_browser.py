"""The audit log in Debian's headless Chromium: a reviewer opens it from the navigation,
filters by kind, expands one event's detail and follows its session to the replay page; no
CSP violation on the way; screenshots are left in the test's tmp_path/screenshots."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from tests.web import test_browser
from tests.web.conftest import Console, detail
from tests.web.test_browser import Tab

browser = test_browser.browser


async def test_a_reviewer_filters_the_audit_log_and_opens_an_event(
    reviewed: Console, browser: Browser, tmp_path: Path
) -> None:
    rita = await Tab.open(reviewed, browser, tmp_path / "screenshots")
    await rita.sign_in("rita")
    page = rita.page
    await rita.submit("nav >> text=Audit log")
    assert await page.inner_text("h1") == "Audit log"
    assert "Not verified since the chain began" in await page.inner_text("#verified")
    await rita.shot("audit-log")
    await page.fill("#kind", "session.closed")
    await rita.submit("#search")
    kinds = await page.eval_on_selector_all("tbody tr td:nth-child(3)",
                                            "cells => cells.map(c => c.textContent)")  # fmt: skip
    assert kinds and set(kinds) == {"session.closed"}
    row = page.locator("tbody tr", has_text="s-alice")
    pretty = row.locator("pre.json")
    assert not await pretty.is_visible()  # closed until asked
    await row.locator("summary").click()
    assert await pretty.is_visible()
    assert '"recording_sha256"' in await pretty.inner_text()
    await rita.shot("audit-log-event-open")
    link = row.locator("a.replay")
    assert await link.get_attribute("href") == "/review/sessions/s-alice"
    await rita.submit("tbody tr a.replay >> text=s-alice")
    assert page.url.endswith("/review/sessions/s-alice")
    [_, search] = [e for e in reviewed.events("queries.listed")
                   if detail(e)["filters"].get("via") == "audit log"]  # fmt: skip
    assert search.actor == "rita" and detail(search)["filters"]["kind"] == "session.closed"
    await rita.close()
