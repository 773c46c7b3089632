"""Regenerate the docs' screenshots: run the demo, let it trade for a while, shoot the pages.

docs/dashboard.png (overview, 1400 px), docs/dashboard-phone.png (overview, 390 px, a phone) and
docs/engine-page.png (one engine's page, 1400 px).

Usage: .venv/bin/python scripts/screenshot.py [seconds]   (needs /usr/bin/chromium)
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-sync",
]


async def main(seconds: float) -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "demo",
        "--port",
        "0",
        "--incident-every",
        "6",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert demo.stdout is not None
    url = ""
    while not url:
        match = re.search(rb"open (http://\S+)", await demo.stdout.readline())
        url = match.group(1).decode() if match else ""
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            dark = {"width": 1400, "height": 900}
            page = await browser.new_page(viewport=dark, color_scheme="dark")
            await page.goto(url)
            await page.wait_for_selector("#conn.conn-live")
            await asyncio.sleep(seconds)  # let the simulated engines trade (not a test)
            await page.screenshot(path=str(ROOT / "docs" / "dashboard.png"))
            # The phone shot shows the light theme (the page follows prefers-color-scheme).
            phone = await browser.new_page(
                viewport={"width": 390, "height": 844}, color_scheme="light"
            )
            await phone.goto(url)
            await phone.wait_for_selector("#conn.conn-live")
            await phone.screenshot(path=str(ROOT / "docs" / "dashboard-phone.png"))
            engine = await browser.new_page(viewport=dark, color_scheme="dark")
            await engine.goto(url.rstrip("/") + "/engines/equity")
            await engine.wait_for_selector("#conn.conn-live")
            await engine.screenshot(path=str(ROOT / "docs" / "engine-page.png"))
            await browser.close()
    finally:
        demo.terminate()
        await demo.wait()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0))
