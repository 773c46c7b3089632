"""Embed links: signed, expiring, revocable read-only access to one engine's card.

A link carries `?embed=<token>`: the engine's name, an expiry and a link id, signed with the
hub's `session_secret` (itsdangerous). It admits exactly that engine's embed page, its card
fragment and the embed view of /ws/dashboard (plus static files) — not other engines, not logs,
not the API. Listing the id in `revoked_embeds` (then SIGHUP, or the admin reload) revokes it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

__all__ = ["EmbedGrant", "EmbedLinks", "EMBED_PARAM"]

EMBED_PARAM = "embed"  # the query parameter that carries the token
_SALT = "engine-hub-embed-v1"


@dataclass(frozen=True, slots=True)
class EmbedGrant:
    """What one valid embed token admits: one engine's card until `expires`."""

    engine: str
    expires: float
    link_id: str


class EmbedLinks:
    """Makes and checks embed tokens with the hub's signing secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError(
                "embed links are signed with session_secret: set it in the settings file to a "
                "long random string (python -c 'import secrets; print(secrets.token_urlsafe(32))') "
                "so that links survive restarts"
            )
        self._serializer = URLSafeSerializer(secret, salt=_SALT)

    def make(self, engine: str, expires: float) -> tuple[str, EmbedGrant]:
        """A new token for `engine` valid until `expires`, and what it grants (with its id)."""
        grant = EmbedGrant(engine, round(expires), secrets.token_hex(8))
        token = self._serializer.dumps([grant.engine, grant.expires, grant.link_id])
        return token, grant

    def read(self, token: str, now: float, revoked: frozenset[str]) -> EmbedGrant | None:
        """The grant of a genuine, unexpired, unrevoked token; None for anything else."""
        if len(token) > 512:
            return None
        try:
            engine, expires, link_id = self._serializer.loads(token)
        except (BadSignature, ValueError, TypeError):
            return None
        if not (isinstance(engine, str) and isinstance(expires, int | float)):
            return None
        if not isinstance(link_id, str) or expires <= now or link_id in revoked:
            return None
        return EmbedGrant(engine, float(expires), link_id)
