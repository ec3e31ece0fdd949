"""The admin's pages in Debian's headless Chromium: an engineer asks for access in one browser
context, an admin approves it in a second with their own code, and the engineer sees the
grant; a new user's QR code renders under the CSP. Screenshots of the admin pages are left in
the test's tmp_path/screenshots."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from playwright.async_api import Browser

from tests.realssh import Sshd
from tests.web.conftest import Console
from tests.web.test_browser import Tab, browser  # noqa: F401 - the fixture, shared

REASON = "deploy hotfix for INC-42"


async def test_an_engineer_asks_an_admin_approves_and_the_engineer_sees_the_grant(
    console: Console,
    browser: Browser,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    shots = tmp_path / "screenshots"
    engineer = await Tab.open(console, browser, shots)
    await engineer.sign_in("alice")
    await engineer.page.fill("#target", "web-1")
    await engineer.page.fill("#for", "2h")
    await engineer.page.fill("#reason", REASON)
    await engineer.submit("button:has-text('Request access')")
    assert "pending" in await engineer.page.inner_text(".notice")
    [asked] = console.store.requests()

    admin = await Tab.open(console, browser, shots)  # a second browser context
    page = admin.page
    await admin.sign_in("ada")
    await admin.submit("nav >> text=Pending")
    assert await page.inner_text("h1") == "Pending requests"
    row = f"[data-decide='requests-{asked.id}']"
    assert REASON in await page.inner_text("table")
    await admin.shot("admin-pending")
    await page.fill(f"{row} form[action='/admin/requests/approve'] input[name=code]",
                    console.code("ada"))  # fmt: skip
    await admin.submit(f"{row} button:has-text('Approve')")
    assert f"request {asked.id}: alice -> web-1" in await page.inner_text(".notice")
    assert "No access requests are waiting." in await page.inner_text("main")

    await engineer.page.goto("/access")
    grants = await engineer.page.inner_text("table")
    assert "web-1" in grants and "active" in grants and REASON in grants
    await engineer.shot("engineer-granted")

    await admin.submit("nav >> text=Grants")
    assert "alice" in await page.inner_text("table")
    await admin.shot("admin-grants")
    await admin.submit("nav >> text=Targets")
    assert "web-1" in await page.inner_text("table")
    await admin.shot("admin-targets")
    await admin.submit("nav >> text=Users")
    await page.fill("#name", "carol")
    await page.select_option("#role", "engineer")
    await admin.submit("button:has-text('Add user')")
    assert await page.inner_text("h1") == "New user"
    width = await page.eval_on_selector("#qr", "img => img.naturalWidth")
    assert width > 100  # the QR code's SVG loaded: the CSP let the data: image through
    await admin.shot("admin-enrolment")
    await page.goto("/admin/users")
    assert "carol" in await page.inner_text("table")
    await admin.shot("admin-users")
    await engineer.close()
    await admin.close()
    assert {p.name for p in shots.iterdir()} >= {
        "admin-pending.png", "admin-grants.png", "admin-targets.png",
        "admin-enrolment.png", "admin-users.png"}  # fmt: skip


async def test_an_admin_adds_an_ssh_target_and_confirms_its_host_key(
    console: Console,
    browser: Browser,  # noqa: F811 - the fixture imported above
    sshd: Sshd,
    tmp_path: Path,
) -> None:
    admin = await Tab.open(console, browser, tmp_path / "screenshots")
    page = admin.page
    await admin.sign_in("ada")
    await admin.submit("nav >> text=Targets")
    await page.fill("#name", "web-2")
    await page.fill("#host", sshd.host)
    await page.fill("#port", str(sshd.port))
    await page.fill("#login", sshd.login)
    await page.fill("#private_key", sshd.client_key_path.read_text(encoding="utf-8"))
    await admin.shot("admin-target-add")
    await admin.submit("button:has-text('Add SSH target')")
    assert await page.inner_text("h1") == "Host key of web-2"
    assert await page.inner_text("#fingerprint") == sshd.host_key_fingerprint
    assert console.store.target("web-2").host_key is None  # not before it is confirmed
    await admin.shot("admin-target-host-key")
    await admin.submit("button:has-text('Trust this host key')")
    assert f"host key {sshd.host_key_fingerprint} pinned" in await page.inner_text(".notice")
    assert console.store.target("web-2").host_key == sshd.host_key_pub.strip()
    await admin.shot("admin-targets-pinned")
    await admin.close()


async def test_after_the_step_up_window_a_fresh_code_in_the_form_lets_the_admin_revoke(
    console: Console,
    browser: Browser,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    made = console.core.access.grant(user="bob", target="web-1", duration=timedelta(hours=2),
                                     mode="read", reason=REASON, actor="ada")  # fmt: skip
    admin = await Tab.open(console, browser, tmp_path / "screenshots")
    page = admin.page
    await admin.sign_in("ada")
    await admin.submit("nav >> text=Grants")
    console.clock.advance(console.core.config.web.step_up + timedelta(seconds=1))
    revoke = f"[data-grant='{made.id}'] button:has-text('Revoke')"
    await admin.submit(revoke)
    assert await page.inner_text("h1") == "Confirm it is you"
    assert "needs a fresh verification code" in await page.inner_text(".error")
    assert console.store.grant(made.id).revoked_at is None
    await admin.shot("admin-step-up")
    await page.fill("#code", "000000")
    await admin.submit("button:has-text('Confirm')")
    assert "wrong verification code" in await page.inner_text(".error")
    await page.fill("#code", console.code("ada"))
    await admin.submit("button:has-text('Confirm')")
    assert await page.inner_text("h1") == "Grants"  # back where the refused change was made
    await admin.submit(revoke)
    assert f"grant {made.id} revoked" in await page.inner_text(".notice")
    assert console.store.grant(made.id).revoked_at is not None
    await admin.close()
