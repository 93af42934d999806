"""Local user accounts (ADM-1, ADM-2): creation, lookup, the built-in admin."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cryovault.access.passwords import hash_password
from cryovault.access.roles import CUSTOMER_ADMIN, validate_role
from cryovault.db.users import User, UserRole
from cryovault.errors import Conflict, Invalid, NotFound

BUILTIN_ADMIN = "admin"
LOCAL_SOURCE = "local"
DIRECTORY_SOURCE = "ldap"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,149}$")
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
MIN_PASSWORD_LENGTH = 8


def _validate_username(username: str) -> str:
    if not _USERNAME.match(username or ""):
        raise Invalid(
            "username must be 1-150 characters: letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return username


def _validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def create_user(
    db: Session,
    username: str,
    password: str | None,
    *,
    email: str | None = None,
    first_name: str = "",
    last_name: str = "",
    roles: Iterable[str] = (),
    is_builtin: bool = False,
    source: str = LOCAL_SOURCE,
) -> User:
    _validate_username(username)
    if password is not None:
        _validate_password(password)
    if email:
        email = email.strip()
        if not _EMAIL.match(email):
            raise Invalid(f"{email!r} is not an e-mail address")
    key = username.lower()
    if db.scalar(select(User.id).where(User.username_key == key)):
        raise Conflict(f"a user named {username!r} already exists")
    if email and db.scalar(select(User.id).where(User.email_key == email.lower())):
        raise Conflict(f"another user already has the e-mail address {email!r}")
    user = User(
        username=username,
        username_key=key,
        email=email or None,
        email_key=email.lower() if email else None,
        first_name=first_name,
        last_name=last_name,
        password_hash=hash_password(password) if password is not None else None,
        is_builtin=is_builtin,
        source=source,
    )
    user.roles = [UserRole(role=validate_role(r)) for r in sorted(set(roles))]
    db.add(user)
    db.flush()
    return user


def set_password(db: Session, user: User, password: str) -> None:
    user.password_hash = hash_password(_validate_password(password))
    db.flush()


def find_by_login(db: Session, login: str) -> User | None:
    if "\x00" in login:  # no account has one; PostgreSQL refuses NUL in text
        return None
    key = login.strip().lower()
    return db.scalar(select(User).where(or_(User.username_key == key, User.email_key == key)))


def get_user(db: Session, user_id: uuid.UUID) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    return user


def users_by_username(db: Session, usernames: Iterable[str]) -> dict[str, User]:
    keys = {u.lower() for u in usernames if "\x00" not in u}
    if not keys:
        return {}
    found = db.scalars(select(User).where(User.username_key.in_(keys)))
    return {u.username_key: u for u in found}


def search_users(db: Session, query: str, limit: int = 20) -> list[User]:
    """Active users whose username, e-mail or name starts with the query (auto-completion)."""
    if "\x00" in query:
        return []
    escaped = query.strip().lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
    pattern = escaped + "%"
    full_name = func.lower(User.first_name + " " + User.last_name)
    stmt = (
        select(User)
        .where(User.is_active.is_(True))
        .where(
            or_(
                User.username_key.like(pattern, escape="\\"),
                User.email_key.like(pattern, escape="\\"),
                func.lower(User.first_name).like(pattern, escape="\\"),
                func.lower(User.last_name).like(pattern, escape="\\"),
                full_name.like(pattern, escape="\\"),
            )
        )
        .order_by(User.username_key)
        .limit(limit)
    )
    return list(db.scalars(stmt))


def ensure_builtin_admin(db: Session) -> str | None:
    """Create the built-in service admin if missing; returns its generated password then."""
    if db.scalar(select(User.id).where(User.is_builtin.is_(True))):
        return None
    password = secrets.token_urlsafe(12)
    create_user(db, BUILTIN_ADMIN, password, roles=[CUSTOMER_ADMIN], is_builtin=True)
    return password
