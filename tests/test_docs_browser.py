"""The docs page as a user sees it: ``/schema`` in headless Chromium, against a real server, offline.

A ``taskapi serve`` process on its own fresh database serves the page. Debian's Chromium (driven by
Playwright, whose own browser downloads are never used) must render the operations, log in through
the Authorize dialog's OAuth2 password flow, and run "Try it out" on ``GET /api/v1/users/me``; every
request the page makes must go to that server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Locator, Page, async_playwright, expect

from tests.serverproc import ServerProcess, serving

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox: CI runs as root in a container. The rest keeps Chromium from calling home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL = "ada.docs@example.com"
PASSWORD = "correct-horse-battery"


@pytest.fixture
async def server(admin_url: str) -> AsyncIterator[ServerProcess]:
    """A ``taskapi serve`` process on a fresh, migrated database."""
    async with serving(admin_url, "taskapi_docs") as server:
        yield server


def _operation(page: Page, method: str, path: str) -> Locator:
    """An operation block, found by method and path (not by operationId, which may be renamed)."""
    return page.locator(f".opblock.opblock-{method}", has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))


async def test_docs_render_offline_authorize_and_try_users_me(server: ServerProcess, tmp_path: Path) -> None:
    base_url = server.base_url
    if not await asyncio.to_thread(CHROMIUM.exists):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to test the docs")
    async with httpx.AsyncClient(base_url=base_url) as api:
        response = await api.post("/api/v1/auth/register", json={"email": EMAIL, "password": PASSWORD})
        assert response.status_code == 201, server.output()[-3000:]

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            requested: list[str] = []
            context.on("request", lambda request: requested.append(request.url))
            page = await context.new_page()
            script_errors: list[str] = []
            page.on("pageerror", lambda error: script_errors.append(str(error)))

            await page.goto(f"{base_url}/schema")
            me = _operation(page, "get", "/api/v1/users/me")
            await expect(me).to_be_visible(timeout=30_000)
            await expect(_operation(page, "post", "/api/v1/tasks")).to_be_visible()
            assert await page.locator(".opblock").count() >= 20
            # Swagger UI's "Unable to render this definition" and its spec-error pane.
            await expect(page.locator(".version-pragma")).to_have_count(0)
            await expect(page.locator(".errors-wrapper")).to_have_count(0)
            await expect(page.get_by_text("Unable to render")).to_have_count(0)

            # Before authorizing, "Try it out" gets the API's 401: the button below is what logs in.
            await me.locator(".opblock-summary-control").click()
            await me.locator("button.try-out__btn").click()
            await me.locator("button.execute").click()
            await expect(me.locator(".live-responses-table tbody .response-col_status")).to_have_text("401")

            await page.locator(".auth-wrapper button.authorize").click()
            dialog = page.locator(".dialog-ux")
            await dialog.locator("#oauth_username").fill(EMAIL)
            await dialog.locator("#oauth_password").fill(PASSWORD)
            async with page.expect_response(f"{base_url}/api/v1/auth/token") as token_answer:
                await dialog.locator(".auth-btn-wrapper button.authorize").click()
            assert (await token_answer.value).status == 200
            await expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
            await dialog.locator("button.btn-done").click()
            await expect(dialog).to_have_count(0)
            await expect(page.locator(".auth-wrapper button.authorize.locked")).to_be_visible()

            async with page.expect_request(f"{base_url}/api/v1/users/me") as me_request:
                await me.locator("button.execute").click()
            assert ((await me_request.value).headers.get("authorization") or "").startswith("Bearer ")
            await expect(me.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")
            await expect(me.locator(".live-responses-table tbody .response-col_description")).to_contain_text(EMAIL)

            await me.scroll_into_view_if_needed()
            await page.screenshot(path=str(tmp_path / "docs-users-me.png"))
        finally:
            await browser.close()

    assert script_errors == []
    assert requested, "the page made no requests at all"
    off_machine = [url for url in requested if not url.startswith(f"{base_url}/")]
    assert off_machine == [], f"the docs page requested URLs outside the server under test: {off_machine}"
    assert f"{base_url}/schema/assets/swagger-ui-bundle.js" in requested
