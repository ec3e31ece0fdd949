"""In Chromium: a real SSH session appears on the admin's live sessions page without a
reload, is killed from it with a reason, and the ssh client is shown that reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from playwright.async_api import Browser

from bastion.audit import NewGrant
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
    assert cells[:5] == ["alice", "web-1", "ssh", console.core.node, "127.0.0.1"]
    assert cells[7].startswith("#1 read until ")
    await row.locator("input[name=reason]").fill(REASON)
    await tab.shot("live-session")
    await tab.submit("#live tbody tr button.kill")
    notice = await page.inner_text(".notice")
    assert f"asked node {console.core.node} to end session" in notice
    assert notice.endswith("(alice on web-1); it ends within a few seconds")
    await page.locator("#live tbody tr", has_text="alice").wait_for(state="detached")
    await tab.shot("live-killed")
    result = await ssh
    assert f"session ended by ada: {REASON}" in result.err
    [closed] = console.store.sessions()
    assert closed.state == "killed"
    [asked] = console.events("session.kill_requested")
    assert asked.actor == "ada"
    await acknowledge_break_glass(tab, console)
    await tab.close()


async def acknowledge_break_glass(tab: Tab, console: Console) -> None:
    """alice's emergency access, acknowledged by the admin on the break-glass page."""
    now = console.clock.now()
    made = console.store.add_grant(NewGrant(target="web-1", mode="write", starts_at=now,
                                            ends_at=now + timedelta(minutes=30), user="alice",
                                            reason="INC-9 disk full", actor="alice",
                                            break_glass=True))  # fmt: skip
    await tab.submit("nav >> text=Break-glass")
    row = tab.page.locator("table tbody tr", has_text="INC-9 disk full")
    await row.locator("input[name=note]").fill("checked with alice on the call")
    await tab.shot("break-glass")
    async with tab.page.expect_navigation():
        await row.locator("button").click()
    notice = await tab.page.inner_text(".notice")
    assert notice == f"break-glass grant {made.id} acknowledged"
    assert "by ada at" in await tab.page.inner_text("table")
    [event] = console.events("breakglass.acknowledged")
    assert event.actor == "ada"
