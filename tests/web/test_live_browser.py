"""In Chromium: a real SSH session appears on the admin's live sessions page without a
reload, is killed from it with a reason, and the ssh client is shown that reason."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from tests.web.conftest import Console
from tests.web.test_browser import Tab, browser  # noqa: F401 - the fixture
from tests.web.test_live import live, start_long_session  # noqa: F401 - the fixture

REASON = "INC-9 contained; ending all sessions on web-1"


async def test_a_live_ssh_session_appears_and_is_killed_from_the_page(
    live: Console,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    console = live
    tab = await Tab.open(console, browser, tmp_path / "screenshots")
    page = tab.page
    await tab.sign_in("ada")
    await tab.submit("nav >> text=Live sessions")
    assert await page.inner_text("h1") == "Live sessions"
    assert await page.inner_text("#live-status") == "No open sessions."
    await page.wait_for_function(
        "document.getElementById('live-status').textContent === 'No open sessions.'"
    )
    await tab.shot("live-empty")
    ssh = start_long_session(console, tmp_path / "ssh")
    row = page.locator("#live tbody tr", has_text="alice")
    await row.wait_for()  # arrives by the event stream: the page is not reloaded
    assert page.url.endswith("/live")
    cells = await row.locator("td").all_inner_texts()
    assert cells[:4] == ["alice", "web-1", "ssh", "127.0.0.1"]
    assert cells[6].startswith("#1 read until ")
    await row.locator("input[name=reason]").fill(REASON)
    await tab.shot("live-session")
    await tab.submit("#live tbody tr button.kill")
    assert "asked the bastion to end session" in await page.inner_text(".notice")
    await page.locator("#live tbody tr", has_text="alice").wait_for(state="detached")
    await tab.shot("live-killed")
    result = await ssh
    assert f"session ended by ada: {REASON}" in result.err
    [closed] = console.store.sessions()
    assert closed.state == "killed"
    [asked] = console.events("session.kill_requested")
    assert asked.actor == "ada"
    await tab.close()
