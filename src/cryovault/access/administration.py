"""User administration (SPEC ADM-2, ADM-3): the panel's figures, adding users manually or from
the company directory, editing, deactivating, roles and licence seats.

Every function checks the actor's rights first (access/roles.py: RIGHTS)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cryovault.access import licences
from cryovault.access.actor import Actor
from cryovault.access.config import AccessConfig
from cryovault.access.ldap import Directory, DirectoryEntry
from cryovault.access.passwords import check_strength, hash_password
from cryovault.access.roles import (
    ASSIGN_CUSTOMER_ADMIN,
    ASSIGN_ROLES,
    CUSTOMER_ADMIN,
    EDIT_USERS,
    MANAGE_LICENSES,
    ROLES,
    VIEW_USERS,
    require,
    validate_role,
)
from cryovault.access.users import _EMAIL, DIRECTORY_SOURCE, create_user, get_user
from cryovault.db.users import LoginSession, User, UserRole
from cryovault.errors import Conflict, Invalid, NotFound, Unavailable

MAX_NAME = 150


@dataclass(frozen=True)
class AdminUser:
    """A user as the administration panel shows it."""

    user: User
    licences: tuple[str, ...]

    @property
    def from_directory(self) -> bool:
        return self.user.source == DIRECTORY_SOURCE

    @property
    def roles(self) -> list[str]:
        return [r for r in ROLES if r in self.user.role_names]

    @property
    def missing_roles(self) -> list[str]:
        """Roles the user does not hold yet: what the role picker offers."""
        return [r for r in ROLES if r not in self.user.role_names]


@dataclass(frozen=True)
class Summary:
    users: int  # every account except the built-in admin
    active_users: int
    licences_free: int | None  # free portal seats; None while licences are not enforced
    licences_total: int | None


def _admin_users(db: Session, users: list[User]) -> list[AdminUser]:
    seats = licences.user_features(db, [u.id for u in users])
    return [AdminUser(u, tuple(seats[u.id])) for u in users]


def summary(db: Session, actor: Actor, config: AccessConfig) -> Summary:
    require(actor.roles, VIEW_USERS)
    counted = select(func.count()).select_from(User).where(User.is_builtin.is_(False))
    users = db.scalar(counted) or 0
    active = db.scalar(counted.where(User.is_active.is_(True))) or 0
    status = licences.license_status(db, config.licensing)
    login = status.feature(licences.LOGIN_FEATURE)
    total = (login.seats if login else 0) if status.enforced else None
    return Summary(users, active, status.login_seats_free, total)


def list_users(db: Session, actor: Actor, query: str = "") -> list[AdminUser]:
    require(actor.roles, VIEW_USERS)
    stmt = select(User).order_by(User.is_builtin.desc(), User.username_key)
    query = (query or "").strip().lower()
    if "\x00" in query:
        raise Invalid("the filter must not contain NUL characters")
    if query:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
        stmt = stmt.where(User.username_key.like(pattern, escape="\\")
                          | User.email_key.like(pattern, escape="\\")
                          | func.lower(User.first_name + " " + User.last_name)
                          .like(pattern, escape="\\"))
    return _admin_users(db, list(db.scalars(stmt)))


def get_admin_user(db: Session, actor: Actor, user_id: uuid.UUID) -> AdminUser:
    require(actor.roles, VIEW_USERS)
    return _admin_users(db, [get_user(db, user_id)])[0]


def _name(value: str | None, what: str) -> str:
    value = (value or "").strip()
    if len(value) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise Invalid(f"the {what} must be at most {MAX_NAME} characters without control "
                      "characters")
    return value


def _confirmed(password: str, confirmation: str, username: str) -> str:
    if password != confirmation:
        raise Invalid("the password and its confirmation differ: type the same password twice")
    check_strength(password, username)
    return password


def add_local_user(db: Session, actor: Actor, config: AccessConfig, *, username: str,
                   password: str, password_confirmation: str, email: str | None = None,
                   first_name: str = "", last_name: str = "") -> AdminUser:
    """A user with a local password; takes a free licence seat when licences are enforced."""
    require(actor.roles, EDIT_USERS)
    username = (username or "").strip()
    if not username:
        raise Invalid("a username is required")
    _confirmed(password, password_confirmation, username)
    user = create_user(db, username, password, email=(email or "").strip() or None,
                       first_name=_name(first_name, "first name"),
                       last_name=_name(last_name, "last name"))
    licences.seat_new_user(db, config.licensing, user)
    return _admin_users(db, [user])[0]


def _directory(config: AccessConfig) -> Directory:
    if config.directory is None:
        raise Unavailable("directory unavailable: no company directory is configured "
                          "(CRYOVAULT_LDAP_URL)")
    return config.directory


@dataclass(frozen=True)
class DirectoryCandidate:
    entry: DirectoryEntry
    already_added: bool


def search_directory(db: Session, actor: Actor, config: AccessConfig, query: str,
                     limit: int = 20) -> list[DirectoryCandidate]:
    require(actor.roles, EDIT_USERS)
    entries = _directory(config).search(query, limit)
    keys = {e.username.lower() for e in entries}
    existing = set(db.scalars(select(User.username_key).where(User.username_key.in_(keys)))) \
        if keys else set()
    return [DirectoryCandidate(e, e.username.lower() in existing) for e in entries]


def add_directory_user(db: Session, actor: Actor, config: AccessConfig,
                       username: str) -> AdminUser:
    """A user from the company directory: name and e-mail come from it, and so does the
    password at sign-in; such users cannot be edited here."""
    require(actor.roles, EDIT_USERS)
    entry = _directory(config).lookup((username or "").strip())
    if entry.email and not _EMAIL.match(entry.email):
        entry = DirectoryEntry(entry.dn, entry.username, None, entry.first_name, entry.last_name)
    user = create_user(db, entry.username, None, email=entry.email,
                       first_name=entry.first_name[:MAX_NAME],
                       last_name=entry.last_name[:MAX_NAME], source=DIRECTORY_SOURCE)
    licences.seat_new_user(db, config.licensing, user)
    return _admin_users(db, [user])[0]


def _active_customer_admins(db: Session) -> list[uuid.UUID]:
    """Active, non-built-in holders of customer-admin, rows locked (PostgreSQL) so that two
    concurrent removals cannot both see another holder."""
    stmt = (select(UserRole.user_id).join(User, User.id == UserRole.user_id)
            .where(UserRole.role == CUSTOMER_ADMIN, User.is_active.is_(True),
                   User.is_builtin.is_(False))
            .with_for_update(of=UserRole))
    return list(db.scalars(stmt))


def _keep_a_customer_admin(db: Session, user: User, change: str) -> None:
    holders = _active_customer_admins(db)
    if holders == [user.id]:
        raise Invalid(f"{user.username} is the last customer-admin: {change} would leave the "
                      "platform without one; give the role to another user first")


def update_user(db: Session, actor: Actor, config: AccessConfig, user_id: uuid.UUID, *,
                email: str | None = None, first_name: str | None = None,
                last_name: str | None = None, password: str | None = None,
                password_confirmation: str | None = None,
                is_active: bool | None = None) -> AdminUser:
    """Edit a local user (directory users: only activation), or (de)activate any user."""
    require(actor.roles, EDIT_USERS)
    user = get_user(db, user_id)
    edits_profile = any(v is not None for v in (email, first_name, last_name, password))
    if edits_profile and user.source == DIRECTORY_SOURCE:
        raise Invalid(f"{user.username} comes from the company directory: change the name, "
                      "e-mail or password there")
    if email is not None:
        email = email.strip()
        if email and not _EMAIL.match(email):
            raise Invalid(f"{email!r} is not an e-mail address")
        if email and db.scalar(select(User.id).where(User.email_key == email.lower(),
                                                     User.id != user.id)):
            raise Conflict(f"another user already has the e-mail address {email!r}")
        user.email = email or None
        user.email_key = email.lower() or None
    if first_name is not None:
        user.first_name = _name(first_name, "first name")
    if last_name is not None:
        user.last_name = _name(last_name, "last name")
    if password is not None or password_confirmation is not None:
        user.password_hash = hash_password(
            _confirmed(password or "", password_confirmation or "", user.username))
    if is_active is not None and is_active != user.is_active:
        if user.is_builtin:
            raise Invalid("the built-in admin cannot be deactivated")
        if not is_active:
            if user.id == actor.user_id:
                raise Invalid("you cannot deactivate your own account")
            if CUSTOMER_ADMIN in user.role_names:
                _keep_a_customer_admin(db, user, "deactivating the account")
            user.is_active = False
            licences.release_seats(db, user)  # a deactivated user frees the seats
            db.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
        else:
            user.is_active = True
            db.flush()
            licences.seat_new_user(db, config.licensing, user)
    db.flush()
    return _admin_users(db, [user])[0]


def assign_role(db: Session, actor: Actor, user_id: uuid.UUID, role: str) -> AdminUser:
    require(actor.roles, ASSIGN_ROLES)
    validate_role(role)
    if role == CUSTOMER_ADMIN:
        require(actor.roles, ASSIGN_CUSTOMER_ADMIN)
    user = get_user(db, user_id)
    if user.is_builtin:
        raise Invalid("the built-in admin's roles are fixed")
    if role in user.role_names:
        raise Conflict(f"{user.username} already has the role {role}")
    user.roles.append(UserRole(role=role))
    db.flush()
    return _admin_users(db, [user])[0]


def unassign_role(db: Session, actor: Actor, user_id: uuid.UUID, role: str) -> AdminUser:
    require(actor.roles, ASSIGN_ROLES)
    validate_role(role)
    if role == CUSTOMER_ADMIN:
        require(actor.roles, ASSIGN_CUSTOMER_ADMIN)
    user = get_user(db, user_id)
    if user.is_builtin:
        raise Invalid("the built-in admin's roles are fixed")
    row = next((r for r in user.roles if r.role == role), None)
    if row is None:
        raise NotFound(f"{user.username} does not have the role {role}")
    if role == CUSTOMER_ADMIN and user.is_active:
        _keep_a_customer_admin(db, user, "removing the role")
    user.roles.remove(row)
    db.flush()
    return _admin_users(db, [user])[0]


def assign_licence(db: Session, actor: Actor, config: AccessConfig, user_id: uuid.UUID,
                   feature: str) -> AdminUser:
    require(actor.roles, MANAGE_LICENSES)  # before the lookup: a refused caller learns nothing
    user = get_user(db, user_id)
    licences.assign_seat(db, actor, config.licensing, user, feature)
    return _admin_users(db, [user])[0]


def unassign_licence(db: Session, actor: Actor, user_id: uuid.UUID, feature: str) -> AdminUser:
    require(actor.roles, MANAGE_LICENSES)
    user = get_user(db, user_id)
    licences.unassign_seat(db, actor, user, feature)
    return _admin_users(db, [user])[0]
