"""Viewer sign-in sessions, sans-I/O: what a session cookie's claims allow at a given `now`.

A session is a small signed value the browser keeps (the shell signs and reads it); it names the
user, a random id, when the user signed in and when the hub last saw the session. Nothing here
reads a clock: `now` is passed in, so idle and absolute expiry are tested without waiting.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from hub.core.access import User, digest

__all__ = ["SessionEnd", "Sessions", "ViewerSession", "password_key"]

_CLOCK_SKEW = 60.0  # a session "seen" this far in the future is forged or from a broken clock


class SessionEnd(enum.StrEnum):
    """Why a session no longer admits its holder."""

    SIGNED_OUT = "signed out"
    IDLE = "idle too long"
    EXPIRED = "past its lifetime"
    UNKNOWN_USER = "user no longer configured"
    PASSWORD_CHANGED = "password changed since sign-in"
    MALFORMED = "not a session this hub issued"


@dataclass(frozen=True, slots=True)
class ViewerSession:
    """The claims a session cookie carries: who, which session, signed in when, last seen when."""

    user: str
    sid: str
    issued: float
    seen: float
    key: str  # a fingerprint of the user's password hash: a new password ends old sessions

    def to_wire(self) -> list[Any]:
        """The compact JSON value the shell signs into the cookie."""
        return [self.user, self.sid, self.issued, self.seen, self.key]

    @classmethod
    def from_wire(cls, value: Any) -> ViewerSession | None:
        """The session in a verified cookie value, or None if it is not one."""
        if not isinstance(value, list) or len(value) != 5:
            return None
        user, sid, issued, seen, key = value
        if not (isinstance(user, str) and isinstance(sid, str) and isinstance(key, str)):
            return None
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (issued, seen)):
            return None
        return cls(user, sid, float(issued), float(seen), key)


def password_key(user: User) -> str:
    """A short fingerprint of the user's stored hash (not of the password)."""
    return digest(user.password)[:16]


class Sessions:
    """Session rules: idle and absolute expiry, renewal, and the ids signed out before expiry."""

    def __init__(self, idle: float, lifetime: float, max_signed_out: int = 100_000) -> None:
        self.idle = idle
        self.lifetime = lifetime
        # Renew "seen" at most this often, so a busy page does not re-issue its cookie each time.
        self.renew_after = min(60.0, idle / 4)
        self._signed_out: dict[str, float] = {}  # sid -> when it would have expired anyway
        self._max_signed_out = max_signed_out

    def start(self, user: User, now: float, sid: str | None = None) -> ViewerSession:
        """A fresh session for `user`, signed in at `now`."""
        sid = sid or secrets.token_urlsafe(16)
        return ViewerSession(user.name, sid, now, now, password_key(user))

    def check(
        self, session: ViewerSession, users: Mapping[str, User], now: float, *, live: bool = False
    ) -> User | SessionEnd:
        """The user `session` admits at `now`, or why it ends.

        `live` checks an open live socket: its traffic counts as activity, so only the absolute
        lifetime, sign-out and credential changes end it, never idleness.
        """
        if session.sid in self._signed_out:
            return SessionEnd.SIGNED_OUT
        if session.issued > session.seen or session.seen > now + _CLOCK_SKEW:
            return SessionEnd.MALFORMED
        if now >= session.issued + self.lifetime:
            return SessionEnd.EXPIRED
        if not live and now >= session.seen + self.idle:
            return SessionEnd.IDLE
        user = users.get(session.user)
        if user is None:
            return SessionEnd.UNKNOWN_USER
        if password_key(user) != session.key:
            return SessionEnd.PASSWORD_CHANGED
        return user

    def renewed(self, session: ViewerSession, now: float) -> ViewerSession | None:
        """`session` seen at `now`, when its cookie is due for renewal (else None)."""
        if now - session.seen < self.renew_after:
            return None
        return replace(session, seen=now)

    def max_age(self, session: ViewerSession, now: float) -> int:
        """Seconds the browser should keep the cookie: until the absolute expiry."""
        return max(0, int(session.issued + self.lifetime - now))

    def sign_out(self, session: ViewerSession, now: float) -> None:
        """End `session` for every holder of its cookie, until it would have expired anyway."""
        self._signed_out = {sid: t for sid, t in self._signed_out.items() if t > now}
        if len(self._signed_out) >= self._max_signed_out:
            # Bounded: forget the sign-outs closest to expiring on their own.
            for sid in sorted(self._signed_out, key=self._signed_out.__getitem__)[
                : len(self._signed_out) - self._max_signed_out + 1
            ]:
                del self._signed_out[sid]
        self._signed_out[session.sid] = session.issued + self.lifetime
