"""The `engine-hub` command line: serve (and the commands later issues add)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from hub import __version__
from hub.settings import Settings, SettingsError, default_environ, load_settings

__all__ = ["main"]


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides = {
        "host": args.host,
        "port": args.port,
        "db": args.db,
        "log_level": args.log_level,
        **extra,
    }
    return load_settings(overrides, default_environ(), args.config)


def _serve(args: argparse.Namespace) -> int:
    from hub.web.server import serve

    return serve(_settings(args))


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from hub.demo.supervisor import run_demo
    from hub.web.server import exit_cleanly_on_sigterm

    def ready(url: str) -> None:
        print(
            f"Engine Hub demo: open {url}\n"
            "  three simulated engines (fno, equity, options) report to it; Ctrl-C stops everything.",
            flush=True,
        )

    # The demo keeps its history in memory unless asked: simulated engines stay out of engine-hub.db.
    settings = _settings(args, db=args.db or ":memory:")
    exit_cleanly_on_sigterm()
    try:
        asyncio.run(run_demo(settings, ready, args.incident_every))
    except OSError as exc:
        print(
            f"engine-hub: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    return 0


def _export(args: argparse.Namespace) -> int:
    import time
    import urllib.error
    import urllib.parse
    import urllib.request

    import msgspec

    from hub import __version__
    from hub.core.records import utc
    from hub.web.params import parse_when

    now = time.time()
    try:
        since = parse_when(args.since, now)
        until = parse_when(args.until, now) if args.until else now
    except ValueError as exc:
        print(f"engine-hub export: {exc}", file=sys.stderr)
        return 2
    if args.db:
        from hub.stores import StoreError, UnknownEngine, parse_db
        from hub.stores.schema import connect, export_bundle

        try:
            store = parse_db(args.db)
            if store.backend == "memory":
                raise StoreError(
                    f"--db {args.db} names history kept in a hub's memory, not a file; ask that hub with --url"
                )
            conn = connect(store.path, create=False)
        except StoreError as exc:
            print(f"engine-hub export: {exc}", file=sys.stderr)
            return 2
        try:
            bundle = export_bundle(conn, args.engine, since, until, 1_000_000)
        except UnknownEngine as exc:
            print(f"engine-hub export: {exc}", file=sys.stderr)
            return 1
        finally:
            conn.close()
        # The keys a hub adds when it answers (docs/api.md): every bundle has the same shape.
        bundle["hub"] = __version__
        bundle["generated_at"] = utc(now)
        sys.stdout.buffer.write(msgspec.json.encode(bundle) + b"\n")
        return 0
    query = urllib.parse.urlencode({"engine": args.engine, "since": since, "until": until})
    url = f"{args.url.rstrip('/')}/api/telemetry/export?{query}"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            sys.stdout.buffer.write(response.read() + b"\n")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        if exc.code == 404:
            try:
                detail = msgspec.json.decode(body, type=dict[str, Any]).get("detail")
            except msgspec.DecodeError:  # not the hub's own answer (a proxy's page, say)
                detail = None
            if detail:  # the hub's 404 (docs/api.md): no engine of that name
                print(f"engine-hub export: {detail}", file=sys.stderr)
                return 1
        print(
            f"engine-hub export: the hub answered {exc.code}: {body[:300].decode(errors='replace')}",
            file=sys.stderr,
        )
        return 2
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"engine-hub export: cannot reach a hub at {args.url} ({reason}); start one, pass --url, or read a file with --db PATH",
            file=sys.stderr,
        )
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engine-hub",
        description="Live telemetry hub for trading engines.",
        epilog="Settings also come from ENGINE_HUB_* environment variables and a TOML file "
        "(--config or ENGINE_HUB_CONFIG); flags win. See docs/operations.md.",
    )
    parser.add_argument("--version", action="version", version=f"engine-hub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, db: str) -> None:
        sub.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
        sub.add_argument("--port", type=int, help="port to listen on (default 8765; 0 picks one)")
        sub.add_argument("--db", help=db)
        sub.add_argument("--config", help="TOML settings file")
        sub.add_argument(
            "--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity"
        )

    serve = commands.add_parser("serve", help="run the hub")
    common(
        serve,
        "history store: a file path or sqlite:///path (default ./engine-hub.db), "
        "or memory:// to keep none",
    )
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="run a hub with three simulated engines")
    common(
        demo,
        "history store, as for serve (default: none, the demo's history is kept in memory)",
    )
    demo.add_argument(
        "--incident-every",
        type=float,
        default=40.0,
        metavar="SECONDS",
        help="cause a stall, freeze, error, restart or crash this often (0: never; default 40)",
    )
    demo.set_defaults(run=_demo)

    export = commands.add_parser(
        "export",
        help="write one engine's incident bundle (events, logs, errors, metrics, boots) as JSON",
        description="Write one engine's history over a window as JSON to stdout, read from a "
        "running hub (--url) or straight from a database file (--db, no hub needed).",
    )
    export.add_argument("--engine", required=True, help="engine name")
    export.add_argument(
        "--since", default="1h", help="start: 15m, 1h, 2d, Unix seconds or ISO-8601 (default 1h)"
    )
    export.add_argument("--until", help="end, same forms (default now)")
    source = export.add_mutually_exclusive_group()
    source.add_argument(
        "--url", default="http://127.0.0.1:8765", help="hub to ask (default the local one)"
    )
    source.add_argument(
        "--db",
        dest="db",
        help="read this database file (a path or sqlite:///path) instead of asking a hub",
    )
    export.add_argument("--config", help=argparse.SUPPRESS)
    export.set_defaults(run=_export, host=None, port=None, log_level=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `engine-hub` and `python -m hub`."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"engine-hub: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    from hub.stores import StoreError

    try:
        code: int = args.run(args)
    except (SettingsError, StoreError, ValueError) as exc:
        print(f"engine-hub: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
