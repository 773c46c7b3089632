"""Search queries (sans-I/O): the user's syntax parsed, translated to FTS5, matched and marked.

The syntax (docs/history.md): words (all must match), "quoted phrases", a prefix* (two letters at
least), OR between alternatives, -word or -"phrase" to exclude. Words are cut into tokens as
SQLite's unicode61 tokenizer does (letters and digits, case and accents folded), so punctuation
such as `col:term` or `NEAR(` is searched as the literal tokens it contains and never reaches FTS5
as syntax: every token goes to FTS5 inside double quotes, and holds only letters and digits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "MAX_QUERY_CHARS",
    "MAX_TERMS",
    "BadQuery",
    "Phrase",
    "SearchQuery",
    "marks",
    "parse_query",
    "snippet",
    "tokens",
]

MAX_QUERY_CHARS = 256
MAX_TERMS = 16  # tokens in all phrases together
MIN_PREFIX = 2  # letters before a *: one letter would match most of the vocabulary
_TOKEN = re.compile(r"[^\W_]+")
_LEXEME = re.compile(r'\s*(?:(-?)"([^"]*)("?)(\*?)|(\S+?)(?=\s|"|$))')


class BadQuery(ValueError):
    """The query cannot be searched; the message says why and how to write it."""


def _fold(token: str) -> str:
    """Lower case without accents, as unicode61's remove_diacritics does it."""
    if token.isascii():
        return token.lower()
    decomposed = unicodedata.normalize("NFKD", token.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    """The folded tokens of `text`."""
    if text.isascii():
        return _TOKEN.findall(text.lower())
    return [_fold(t) for t in _TOKEN.findall(text)]


def _spans(text: str) -> Iterator[tuple[int, int, str]]:
    for match in _TOKEN.finditer(text):
        yield match.start(), match.end(), _fold(match.group())


@dataclass(frozen=True, slots=True)
class Phrase:
    """Tokens that must follow each other; with `prefix`, the last one only has to begin so."""

    words: tuple[str, ...]
    prefix: bool = False

    def fts(self) -> str:
        """The FTS5 phrase: quoted, so that no token is ever read as an operator."""
        return '"' + " ".join(self.words) + '"' + ("*" if self.prefix else "")

    def found_in(self, seq: list[str]) -> bool:
        """Whether the phrase occurs in a token sequence (list.index does the scanning, in C)."""
        words, prefix = self.words, self.prefix
        head, n = words[0], len(words)
        if n == 1:
            return any(t.startswith(head) for t in seq) if prefix else head in seq
        rest = words[1:-1] if prefix else words[1:]  # exactly; then a prefix last, if any
        start = 0
        while True:
            try:
                start = seq.index(head, start) + 1
            except ValueError:
                return False
            end = start + len(rest)
            if tuple(seq[start:end]) != rest:
                continue
            if not prefix:
                return True
            if end < len(seq) and seq[end].startswith(words[-1]):
                return True


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Alternatives (OR) of phrases that must all occur (AND), and phrases that must not."""

    groups: tuple[tuple[Phrase, ...], ...]
    excluded: tuple[Phrase, ...] = ()
    _needles: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)

    def fts(self) -> str:
        """The whole query as an FTS5 expression (for a full-detail index)."""
        found = " OR ".join("(" + " AND ".join(p.fts() for p in g) + ")" for g in self.groups)
        if not self.excluded:
            return found
        return f"({found}) NOT ({' OR '.join(p.fts() for p in self.excluded)})"

    def fts_loose(self) -> str:
        """A superset for an index without positions: phrases become their tokens, no NOT."""
        loose = []
        for group in self.groups:
            parts = [
                Phrase((w,), p.prefix and i == len(p.words) - 1)
                for p in group
                for i, w in enumerate(p.words)
            ]
            loose.append("(" + " AND ".join(p.fts() for p in parts) + ")")
        return " OR ".join(loose)

    def __post_init__(self) -> None:
        words = tuple(tuple(w for p in g for w in p.words) for g in self.groups)
        object.__setattr__(self, "_needles", words)

    def matches(self, texts: Sequence[str]) -> bool:
        """Whether the query holds for a record made of `texts` (a phrase stays inside one)."""
        low = [t.lower() for t in texts if t]
        # A cheap no first: in ASCII text every token of a match is a substring of the text.
        if all(t.isascii() for t in low) and not any(
            all(any(w in t for t in low) for w in g) for g in self._needles
        ):
            return False
        return self._holds([tokens(t) for t in low])

    def matches_text(self, text: str) -> bool:
        """`matches` for a record of one text (an event's payload), the common case made cheap."""
        low = text.lower()
        if not low.isascii():
            return self._holds([tokens(low)])
        for group in self._needles:  # plain loops: this runs for every event of a chunk
            for word in group:
                if word not in low:
                    break
            else:
                return self._holds([tokens(low)])
        return False

    def _holds(self, seqs: list[list[str]]) -> bool:

        def found(phrase: Phrase) -> bool:
            return any(phrase.found_in(seq) for seq in seqs)

        return any(all(map(found, g)) for g in self.groups) and not any(map(found, self.excluded))

    def positive(self) -> tuple[Phrase, ...]:
        """Every phrase that a hit may show as matched."""
        return tuple(p for g in self.groups for p in g)


def parse_query(text: str) -> SearchQuery:
    """The query of a user's text; raises BadQuery with a readable reason."""
    if len(text) > MAX_QUERY_CHARS:
        raise BadQuery(f"the query is {len(text)} characters long; at most {MAX_QUERY_CHARS}")
    groups: list[list[Phrase]] = [[]]
    excluded: list[Phrase] = []
    count, pos, pending_or = 0, 0, False
    while pos < len(text):
        match = _LEXEME.match(text, pos)
        if match is None:  # only trailing blanks are left
            break
        pos = match.end()
        minus, quoted, closed, star, bare = match.groups()
        if quoted is None and bare is None:
            break
        if quoted is not None and not closed:
            raise BadQuery('a phrase has no closing quote: write "like this"')
        if bare == "OR":
            if not groups[-1] or pending_or:
                raise BadQuery("OR needs a word on each side, e.g. timeout OR rejected")
            pending_or = True
            continue
        if quoted is None:
            assert bare is not None
            minus = "-" if bare.startswith("-") and len(bare) > 1 else ""
            body = bare[1:] if minus else bare
            stripped = body.rstrip("*")
            star, quoted = ("*" if stripped != body else ""), stripped
        words = tuple(tokens(quoted))
        if not words:
            if star:
                raise BadQuery(
                    f"a * must follow at least {MIN_PREFIX} letters of a word, e.g. rej*"
                )
            continue  # punctuation alone: nothing to search for
        if star and len(words[-1]) < MIN_PREFIX:
            raise BadQuery(f"a * must follow at least {MIN_PREFIX} letters of a word, e.g. rej*")
        count += len(words)
        if count > MAX_TERMS:
            raise BadQuery(f"the query has more than {MAX_TERMS} words; leave some out")
        phrase = Phrase(words, bool(star))
        if minus:
            excluded.append(phrase)
            continue
        if pending_or:
            groups.append([])
            pending_or = False
        groups[-1].append(phrase)
    if pending_or:
        raise BadQuery("OR needs a word on each side, e.g. timeout OR rejected")
    if not groups[-1]:
        raise BadQuery("nothing to search for: give at least one word (a -word only excludes)")
    return SearchQuery(tuple(tuple(g) for g in groups), tuple(excluded))


def marks(query: SearchQuery, text: str) -> list[tuple[int, int]]:
    """Character spans of `text` whose tokens a phrase of `query` matched, in order."""
    spans = list(_spans(text))
    seq = [s[2] for s in spans]
    hit = [False] * len(spans)
    for phrase in query.positive():
        n = len(phrase.words)
        for start in range(len(seq) - n + 1):
            if phrase.found_in(seq[start : start + n]):
                hit[start : start + n] = [True] * n
    return [(s, e) for (s, e, _), h in zip(spans, hit, strict=True) if h]


def snippet(query: SearchQuery, text: str, width: int = 200) -> list[tuple[str, bool]]:
    """About `width` characters of `text` around its first match, cut into (text, matched) parts."""
    found = marks(query, text)
    start = max(0, found[0][0] - width // 4) if found else 0
    end = min(len(text), start + width)
    parts: list[tuple[str, bool]] = [("…", False)] if start else []
    at = start
    for s, e in found:
        if e <= start or s >= end:
            continue
        s, e = max(s, start), min(e, end)
        if s > at:
            parts.append((text[at:s], False))
        parts.append((text[s:e], True))
        at = e
    if at < end:
        parts.append((text[at:end], False))
    if end < len(text):
        parts.append(("…", False))
    return parts
