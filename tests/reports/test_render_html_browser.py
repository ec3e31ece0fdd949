"""The HTML report in Debian's headless Chromium: it renders, prints, runs and fetches nothing.

Every request the page makes is recorded and aborted; the test fails on any. A control
test shows the same harness does catch a page that reaches out, so an empty list means
something. The screenshot and the PDF are left in the test's tmp_path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from bastion.reports.render_html import render_html
from tests.reports.sample import IMG_STATEMENT, SCRIPT_COMMAND, sample_report

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by scripts/test


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


def open_offline(browser: Browser, html: bytes) -> tuple[Page, list[str]]:
    """A page holding `html` in a context where every request is recorded and refused."""
    requests: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=True)

    def refuse(route: Route) -> None:
        requests.append(route.request.url)
        route.abort()

    context.route("**/*", refuse)
    page = context.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.set_content(html.decode("utf-8"), wait_until="load")
    return page, requests


def test_the_report_renders_offline_and_runs_nothing(browser: Browser, tmp_path: Path) -> None:
    page, requests = open_offline(browser, render_html(sample_report()))
    try:
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert (tmp_path / "report.png").stat().st_size > 10_000
        body = page.inner_text("body")
        for title in ("Break-glass by alice on db1", "DROP TABLE on orders by bob",
                      "dave locked out after 5 failed TOTP codes",
                      "Session at 03:12 local time by carol on web1",
                      "Unmask of customer 4711 by carol on orders",
                      "Grant 14 to dave on db1 was never used"):  # fmt: skip
            assert title in body
        assert body.index("Break-glass by alice") < body.index("Grant 14 to dave")  # high first
        assert "bastion replay 0b6f7c1e-alice-ssh-db1 --at 328.5" in body
        shown = page.locator("pre").all_inner_texts()
        assert SCRIPT_COMMAND in shown and IMG_STATEMENT in shown  # shown as text
        assert page.evaluate("window.__pwned") is None  # and never run
        assert page.locator("script").count() == 0
        assert page.locator("img[onerror]").count() == 0
        widths = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == 2 and all(width > 0 for width in widths)  # the charts decoded
        page.emulate_media(media="print")
        pdf = page.pdf(path=str(tmp_path / "report.pdf"), format="A4", landscape=True)
        assert pdf.startswith(b"%PDF")
    finally:
        page.context.close()
    assert requests == []


def test_the_harness_catches_a_page_that_reaches_out(browser: Browser) -> None:
    html = b'<!DOCTYPE html><img src="http://127.0.0.1:9/beacon.png"><p>x</p>'
    page, requests = open_offline(browser, html)
    page.context.close()
    assert "http://127.0.0.1:9/beacon.png" in requests
