"""API tokens: only a hash is kept, the secret is checked exactly, revoked tokens refused."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.access import InvalidToken, new_token, parse_token, verify


def _row(tok, **kw):
    return {"secret_sha256": tok.secret_sha256, "role": "member", "member_id": "M07", **kw}


def test_a_new_token_verifies_and_names_its_member():
    tok = new_token()
    who = verify(tok.token, _row(tok, revoked_at=None))
    assert (who.token_id, who.role, who.member_id) == (tok.token_id, "member", "M07")
    assert who.may_see("M07") and not who.may_see("M08")
    assert tok.token.split("_")[2] not in tok.secret_sha256


@given(st.integers(min_value=0, max_value=42), st.sampled_from("AZaz09-_"))
def test_any_changed_character_of_the_secret_is_refused(pos, char):
    tok = new_token()
    tid, secret = parse_token(tok.token)
    if secret[pos] == char:
        char = "B" if char != "B" else "C"
    forged = f"ecm_{tid}_{secret[:pos]}{char}{secret[pos + 1 :]}"
    with pytest.raises(InvalidToken, match="unknown token"):
        verify(forged, _row(tok))


@pytest.mark.parametrize(
    "text", ["", "Bearer x", "ecm_short_secret", "ecm_0123456789ab_" + "a" * 42, "x" * 500]
)
def test_malformed_tokens_are_refused(text):
    with pytest.raises(InvalidToken, match="malformed"):
        parse_token(text)


def test_revoked_unknown_and_odd_roles_are_refused():
    tok = new_token()
    with pytest.raises(InvalidToken, match="revoked"):
        verify(tok.token, _row(tok, revoked_at=pd.Timestamp("2026-01-01", tz="UTC")))
    with pytest.raises(InvalidToken, match="unknown token"):
        verify(tok.token, None)
    with pytest.raises(InvalidToken, match="role"):
        verify(tok.token, _row(tok, role="admin"))
    assert verify(tok.token, _row(tok, revoked_at=pd.NaT)).role == "member"


def test_an_expired_token_is_refused():
    tok = new_token()
    expires = pd.Timestamp("2026-01-01T00:00Z")
    row = _row(tok, revoked_at=None, expires_at=expires)
    assert verify(tok.token, row, now=expires - pd.Timedelta(seconds=1)).role == "member"
    with pytest.raises(InvalidToken, match="expired"):
        verify(tok.token, row, now=expires)
