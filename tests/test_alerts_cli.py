"""`engine-hub alerts test --receiver NAME` and `engine-hub demo --webhook URL`, as child processes."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.conftest import run_cli
from tests.test_alerts import receiver


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[[alerts.receivers]]\nname = "ops"\ntype = "webhook"\nurl = "{url}"\ntimeout = "3s"\n'
    )
    return str(path)


async def test_alerts_test_sends_one_notification_and_reports_the_answer(tmp_path: Path) -> None:
    """A working receiver gets an Alertmanager v4 body and the command says so (exit 0), without
    printing the URL; a failing one exits 1; an unknown name exits 2 listing the configured ones."""
    async with receiver() as ok:
        config = _config(tmp_path, ok.url("/hook/SECRET-1"))
        code, out, err = await run_cli("alerts", "test", "--receiver", "ops", "--config", config)
        assert code == 0, err
        assert "receiver 'ops'" in out and "HTTP 200" in out and "SECRET" not in out + err
        path, body = await ok.next()
        assert path == "/hook/SECRET-1" and body["version"] == "4"
        assert body["alerts"][0]["labels"]["alertname"] == "test"
        code, out, err = await run_cli("alerts", "test", "--receiver", "nope", "--config", config)
        assert code == 2 and "no receiver named 'nope'" in err and "(ops)" in err
    async with receiver("fail") as bad:
        config = _config(tmp_path, bad.url("/hook/SECRET-2"))
        code, out, err = await run_cli("alerts", "test", "--receiver", "ops", "--config", config)
        assert code == 1 and "answered HTTP 500" in err and "SECRET" not in out + err


async def test_demo_sends_its_incidents_alerts_to_the_webhook() -> None:
    """`engine-hub demo --webhook URL`: an incident fires an alert that reaches the URL."""
    async with receiver() as hook:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            "demo",
            "--port",
            "0",
            "--incident-every",
            "1",
            "--webhook",
            hook.url(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(30):  # engines start, then an incident, then its alert
                assert re.search(rb"open http://", await proc.stdout.readline())
                _, body = await hook.requests.get()
            assert body["version"] == "4" and body["status"] == "firing"
            assert body["alerts"][0]["labels"]["engine"] in ("fno", "equity", "options")
        finally:
            proc.terminate()
            await proc.wait()
