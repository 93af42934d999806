"""Per-request dependencies: the database session and the signed-in actor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from cryovault.access import credentials
from cryovault.access.actor import Actor
from cryovault.access.config import AccessConfig
from cryovault.db.users import User
from cryovault.errors import Unauthenticated
from cryovault.preferences import DEFAULT_USER_PREFERENCES, UserPreferences

SESSION_COOKIE = "cryovault_session"


def get_db(request: Request) -> Iterator[Session]:
    """A session per request, committed when the handler returns without error.

    Always use it as `Depends(get_db, scope="function")`: the commit then happens before the
    response is sent, so a client that reads right after a write sees it."""
    db = request.app.state.sessions()
    try:
        yield db
        db.commit()
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


@dataclass(frozen=True)
class Caller:
    user: User
    actor: Actor
    preferences: UserPreferences = DEFAULT_USER_PREFERENCES  # loaded for portal pages


def _resolve(request: Request, db: Session) -> User:
    settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("use 'Authorization: Bearer <token>'")
        return credentials.resolve_token(db, secret.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return credentials.resolve_session(
            db, cookie, timedelta(minutes=settings.session_idle_minutes),
            timedelta(hours=settings.session_max_hours),
        )
    raise Unauthenticated("sign in first: POST /api/v1/auth/login, or send a bearer token")


def current_caller(request: Request, db: Session = Depends(get_db, scope="function")) -> Caller:
    user = _resolve(request, db)
    # Commit the sliding-expiry update even when the handler then fails on a rule.
    db.commit()
    return Caller(user, Actor.of(user))


def current_actor(caller: Caller = Depends(current_caller)) -> Actor:
    return caller.actor


def access_config(request: Request) -> AccessConfig:
    """The installation's licence key and company directory (made by web/app.py)."""
    return request.app.state.access
