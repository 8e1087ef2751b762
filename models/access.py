"""API tokens: generation, parsing and verification (pure; stored by ``models.plan_store``).

A token reads ``ecm_<token_id>_<secret>``: the id is public (it names the token in
``api_tokens`` and in ``ecm token revoke``), the secret is 32 random bytes (URL-safe base64)
of which only a SHA-256 is stored. A secret of that entropy needs no slow password hash; the
comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import pandas as pd

ROLES = ("operator", "member")
"""An operator sees everything; a member only their own data."""

_TOKEN = re.compile(r"^ecm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class InvalidToken(ValueError):
    """A token that is malformed, unknown, revoked, or of an unknown role."""


@dataclass(frozen=True)
class Principal:
    """Who a valid token belongs to."""

    token_id: str
    role: str
    member_id: str | None = None

    def may_see(self, member_id: str) -> bool:
        """Whether this principal may read ``member_id``'s data."""
        return self.role == "operator" or self.member_id == member_id


@dataclass(frozen=True)
class NewToken:
    """A freshly generated token: the string is shown once and never stored."""

    token_id: str
    token: str
    secret_sha256: str


def hash_secret(secret: str) -> str:
    """SHA-256 (hex) of a token's secret part."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> NewToken:
    """A random token and the hash to store."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewToken(token_id, f"ecm_{token_id}_{secret}", hash_secret(secret))


def parse_token(token: str) -> tuple[str, str]:
    """``(token_id, secret)`` of a token string.

    Raises
    ------
    InvalidToken
        The string is not of the form ``ecm_<12 hex>_<43 URL-safe characters>``.
    """
    m = _TOKEN.match(token.strip())
    if m is None:
        raise InvalidToken("malformed token: expected ecm_<id>_<secret>")
    return m.group(1), m.group(2)


def verify(token: str, stored: dict | None, now: pd.Timestamp | None = None) -> Principal:
    """The principal of ``token`` given its stored ``api_tokens`` row (None: unknown id).

    Parameters
    ----------
    now : Timestamp, optional
        The time of the request (UTC; default now), against the token's ``expires_at``.

    Raises
    ------
    InvalidToken
        Malformed, unknown, revoked, expired, a wrong secret, or a row of an unknown role.
    """
    token_id, secret = parse_token(token)
    if stored is None:
        raise InvalidToken("unknown token")
    if not hmac.compare_digest(hash_secret(secret), str(stored["secret_sha256"])):
        raise InvalidToken("unknown token")
    revoked = stored.get("revoked_at")
    if revoked is not None and revoked == revoked:  # NaT/NaN: not revoked
        raise InvalidToken("revoked token")
    expires = stored.get("expires_at")
    if expires is not None and expires == expires:
        if pd.Timestamp(expires) <= (now if now is not None else pd.Timestamp.now(tz="UTC")):
            raise InvalidToken("expired token")
    if stored["role"] not in ROLES:
        raise InvalidToken(f"token of unknown role {stored['role']!r}")
    member = stored.get("member_id")
    return Principal(token_id, str(stored["role"]), member if isinstance(member, str) else None)
