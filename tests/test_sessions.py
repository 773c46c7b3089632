"""Session rules without a clock: idle and absolute expiry, renewal, sign-out, credential changes."""

from __future__ import annotations

from hub.core.access import Role, User
from hub.core.sessions import SessionEnd, Sessions, ViewerSession

NOW = 1_700_000_000.0
ALICE = User("alice", Role.VIEWER, "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA")
USERS = {"alice": ALICE}


def test_a_session_admits_its_user_until_idle() -> None:
    """A session is good while used; left idle for `idle` seconds it ends."""
    sessions = Sessions(idle=600, lifetime=86400)
    session = sessions.start(ALICE, NOW)
    assert sessions.check(session, USERS, NOW + 599) is ALICE
    assert sessions.check(session, USERS, NOW + 600) is SessionEnd.IDLE


def test_renewal_moves_the_idle_deadline_but_not_the_lifetime() -> None:
    """Seen again, a session lives another idle period, but never past its absolute lifetime."""
    sessions = Sessions(idle=600, lifetime=1000)
    session = sessions.start(ALICE, NOW)
    assert sessions.renewed(session, NOW + 10) is None  # too soon to re-issue the cookie
    renewed = sessions.renewed(session, NOW + 500)
    assert renewed is not None and renewed.seen == NOW + 500 and renewed.issued == NOW
    assert sessions.check(renewed, USERS, NOW + 900) is ALICE  # would be idle without renewal
    assert sessions.check(session, USERS, NOW + 900) is SessionEnd.IDLE
    again = sessions.renewed(renewed, NOW + 990)
    assert again is not None
    assert sessions.check(again, USERS, NOW + 1000) is SessionEnd.EXPIRED
    assert sessions.max_age(again, NOW + 990) == 10


def test_a_live_socket_ignores_idleness_but_not_the_lifetime() -> None:
    """An open live socket is activity: only its lifetime (and sign-out) ends it."""
    sessions = Sessions(idle=600, lifetime=1000)
    session = sessions.start(ALICE, NOW)
    assert sessions.check(session, USERS, NOW + 700, live=True) is ALICE
    assert sessions.check(session, USERS, NOW + 1000, live=True) is SessionEnd.EXPIRED


def test_sign_out_ends_the_session_for_every_copy() -> None:
    """After sign-out the same claims (any copy of the cookie) no longer admit anyone."""
    sessions = Sessions(idle=600, lifetime=1000)
    session, other = sessions.start(ALICE, NOW), sessions.start(ALICE, NOW)
    sessions.sign_out(session, NOW + 1)
    assert sessions.check(session, USERS, NOW + 2) is SessionEnd.SIGNED_OUT
    assert sessions.check(other, USERS, NOW + 2) is ALICE


def test_sign_outs_are_bounded_and_forget_the_expired_first() -> None:
    """The sign-out table stays within its bound, dropping entries that expire on their own."""
    sessions = Sessions(idle=600, lifetime=1000, max_signed_out=2)
    old = sessions.start(ALICE, NOW - 999)
    a, b = sessions.start(ALICE, NOW, "a"), sessions.start(ALICE, NOW + 1, "b")
    sessions.sign_out(old, NOW)
    sessions.sign_out(a, NOW + 2)  # `old` expired at NOW + 1: gone, not counted
    sessions.sign_out(b, NOW + 2)
    assert sessions.check(a, USERS, NOW + 3) is SessionEnd.SIGNED_OUT
    assert sessions.check(b, USERS, NOW + 3) is SessionEnd.SIGNED_OUT
    c = sessions.start(ALICE, NOW + 3, "c")
    sessions.sign_out(c, NOW + 3)  # full: the one closest to expiring (a) makes room
    assert sessions.check(c, USERS, NOW + 4) is SessionEnd.SIGNED_OUT
    assert sessions.check(b, USERS, NOW + 4) is SessionEnd.SIGNED_OUT
    assert sessions.check(a, USERS, NOW + 4) is ALICE


def test_removed_user_or_new_password_ends_sessions() -> None:
    """Credentials are read each time: a removed user or a changed password ends old sessions."""
    sessions = Sessions(idle=600, lifetime=1000)
    session = sessions.start(ALICE, NOW)
    assert sessions.check(session, {}, NOW) is SessionEnd.UNKNOWN_USER
    changed = User("alice", Role.ADMIN, ALICE.password + "x")
    assert sessions.check(session, {"alice": changed}, NOW) is SessionEnd.PASSWORD_CHANGED
    promoted = User("alice", Role.ADMIN, ALICE.password)
    assert sessions.check(session, {"alice": promoted}, NOW) is promoted  # role is current


def test_wire_form_round_trips_and_rejects_anything_else() -> None:
    """The cookie's JSON value decodes back to the same session; other shapes are refused."""
    session = Sessions(600, 1000).start(ALICE, NOW, "sid")
    assert ViewerSession.from_wire(session.to_wire()) == session
    for bad in (None, [], ["alice", "sid", "x", NOW, "k"], ["alice", "sid", NOW, True, "k"], {}):
        assert ViewerSession.from_wire(bad) is None


def test_times_from_the_future_are_refused() -> None:
    """A session claiming to be seen well after `now` was not issued by this clock."""
    sessions = Sessions(idle=600, lifetime=1000)
    session = sessions.start(ALICE, NOW + 3600)
    assert sessions.check(session, USERS, NOW) is SessionEnd.MALFORMED
