"""History that survives real processes: kill -9 mid-ingest, a full disk, and files the hub must refuse."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import resource
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from hub.client import EngineClient
from hub.core.records import EventRecord
from hub.stores.chunks import INSERT_CHUNK, chunk_row
from hub.stores.schema import connect
from tests.conftest import WAIT, RunningHub, connect_engine, database, sse, unique

LISTENING = re.compile(r"engine hub on http://127\.0\.0\.1:(\d+)")
FAST = {
    "flush_interval": 0.02,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
    "close_timeout": 3.0,
    "max_batch": 100,
}


@dataclass
class HubProcess:
    """`python -m hub serve` as a child process; its log is read as it comes (so it never blocks)."""

    proc: asyncio.subprocess.Process
    port: int
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/engine"

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no checkpoint."""
        self.proc.kill()

    async def wait(self) -> int:
        async with asyncio.timeout(WAIT):
            code = await self.proc.wait()
            if self.reader is not None:
                await self.reader
        return code

    async def stop(self) -> None:
        """SIGTERM and a clean exit."""
        self.proc.send_signal(signal.SIGTERM)
        assert await self.wait() == 0, "\n".join(self.lines[-20:])


def hub_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hub", *args]


@asynccontextmanager
async def hub_process(
    db: str, port: int = 0, file_size_limit: int | None = None, **settings: Any
) -> AsyncIterator[HubProcess]:
    """Serve `db` on 127.0.0.1:`port` (0 picks one) with `settings` from the environment.

    `file_size_limit` caps every file the hub writes (RLIMIT_FSIZE, soft limit only so that the test
    can lift it later); writes beyond it fail with EFBIG instead of killing the hub with SIGXFSZ.
    """
    env = {**os.environ, **{f"ENGINE_HUB_{k.upper()}": str(v) for k, v in settings.items()}}

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        assert file_size_limit is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, resource.RLIM_INFINITY))

    proc = await asyncio.create_subprocess_exec(
        *hub_command("serve", "--port", str(port), "--db", db, "--log-level", "info"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        preexec_fn=limit_file_size if file_size_limit is not None else None,
    )
    running = HubProcess(proc, port)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            while not (match := LISTENING.search(line := (await proc.stdout.readline()).decode())):
                assert line, "the hub exited before listening"
        running.port = int(match.group(1))
        running.reader = asyncio.create_task(running.read())
        async with httpx.AsyncClient(timeout=WAIT) as http:
            # The socket listens before the lifespan started; this answers once the store is open.
            assert (await http.get(f"{running.url}/healthz")).status_code == 200
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if running.reader is not None:
            running.reader.cancel()
            await asyncio.gather(running.reader, return_exceptions=True)


def integrity(conn: sqlite3.Connection) -> str:
    return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def refuses_a_second_copy(conn: sqlite3.Connection, engine: str) -> bool:
    """Whether the database itself ignores a stored (engine, boot_id, seq) stored again."""
    [(ident, boot_id, seq, kind, count)] = conn.execute(
        "SELECT max(id), boot_id, seq, type, (SELECT count(*) FROM events) FROM events "
        "WHERE engine = ?",
        (engine,),
    )
    again = EventRecord(ident + 10**9, kind, 0.0, engine, seq, boot_id, msgspec.Raw(b"{}"))
    conn.execute("BEGIN")
    try:
        conn.execute(INSERT_CHUNK, chunk_row([again]))
        [(after,)] = conn.execute("SELECT count(*) FROM events")
    finally:
        conn.execute("ROLLBACK")
    return bool(after == count)


def publish(client: EngineClient, numbers: range) -> None:
    for n in numbers:
        client.publish("cycle", {"n": n})


async def test_kill_9_mid_ingest_keeps_every_acked_message_and_stores_each_once(
    tmp_path: Path,
) -> None:
    """kill -9 mid-ingest, restart on the same file: acked messages survive, the replay fills in, no duplicates."""
    db = str(tmp_path / "hub.db")
    name = unique("crash")
    async with hub_process(db, commit_interval=0.05) as first:
        client = EngineClient(first.ws_url, engine=name, **FAST).start()
        try:
            for start in range(0, 2000, 250):  # acknowledged before the crash
                publish(client, range(start, start + 250))
                assert await asyncio.to_thread(client.flush, WAIT), client.stats
            publish(client, range(2000, 5000))  # the sender is busy with these when the hub dies
            first.kill()
            assert await first.wait() == -signal.SIGKILL
            acked_at_kill = client.stats.acked_seq
            publish(client, range(5000, 6000))  # the engine goes on while the hub is down
            with database(db) as conn:
                assert integrity(conn) == "ok"
                at_kill = {
                    seq: json.loads(payload)["n"]
                    for seq, payload in conn.execute(
                        "SELECT seq, payload FROM events WHERE engine = ?", (name,)
                    )
                }
                [(last_seq,)] = conn.execute("SELECT last_seq FROM boots WHERE engine = ?", (name,))
            assert last_seq >= acked_at_kill >= 2000
            async with hub_process(db, port=first.port, commit_interval=0.05) as second:
                assert await asyncio.to_thread(client.flush, 2 * WAIT), client.stats
                await asyncio.to_thread(client.close)
                await second.stop()
        finally:
            await asyncio.to_thread(client.close, 0.5)
    assert client.stats.dropped == {}  # everything fit in the client's buffer
    with database(db) as conn:
        assert integrity(conn) == "ok"
        stored = conn.execute(
            "SELECT seq, boot_id, payload FROM events WHERE engine = ? ORDER BY seq", (name,)
        ).fetchall()
        [(count, distinct)] = conn.execute(
            "SELECT count(*), count(DISTINCT seq) FROM events WHERE engine = ?", (name,)
        )
    assert count == distinct == 6000
    with database(db, read_only=False) as conn:
        assert refuses_a_second_copy(conn, name)
    assert {boot for _, boot, _ in stored} == {client.boot_id}
    final = {seq: json.loads(payload)["n"] for seq, _, payload in stored}
    assert sorted(final.values()) == list(range(6000))  # all published, none twice
    acked = {seq: n for seq, n in final.items() if seq <= acked_at_kill}
    assert len(acked) >= 2000
    assert {seq: at_kill.get(seq) for seq in acked} == acked  # in the file the killed hub left


async def test_replay_after_a_crash_is_deduplicated_by_seq(tmp_path: Path) -> None:
    """After kill -9, welcome.last_seq is the highest stored seq and a full replay is stored once."""
    db = str(tmp_path / "hub.db")
    name = unique("dedupe")
    async with (
        hub_process(db, commit_interval=0.05) as first,
        httpx.AsyncClient(base_url=first.url, timeout=WAIT) as http,
    ):
        running = RunningHub(None, first.port, http)  # type: ignore[arg-type]
        engine = await connect_engine(running, name, boot_id="b1")
        await engine.send(*(cycle(n) for n in range(1, 6)), batch=True)
        await engine.wait_acked(5)
        await engine.send(*(cycle(n) for n in range(6, 11)), batch=True)
        first.kill()  # 6..10 may or may not have been committed
        await first.wait()
    with database(db) as conn:
        [(committed,)] = conn.execute("SELECT max(seq) FROM events WHERE engine = ?", (name,))
    assert committed >= 5
    async with (
        hub_process(db, port=first.port, commit_interval=0.05) as second,
        httpx.AsyncClient(base_url=second.url, timeout=WAIT) as http,
    ):
        running = RunningHub(None, second.port, http)  # type: ignore[arg-type]
        again = await connect_engine(running, name, boot_id="b1")
        assert again.welcome["last_seq"] == committed
        # At-least-once: a client may resend everything it still holds, acked or not.
        await again.send(*(cycle(n, seq=n) for n in range(1, 13)), batch=True)
        await again.wait_acked(12)
        await again.close()
        stats = (await http.get("/api/telemetry/stats")).json()
        assert stats["drops"]["duplicate"] == committed
        await second.stop()
    with database(db) as conn:
        stored = conn.execute(
            "SELECT seq, payload FROM events WHERE engine = ? ORDER BY seq", (name,)
        ).fetchall()
    assert [(seq, json.loads(payload)["n"]) for seq, payload in stored] == [
        (n, n) for n in range(1, 13)
    ]


def cycle(n: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "event", "type": "cycle", "payload": {"n": n}, **extra}


class Acks:
    """Reads an engine socket in the background and keeps the highest ack seen."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seq = 0
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                message = json.loads(data)
                if message["kind"] == "ack":
                    self.seq = max(self.seq, message["seq"])
                    self._changed.set()
        except websockets.ConnectionClosed:
            pass

    async def wait(self, seq: int, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while self.seq < seq:
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        await self.ws.close()
        await self._task


class Dashboard:
    """An overview page's live socket: collects the HTML fragments the hub pushes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def until(self, predicate: Any) -> str:
        """The next pushed frame for which `predicate(frame)` holds."""
        async with asyncio.timeout(WAIT):
            while True:
                frame = await self.ws.recv()
                assert isinstance(frame, str)
                if predicate(frame):
                    return frame


@asynccontextmanager
async def dashboard(port: int) -> AsyncIterator[Dashboard]:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/dashboard?view=overview") as ws:
        yield Dashboard(ws)


def padded(n: int) -> dict[str, Any]:
    return {"kind": "event", "type": "cycle", "payload": {"n": n, "pad": "x" * 1000}}


def not_saving(frame: str) -> bool:
    return "history not saving" in frame


def saving_again(frame: str) -> bool:
    return 'id="hub-status"' in frame and "history not saving" not in frame


async def test_full_disk_keeps_live_data_pauses_acks_and_recovers(tmp_path: Path) -> None:
    """With the file size capped, live views go on, acks pause and /healthz degrades; lifting it heals all."""
    db = str(tmp_path / "hub.db")
    name = unique("full")
    async with (
        hub_process(db, file_size_limit=2 * 1024 * 1024, commit_interval=0.05) as proc,
        httpx.AsyncClient(base_url=proc.url, timeout=WAIT) as http,
    ):
        running = RunningHub(None, proc.port, http)  # type: ignore[arg-type]
        engine = await connect_engine(running, name, boot_id="b1")
        acks = Acks(engine.ws)
        await engine.send(padded(0))
        await acks.wait(1)  # acking works while there is room

        for _ in range(400):  # at most 8 MB, far beyond the cap (64 KiB pages: 2 MiB is little)
            sent_before = await engine.send(
                *(padded(engine.seq + 1) for _ in range(20)), batch=True
            )
            health = (await http.get("/healthz")).json()
            if health["status"] == "degraded":
                break
        else:
            pytest.fail(f"the store never failed; acked {acks.seq} of {engine.seq}")
        assert health["store"]["ok"] is False and health["store"]["acking"] is False
        assert health["store"]["problem"]
        async with dashboard(proc.port) as page:
            await page.until(not_saving)
        assert "history not saving" in (await http.get("/")).text

        for _ in range(3):  # the engine keeps going
            await engine.send(*(padded(engine.seq + 1) for _ in range(20)), batch=True)
        async with sse(running, engine=name) as stream:
            marker = await engine.send({"kind": "event", "type": "marker", "payload": {"live": 1}})
            seen = await stream.until(lambda e: e.data.get("type") == "marker")
        assert seen.data["seq"] == marker
        [newest] = (await running.get("/api/telemetry/events", engine=name, limit=1))["events"]
        assert (newest["seq"], newest["payload"]) == (marker, {"live": 1})  # from the rings
        assert (await http.get("/healthz")).json()["status"] == "degraded"
        # Acks only ever covered commits before the failed write; nothing sent since is acked.
        assert acks.seq < sent_before < marker

        resource.prlimit(
            proc.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        await acks.wait(marker, timeout=2 * WAIT)  # the writer retries with back-off (at most 5 s)
        health = (await http.get("/healthz")).json()
        # Only the store's reasons: on a crowded machine the hub may also say its loop lags.
        store_reasons = [r for r in health["reasons"] if not r.startswith("hub lagging ")]
        assert not store_reasons and health["store"]["problem"] is None
        async with dashboard(proc.port) as page:
            await page.until(saving_again)
        await acks.close()
        await proc.stop()
    with database(db) as conn:
        assert integrity(conn) == "ok"
        seqs = [
            s
            for (s,) in conn.execute(
                "SELECT seq FROM events WHERE engine = ? ORDER BY seq", (name,)
            )
        ]
    assert seqs == list(range(1, marker + 1))  # every event, exactly once


def engine_hub_database(path: Path) -> None:
    """A valid Engine Hub database with some history, closed cleanly (no WAL left)."""
    with closing(connect(str(path))) as conn:
        pad = msgspec.Raw(b'{"pad":"' + b"x" * 300 + b'"}')
        events = [EventRecord(n, "cycle", 0.0, "fno", n, "b1", pad) for n in range(1, 300)]
        conn.execute(INSERT_CHUNK, chunk_row(events))


def bad_file(kind: str, path: Path) -> None:
    """Put a file at `path` that the hub must refuse."""
    if kind == "text file":
        path.write_text("these are my notes, not a database\n")
    elif kind == "other program's sqlite":
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
            conn.execute("INSERT INTO contacts VALUES ('ada', '123')")
            conn.commit()
    elif kind == "truncated hub database":
        engine_hub_database(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbled hub database":
        engine_hub_database(path)
        data = bytearray(path.read_bytes())
        data[3 * 4096 : 5 * 4096] = b"\xa5" * (2 * 4096)  # two b-tree pages overwritten
        path.write_bytes(bytes(data))
    else:
        raise AssertionError(kind)


BAD_FILES = [
    "text file",
    "other program's sqlite",
    "truncated hub database",
    "garbled hub database",
]


@dataclass
class Refusal:
    """How `engine-hub serve --db <bad file>` ended."""

    code: int
    output: str
    seconds: float
    before: str
    after: str


@pytest.fixture(scope="module")
async def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Refusal]:
    """Serve each kind of bad file once (in parallel); the tests below judge the outcome."""

    async def serve(kind: str) -> Refusal:
        path = tmp_path_factory.mktemp("bad") / "hub.db"
        bad_file(kind, path)
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *hub_command("serve", "--port", "0", "--db", str(path)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(WAIT):
                out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        after = hashlib.sha256(path.read_bytes()).hexdigest()
        return Refusal(proc.returncode, out.decode(), time.monotonic() - started, before, after)

    results = await asyncio.gather(*(serve(kind) for kind in BAD_FILES))
    return dict(zip(BAD_FILES, results, strict=True))


@pytest.mark.parametrize("kind", BAD_FILES)
async def test_bad_database_file_is_refused_and_left_untouched(
    refusals: dict[str, Refusal], kind: str
) -> None:
    """`serve --db` on a foreign, truncated or garbled file exits non-zero at once and never changes it."""
    refusal = refusals[kind]
    assert refusal.code != 0, refusal.output
    assert refusal.seconds < WAIT
    assert refusal.after == refusal.before
    assert "left untouched" in refusal.output


@pytest.mark.parametrize("kind", BAD_FILES)
async def test_bad_database_file_error_is_one_clear_line(
    refusals: dict[str, Refusal], kind: str
) -> None:
    """The refusal is one readable line naming the file, without a traceback."""
    output = refusals[kind].output
    assert "Traceback" not in output, output
    mentions = [line for line in output.splitlines() if "hub.db" in line]
    assert len(mentions) == 1 and "left untouched" in mentions[0], output
