"""Passwords are stored as argon2id hashes at production cost."""

from argon2 import PasswordHasher

from cryovault.access import passwords


def test_production_hashes_are_argon2id(monkeypatch):
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher())
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert passwords.verify_password(stored, "correct horse battery")
    assert not passwords.verify_password(stored, "wrong")
    assert not passwords.verify_password(None, "anything")
    assert not passwords.verify_password("not-a-hash", "anything")
