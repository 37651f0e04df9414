"""The live console page in a real headless Chromium (Debian's ``chromium``, driven over
the DevTools protocol): a client admin logs in, a call placed through the simulated
Asterisk appears, is hung up from the page and disappears; another client's admin, on
the same page at the same time, never sees it.

Needs ``chromium`` (``apt-get install chromium``; tools/test.sh installs it as root);
without it the test skips, and fails with CI=true. ``CONSOLE_SCREENSHOT=PATH`` saves the
page with the live call as a PNG (docs/console.png is made so)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from tests.browser import Page, browser, chromium
from tests.conftest import unavailable
from tests.live_world import PASSWORDS, LiveWorld, live_world
from tests.test_service import bridged

pytest_plugins = ["tests.test_service"]

SEEN = """
window.seen = [];
new MutationObserver((changes) => changes.forEach((change) => change.addedNodes.forEach(
  (node) => window.seen.push(node.dataset ? node.dataset.call : null))))
  .observe(document.getElementById("calls"), { childList: true });
true
"""


@pytest.fixture
async def world(
    sim: Simulator, demo_engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[tuple[LiveWorld, httpx.AsyncClient]]:
    if chromium() is None:
        unavailable("chromium", "apt-get install chromium (as root), or run tools/test.sh")
    async with live_world(sim, demo_engine, tmp_path) as found:
        yield found


async def logged_in(page: Page, url: str, username: str) -> None:
    await page.open(url + "/console")
    await page.evaluate(SEEN)
    await page.evaluate(
        f"""document.getElementById("username").value = {json.dumps(username)};
        document.getElementById("password").value = {json.dumps(PASSWORDS[username])};
        document.getElementById("login-button").click(); true"""
    )
    await page.wait_for("document.getElementById('status').textContent === 'live'", within=30)
    login = "getComputedStyle(document.getElementById('login')).display"
    assert await page.evaluate(login) == "none"


def row(call: str) -> str:
    return f"document.querySelector('tr[data-call=\"' + CSS.escape({json.dumps(call)}) + '\"]')"


async def test_a_client_admin_sees_a_call_live_and_hangs_it_up_from_the_page(
    world: tuple[LiveWorld, httpx.AsyncClient],
    control: ControlClient,
    tmp_path: Path,
) -> None:
    live, _ = world
    (tmp_path / "north").mkdir()
    (tmp_path / "thames").mkdir()
    async with (
        browser(tmp_path / "north") as north,
        browser(tmp_path / "thames") as thames,
    ):
        await asyncio.gather(
            logged_in(north, live.url, "acme-north-admin"),
            logged_in(thames, live.url, "thames-admin"),
        )
        assert await north.evaluate("document.getElementById('who').textContent") == (
            "acme-north-admin (client)"
        )
        call = str((await control.call("acme-north-ana", "600123123"))["id"])
        await bridged(control, call)

        shown = row(call)
        await north.wait_for(
            f"{shown} && {shown}.querySelector('.state').textContent === 'answered'"
        )
        cells = await north.evaluate(
            f"Array.from({shown}.querySelectorAll('td')).map((td) => td.textContent)"
        )
        assert cells[:7] == [
            "as-1",
            call,
            "acme-north",
            "external",
            "101",
            "+34600123123",
            "answered",
        ]
        assert await north.evaluate("document.getElementById('live-count').textContent") == "1"
        if os.environ.get("CONSOLE_SCREENSHOT"):
            await north.screenshot(Path(os.environ["CONSOLE_SCREENSHOT"]))

        await north.evaluate(f"{shown}.querySelector('button').click(); true")
        assert (await control.wait_gone(call, within=10))["gone"]
        await north.wait_for(f"!{shown}")
        assert await north.evaluate("document.getElementById('live-count').textContent") == "0"
        assert await north.evaluate("window.seen") == [call]

        # thames's page was live all along and never showed the call.
        assert await thames.evaluate("document.getElementById('status').textContent") == "live"
        assert await thames.evaluate("window.seen") == []
        assert await thames.evaluate("document.querySelectorAll('#calls tr').length") == 0
        await north.evaluate("document.getElementById('logout').click(); true")
        await north.wait_for("!document.getElementById('login').hidden")

        # Tenant data is hostile: shown as text, never as markup.
        hostile = '<img src=x onerror="window.pwned=1"><b>bold</b>'
        await north.evaluate(
            f"""render({{server: "as-1", id: "h1", client: {json.dumps(hostile)},
            from: {json.dumps(hostile)}, to: "1", state: "ringing"}}); true"""
        )
        await asyncio.sleep(0.5)  # an image's error would have fired by now
        assert await north.evaluate(f"{row('h1')}.querySelector('.client').textContent") == hostile
        assert await north.evaluate("document.querySelectorAll('#calls img, #calls b').length") == 0
        assert await north.evaluate("window.pwned === undefined")
