"""Who may do what, sans-I/O: viewer roles, API tokens, engine tokens and what each admits.

Secrets never live here: tokens are stored and compared as SHA-256 digests (a token is 32 random
bytes, so a fast hash is enough; passwords, which are not random, are argon2 hashes checked in
`hub/web/passwords.py`). Expiry is decided against a `now` the caller passes in.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANY_ENGINE",
    "API_TOKEN_PREFIX",
    "ENGINE_TOKEN_PREFIX",
    "ApiToken",
    "Credentials",
    "EngineToken",
    "Role",
    "User",
    "digest",
    "new_token",
]

API_TOKEN_PREFIX = "ehv_"  # a viewer/admin API token (programs, the TUI, Prometheus)
ENGINE_TOKEN_PREFIX = "ehe_"  # an engine token (the client library's `token=`)
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]{1,64}$")
_MODE = re.compile(r"^([A-Za-z0-9_-]{1,16}|\*)$")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class Role(enum.StrEnum):
    """What a signed-in viewer may do: `viewer` reads everything; `admin` also changes things."""

    VIEWER = "viewer"
    ADMIN = "admin"


def new_token(prefix: str) -> str:
    """A fresh random token (32 bytes, URL-safe) with its kind as a readable prefix."""
    return prefix + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The SHA-256 hex digest a token is stored and looked up by."""
    return hashlib.sha256(token.encode()).hexdigest()


def _checked_digest(value: str, what: str) -> str:
    if not _DIGEST.match(value):
        raise ValueError(
            f"{what}: sha256 must be 64 hex digits (as `engine-hub token create` prints)"
        )
    return value


@dataclass(frozen=True, slots=True)
class User:
    """A viewer who signs in with a password (argon2 hash, never the password itself)."""

    name: str
    role: Role
    password: str  # "$argon2id$..."

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"user {self.name!r}: names are 1-64 of A-Z a-z 0-9 _ . @ -")
        if not self.password.startswith("$argon2"):
            raise ValueError(
                f"user {self.name!r}: password must be an argon2 hash; "
                "make the entry with `engine-hub user add NAME --role viewer|admin`"
            )


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token for programs: a role, an optional expiry (Unix seconds)."""

    sha256: str
    role: Role
    name: str = ""
    expires: float | None = None

    def __post_init__(self) -> None:
        _checked_digest(self.sha256, f"api token {self.name!r}")


@dataclass(frozen=True, slots=True)
class EngineToken:
    """An engine credential: the engine names (globs) and modes it admits."""

    sha256: str
    engines: tuple[str, ...]
    modes: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        _checked_digest(self.sha256, f"engine token {self.name!r}")
        if not self.engines or not all(_GLOB.match(g) for g in self.engines):
            raise ValueError(
                f"engine token {self.name!r}: engines must be names or globs such as 'fno*'"
            )
        if not self.modes or not all(_MODE.match(m) for m in self.modes):
            raise ValueError(f"engine token {self.name!r}: modes must be e.g. ['paper'] or ['*']")

    def refusal(self, engine: str, mode: str) -> str | None:
        """Why this token may not speak for `engine` in `mode` (None when it may)."""
        if not any(fnmatch.fnmatchcase(engine, glob) for glob in self.engines):
            allowed = ", ".join(self.engines)
            return f"this token does not admit engine {engine!r} (it admits {allowed})"
        if "*" not in self.modes and mode.lower() not in self.modes:
            allowed = ", ".join(self.modes)
            return f"this token does not admit mode {mode!r} (it admits {allowed})"
        return None


ANY_ENGINE = EngineToken("0" * 64, ("*",), ("*",), "the shared `token` setting")


class Credentials:
    """Every credential the settings name, indexed for lookup by digest."""

    def __init__(
        self,
        users: Iterable[User] = (),
        api_tokens: Iterable[ApiToken] = (),
        engine_tokens: Iterable[EngineToken] = (),
        shared_engine_token: str = "",
        revoked_embeds: Iterable[str] = (),
    ) -> None:
        self.users = {user.name: user for user in users}
        self._api = {token.sha256: token for token in api_tokens}
        self._engine = {token.sha256: token for token in engine_tokens}
        self._shared = shared_engine_token
        self.revoked_embeds = frozenset(revoked_embeds)

    def changes_to(self, newer: Credentials) -> dict[str, list[str]]:
        """Names of users and tokens added or removed in `newer`, by audit action."""

        def named(entries: dict[str, Any], label: str) -> dict[str, str]:
            return {
                key: f"{label} {getattr(e, 'name', '') or key[:12]}" for key, e in entries.items()
            }

        pairs = [
            (named(self.users, "user"), named(newer.users, "user")),
            (named(self._api, "api token"), named(newer._api, "api token")),
            (named(self._engine, "engine token"), named(newer._engine, "engine token")),
        ]
        added = [name for old, new in pairs for key, name in new.items() if key not in old]
        removed = [name for old, new in pairs for key, name in old.items() if key not in new]
        revoked = sorted(f"embed link {i}" for i in newer.revoked_embeds - self.revoked_embeds)
        return {"credential_added": added, "credential_removed": removed + revoked}

    @property
    def engines_need_a_token(self) -> bool:
        """Whether engines must present a token at all."""
        return bool(self._shared or self._engine)

    def api_token(self, token: str, now: float) -> ApiToken | None:
        """The API token entry for `token`, unless unknown or expired at `now`."""
        entry = self._api.get(digest(token))
        if entry is None or (entry.expires is not None and entry.expires <= now):
            return None
        return entry

    def engine_token(self, token: str) -> EngineToken | None:
        """The grant of an engine token: a per-engine token, or the shared one (any engine)."""
        entry = self._engine.get(digest(token))
        if entry is not None:
            return entry
        if self._shared and hmac.compare_digest(token.encode(), self._shared.encode()):
            return ANY_ENGINE
        return None

    def engine_grant(self, sha256: str) -> EngineToken | None:
        """The grant of the engine token with this digest, or None once it is gone from the settings.

        An open engine socket keeps only its token's digest; a reload asks this whether it may stay.
        """
        entry = self._engine.get(sha256)
        if entry is not None:
            return entry
        if self._shared and hmac.compare_digest(sha256, digest(self._shared)):
            return ANY_ENGINE
        return None
