"""Login sessions (cookie) and API tokens (bearer): issue, resolve, revoke.

Only SHA-256 hashes of the secrets are stored, so a copy of the database opens no account.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cryovault.access.config import NO_EXTERNAL, AccessConfig
from cryovault.access.licences import check_sign_in
from cryovault.access.passwords import verify_password
from cryovault.access.users import DIRECTORY_SOURCE, find_by_login
from cryovault.db.base import utcnow
from cryovault.db.users import ApiToken, LoginSession, User
from cryovault.errors import Invalid, NotFound, Unauthenticated

TOKEN_PREFIX = "cvt_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def authenticate(db: Session, login: str, password: str,
                 config: AccessConfig = NO_EXTERNAL) -> User:
    """The user for these credentials: a local password, or for users added from the company
    directory a bind to the directory. Raises Unauthenticated (wrong credentials, deactivated),
    Forbidden (no licence seat) or Unavailable (directory down)."""
    user = find_by_login(db, login)
    if user is not None and user.source == DIRECTORY_SOURCE:
        if config.directory is None:
            raise Unauthenticated("directory sign-in is not configured on this installation; "
                                  "ask an administrator")
        if not user.is_active:  # do not ask the directory about deactivated accounts
            verify_password(None, password)
            raise Unauthenticated("this account is deactivated; ask a user manager")
        config.directory.check_password(user.username, password)
    elif user is None or not verify_password(user.password_hash, password):
        raise Unauthenticated("wrong username/e-mail or password")
    if not user.is_active:
        raise Unauthenticated("this account is deactivated; ask a user manager")
    check_sign_in(db, config.licensing, user)
    return user


def open_session(db: Session, user: User, idle: timedelta) -> str:
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    db.add(LoginSession(token_hash=_digest(secret), user_id=user.id, created_at=now,
                        last_seen_at=now, expires_at=now + idle))
    db.flush()
    return secret


def resolve_session(db: Session, secret: str, idle: timedelta, max_age: timedelta) -> User:
    row = db.get(LoginSession, _digest(secret))
    now = utcnow()
    if row is None or row.expires_at <= now or row.created_at + max_age <= now:
        raise Unauthenticated("your session has expired; sign in again")
    user = db.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("this account is deactivated")
    # Sliding expiry, written at most once a minute to keep reads cheap.
    if now - row.last_seen_at > timedelta(minutes=1):
        row.last_seen_at = now
        row.expires_at = now + idle
        db.flush()
    return user


def close_session(db: Session, secret: str) -> None:
    db.execute(delete(LoginSession).where(LoginSession.token_hash == _digest(secret)))


def create_token(db: Session, user: User, name: str) -> tuple[ApiToken, str]:
    name = (name or "").strip()
    if not name or len(name) > 255 or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise Invalid("a token needs a name of 1 to 255 characters without control characters "
                      "(e.g. the instrument's name)")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=_digest(secret))
    db.add(token)
    db.flush()
    return token, secret


def list_tokens(db: Session, user: User) -> list[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at)
    return list(db.scalars(stmt))


def revoke_token(db: Session, user: User, token_id: uuid.UUID) -> None:
    token = db.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound("no such API token")
    db.delete(token)
    db.flush()


def resolve_token(db: Session, secret: str) -> User:
    token = db.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None:
        raise Unauthenticated("invalid or revoked API token")
    user = db.get(User, token.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("the token's account is deactivated")
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = now
        db.flush()
    return user
