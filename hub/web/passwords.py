"""Viewer passwords: argon2id hashes (argon2-cffi), made by the CLI and checked at sign-in."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["MIN_PASSWORD_CHARS", "hash_password", "verify_password"]

MIN_PASSWORD_CHARS = 10
_HASHER = PasswordHasher()  # stateless parameters (RFC 9106 low-memory profile), not state


def hash_password(password: str) -> str:
    """The argon2id hash to store for `password`."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    return _HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches the stored hash (slow on purpose: call it off the event loop)."""
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
