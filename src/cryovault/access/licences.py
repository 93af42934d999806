"""Licences (SPEC ADM-4): signed licence keys, the platform id, seats and the sign-in check.

A licence key is one line of text, `CVL1.<document>.<signature>`, both parts base64url without
padding. The document is UTF-8 JSON naming the licence id, the platform id it is for, the
customer, when it was issued and when it expires, and the seats of each licensed feature:

    {"format": 1, "license_id": "…", "platform_id": "…", "customer": "…",
     "issued_at": "2026-01-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z",
     "features": {"portal": 25, "tomography": 5}}

The signature is Ed25519 over `SIGNED_PREFIX + document`, made with the licensor's private key
(`cryovault admin issue-license`) and verified with the public key configured for the
installation (`CRYOVAULT_LICENSE_PUBLIC_KEY`).

Seats are enforced once a licence is installed: every user except the built-in admin then needs
a seat of the `portal` feature to sign in, and a new user takes a free one automatically. An
installation without any licence runs unrestricted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.roles import MANAGE_LICENSES, VIEW_LICENSES, require
from cryovault.db.base import utcnow
from cryovault.db.licenses import InstalledLicense, UserLicense
from cryovault.db.preferences import PlatformPreference
from cryovault.db.users import LoginSession, User
from cryovault.errors import Conflict, Forbidden, Invalid, NotFound

KEY_PREFIX = "CVL1"
SIGNED_PREFIX = b"cryovault-license-v1\n"
LOGIN_FEATURE = "portal"
FEATURE_LABELS = {LOGIN_FEATURE: "Portal user (needed to sign in)"}
PLATFORM_ID_KEY = "platform_id"
EXPIRY_WARNING = timedelta(days=30)
_FEATURE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_MAX_KEY_CHARS = 64 * 1024
_MAX_SEATS = 1_000_000


# --- keys -----------------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("characters outside base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_keypair() -> tuple[bytes, str]:
    """A new licensor key pair: the private key as PEM (keep it secret) and the public key as
    base64 of its 32 raw bytes (the value of CRYOVAULT_LICENSE_PUBLIC_KEY)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    return pem, base64.b64encode(raw).decode("ascii")


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise Invalid(f"not a PEM private key without passphrase: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise Invalid("the private key is not an Ed25519 key")
    return key


def load_public_key(text: str) -> Ed25519PublicKey:
    """PEM, or base64 of the 32 raw bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise Invalid(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise Invalid("the licence public key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("the licence public key is neither PEM nor base64") from None
    if len(raw) != 32:
        raise Invalid("the licence public key must be the 32 bytes of an Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class Licensing:
    """The installation's licence verification key (from settings)."""

    public_key: Ed25519PublicKey | None
    problem: str | None = None  # why the configured key cannot be used

    @classmethod
    def from_config(cls, public_key: str | None) -> Licensing:
        if not public_key:
            return cls(None)
        try:
            return cls(load_public_key(public_key))
        except Invalid as exc:
            return cls(None, f"CRYOVAULT_LICENSE_PUBLIC_KEY: {exc.message}")

    def require_key(self) -> Ed25519PublicKey:
        if self.public_key is None:
            raise Invalid(self.problem or "this installation has no licence public key: set "
                          "CRYOVAULT_LICENSE_PUBLIC_KEY to the licensor's public key")
        return self.public_key


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue_license(private_key: Ed25519PrivateKey, *, platform_id: str, features: dict[str, int],
                  expires_at: datetime, customer: str = "", license_id: uuid.UUID | None = None,
                  issued_at: datetime | None = None) -> str:
    """Sign a licence document and return the key text an administrator pastes."""
    if not platform_id.strip():
        raise Invalid("a licence needs the platform id of the installation")
    if not features:
        raise Invalid("a licence needs at least one feature with its seats, e.g. portal=10")
    for name, seats in features.items():
        _check_feature(name, seats)
    document = {
        "format": 1,
        "license_id": str(license_id or uuid.uuid4()),
        "platform_id": platform_id.strip(),
        "customer": customer,
        "issued_at": _iso(issued_at or utcnow()),
        "expires_at": _iso(expires_at),
        "features": dict(sorted(features.items())),
    }
    payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    signature = private_key.sign(SIGNED_PREFIX + payload)
    return f"{KEY_PREFIX}.{_b64encode(payload)}.{_b64encode(signature)}"


def _check_feature(name: object, seats: object) -> None:
    if not isinstance(name, str) or not _FEATURE.match(name):
        raise Invalid(f"feature name {name!r} is not valid: lower-case letters, digits and -, "
                      "starting with a letter, at most 40 characters")
    if isinstance(seats, bool) or not isinstance(seats, int) or not 1 <= seats <= _MAX_SEATS:
        raise Invalid(f"feature {name!r}: seats must be a whole number from 1 to {_MAX_SEATS}")


# --- documents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LicenseDocument:
    license_id: uuid.UUID
    platform_id: str
    customer: str
    issued_at: datetime
    expires_at: datetime
    features: dict[str, int]
    document_json: str  # the signed document, verbatim


def normalise_key(key_text: str) -> str:
    """Keys may arrive wrapped over several lines or with spaces: those carry no meaning."""
    return "".join(key_text.split())


def _parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise Invalid(f"malformed licence: {name} is missing")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"malformed licence: {name} {value!r} is not a date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def verify_signature(key_text: str, public_key: Ed25519PublicKey) -> LicenseDocument:
    """Check the form and the signature of a key and parse its document.

    Raises Invalid naming the reason: malformed, truncated, bad signature."""
    key = normalise_key(key_text)
    if not key:
        raise Invalid("paste a licence key")
    if len(key) > _MAX_KEY_CHARS:
        raise Invalid("malformed licence key: far too long")
    parts = key.split(".")
    if parts[0] != KEY_PREFIX:
        raise Invalid(f"malformed licence key: a cryovault licence key starts with "
                      f"'{KEY_PREFIX}.'")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise Invalid("truncated licence key: it needs three parts separated by dots "
                      f"('{KEY_PREFIX}.document.signature'); copy the whole key")
    try:
        payload = _b64decode(parts[1])
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error):
        raise Invalid("malformed or truncated licence key: it is not valid base64url; copy "
                      "the whole key") from None
    if len(signature) != 64:
        raise Invalid("truncated licence key: the signature is incomplete; copy the whole key")
    try:  # a diagnosis only: nothing of the document is trusted before the signature is checked
        json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Invalid("truncated or malformed licence key: its document is incomplete; copy "
                      "the whole key") from None
    try:
        public_key.verify(signature, SIGNED_PREFIX + payload)
    except InvalidSignature:
        raise Invalid("bad signature: this licence key was not signed by the licensor of this "
                      "installation, or it was altered after signing") from None
    return parse_document(payload.decode("utf-8", errors="replace"))


def parse_document(document_json: str) -> LicenseDocument:
    try:
        data = json.loads(document_json)
    except json.JSONDecodeError:
        raise Invalid("malformed licence: the document is not JSON") from None
    if not isinstance(data, dict) or data.get("format") != 1:
        raise Invalid("malformed licence: unknown document format")
    try:
        license_id = uuid.UUID(str(data.get("license_id")))
    except ValueError:
        raise Invalid("malformed licence: license_id is not a UUID") from None
    platform = data.get("platform_id")
    if not isinstance(platform, str) or not platform:
        raise Invalid("malformed licence: platform_id is missing")
    customer = data.get("customer", "")
    if not isinstance(customer, str):
        raise Invalid("malformed licence: customer is not text")
    features = data.get("features")
    if not isinstance(features, dict) or not features:
        raise Invalid("malformed licence: it names no features")
    for name, seats in features.items():
        try:
            _check_feature(name, seats)
        except Invalid as exc:
            raise Invalid(f"malformed licence: {exc.message}") from None
    return LicenseDocument(license_id, platform, customer[:255],
                           _parse_time(data.get("issued_at"), "issued_at"),
                           _parse_time(data.get("expires_at"), "expires_at"),
                           dict(features), document_json)


# --- platform id ----------------------------------------------------------------------------


def platform_id(db: Session) -> str:
    """The installation's platform id, made once and kept (licences are issued for it)."""
    row = db.get(PlatformPreference, PLATFORM_ID_KEY)
    if row is not None:
        return json.loads(row.value_json)
    value = str(uuid.uuid4())
    try:
        with db.begin_nested():
            db.add(PlatformPreference(key=PLATFORM_ID_KEY, value_json=json.dumps(value)))
    except IntegrityError:  # another process made it first
        row = db.get(PlatformPreference, PLATFORM_ID_KEY, populate_existing=True)
        assert row is not None
        return json.loads(row.value_json)
    return value


# --- installed licences and their state -----------------------------------------------------


@dataclass(frozen=True)
class LicenseState:
    row: InstalledLicense
    features: dict[str, int]
    state: str  # valid | expired | invalid
    messages: tuple[str, ...]

    @property
    def counts(self) -> bool:
        return self.state == "valid"


@dataclass(frozen=True)
class FeatureStatus:
    feature: str
    label: str
    seats: int
    used: int
    expires_at: datetime | None
    state: str  # valid | expired | over capacity
    messages: tuple[str, ...]

    @property
    def free(self) -> int:
        return max(0, self.seats - self.used)


@dataclass(frozen=True)
class LicenseStatus:
    platform_id: str
    enforced: bool
    key_configured: bool
    key_problem: str | None
    licenses: list[LicenseState] = field(default_factory=list)
    features: list[FeatureStatus] = field(default_factory=list)

    def feature(self, name: str) -> FeatureStatus | None:
        return next((f for f in self.features if f.feature == name), None)

    @property
    def login_seats_free(self) -> int | None:
        """Free seats for new users; None while licences are not enforced."""
        if not self.enforced:
            return None
        status = self.feature(LOGIN_FEATURE)
        return status.free if status else 0


def _state_of(row: InstalledLicense, licensing: Licensing, platform: str,
              now: datetime) -> LicenseState:
    messages: list[str] = []
    try:
        document = parse_document(row.document_json)
        features = document.features
    except Invalid as exc:
        return LicenseState(row, {}, "invalid", (exc.message,))
    state = "valid"
    if licensing.public_key is not None:
        try:
            verify_signature(row.key_text, licensing.public_key)
        except Invalid as exc:
            state = "invalid"
            messages.append(exc.message)
    if row.platform_id != platform:
        state = "invalid"
        messages.append(f"issued for platform {row.platform_id}, not this platform")
    if row.expires_at <= now:
        if state == "valid":
            state = "expired"
        messages.append(f"expired on {row.expires_at:%Y-%m-%d}")
    elif row.expires_at - now <= EXPIRY_WARNING:
        messages.append(f"expires in {(row.expires_at - now).days} days")
    return LicenseState(row, features, state, tuple(messages))


def _used_seats(db: Session) -> dict[str, int]:
    rows = db.execute(
        select(UserLicense.feature, func.count())
        .join(User, User.id == UserLicense.user_id)
        .where(User.is_builtin.is_(False))
        .group_by(UserLicense.feature))
    return {feature: count for feature, count in rows}


def license_status(db: Session, licensing: Licensing, *, lock: bool = False) -> LicenseStatus:
    """Every installed licence with its state, and per feature the seats, used and free."""
    stmt = select(InstalledLicense).order_by(InstalledLicense.installed_at)
    if lock:  # serialise seat assignment between concurrent requests (PostgreSQL)
        stmt = stmt.with_for_update()
    rows = list(db.scalars(stmt))
    platform = platform_id(db)
    now = utcnow()
    states = [_state_of(row, licensing, platform, now) for row in rows]
    used = _used_seats(db)
    names = sorted({name for s in states for name in s.features} | set(used),
                   key=lambda n: (n != LOGIN_FEATURE, n))
    features = []
    for name in names:
        seats = sum(s.features.get(name, 0) for s in states if s.counts)
        holders = [s for s in states if name in s.features]
        valid = [s.row.expires_at for s in holders if s.counts]
        expires = max(valid) if valid else max((s.row.expires_at for s in holders), default=None)
        messages: list[str] = []
        if not valid:
            state = "expired" if holders else "unlicensed"
            messages.append("no valid licence for this feature" if holders
                            else "seats are assigned but no licence names this feature")
        elif used.get(name, 0) > seats:
            state = "over capacity"
            messages.append(f"{used[name] - seats} more seats used than licensed: unassign "
                            "some or install a licence with more seats")
        else:
            state = "valid"
        if expires and valid and expires - now <= EXPIRY_WARNING:
            messages.append(f"the last seats expire on {expires:%Y-%m-%d}")
        features.append(FeatureStatus(name, FEATURE_LABELS.get(name, name), seats,
                                      used.get(name, 0), expires, state, tuple(messages)))
    return LicenseStatus(platform, bool(rows), licensing.public_key is not None,
                         licensing.problem, states, features)


def view_status(db: Session, actor: Actor, licensing: Licensing) -> LicenseStatus:
    require(actor.roles, VIEW_LICENSES)
    return license_status(db, licensing)


def get_license(db: Session, actor: Actor, licensing: Licensing,
                license_id: uuid.UUID) -> LicenseState:
    require(actor.roles, VIEW_LICENSES)
    for state in license_status(db, licensing).licenses:
        if state.row.id == license_id:
            return state
    raise NotFound("no such licence")


@dataclass(frozen=True)
class Installed:
    license: LicenseState
    seats_given: int  # users that received a portal seat when licensing started
    users_without_seat: int


def install_license(db: Session, actor: Actor, licensing: Licensing, key_text: str) -> Installed:
    """Verify and install a licence key. The first licence starts seat enforcement: active
    users get portal seats in the order they were created, as far as the seats go."""
    require(actor.roles, MANAGE_LICENSES)
    document = verify_signature(key_text, licensing.require_key())
    platform = platform_id(db)
    if document.platform_id != platform:
        raise Invalid(f"other platform: this licence is for platform {document.platform_id}, "
                      f"and this installation's platform id is {platform}")
    now = utcnow()
    if document.expires_at <= now:
        raise Invalid(f"expired licence: it expired on {document.expires_at:%Y-%m-%d %H:%M} UTC")
    if db.get(InstalledLicense, document.license_id) is not None:
        raise Conflict(f"licence {document.license_id} is already installed")
    first = db.scalar(select(func.count()).select_from(InstalledLicense)) == 0
    row = InstalledLicense(id=document.license_id, key_text=normalise_key(key_text),
                           document_json=document.document_json, platform_id=document.platform_id,
                           customer=document.customer, issued_at=document.issued_at,
                           expires_at=document.expires_at, installed_at=now,
                           installed_by=actor.user_id)
    db.add(row)
    db.flush()
    given = without = 0
    if first:
        given, without = _seat_existing_users(db, licensing)
    state = next(s for s in license_status(db, licensing).licenses if s.row.id == row.id)
    return Installed(state, given, without)


def _seat_existing_users(db: Session, licensing: Licensing) -> tuple[int, int]:
    status = license_status(db, licensing, lock=True)
    login = status.feature(LOGIN_FEATURE)
    free = login.free if login else 0
    seated = select(UserLicense.user_id).where(UserLicense.feature == LOGIN_FEATURE)
    waiting = list(db.scalars(
        select(User).where(User.is_active.is_(True), User.is_builtin.is_(False),
                           User.id.not_in(seated))
        .order_by(User.created_at, User.username_key)))
    for user in waiting[:free]:
        db.add(UserLicense(user_id=user.id, feature=LOGIN_FEATURE))
    db.flush()
    return min(free, len(waiting)), max(0, len(waiting) - free)


# --- seats ----------------------------------------------------------------------------------


def user_features(db: Session, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    ids = list(user_ids)
    found: dict[uuid.UUID, list[str]] = {i: [] for i in ids}
    if not ids:
        return found
    for user_id, feature in db.execute(
            select(UserLicense.user_id, UserLicense.feature)
            .where(UserLicense.user_id.in_(ids)).order_by(UserLicense.feature)):
        found[user_id].append(feature)
    return found


def _take_seat(db: Session, licensing: Licensing, user: User, feature: str) -> None:
    status = license_status(db, licensing, lock=True)
    current = status.feature(feature)
    if current is None or current.seats == 0:
        raise Conflict(f"no licence available: no valid licence includes the feature "
                       f"{feature!r}; install one on the License page")
    if current.used >= current.seats:
        raise Conflict(f"no licence available: all {current.seats} seats of {feature!r} are "
                       "in use; unassign one or install a licence with more seats")
    db.add(UserLicense(user_id=user.id, feature=feature))
    db.flush()


def seat_new_user(db: Session, licensing: Licensing, user: User) -> bool:
    """A new (or re-activated) user takes a free portal seat while licences are enforced;
    raises Conflict "no licence available" when none is free. False when not enforced."""
    if user.is_builtin or db.scalar(select(func.count()).select_from(InstalledLicense)) == 0:
        return False
    if db.get(UserLicense, (user.id, LOGIN_FEATURE)) is None:
        _take_seat(db, licensing, user, LOGIN_FEATURE)
    return True


def release_seats(db: Session, user: User) -> None:
    db.execute(delete(UserLicense).where(UserLicense.user_id == user.id))
    db.flush()


def assign_seat(db: Session, actor: Actor, licensing: Licensing, user: User,
                feature: str) -> None:
    require(actor.roles, MANAGE_LICENSES)
    if not isinstance(feature, str) or not _FEATURE.match(feature):
        raise Invalid(f"{feature!r} is not a feature name")
    if user.is_builtin:
        raise Invalid("the built-in admin needs no licence seat")
    if not user.is_active:
        raise Invalid(f"{user.username} is deactivated: activate the account first")
    if db.get(UserLicense, (user.id, feature)) is not None:
        raise Conflict(f"{user.username} already holds a {feature!r} seat")
    _take_seat(db, licensing, user, feature)


def unassign_seat(db: Session, actor: Actor, user: User, feature: str) -> None:
    require(actor.roles, MANAGE_LICENSES)
    row = db.get(UserLicense, (user.id, feature)) if isinstance(feature, str) else None
    if row is None:
        raise NotFound(f"{user.username} holds no {feature!r} seat")
    db.delete(row)
    if feature == LOGIN_FEATURE:  # without a portal seat the user is signed out everywhere
        db.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
    db.flush()


def check_sign_in(db: Session, licensing: Licensing, user: User) -> None:
    """Raise Forbidden when licences are enforced and the user has no usable portal seat."""
    if user.is_builtin:
        return
    status = license_status(db, licensing)
    if not status.enforced:
        return
    if db.get(UserLicense, (user.id, LOGIN_FEATURE)) is None:
        raise Forbidden("no licence: your account has no licence seat, so you cannot sign in; "
                        "ask a licence manager to assign you one")
    login = status.feature(LOGIN_FEATURE)
    if login is None or login.seats == 0:
        raise Forbidden("no licence: the platform's licence has expired or is not valid; ask "
                        "a licence manager to install a valid licence")
