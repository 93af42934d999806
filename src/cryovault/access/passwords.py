"""Password hashing with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# --- strength rule for passwords chosen in the user administration (SPEC ADM-3) ---------------
MIN_STRONG_LENGTH = 10
MAX_LENGTH = 1024
_COMMON = frozenset({
    "password", "password1", "password123", "1234567890", "12345678910", "qwertyuiop",
    "azertyuiop", "iloveyou12", "letmein123", "welcome123", "administrator", "changeme123",
    "cryovault1", "cryovault123", "passw0rd123", "qwerty1234", "abc1234567",
})
PASSWORD_RULE = (f"at least {MIN_STRONG_LENGTH} characters with three of: lower-case letters, "
                 "upper-case letters, digits, other characters; not the username")


def check_strength(password: str, username: str = "") -> None:
    """Raise Invalid naming what is missing when `password` is too weak."""
    from cryovault.errors import Invalid

    if len(password) < MIN_STRONG_LENGTH:
        raise Invalid(f"the password is too weak: it needs at least {MIN_STRONG_LENGTH} "
                      "characters")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"the password is too long: at most {MAX_LENGTH} characters")
    if "\x00" in password:
        raise Invalid("the password must not contain NUL characters")
    classes = sum((
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
    ))
    if classes < 3:
        raise Invalid("the password is too weak: use three of lower-case letters, upper-case "
                      "letters, digits and other characters")
    lowered = password.lower()
    if lowered in _COMMON:
        raise Invalid("the password is too weak: it is one of the most common passwords")
    if len(username) >= 3 and username.lower() in lowered:
        raise Invalid("the password is too weak: it must not contain the username")
