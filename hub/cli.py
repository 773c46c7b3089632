"""The `engine-hub` command line: serve (and the commands later issues add)."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
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

    def settings() -> Settings:
        return _settings(args, cluster_url=args.cluster, node_id=args.node_id)

    loaded = settings()
    if loaded.cluster_url:
        from hub.cluster.probe import unreachable

        problem = unreachable(loaded)
        if problem is not None:
            print(f"engine-hub: {problem}", file=sys.stderr)
            return 2
    return serve(loaded, reload=settings)


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from hub.demo.supervisor import run_demo
    from hub.web.server import exit_cleanly_on_sigterm, startup_problems

    def ready(url: str) -> None:
        print(
            f"Engine Hub demo: open {url}\n"
            "  three simulated engines (fno, equity, options) report to it; Ctrl-C stops everything.",
            flush=True,
        )

    from hub.demo.supervisor import demo_alerts

    # The demo keeps its history in memory unless asked: simulated engines stay out of engine-hub.db.
    settings = _settings(args, db=args.db or ":memory:", alerts=demo_alerts(args.webhook))
    problems = startup_problems(settings)  # off loopback the demo is held to serve's rules
    for problem in problems:
        print(f"engine-hub: {problem}", file=sys.stderr)
    if problems:
        return 2
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


def _alerts_test(args: argparse.Namespace) -> int:
    import asyncio

    from hub.web.receivers import DeliveryError, send_test

    settings = _settings(args)
    receiver = settings.alerts.receiver(args.receiver)
    if receiver is None:
        names = ", ".join(r.name for r in settings.alerts.receivers) or "none configured"
        print(
            f"engine-hub: no receiver named {args.receiver!r} in the settings ({names}); "
            "add an [[alerts.receivers]] table or pass --config",
            file=sys.stderr,
        )
        return 2
    try:
        code = asyncio.run(send_test(receiver))
    except DeliveryError as exc:
        print(f"engine-hub: receiver {receiver.name!r}: {exc}", file=sys.stderr)
        return 1
    if not 200 <= code < 300:
        print(f"engine-hub: receiver {receiver.name!r} answered HTTP {code}", file=sys.stderr)
        return 1
    print(f"sent a test notification to receiver {receiver.name!r} ({receiver.kind}): HTTP {code}")
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
    # A hub with sign-in on wants an API token (engine-hub token create --role viewer).
    token = args.token or os.environ.get("ENGINE_HUB_API_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
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
        if exc.code == 401:
            print(
                "engine-hub export: this hub needs sign-in: pass --token TOKEN (or set "
                "ENGINE_HUB_API_TOKEN) with a token from `engine-hub token create --role viewer`",
                file=sys.stderr,
            )
            return 2
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


def _tui(args: argparse.Namespace) -> int:
    import re
    import urllib.parse
    from pathlib import Path

    from hub.core.messages import ENGINE_NAME_PATTERN

    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        print(f"engine-hub tui: --url {args.url!r} is not an http(s) URL of a hub", file=sys.stderr)
        return 2
    if args.engine is not None and not re.match(ENGINE_NAME_PATTERN, args.engine):
        print(
            f"engine-hub tui: {args.engine!r} is not an engine name ({ENGINE_NAME_PATTERN})",
            file=sys.stderr,
        )
        return 2
    export_dir = Path(args.export_dir)
    if not export_dir.is_dir():
        print(
            f"engine-hub tui: --export-dir {args.export_dir!r} is not a directory", file=sys.stderr
        )
        return 2
    try:
        from hub.tui.app import MonitorApp
    except ImportError as exc:  # textual is a dependency, but a trimmed install may lack it
        print(
            f"engine-hub tui: needs the textual package ({exc}); pip install engine-hub",
            file=sys.stderr,
        )
        return 2
    token = args.token or os.environ.get("ENGINE_HUB_API_TOKEN", "")
    app = MonitorApp(args.url, engine=args.engine, token=token, export_dir=export_dir)
    return app.run() or 0


def _bridge(args: argparse.Namespace) -> int:
    import signal
    import threading
    from pathlib import Path

    from hub.bridge import Bridge
    from hub.client.options import engine_url, validate_identity

    root = Path(args.dir)
    if not root.is_dir():
        print(f"engine-hub: {str(root)!r} is not a directory to watch", file=sys.stderr)
        return 2
    if not 0.05 <= args.interval <= 60:
        print("engine-hub: --interval must be between 0.05 and 60 seconds", file=sys.stderr)
        return 2
    url = args.url or os.environ.get("ENGINE_HUB_URL") or "ws://127.0.0.1:8765"
    engine_url(url)  # a ValueError here says how a hub URL looks
    validate_identity(args.engine, args.mode)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    bridge = Bridge(
        root,
        url=url,
        engine=args.engine,
        mode=args.mode,
        token=args.token or os.environ.get("ENGINE_HUB_TOKEN") or None,
        state_path=Path(args.state) if args.state else None,
        interval=args.interval,
    )
    print(f"engine-hub bridge: forwarding {root} to {url}; Ctrl-C stops", flush=True)
    bridge.run(stop)
    return 0


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value)


def _read_password() -> str:
    """The new password: typed twice at a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _user_add(args: argparse.Namespace) -> int:
    from hub.core.access import User
    from hub.web.passwords import hash_password

    try:
        password = _read_password()
        user = User(args.name, args.role, hash_password(password))
    except ValueError as exc:
        print(f"engine-hub user add: {exc}", file=sys.stderr)
        return 2
    print(
        "# append to the settings file (engine-hub serve --config FILE); no password is stored\n"
        f"[[users]]\nname = {_toml(user.name)}\nrole = {_toml(user.role)}\n"
        f"password = {_toml(user.password)}"
    )
    return 0


def _token_create(args: argparse.Namespace) -> int:
    import time

    from hub.core.access import (
        API_TOKEN_PREFIX,
        ENGINE_TOKEN_PREFIX,
        ApiToken,
        EngineToken,
        Role,
        digest,
        new_token,
    )
    from hub.core.records import utc
    from hub.web.params import parse_duration

    if args.engine is None and args.role is None:
        print(
            "engine-hub token create: say what the token is for: --role viewer|admin (an API "
            "token) or --engine GLOB --mode MODE (an engine token)",
            file=sys.stderr,
        )
        return 2
    if args.engine is not None and args.role is not None:
        print("engine-hub token create: --role and --engine do not go together", file=sys.stderr)
        return 2
    try:
        if args.engine is not None:
            token = new_token(ENGINE_TOKEN_PREFIX)
            modes = tuple(m.strip().lower() for m in (args.mode or "*").split(",") if m.strip())
            grant = EngineToken(digest(token), (args.engine,), modes, args.name or "")
            lines = [
                "[[engine_tokens]]",
                *([f"name = {_toml(grant.name)}"] if grant.name else []),
                f"engines = [{', '.join(_toml(g) for g in grant.engines)}]",
                f"modes = [{', '.join(_toml(m) for m in grant.modes)}]",
                f"sha256 = {_toml(grant.sha256)}",
            ]
        else:
            token = new_token(API_TOKEN_PREFIX)
            expires = time.time() + parse_duration(args.ttl) if args.ttl else None
            entry = ApiToken(digest(token), Role(args.role), args.name or "", expires)
            lines = [
                "[[api_tokens]]",
                *([f"name = {_toml(entry.name)}"] if entry.name else []),
                f"role = {_toml(entry.role)}",
                f"sha256 = {_toml(entry.sha256)}",
                *([f"expires = {utc(round(expires)).isoformat()}"] if expires is not None else []),
            ]
    except ValueError as exc:
        print(f"engine-hub token create: {exc}", file=sys.stderr)
        return 2
    print(token)
    print("# append to the settings file; the token above is shown once and never stored")
    print("\n".join(lines))
    return 0


def _token_embed(args: argparse.Namespace) -> int:
    import re
    import time

    from hub.core.messages import ENGINE_NAME_PATTERN
    from hub.web.embeds import EMBED_PARAM, EmbedLinks
    from hub.web.params import parse_duration

    settings = _settings(args)
    try:
        if not re.match(ENGINE_NAME_PATTERN, args.engine):
            raise ValueError(f"{args.engine!r} is not an engine name ({ENGINE_NAME_PATTERN})")
        links = EmbedLinks(settings.session_secret)
        token, grant = links.make(args.engine, time.time() + parse_duration(args.ttl))
    except ValueError as exc:
        print(f"engine-hub token embed: {exc}", file=sys.stderr)
        return 2
    base = settings.public_url.rstrip("/")
    print(f"{base}/embed/engines/{grant.engine}?{EMBED_PARAM}={token}")
    print(
        f"# shows the card of engine {grant.engine} only, until {_utc_text(grant.expires)}; to revoke"
        f" it, add {_toml(grant.link_id)} to revoked_embeds and reload (kill -HUP the hub)"
    )
    return 0


def _utc_text(ts: float) -> str:
    from hub.core.records import utc

    return utc(ts).isoformat(timespec="seconds")


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
    serve.add_argument(
        "--cluster",
        metavar="URL",
        help="join a cluster of hub nodes sharing this Redis (redis://HOST:PORT/DB); "
        "see docs/operations.md",
    )
    serve.add_argument("--node-id", help="this node's name in the cluster (default: hostname-pid)")
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
    demo.add_argument(
        "--webhook",
        metavar="URL",
        help="send the demo's alerts there (Alertmanager webhook JSON; docs/alerts.md)",
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
    export.add_argument(
        "--token", help="API token for a hub with sign-in on (default: $ENGINE_HUB_API_TOKEN)"
    )
    export.add_argument("--config", help=argparse.SUPPRESS)
    export.set_defaults(run=_export, host=None, port=None, log_level=None)

    no_server = {"host": None, "port": None, "db": None, "log_level": None, "config": None}
    tui = commands.add_parser(
        "tui",
        help="terminal monitor: engines, status, signals and log of a running hub, live",
        description="Follows a hub over its API and SSE stream (docs/tui.md). Keys: Q/Esc quit, "
        "R refresh, E export the picked engine's last hour, N/P switch engines, F1 help.",
    )
    tui.add_argument(
        "--url", default="http://127.0.0.1:8765", help="hub to follow (default the local one)"
    )
    tui.add_argument("--engine", help="engine to show first (default: the first by name)")
    tui.add_argument(
        "--token", help="API token for a hub with sign-in on (default: $ENGINE_HUB_API_TOKEN)"
    )
    tui.add_argument(
        "--export-dir", default=".", help="where E writes incident bundles (default: here)"
    )
    tui.set_defaults(run=_tui, **no_server)
    bridge = commands.add_parser(
        "bridge",
        help="forward an unchanged engine's telemetry files to a hub (zero-code migration)",
        description="Watch DIR for the replaced systems' files and forward each record once: "
        "*_engine.json (DIR or DIR/artifacts/telemetry; one engine per file) and a "
        "telemetry_data/ layout (DIR/telemetry_data or DIR itself). See docs/migration.md.",
    )
    bridge.add_argument("dir", metavar="DIR", help="the directory the engines write to")
    bridge.add_argument("--url", help="hub (default $ENGINE_HUB_URL, else ws://127.0.0.1:8765)")
    bridge.add_argument(
        "--engine", default="bot", help="engine name for telemetry_data/ (default bot)"
    )
    bridge.add_argument("--mode", default="paper", help="its mode (default paper)")
    bridge.add_argument("--token", help="engine token (default $ENGINE_HUB_TOKEN)")
    bridge.add_argument(
        "--state", help="where to remember what was sent (default DIR/.engine-hub-bridge.json)"
    )
    bridge.add_argument(
        "--interval", type=float, default=0.2, help="seconds between polls (default 0.2)"
    )
    bridge.set_defaults(run=_bridge, **no_server)

    alerts = commands.add_parser("alerts", help="alert receivers (docs/alerts.md)")
    alert_commands = alerts.add_subparsers(dest="alerts_command", required=True, metavar="COMMAND")
    test = alert_commands.add_parser(
        "test", help="send one test notification to a configured receiver and report the answer"
    )
    test.add_argument("--receiver", required=True, metavar="NAME", help="the receiver's name")
    test.add_argument("--config", help="TOML settings file with [[alerts.receivers]]")
    test.set_defaults(run=_alerts_test, host=None, port=None, db=None, log_level=None)

    user = commands.add_parser("user", help="viewer accounts for the dashboard and API")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    user_add = user_commands.add_parser(
        "add",
        help="hash a new user's password and print the [[users]] entry for the settings file",
        description="Reads the password from stdin (or asks twice at a terminal) and prints a "
        "TOML entry to append to the settings file. The password itself is never stored.",
    )
    user_add.add_argument("name", help="the user's sign-in name")
    user_add.add_argument("--role", choices=["viewer", "admin"], default="viewer")
    user_add.set_defaults(run=_user_add, **no_server)

    token = commands.add_parser("token", help="API tokens and engine tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser(
        "create",
        help="make a token: print it once, then its [[api_tokens]] or [[engine_tokens]] entry",
        description="API token: --role viewer|admin [--ttl 90d]. Engine token: --engine GLOB "
        "--mode MODE. The token is printed alone on the first line; the settings entry that "
        "follows holds only its SHA-256 digest.",
    )
    create.add_argument("--role", choices=["viewer", "admin"], help="an API token with this role")
    create.add_argument("--ttl", help="API token lifetime, e.g. 90d (default: no expiry)")
    create.add_argument("--engine", help="an engine token for these names (a glob, e.g. 'fno*')")
    create.add_argument("--mode", help="modes it may report, comma-separated (default: any)")
    create.add_argument("--name", help="a label for the entry (who or what uses it)")
    create.set_defaults(run=_token_create, **no_server)
    embed = token_commands.add_parser(
        "embed",
        help="make a signed, expiring, read-only link to one engine's card",
        description="Prints the link (under public_url when set) on the first line. It is "
        "signed with the settings' session_secret, which must be set (--config).",
    )
    embed.add_argument("--engine", required=True, help="the engine whose card the link shows")
    embed.add_argument("--ttl", default="30d", help="how long the link works (default 30d)")
    embed.add_argument("--config", help="TOML settings file (for session_secret and public_url)")
    embed.set_defaults(run=_token_embed, **no_server)
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
