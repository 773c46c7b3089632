"""Server child processes shared by the benchmarks: spawn, serve on port 0, measure, stop."""

from __future__ import annotations

import asyncio
import cProfile
import http.client
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "Profiling",
    "http_get",
    "latency_prober",
    "proc_cpu",
    "serve_on_port_0",
    "spawn_server",
    "stop_process",
]

# The hub of the checkout these scripts are in, for them and the servers they spawn (which inherit
# sys.path), not the one the virtualenv's editable install points at: an A/B run of two worktrees
# sharing one virtualenv must measure two versions of the code, not one twice.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOST = "127.0.0.1"


class Profiling:
    """cProfile in a server process, driven by the parent: SIGUSR1 on, SIGUSR2 off, SIGHUP dump.

    The parent switches it on for the timed part only and asks for a dump when it wants one; the
    dump is written to a temporary name and renamed, so it appears complete, and a new profile
    starts for the next dump.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.profiler = cProfile.Profile()

    def install(self) -> None:
        signal.signal(signal.SIGUSR1, lambda *_: self.profiler.enable())
        signal.signal(signal.SIGUSR2, lambda *_: self.profiler.disable())
        signal.signal(signal.SIGHUP, lambda *_: self.dump())

    def dump(self) -> None:
        self.profiler.disable()
        self.profiler.dump_stats(self.path + ".tmp")
        os.replace(self.path + ".tmp", self.path)
        self.profiler = cProfile.Profile()


class _Server(Protocol):
    async def serve(self, sockets: list[Any]) -> None: ...


def serve_on_port_0(
    server: _Server, port_out: Connection, before: Callable[[], None] | None = None
) -> None:
    """In the child: bind 127.0.0.1:0, report the port, run `before`, serve until SIGTERM."""
    from hub.web.server import bind

    sock = bind(HOST, 0)
    port_out.send(sock.getsockname()[1])
    port_out.close()
    if before is not None:
        before()
    # uvicorn handles SIGTERM, shuts down, then re-raises it for the previous handler: make that
    # one a no-op so the process ends normally.
    signal.signal(signal.SIGTERM, lambda *_: None)
    asyncio.run(server.serve(sockets=[sock]))


def spawn_server(target: Callable[..., None], args: tuple[Any, ...], name: str) -> tuple[Any, int]:
    """Spawn `target(port_out, *args)` and wait until it reports its port: (process, port)."""
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(sender, *args), name=name)
    process.start()
    sender.close()
    try:
        if not receiver.poll(30):
            raise EOFError
        port = int(receiver.recv())
    except EOFError:
        process.kill()
        process.join()
        raise RuntimeError(
            f"the {name} process exited or did not listen within 30 s; see its error above"
        ) from None
    return process, port


def stop_process(process: Any) -> None:
    """SIGTERM (uvicorn's graceful shutdown), then SIGKILL after 10 s."""
    if process.is_alive():
        process.terminate()
    process.join(10)
    if process.is_alive():
        process.kill()
        process.join()


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_get(port: int, path: str, host: str = HOST, timeout: float = 600) -> int:
    """GET `path` on a new connection, reading the body in 1 MiB pieces; returns its size."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        size = 0
        while piece := response.read(1 << 20):
            size += len(piece)
        assert response.status == 200, response.status
        return size
    finally:
        conn.close()


def latency_prober(control: Connection, port: int, path: str, every: float) -> None:
    """A prober process's loop: on each "start", GET `path` every `every` seconds until the next
    message, then send back the latencies (seconds)."""
    while control.recv() == "start":
        latencies: list[float] = []
        while not control.poll(every):  # pacing the prober, not synchronizing a test
            start = time.perf_counter()
            http_get(port, path)
            latencies.append(time.perf_counter() - start)
        control.recv()
        control.send(latencies)
