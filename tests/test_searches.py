"""The search query language (hub/core/searches.py) and the paging of hits (hub/core/hits.py)."""

from __future__ import annotations

import random
import re

import pytest

from hub.core.hits import DONE, BadCursor, Cursor, SearchHit, SearchRequest, merge
from hub.core.searches import MAX_QUERY_CHARS, BadQuery, Phrase, parse_query, snippet, tokens

HOSTILE = [
    "col:term",
    "message:secret",
    "NEAR(a b)",
    "a AND",
    "(((",
    "x' OR 1=1; DROP TABLE logs; --",
    '"a" NOT b',
    "^start",
    "{a b}",
    "a + b",
    "\x00null",
]


def test_words_phrases_prefixes_or_and_exclusions_parse_to_a_query() -> None:
    """Words are ANDed, quotes make phrases, * a prefix, OR alternatives, -word exclusions."""
    q = parse_query('order Rejected "by the broker" ti* OR timeout -heartbeat -"paper mode"')
    assert q.groups == (
        (
            Phrase(("order",)),
            Phrase(("rejected",)),
            Phrase(("by", "the", "broker")),
            Phrase(("ti",), prefix=True),
        ),
        (Phrase(("timeout",)),),
    )
    assert q.excluded == (Phrase(("heartbeat",)), Phrase(("paper", "mode")))
    assert q.fts() == (
        '(("order" AND "rejected" AND "by the broker" AND "ti"*) OR ("timeout")) '
        'NOT ("heartbeat" OR "paper mode")'
    )
    assert (
        q.fts_loose()
        == '("order" AND "rejected" AND "by" AND "the" AND "broker" AND "ti"*) OR ("timeout")'
    )


@pytest.mark.parametrize("text", HOSTILE)
def test_punctuation_and_operators_are_searched_as_literal_tokens(text: str) -> None:
    """Whatever a user types, FTS5 sees only quoted letters and digits joined by our operators."""
    try:
        q = parse_query(text)
    except BadQuery:
        return  # a clear refusal is fine too
    stripped = re.sub(r'"[^"\W_]+(?: [^"\W_]+)*"\*?', "", q.fts())
    assert re.fullmatch(r"[() ]*(?:(?:AND|OR|NOT)[() ]*)*", stripped), q.fts()
    assert ":" not in q.fts() and "NEAR" not in q.fts()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('"unbalanced', "closing quote"),
        ('ok "also unbalanced', "closing quote"),
        ("*", "a * must follow"),
        ("a*", "a * must follow"),
        ("OR", "OR needs"),
        ("a OR", "OR needs"),
        ("a OR OR b", "OR needs"),
        ("-only", "nothing to search for"),
        ("::: ()", "nothing to search for"),
        ("", "nothing to search for"),
        ("w " * 17, "more than 16 words"),
        ("x" * (MAX_QUERY_CHARS + 1), "characters long"),
        ("y" * 10_000, "characters long"),
    ],
)
def test_what_cannot_be_searched_is_refused_with_a_reason(text: str, reason: str) -> None:
    """Unbalanced quotes, a bare *, a dangling OR, only exclusions, too long or too many words."""
    with pytest.raises(BadQuery, match=re.escape(reason)):
        parse_query(text)


def test_matching_follows_the_tokenizer_phrases_stay_in_one_text() -> None:
    """Case and accents fold; a phrase must be contiguous within one of the record's texts."""
    assert tokens("Café_au-lait: OK") == ["cafe", "au", "lait", "ok"]
    q = parse_query('"order rejected" nif*')
    assert q.matches(["Order REJECTED by broker", "NIFTY"])
    assert not q.matches(["order was rejected", "NIFTY"])
    assert not q.matches(["order", "rejected NIFTY"])
    assert parse_query("a OR b -c").matches(["b"])
    assert not parse_query("a OR b -c").matches(["b c"])


def test_snippet_marks_matched_words_in_structured_parts() -> None:
    """The snippet is (text, matched) parts that put the text back together, cut around a match."""
    q = parse_query("rejected")
    parts = snippet(q, "<b>order</b> rejected now")
    assert "".join(t for t, _ in parts) == "<b>order</b> rejected now"
    assert [t for t, m in parts if m] == ["rejected"]
    long = "x " * 500 + "rejected" + " y" * 500
    parts = snippet(q, long, width=100)
    assert parts[0] == ("…", False) and parts[-1] == ("…", False)
    assert ("rejected", True) in parts and sum(len(t) for t, _ in parts) <= 102


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    """A cursor decodes to what was encoded; anything else is BadCursor, never an exception."""
    for cursor in (Cursor(), Cursor(5, None), Cursor(DONE, 17), Cursor(2**62, 2**62)):
        assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "zz", "djE6eDp5", "A" * 100, "💥", "v1:1:2"):
        with pytest.raises(BadCursor):
            Cursor.decode(bad)


def _newest(hits: list[SearchHit], before: int | None, limit: int) -> list[SearchHit]:
    """A source's answer: its newest `limit` + 1 hits below `before` (none once it is done)."""
    if before == DONE:
        return []
    below = [h for h in hits if before is None or h.id < before]
    return sorted(below, key=lambda h: -h.id)[: limit + 1]


def _hit(kind: str, ident: int, ts: float) -> SearchHit:
    return SearchHit("log" if kind == "log" else "event", ident, "e", ts, "INFO", "x")


def test_paging_merged_sources_returns_every_hit_once() -> None:
    """Two sources newest first by id, times interleaved and not monotonic: paging by the merge's
    cursor yields each hit exactly once whatever the page size."""
    rng = random.Random(7)
    logs = [_hit("log", i, rng.uniform(0, 100)) for i in range(1, 60)]
    events = [_hit("event", i, rng.uniform(0, 100)) for i in range(1, 45)]
    query = parse_query("x")
    for limit in (1, 3, 7, 50, 200):
        cursor: Cursor | None = Cursor()
        seen: list[tuple[str, int]] = []
        while cursor is not None:
            request = SearchRequest(query, limit, cursor=cursor)

            page = merge(
                request, _newest(logs, cursor.logs, limit), _newest(events, cursor.events, limit)
            )
            assert len(page.hits) <= limit
            seen += [(h.kind, h.id) for h in page.hits]
            cursor = page.next
        assert sorted(seen) == sorted({(h.kind, h.id) for h in logs + events}), limit
        assert len(seen) == len(set(seen))


def test_a_level_searches_log_lines_only_and_a_type_events_only() -> None:
    """The filters say which sources a request reads."""
    q = parse_query("x")
    assert not SearchRequest(q, 5, min_level=30).wants_events
    assert not SearchRequest(q, 5, event_type="order_event").wants_logs
    assert SearchRequest(q, 5).wants_logs and SearchRequest(q, 5).wants_events


def test_phrase_search_agrees_with_a_plain_reference() -> None:
    """Random phrases (with and without a prefix) over random token runs: found exactly when a
    naive window-by-window comparison finds them."""
    rng = random.Random(18)
    vocab = ["a", "ab", "abc", "b", "ba", "c"]
    for _ in range(3000):
        seq = [rng.choice(vocab) for _ in range(rng.randint(0, 8))]
        words = tuple(rng.choice(vocab) for _ in range(rng.randint(1, 3)))
        phrase = Phrase(words, rng.random() < 0.5)
        n = len(words)
        naive = any(
            seq[i : i + n - 1] == list(words[:-1])
            and (
                seq[i + n - 1].startswith(words[-1])
                if phrase.prefix
                else seq[i + n - 1] == words[-1]
            )
            for i in range(len(seq) - n + 1)
        )
        assert phrase.found_in(seq) == naive, (seq, phrase)
