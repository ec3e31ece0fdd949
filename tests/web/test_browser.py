"""The console in Debian's headless Chromium (Playwright): sign-in with TOTP, an engineer
asking for access, refused on an admin page and refused a form without its CSRF token. The
pages must run without one CSP violation; screenshots of each are left in the test's
tmp_path/screenshots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from bastion.web.security import CSP
from tests.web.conftest import PASSWORDS, Console

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by scripts/test


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


class Tab:
    """One browser context on the console, noting every console error (CSP violations are)."""

    def __init__(self, console: Console, context: BrowserContext, page: Page, shots: Path):
        self.console, self.context, self.page, self.shots = console, context, page, shots
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    @classmethod
    async def open(cls, console: Console, browser: Browser, shots: Path) -> Tab:
        context = await browser.new_context(ignore_https_errors=True, base_url=console.url,
                                            viewport={"width": 1280, "height": 800})  # fmt: skip
        return cls(console, context, await context.new_page(), shots)

    async def shot(self, name: str) -> None:
        self.shots.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    async def sign_in(self, user: str, shot: str | None = None) -> None:
        await self.page.goto("/access")  # not signed in: sent to the sign-in page
        assert self.page.url.endswith("/signin")
        await self.page.fill("#username", user)
        await self.page.fill("#password", PASSWORDS[user])
        await self.page.fill("#code", self.console.code(user))
        if shot:
            await self.shot(shot)
        await self.submit("#signin")
        assert self.page.url.endswith("/access")

    async def submit(self, selector: str) -> None:
        """Click a form's button and wait for the page it leads to."""
        async with self.page.expect_navigation():
            await self.page.click(selector)

    async def close(self) -> None:
        await self.context.close()
        # a refusal's status is logged as an error too; anything else (a CSP violation,
        # a script error) is a fault
        assert not [
            e
            for e in self.errors
            if not e.startswith("Failed to load resource: the server responded")
        ], self.errors


async def test_an_engineer_signs_in_and_asks_for_access(console: Console, browser: Browser,
                                                        tmp_path: Path) -> None:  # fmt: skip
    tab = await Tab.open(console, browser, tmp_path / "screenshots")
    page = tab.page
    await tab.sign_in("alice", shot="signin")
    assert await page.inner_text("h1") == "My access"
    assert "alice (engineer)" in await page.inner_text("nav")
    await page.fill("#target", "web-1")
    await page.fill("#for", "2h")
    await page.fill("#reason", "deploy hotfix for INC-42")
    await tab.submit("button:has-text('Request access')")
    notice = await page.inner_text(".notice")
    assert "web-1" in notice and "pending" in notice
    assert "deploy hotfix for INC-42" in await page.inner_text("table")
    await tab.shot("access-requested")
    [made] = console.store.requests()
    assert (made.user, made.requested_by, made.target, made.state) == (
        "alice", "alice", "web-1", "pending")  # fmt: skip
    await tab_pages(tab, console)
    await tab.submit("#signout")
    assert tab.page.url.endswith("/signin")
    await tab.page.goto("/access")  # the cookie is gone and its session ended
    assert tab.page.url.endswith("/signin")
    await tab.close()


async def test_a_wrong_code_is_refused_on_the_sign_in_page(console: Console, browser: Browser,
                                                           tmp_path: Path) -> None:  # fmt: skip
    tab = await Tab.open(console, browser, tmp_path / "screenshots")
    page = tab.page
    await page.goto("/signin")
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORDS["alice"])
    await page.fill("#code", "000000")
    await tab.submit("#signin")
    assert await page.inner_text(".error") == "wrong verification code"
    assert page.url.endswith("/signin")
    await tab.shot("signin-refused")
    await tab.close()


async def tab_pages(tab: Tab, console: Console) -> None:
    """The engineer's other pages: unmasking, sessions, and a ticket with its psql command."""
    page = tab.page
    await page.goto("/unmask")
    await tab.shot("unmask")
    await page.goto("/sessions")
    assert "this one" in await page.inner_text("body")
    await tab.shot("sessions")
    console.core.access.grant(user="alice", target="orders", duration=timedelta(hours=1),
                              mode="read", reason="reporting for finance", actor="ada")  # fmt: skip
    await page.goto("/ticket")
    await page.fill("#target", "orders")
    await page.fill("#code", console.code("alice"))
    await tab.submit("button:has-text('Get a ticket')")
    command = await page.inner_text("#psql")
    assert command.startswith('psql "host=127.0.0.1 port=') and "password=bt_" in command
    assert "dbname=orders" in command and "sslmode=verify-full" in command
    await tab.shot("ticket")


async def test_an_engineer_is_refused_on_an_admin_page(console: Console, browser: Browser,
                                                       tmp_path: Path) -> None:  # fmt: skip
    shots = tmp_path / "screenshots"
    engineer = await Tab.open(console, browser, shots)
    await engineer.sign_in("alice")
    assert "Users" not in await engineer.page.inner_text("nav")
    response = await engineer.page.goto("/admin/users")
    assert response is not None and response.status == 403
    assert "your role (engineer) may not use this" in await engineer.page.inner_text("main")
    await engineer.shot("admin-refused")
    admin = await Tab.open(console, browser, shots)  # a second browser context
    await admin.sign_in("ada")
    await admin.submit("nav >> text=Users")
    assert await admin.page.inner_text("h1") == "Users"
    assert "rita" in await admin.page.inner_text("table")
    await admin.shot("admin-users")
    await engineer.close()
    await admin.close()


async def test_a_form_without_its_csrf_token_is_refused(console: Console, browser: Browser,
                                                        tmp_path: Path) -> None:  # fmt: skip
    tab = await Tab.open(console, browser, tmp_path / "screenshots")
    await tab.sign_in("alice")
    page = tab.page
    await page.fill("#target", "web-1")
    await page.fill("#reason", "a form stripped of its token")
    await page.eval_on_selector("form[action='/access/request'] input[name=csrf]",
                                "input => input.remove()")  # fmt: skip
    await tab.submit("button:has-text('Request access')")
    assert "no valid CSRF token" in await page.inner_text("main")
    await tab.shot("csrf-refused")
    assert console.store.requests() == []
    await tab.close()


async def test_the_console_errors_would_show_an_inline_script(console: Console, browser: Browser,
                                                              tmp_path: Path) -> None:  # fmt: skip
    """Control: a page with an inline script, under the console's own CSP, is refused by
    Chromium and the refusal reaches Tab.errors, so an empty list above means something."""
    tab = await Tab.open(console, browser, tmp_path / "screenshots")

    async def fulfil(route: Route) -> None:
        await route.fulfill(
            status=200,
            content_type="text/html",
            headers={"Content-Security-Policy": CSP},
            body="<p>x</p><script>window.ran = 1</script>",
        )

    await tab.page.route("**/inline-control", fulfil)
    await tab.page.goto("/inline-control")
    assert await tab.page.evaluate("window.ran") is None
    assert any("Content Security Policy" in e for e in tab.errors), tab.errors
    await tab.context.close()
