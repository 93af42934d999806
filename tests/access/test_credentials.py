"""Sessions expire (idle and absolute); only hashes of secrets are stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from cryovault.access import credentials
from cryovault.access.users import create_user
from cryovault.db.users import ApiToken, LoginSession
from cryovault.errors import Unauthenticated

IDLE, MAX_AGE = timedelta(minutes=30), timedelta(hours=8)


def test_session_idle_and_absolute_expiry(db):
    user = create_user(db, "carol", "password-123")
    secret = credentials.open_session(db, user, IDLE)
    assert credentials.resolve_session(db, secret, IDLE, MAX_AGE).id == user.id
    row = db.scalar(select(LoginSession))
    assert row.token_hash != secret and len(row.token_hash) == 64

    row.expires_at -= IDLE + timedelta(seconds=1)
    db.flush()
    with pytest.raises(Unauthenticated, match="expired"):
        credentials.resolve_session(db, secret, IDLE, MAX_AGE)

    fresh = credentials.open_session(db, user, IDLE)
    row = db.get(LoginSession, credentials._digest(fresh))
    row.created_at -= MAX_AGE
    db.flush()
    with pytest.raises(Unauthenticated):
        credentials.resolve_session(db, fresh, IDLE, MAX_AGE)


def test_deactivated_user_cannot_use_token_or_log_in(db):
    user = create_user(db, "dave", "password-123")
    _, secret = credentials.create_token(db, user, "EPU PC")
    assert db.scalar(select(ApiToken.token_hash)) != secret
    assert credentials.resolve_token(db, secret).id == user.id
    user.is_active = False
    db.flush()
    with pytest.raises(Unauthenticated):
        credentials.resolve_token(db, secret)
    with pytest.raises(Unauthenticated, match="deactivated"):
        credentials.authenticate(db, "dave", "password-123")
