"""`engine-hub bridge`: a polling loop that forwards the old systems' files through the client."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hub.bridge.files import (
    EngineReport,
    RecordKind,
    Skip,
    engine_report,
    metric_values,
    record_key,
    state_fields,
)
from hub.bridge.ledgers import Ledger
from hub.bridge.readers import Reader, Stamp, stamp_of
from hub.client import EngineClient
from hub.compat.records import cycle_payload, signal_args

__all__ = ["Bridge"]

log = logging.getLogger(__name__)

MAX_ENGINES = 64


class Bridge:
    """Watches `root` for `*_engine.json` files and a `telemetry_data/` layout; forwards each once.

    `root/telemetry_data/` (or `root` itself when it holds manifest.json, metrics.json or the
    record directories) is reported as engine `engine`. What was forwarded is remembered in
    `state_path` once the hub acknowledged it.
    """

    def __init__(
        self,
        root: Path,
        *,
        url: str,
        engine: str = "bot",
        mode: str = "paper",
        token: str | None = None,
        state_path: Path | None = None,
        interval: float = 0.2,
        ack_timeout: float = 2.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.url, self.engine, self.mode, self.token = url, engine, mode, token
        self.state_path = state_path or root / ".engine-hub-bridge.json"
        self.interval = interval
        self.ack_timeout = ack_timeout
        self.client_options = dict(client_options or {})
        self.ledger = Ledger()
        self.clients: dict[str, EngineClient] = {}
        self._boots: dict[str, tuple[Any, Any]] = {}
        self.reader = Reader()
        self._listed: dict[Path, tuple[Stamp | None, Stamp | None]] = {}  # (manifest, directory)
        self._retry: set[Path] = set()  # record directories with files not readable yet
        self._uncommitted: set[str] = set()  # engines with records the hub has not acked yet
        self.forwarded = 0

    # The loop.

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; then deliver what is buffered and save the ledger."""
        self.load()
        try:
            while not stop.is_set():
                self.scan()
                stop.wait(self.interval)
        finally:
            self.close()

    def load(self) -> None:
        """Read the ledger a previous run saved (a missing or broken one starts afresh)."""
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning(
                "bridge state %r unreadable (%s); starting afresh", str(self.state_path), exc
            )
            return
        self.ledger = Ledger.from_json(data)

    def scan(self) -> int:
        """Forward whatever changed since the last scan; returns how many things were sent."""
        before = self.forwarded
        for path in sorted(self._engine_files()):
            self._engine_file(path)
        data = self._telemetry_dir()
        if data is not None:
            self._telemetry(data)
        if self._uncommitted:
            self.commit()
        return self.forwarded - before

    def commit(self) -> bool:
        """Once the hub acknowledged everything sent, save the ledger that lists it."""
        for name in sorted(self._uncommitted):
            client = self.clients.get(name)
            if client is not None and not client.flush(self.ack_timeout):
                return False  # the client keeps it and replays; the ledger is saved later
        self._uncommitted.clear()
        self.save()
        return True

    def save(self) -> None:
        """Write the ledger atomically (temp file, then rename)."""
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.ledger.to_json()))
            os.replace(tmp, self.state_path)
        except OSError as exc:
            self.reader.say(self.state_path, f"cannot save the bridge state: {exc.strerror}")

    def close(self) -> None:
        """Deliver what is buffered, save the ledger if the hub has it all, and disconnect."""
        if self._uncommitted:
            self.commit()
        for client in self.clients.values():
            client.close()
        self.clients.clear()

    # The first document: one engine per `{name}_engine.json`.

    def _engine_files(self) -> list[Path]:
        found: list[Path] = []
        for folder in (self.root, self.root / "artifacts" / "telemetry"):
            try:
                found += [p for p in folder.iterdir() if p.name.endswith("_engine.json")]
            except OSError:
                continue
        return found

    def _engine_file(self, path: Path) -> None:
        data = self.reader.read(path)
        if data is None:
            return
        report = engine_report(data, path.name)
        if isinstance(report, Skip):
            self.reader.say(path, report.reason)
            return
        if not self.ledger.beat_is_new(report) and report.name in self.clients:
            return
        if self.ledger.stopped(report):
            return  # this boot's stop was forwarded before (by this run or an earlier one)
        client = self._engine_client(report)
        if client is None:
            return
        client.heartbeat(**report.fields)
        if report.status == "stopped":
            client.close()  # bye after the final heartbeat; the next boot gets a new client
            del self.clients[report.name]
        self.ledger.mark_beat(report)
        self.forwarded += 1
        if not self._uncommitted:
            self.save()  # heartbeats are state: nothing to wait for, unless records are unacked

    def _engine_client(self, report: EngineReport) -> EngineClient | None:
        if self._boots.get(report.name) != report.boot and report.name in self.clients:
            self.clients.pop(report.name).close()  # the engine restarted: a new boot on the hub
        self._boots[report.name] = report.boot
        return self._client(report.name, report.mode)

    def _client(self, name: str, mode: str) -> EngineClient | None:
        client = self.clients.get(name)
        if client is None:
            if len(self.clients) >= MAX_ENGINES:
                self.reader.say(
                    self.root, f"more than {MAX_ENGINES} engines; {name!r} is not forwarded"
                )
                return None
            meta = {"bridge": True}
            client = EngineClient(
                self.url, engine=name, mode=mode, token=self.token, meta=meta, **self.client_options
            ).start()
            self.clients[name] = client
        return client

    # The third document: `telemetry_data/`.

    def _telemetry_dir(self) -> Path | None:
        candidate = self.root / "telemetry_data"
        if candidate.is_dir():
            return candidate
        markers = ("manifest.json", "metrics.json", "state.json", "signals")
        return self.root if any((self.root / m).exists() for m in markers) else None

    def _telemetry(self, folder: Path) -> None:
        client = self._client(self.engine, self.mode)
        if client is None:
            return
        if (state := self.reader.read(folder / "state.json")) is not None:
            client.heartbeat(**state_fields(state))
        if (metrics := self.reader.read(folder / "metrics.json")) is not None:
            self._metrics(client, metrics)
        manifest = stamp_of(folder / "manifest.json")
        for kind in RecordKind:
            directory = folder / kind.value
            # The manifest changes with every write; the directory's own stamp catches writers
            # that never update it.
            stamp = (manifest, stamp_of(directory))
            if self._listed.get(directory) == stamp and directory not in self._retry:
                continue
            self._listed[directory] = stamp
            if self._records(client, kind, directory):
                self._retry.add(directory)  # a file rewritten in place changes no stamp above
            else:
                self._retry.discard(directory)

    def _metrics(self, client: EngineClient, data: dict[str, Any]) -> None:
        for metric in metric_values(data):
            tags = metric.tags
            if metric.kind == "counter":
                if (delta := self.ledger.counter_delta(self.engine, metric)) > 0:
                    client.increment(metric.name, delta, **tags)
            elif metric.kind == "gauge":
                client.set_gauge(metric.name, metric.value, **tags)
            else:
                client.record_timing(metric.name, metric.value, **tags)
        self._uncommitted.add(self.engine)

    def _records(self, client: EngineClient, kind: RecordKind, directory: Path) -> bool:
        """Forward the directory's new records; True while some of them could not be read."""
        try:
            names = [p.name for p in directory.iterdir()]
        except OSError:
            return False  # not there (yet): nothing to forward
        files: dict[str, str] = {}
        for name in names:
            key = record_key(kind, name)
            if key is not None and (key not in files or not name.endswith(".gz")):
                files[key] = name  # the plain file when both exist (mid-rotation)
        self.ledger.forget_missing(self.engine, kind, set(files))
        unreadable = False
        for key in self.ledger.unsent(self.engine, kind, files):
            path = directory / files[key]
            data = self.reader.read(path, gzipped=path.name.endswith(".gz"))
            if data is None:
                unreadable = True  # read again when its stamp changes
                continue
            self._forward(client, kind, data)
            self.ledger.mark_sent(self.engine, kind, key)
            self._uncommitted.add(self.engine)
            self.forwarded += 1
        return unreadable

    def _forward(self, client: EngineClient, kind: RecordKind, data: dict[str, Any]) -> None:
        if kind is RecordKind.SIGNAL:
            symbol, side, price, strategy, extra = signal_args(data)
            client.record_signal(symbol, side, price=price, strategy=strategy, **extra)
        elif kind is RecordKind.CYCLE:
            client.publish("cycle", cycle_payload(data))
        else:
            error_type = data.get("error_type") or data.get("type") or "error"
            context = data.get("context")
            client.record_error(
                str(error_type),
                str(data.get("message", "")),
                context if isinstance(context, Mapping) else None,
            )
