"""Views, sans-I/O: which fragments a change dirtied, how they render, and escaping of engine text."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import msgspec
import pytest

from hub.core.engines import EngineRecord
from hub.core.ingested import Ingested
from hub.core.messages import Bye, Event, Heartbeat, Hello, Log, Metric, Status
from hub.core.state import HubState
from hub.core.stats import Dirty, Topic
from hub.live.templating import create_environment
from hub.live.views import OVERVIEW, FragmentKey, Part, ViewKey, ViewKind, Views
from hub.settings import Settings

T0 = 1_700_000_000.0


SECTION_PARTS = (Part.POSITIONS, Part.DECISIONS, Part.CYCLES, Part.EERRORS)


def labels(keys: list[FragmentKey]) -> list[str]:
    """Fragment keys as short labels for readable assertions: "signals", "card:3"."""
    return [f"{k.part.value}:{k.index}" if k.index else k.part.value for k in keys]


def event(seq: int, type: str, payload: dict[str, Any]) -> Event:
    """An event message as the decoder makes it: the payload kept as raw JSON."""
    return Event(seq=seq, type=type, payload=msgspec.Raw(msgspec.json.encode(payload)))


def make_views(**settings: Any) -> Views:
    """Views over a fresh hub state."""
    return Views(create_environment(), HubState(Settings(**settings)))


def connect(views: Views, name: str, conn_id: int = 1, **hello: Any) -> EngineRecord:
    """Say hello as `name`; the dirty marks of the hello are drained."""
    record, _ = views.state.hello(
        Hello(engine=name, boot_id=f"boot-{name}", **hello), conn_id, T0, Ingested()
    )
    views.state.dirty.drain()
    return record


@pytest.fixture
def views() -> Views:
    return make_views()


# -- names and dirtied ---------------------------------------------------------------------------


def test_names_per_view(views: Views) -> None:
    """Each view lists its snapshot fragments; engine fragments carry the engine index."""
    assert labels(views.names(OVERVIEW)) == [
        "hub",
        "cards",
        "signals",
        "orders",
        "errors",
        "logs",
        "alerts",
    ]
    assert labels(views.names(ViewKey(ViewKind.ENGINE, 3))) == [
        "hub",
        "card:3",
        "state:3",
        "metrics:3",
        "elogs:3",
        "esignals:3",
        "eorders:3",
        "positions:3",
        "decisions:3",
        "cycles:3",
        "eerrors:3",
        "alerts:3",
    ]
    assert labels(views.names(ViewKey(ViewKind.EMBED, 7))) == ["card:7"]


def test_engine_key_dirties_its_card_on_the_overview(views: Views) -> None:
    """Dirty(Topic.ENGINE, name) maps to that engine's card, by hub index, on the overview."""
    connect(views, "fno")
    equity = connect(views, "equity", conn_id=2)
    assert equity.index == 2
    assert labels(views.dirtied(OVERVIEW, {Dirty(Topic.ENGINE, "equity")})) == ["card:2"]
    assert labels(views.dirtied(OVERVIEW, {Dirty(Topic.ENGINE, "unknown")})) == []


def test_engines_key_dirties_cards_and_hub_and_suppresses_single_cards(views: Views) -> None:
    """Dirty(Topic.ENGINES) re-renders the card container and hub line, so single cards are dropped."""
    connect(views, "fno")
    connect(views, "equity", conn_id=2)
    dirty = {Dirty(Topic.ENGINES), Dirty(Topic.ENGINE, "fno"), Dirty(Topic.ENGINE, "equity")}
    assert labels(views.dirtied(OVERVIEW, dirty)) == ["hub", "cards"]
    assert sorted(
        labels(views.dirtied(OVERVIEW, {Dirty(Topic.ENGINE, "fno"), Dirty(Topic.ENGINE, "equity")}))
    ) == [
        "card:1",
        "card:2",
    ]


@pytest.mark.parametrize(
    ("event_type", "fragment"),
    [("signal_event", "signals"), ("order_event", "orders"), ("error", "errors")],
)
def test_event_keys_dirty_their_overview_table(
    views: Views, event_type: str, fragment: str
) -> None:
    """Each overview table is dirtied by its own event type only."""
    assert labels(views.dirtied(OVERVIEW, {Dirty(Topic.EVENTS, event_type)})) == [fragment]


def test_untabled_event_types_leave_the_overview_alone(views: Views) -> None:
    """Events the overview does not show dirty nothing there."""
    keys = {Dirty(Topic.EVENTS, t) for t in ("cycle", "position_event", "decision_trace", "custom")}
    assert labels(views.dirtied(OVERVIEW, keys)) == []


def test_dirtied_follows_snapshot_order(views: Views) -> None:
    """Dirtied fragments come in the order of the view's snapshot, whatever the set order."""
    keys = {
        Dirty(Topic.LOGS, "fno"),
        Dirty(Topic.EVENTS, "error"),
        Dirty(Topic.HUB),
        Dirty(Topic.EVENTS, "signal_event"),
    }
    assert labels(views.dirtied(OVERVIEW, keys)) == ["hub", "signals", "errors", "logs"]


def test_logs_key_dirties_overview_tail_and_that_engines_page(views: Views) -> None:
    """("logs", name) dirties the overview tail and elogs on that engine's page only."""
    fno = connect(views, "fno")
    equity = connect(views, "equity", conn_id=2)
    key = {Dirty(Topic.LOGS, "fno")}
    assert labels(views.dirtied(OVERVIEW, key)) == ["logs"]
    assert labels(views.dirtied(ViewKey(ViewKind.ENGINE, fno.index), key)) == [f"elogs:{fno.index}"]
    assert labels(views.dirtied(ViewKey(ViewKind.ENGINE, equity.index), key)) == []
    assert labels(views.dirtied(ViewKey(ViewKind.EMBED, fno.index), key)) == []


def test_metrics_key_dirties_that_engines_metrics_only(views: Views) -> None:
    """("metrics", name) dirties metrics on that engine's page, nothing on overview or embeds."""
    fno = connect(views, "fno")
    key = {Dirty(Topic.METRICS, "fno")}
    assert labels(views.dirtied(ViewKey(ViewKind.ENGINE, fno.index), key)) == [
        f"metrics:{fno.index}"
    ]
    assert labels(views.dirtied(OVERVIEW, key)) == []
    assert labels(views.dirtied(ViewKey(ViewKind.EMBED, fno.index), key)) == []


def test_engine_key_dirties_card_and_state_on_its_page_and_card_when_embedded(
    views: Views,
) -> None:
    """The engine's own key re-renders its card (and state on its page)."""
    fno = connect(views, "fno")
    i = fno.index
    assert labels(views.dirtied(ViewKey(ViewKind.ENGINE, i), {Dirty(Topic.ENGINE, "fno")})) == [
        f"card:{i}",
        f"state:{i}",
    ]
    assert labels(views.dirtied(ViewKey(ViewKind.EMBED, i), {Dirty(Topic.ENGINE, "fno")})) == [
        f"card:{i}"
    ]


def test_other_engines_keys_do_not_touch_an_engine_view(views: Views) -> None:
    """Keys naming another engine leave an engine page and an embedded card untouched."""
    fno = connect(views, "fno")
    connect(views, "equity", conn_id=2)
    keys = {
        Dirty(Topic.ENGINE, "equity"),
        Dirty(Topic.LOGS, "equity"),
        Dirty(Topic.METRICS, "equity"),
    }
    assert labels(views.dirtied(ViewKey(ViewKind.ENGINE, fno.index), keys)) == []
    assert labels(views.dirtied(ViewKey(ViewKind.EMBED, fno.index), keys)) == []


def test_engine_page_sections_follow_their_event_types(views: Views) -> None:
    """signal, order, position, decision, cycle and error events dirty their engine-page sections."""
    fno = connect(views, "fno")
    i = fno.index
    keys = {Dirty(Topic.EVENTS, t) for t in ("position_event", "decision_trace", "cycle", "error")}
    assert labels(views.dirtied(ViewKey(ViewKind.ENGINE, i), keys)) == [
        f"positions:{i}",
        f"decisions:{i}",
        f"cycles:{i}",
        f"eerrors:{i}",
    ]
    assert labels(
        views.dirtied(ViewKey(ViewKind.ENGINE, i), {Dirty(Topic.EVENTS, "order_event")})
    ) == [f"eorders:{i}"]
    assert labels(views.dirtied(ViewKey(ViewKind.ENGINE, i), {Dirty(Topic.EVENTS, "x")})) == []
    assert labels(views.dirtied(ViewKey(ViewKind.EMBED, i), keys)) == []


def test_ingest_marks_map_to_fragments(views: Views) -> None:
    """Keys that real ingest marks reach the fragments that show the changed data."""
    fno = connect(views, "fno")
    i = fno.index
    views.state.ingest(
        fno,
        [
            Heartbeat(seq=1, loop_tick=5),
            event(2, "signal_event", {"symbol": "NIFTY"}),
            event(3, "error", {"message": "boom"}),
            Log(seq=4, message="hello"),
            Metric(seq=5, op="inc", name="signals.long"),
        ],
        T0,
    )
    dirty = views.state.dirty.drain()
    # Single cards are not part of the overview snapshot, so they come after its fragments.
    assert labels(views.dirtied(OVERVIEW, dirty)) == ["signals", "errors", "logs", f"card:{i}"]
    assert labels(views.dirtied(ViewKey(ViewKind.ENGINE, i), dirty)) == [
        f"card:{i}",
        f"state:{i}",
        f"metrics:{i}",
        f"elogs:{i}",
        f"esignals:{i}",
        f"eerrors:{i}",
    ]


def test_forgetting_an_engine_dirties_its_embedded_card_and_page() -> None:
    """When the hub forgets an engine, its open embed and page are told (the card turns "gone")."""
    views = make_views(max_engines=1)
    old = connect(views, "old")
    views.state.disconnected(old, 1, T0 + 1, Ingested())
    views.state.hello(Hello(engine="new", boot_id="b-new"), 2, T0 + 2, Ingested())  # forgets "old"
    assert "old" not in views.state.engines
    dirty = views.state.dirty.drain()
    assert Dirty(Topic.ENGINES) in dirty
    assert labels(views.dirtied(ViewKey(ViewKind.EMBED, old.index), dirty)) == [f"card:{old.index}"]
    assert f"card:{old.index}" in labels(views.dirtied(ViewKey(ViewKind.ENGINE, old.index), dirty))
    assert (
        labels(views.dirtied(ViewKey(ViewKind.EMBED, old.index), {Dirty(Topic.LOGS, "new")})) == []
    )


# -- rendering -----------------------------------------------------------------------------------


class Elements(HTMLParser):
    """Collects every start tag with its attributes and the top-level element count."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.roots: list[tuple[str, dict[str, str | None]]] = []
        self.depth = 0
        self.text: list[str] = []

    VOID = {"br", "img", "input", "meta", "link", "hr", "polyline"}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = (tag, dict(attrs))
        self.tags.append(element)
        if self.depth == 0:
            self.roots.append(element)
        if tag not in self.VOID:
            self.depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = (tag, dict(attrs))
        self.tags.append(element)
        if self.depth == 0:
            self.roots.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth == 0 and data.strip():
            self.roots.append(("#text", {}))
        self.text.append(data)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    parser.close()
    assert parser.depth == 0, f"unbalanced HTML:\n{html}"
    return parser


def expected_id(key: FragmentKey) -> str:
    """The element id our code derives for fragment `key`."""
    if key.part is Part.HUB:
        return "hub-status"
    return f"{key.part.value}-{key.index}" if key.index else key.part.value


# Every attribute any partial defines (html.parser lower-cases names).
TEMPLATE_ATTRIBUTES = {
    "id",
    "data-engine",  # the hub index and live/paper of a filterable row, never engine text
    "data-mode",
    "class",
    "hx-swap-oob",
    "href",
    "target",
    "title",
    "data-since",
    "data-style",
    "hidden",
    "viewbox",
    "preserveaspectratio",
    "role",
    "aria-label",
    "aria-hidden",
    "points",
    "datetime",  # the `clock` filter's <time>: our digits only
    "data-ts",
    "data-title",  # the hub status's tab title: our words and counts only
}
DERIVED_ID = re.compile(
    r"^(hub-status|cards|signals|orders|errors|logs|"
    r"(card|state|metrics|elogs|positions|decisions|cycles|eerrors)-\d+|"
    r"card-\d+-(beat|skew|loop|universe|positions|pnl|exposure|errors|drops|counters|spark))$"
)


def populated() -> tuple[Views, EngineRecord]:
    """A hub with one engine that has sent one of everything."""
    views = make_views()
    fno = connect(views, "fno", mode="live", pid=42)
    views.state.ingest(
        fno,
        [
            Heartbeat(seq=1, status=Status.RUNNING, loop_tick=1, state={"next": "10:00"}),
            Heartbeat(seq=2, loop_tick=11, universe_size=5, open_positions=2),
            event(3, "signal_event", {"symbol": "NIFTY", "side": "long"}),
            event(4, "order_event", {"order_id": "o-1", "status": "fill"}),
            event(5, "error", {"error_type": "E", "message": "m"}),
            event(6, "position_event", {"symbol": "NIFTY", "qty": 1}),
            event(7, "decision_trace", {"why": "z"}),
            event(8, "cycle", {"n": 1}),
            Log(seq=9, message="started", logger="engine.fno"),
            Metric(seq=10, op="inc", name="signals.long", tags={"strategy": "mr"}),
            Metric(seq=11, op="set", name="equity", value=1.5),
            Metric(seq=12, op="observe", name="latency", value=0.01),
        ],
        T0 + 1,
    )
    return views, fno


OVERVIEW_PARTS = (Part.HUB, Part.CARDS, Part.SIGNALS, Part.ORDERS, Part.ERRORS, Part.LOGS)
ENGINE_PARTS = (Part.CARD, Part.STATE, Part.METRICS, Part.ELOGS, *SECTION_PARTS)
ALL_FRAGMENTS = [FragmentKey(p) for p in OVERVIEW_PARTS] + [FragmentKey(p, 1) for p in ENGINE_PARTS]


@pytest.mark.parametrize("name", ALL_FRAGMENTS, ids=lambda k: labels([k])[0])
@pytest.mark.parametrize("oob", [False, True])
def test_fragment_has_one_root_with_derived_id(name: str, oob: bool) -> None:
    """A fragment is one root element with the derived id; hx-swap-oob only when pushed."""
    views, _ = populated()
    html = views.render(name, T0 + 2, oob=oob)
    roots = parse(html).roots
    assert len(roots) == 1, html
    _, attrs = roots[0]
    assert attrs["id"] == expected_id(name)
    assert attrs.get("hx-swap-oob") == ("true" if oob else None)
    if not oob:
        assert "hx-swap-oob" not in html


def test_fragments_show_their_data() -> None:
    """Rendered fragments carry what the engine sent (a check that rendering is not vacuous)."""
    views, _ = populated()
    now = T0 + 2
    assert "NIFTY" in views.render(FragmentKey(Part.SIGNALS), now, False)
    assert "o-1" in views.render(FragmentKey(Part.ORDERS), now, False)
    assert "started" in views.render(FragmentKey(Part.LOGS), now, False)
    assert "signals.long" in views.render(FragmentKey(Part.METRICS, 1), now, False)
    assert "10:00" in views.render(FragmentKey(Part.STATE, 1), now, False)
    card = views.render(FragmentKey(Part.CARD, 1), now, False)
    assert ">fno<" in card and "LIVE" in card and ">11<" in card


HOSTILE = [
    '<script>alert("x")</script>',
    '"><img src=x onerror=alert(1)>',
    "' hx-get='/api/telemetry/engines' hx-trigger='load'",
    '" hx-on:click="alert(1)" x="',
    '" hx-swap-oob="outerHTML:#cards" id="cards',
    '</section><section id="evil" hx-swap-oob="true">',
]


def hostile_views() -> Views:
    """A hub whose engine put attacker-controlled text in every free-text field it has."""
    views = make_views()
    evil = "\n".join(HOSTILE)
    # The decoder would reject this name; the templates must not rely on that.
    engine = connect(views, HOSTILE[0], mode="live")
    payload = {key: evil for key in ("symbol", "side", "price", "strategy", "reason")}
    payload |= {"order_id": evil, "status": evil, "quantity": evil, "error_type": evil}
    views.state.ingest(
        engine,
        [
            Heartbeat(seq=1, status=Status.RUNNING, loop_tick=1, last_error=evil),
            Heartbeat(seq=2, state={evil: evil, "k": evil}),
            *(
                event(3 + i, t, {**payload, "message": evil, evil: evil})
                for i, t in enumerate(
                    (
                        "signal_event",
                        "order_event",
                        "error",
                        "position_event",
                        "decision_trace",
                        "cycle",
                    )
                )
            ),
            Log(seq=9, message=evil, logger=evil, level="INFO", exc=evil),
            Log(seq=10, message=evil, logger=evil, level=evil),
            Metric(seq=11, op="inc", name="signals.long", tags={"strategy": evil}),
        ],
        T0 + 1,
    )
    return views


@pytest.mark.parametrize("name", ALL_FRAGMENTS, ids=lambda k: labels([k])[0])
def test_engine_text_is_escaped_and_never_an_attribute(name: str) -> None:
    """Engine text renders as text: no new elements, attributes or ids come from it."""
    views = hostile_views()
    html = views.render(name, T0 + 2, oob=True)
    parsed = parse(html)
    for tag, attrs in parsed.tags:
        assert tag not in ("script", "img"), html
        assert set(attrs) <= TEMPLATE_ATTRIBUTES, (tag, attrs)
        if "id" in attrs:
            assert DERIVED_ID.match(attrs["id"] or ""), attrs
        assert attrs.get("hx-swap-oob") in (None, "true")
    assert "<script>" not in html and "<img" not in html


@pytest.mark.parametrize(
    "name",
    [FragmentKey(p) for p in (Part.CARDS, Part.SIGNALS, Part.ORDERS, Part.ERRORS, Part.LOGS)]
    + [FragmentKey(p, 1) for p in (Part.STATE, Part.ELOGS, Part.POSITIONS)],
    ids=lambda k: labels([k])[0],
)
def test_engine_text_survives_as_escaped_text(name: str) -> None:
    """The hostile text is shown to the reader (escaped), not silently dropped."""
    views = hostile_views()
    html = views.render(name, T0 + 2, oob=False)
    assert "&lt;script&gt;" in html
    assert "<script>" in "".join(parse(html).text)


# -- frames --------------------------------------------------------------------------------------


def counting(views: Views, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every fragment `views` renders, by label."""
    rendered: list[str] = []
    original = views.render

    def render(key: FragmentKey, now: float, oob: bool) -> str:
        rendered.extend(labels([key]))
        return original(key, now, oob)

    monkeypatch.setattr(views, "render", render)
    return rendered


def test_frame_renders_each_fragment_once_per_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within one cache a fragment renders once however many frames include it."""
    views, _ = populated()
    rendered = counting(views, monkeypatch)
    cache: dict[FragmentKey, str] = {}
    hub, cards, signals = (FragmentKey(p) for p in (Part.HUB, Part.CARDS, Part.SIGNALS))
    first = views.frame([hub, cards, signals], T0, cache)
    second = views.frame([signals, cards, signals], T0, cache)
    assert sorted(rendered) == ["cards", "hub", "signals"]
    views.frame([signals], T0, {})
    assert rendered.count("signals") == 2
    assert first == cache[hub] + cache[cards] + cache[signals]
    assert second == cache[signals] + cache[cards] + cache[signals]


def test_frame_concatenates_pushed_fragments_in_order() -> None:
    """A frame is the out-of-band renders of its names, in the order given."""
    views, _ = populated()
    frame = views.frame([FragmentKey(Part.ORDERS), FragmentKey(Part.HUB)], T0, {})
    assert frame == views.render(FragmentKey(Part.ORDERS), T0, True) + views.render(
        FragmentKey(Part.HUB), T0, True
    )
    roots = parse(frame).roots
    assert [attrs["id"] for _, attrs in roots] == ["orders", "hub-status"]
    assert all(attrs["hx-swap-oob"] == "true" for _, attrs in roots)


# -- card model ----------------------------------------------------------------------------------


def test_card_model_health_follows_heartbeats_and_connection(views: Views) -> None:
    """Health is derived from `now`: ok, late, stale, offline after a drop, stopped after bye."""
    fno = connect(views, "fno", heartbeat_interval=1.0)
    views.state.ingest(fno, [Heartbeat(seq=1, status=Status.RUNNING, loop_tick=1)], T0)
    health = [views.card_model(fno, T0 + dt)["health"] for dt in (0.5, 3, 7)]
    assert health == ["ok", "late", "stale"]
    views.state.disconnected(fno, 1, T0 + 8, Ingested())
    assert views.card_model(fno, T0 + 8)["health"] == "offline"
    connect(views, "fno", conn_id=2)
    views.state.ingest(fno, [Bye(seq=2)], T0 + 9)
    assert views.card_model(fno, T0 + 9)["health"] == "stopped"


def test_card_model_flags_a_stalled_loop(views: Views) -> None:
    """Heartbeats with a loop tick that stopped advancing make the card stalled."""
    fno = connect(views, "fno", heartbeat_interval=1.0)
    views.state.ingest(fno, [Heartbeat(seq=1, status=Status.RUNNING, loop_tick=7)], T0)
    for i in range(2, 12):
        views.state.ingest(fno, [Heartbeat(seq=i, loop_tick=7)], T0 + i)
    assert views.card_model(fno, T0 + 11)["health"] == "stalled"


def test_card_model_fields(views: Views) -> None:
    """The card model is derived by our code: upper-case mode, live flag, summed drops, sparkline."""
    fno = connect(views, "fno", mode="live", pid=7)
    views.state.ingest(
        fno,
        [
            Heartbeat(seq=1, loop_tick=10, dropped={"event": 2, "log": 3}),
            Heartbeat(seq=2, loop_tick=20),
            Heartbeat(seq=4, loop_tick=40),
        ],
        T0,
    )
    views.state.ingest(fno, [Heartbeat(seq=5, loop_tick=50)], T0 + 1)
    views.state.ingest(fno, [Heartbeat(seq=6, loop_tick=70)], T0 + 2)
    card = views.card_model(fno, T0 + 2)
    assert (card["index"], card["name"], card["mode"], card["live"], card["pid"]) == (
        1,
        "fno",
        "LIVE",
        True,
        7,
    )
    assert (card["loop_tick"], card["loop_rate"], card["gaps"], card["dropped"]) == (70, 20.0, 1, 5)
    assert card["sparkline"] == "0.0,19.0 100.0,1.0"


def test_forgotten_engine_renders_gone_placeholder() -> None:
    """A card for an engine the hub no longer knows renders the "gone" placeholder."""
    views = make_views(max_engines=1)
    old = connect(views, "old")
    views.state.disconnected(old, 1, T0 + 1, Ingested())
    connect(views, "new", conn_id=2)
    assert views.engine_by_index(old.index) is None
    for oob in (False, True):
        html = views.render(FragmentKey(Part.CARD, old.index), T0 + 2, oob=oob)
        ((_, attrs),) = parse(html).roots
        assert attrs["id"] == f"card-{old.index}"
        assert "health-gone" in (attrs["class"] or "")
        assert "no longer known" in html
        assert ("hx-swap-oob" in attrs) is oob


@pytest.mark.parametrize("part", ENGINE_PARTS, ids=lambda p: p.value)
def test_unknown_engine_page_fragments_render(views: Views, part: Part) -> None:
    """Every engine-page fragment of an unknown engine renders (empty) with its derived id."""
    name = FragmentKey(part, 9)
    assert name in views.names(ViewKey(ViewKind.ENGINE, 9))
    html = views.render(name, T0, oob=True)
    ((_, attrs),) = parse(html).roots
    assert attrs["id"] == expected_id(name)
    assert "NIFTY" not in html and "<tr>" not in html
