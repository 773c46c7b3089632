"""Regenerate docs/dashboard.png: run the demo, let it trade for a while, shoot the overview.

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
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(url)
            await page.wait_for_selector("#conn.conn-live")
            await asyncio.sleep(seconds)  # let the simulated engines trade (not a test)
            await page.screenshot(path=str(ROOT / "docs" / "dashboard.png"))
            await browser.close()
    finally:
        demo.terminate()
        await demo.wait()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0))
