"""The reviewer's console in Debian's headless Chromium: a real recording replayed in the
asciinema player (the terminal shows the typed command, a click on a command seeks there),
a refused viewing shown as an error with no cast, and a weekly review marked and signed by
a reviewer who is not an admin; an engineer refused the week's page and its signing.
No CSP violation on any page (the replay page's WebAssembly included); screenshots are left
in the test's tmp_path/screenshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from playwright.async_api import Browser

from tests.web import test_browser
from tests.web.conftest import Console
from tests.web.review_world import WEEK
from tests.web.test_browser import Tab
from tests.web.test_review import refuse_viewings

browser = test_browser.browser
TERMINAL = "#player .ap-term"


async def terminal_shows(tab: Tab, text: str) -> None:
    await tab.page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector) || {}).textContent"
        " ?.includes(text)", arg=[TERMINAL, text], timeout=15000)  # fmt: skip


async def replay(tab: Tab, console: Console) -> None:
    page = tab.page
    await tab.submit("nav >> text=Replay")
    await page.fill("#text", "uptime")  # sessions by the text of a command
    await tab.submit("#search")
    assert "s-bob" not in await page.inner_text("table")
    await tab.shot("sessions-search")
    await tab.submit("table >> text=replay")
    assert page.url.endswith("/review/sessions/s-alice")
    await page.wait_for_selector("#player[data-ready=yes]")
    assert "in the audit trail" in await page.inner_text("#player-status")
    [viewing] = console.events("recording.replayed")
    assert (viewing.actor, viewing.session_id) == ("rita", "s-alice")
    commands = await page.inner_text("#commands")
    assert "ls /srv" in commands and "uptime" in commands
    await page.click("#commands li:has-text('ls /srv') button.seek")
    await terminal_shows(tab, "ls /srv")  # the typed command, on the terminal
    await terminal_shows(tab, "backups  www")
    await page.click("#pause")
    await page.select_option("#speed", "4")
    await page.click("#commands li:has-text('uptime') button.seek")  # seek: 40 s in
    await terminal_shows(tab, "up 12 days")
    at = await page.evaluate("window.bastionPlayer.getCurrentTime()")
    assert at >= 40.0
    await tab.shot("replay")


async def test_a_reviewer_replays_and_signs_the_week(reviewed: Console, browser: Browser,
                                                     tmp_path: Path) -> None:  # fmt: skip
    assert reviewed.store.user("rita").role == "reviewer"  # a security lead, not an admin
    shots = tmp_path / "screenshots"
    rita = await Tab.open(reviewed, browser, shots)
    await rita.sign_in("rita")
    assert "Users" not in await rita.page.inner_text("nav")  # no admin page offered
    await replay(rita, reviewed)
    refuse_viewings(reviewed)  # an insider's trigger: the viewing cannot be chained
    await rita.page.reload()
    await rita.page.wait_for_selector("#player-status.error")
    assert "the recording is not shown" in await rita.page.inner_text("#player-status")
    assert await rita.page.query_selector(TERMINAL) is None  # no cast, no terminal
    await rita.shot("replay-refused")
    with sqlite3.connect(reviewed.core.config.paths.store) as conn:
        conn.execute("DROP TRIGGER hide")
    await sign_the_week(rita, reviewed)
    await rita.close()


async def sign_the_week(rita: Tab, reviewed: Console) -> None:
    """The reviewer opens the week, replays a finding's evidence, passes one finding, flags
    the other and signs the week with a fresh TOTP code."""
    page = rita.page
    await rita.submit("nav >> text=Weekly reviews")
    await rita.shot("weekly-reviews")
    await rita.submit(f"table >> text={WEEK}")
    await rita.submit(".evidence-replay")  # a finding's evidence: its session, from that moment
    assert page.url.endswith("/review/sessions/s-alice?at=40")
    await terminal_shows(rita, "$ uptime")  # the moment the command was typed
    assert await page.evaluate("window.bastionPlayer.getCurrentTime()") == 40.0
    await rita.shot("replay-from-evidence")
    await page.go_back()
    first, second = [f.id for f in reviewed.store.report_findings(WEEK)]
    await page.fill(f"#note-{first}", "usual for the on-call week")
    await rita.submit(f"#decision-{first} button")
    assert f"finding {first} marked" in await page.inner_text(".notice")
    await page.select_option(f"#verdict-{second}", "flag")
    await page.fill(f"#note-{second}", "break-glass without a ticket: ask alice")
    await rita.submit(f"#decision-{second} button")
    await rita.shot("weekly-review-marked")
    await page.fill("#code", reviewed.code("rita"))
    await rita.submit("button:has-text('Sign the week')")
    assert "Signed by rita" in await page.inner_text("#signed")
    await rita.shot("weekly-review-signed")
    decided = {f.id: (f.state, f.reviewed_by) for f in reviewed.store.report_findings(WEEK)}
    assert decided == {first: ("ok", "rita"), second: ("flag", "rita")}
    assert reviewed.store.report_week(WEEK).signed_by == "rita"


async def test_an_engineer_is_refused_signing_the_week(reviewed: Console, browser: Browser,
                                                       tmp_path: Path) -> None:  # fmt: skip
    alice = await Tab.open(reviewed, browser, tmp_path / "screenshots")
    await alice.sign_in("alice")
    page = alice.page
    assert "Weekly reviews" not in await page.inner_text("nav")
    response = await page.goto(f"/review/weeks/{WEEK}")
    assert response is not None and response.status == 403
    assert "your role (engineer) may not use this" in await page.inner_text("main")
    await alice.shot("weekly-review-refused")
    # the sign form, built in her own page with her own CSRF token and a fresh TOTP code of
    # hers: everything a signature needs but the role
    await page.goto("/access")
    await page.eval_on_selector(
        "input[name=csrf]",
        """(token, [action, code]) => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = action;
            for (const [name, value] of [["csrf", token.value], ["code", code]]) {
                const field = document.createElement("input");
                field.type = "hidden";
                field.name = name;
                field.value = value;
                form.append(field);
            }
            form.id = "forged-sign";
            document.body.append(form);
        }""",
        [f"/review/weeks/{WEEK}/sign", reviewed.code("alice")],
    )
    async with page.expect_navigation() as navigation:
        await page.eval_on_selector("#forged-sign", "form => form.submit()")
    answer = await navigation.value
    assert answer is not None and answer.status == 403
    assert "your role (engineer) may not use this" in await page.inner_text("main")
    await alice.shot("weekly-review-sign-refused")
    assert reviewed.store.report_week(WEEK).signed_by is None
    assert reviewed.events("report.signed") == []
    await alice.close()
