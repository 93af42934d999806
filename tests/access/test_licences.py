"""Licences (SPEC ADM-4) with keys made by the `cryovault admin` commands: installing, refusing
bad keys with their reason, seats for new users, and the sign-in check."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cryovault.access import licences
from cryovault.access.users import ensure_builtin_admin, set_password
from cryovault.cli import app as cli
from cryovault.db.base import utcnow
from cryovault.db.licenses import InstalledLicense
from cryovault.db.users import User
from cryovault.errors import Invalid
from cryovault.settings import Settings
from tests.helpers import assert_error

LICENSES = "/api/v1/admin/licenses"
USERS = "/api/v1/admin/users"
LOGIN = "/api/v1/auth/login"
STRONG = "Cryo-vault-2026!"
OLD = "password-123"  # the password of users made by the make_user fixture


@pytest.fixture
def settings(database_url, tmp_path, licensor) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, auto_upgrade=False,
                    license_public_key=licensor.public_key)


@pytest.fixture
def root(make_user):
    return make_user("root", roles=["customer-admin"])


@pytest.fixture
def platform(root) -> str:
    return root.get(LICENSES).json()["platform_id"]


def install(caller, key: str):
    return caller.post(LICENSES, json={"key": key})


def new_user(caller, username):
    return caller.post(USERS, json={"username": username, "password": STRONG,
                                    "password_confirmation": STRONG})


def login(client, username, password=STRONG):
    return client.post(LOGIN, json={"username": username, "password": password})


def test_platform_id_is_stable_and_matches_the_cli(root, settings):
    first = root.get(LICENSES).json()
    assert first["platform_id"] == root.get(LICENSES).json()["platform_id"]
    assert first["enforced"] is False and first["key_configured"] is True
    assert first["licenses"] == [] and first["features"] == []
    result = CliRunner().invoke(cli, ["admin", "platform-id", "--data-dir",
                                      str(settings.data_dir)],
                                env={"CRYOVAULT_DATABASE_URL": settings.database_url})
    assert result.exit_code == 0, result.output
    assert result.output.strip() == first["platform_id"]


def test_install_a_licence_and_show_its_file(root, platform, licensor):
    key = licensor.issue(platform, "portal=5", "tomography=2", customer="Facility of Test")
    wrapped = "\n".join(key[i:i + 60] for i in range(0, len(key), 60))  # as e-mailed
    response = install(root, "  " + wrapped + "\n")
    assert response.status_code == 201, response.text
    installed = response.json()
    assert installed["features"] == {"portal": 5, "tomography": 2}
    assert installed["customer"] == "Facility of Test"
    assert installed["state"] == "valid" and installed["messages"] == []
    assert installed["platform_id"] == platform
    assert installed["seats_given"] == 1  # root, the only user, got a portal seat
    status = root.get(LICENSES).json()
    assert status["enforced"] is True
    table = {f["feature"]: f for f in status["features"]}
    assert (table["portal"]["seats"], table["portal"]["used"], table["portal"]["free"]) == (5, 1, 4)
    assert table["portal"]["state"] == "valid"
    assert (table["tomography"]["seats"], table["tomography"]["used"]) == (2, 0)
    shown = root.get(f"{LICENSES}/{installed['id']}").json()
    assert shown["key"] == key
    payload = key.split(".")[1]
    document = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    assert shown["document"] == document
    assert json.loads(document)["features"] == {"portal": 5, "tomography": 2}
    assert_error(install(root, key), 409, "already installed")
    assert_error(root.get(f"{LICENSES}/00000000-0000-0000-0000-000000000000"), 404)


def _cut_variants(key: str) -> list[str]:
    head, payload, signature = key.split(".")
    return [
        key[:-1], key[:-2], key[:-5], key[: len(key) // 2], f"{head}.{payload}",
        f"{head}.{payload}.", f"{head}.{payload[:-3]}.{signature}", key[:10],
    ]


def test_bad_keys_are_refused_with_their_reason(root, platform, licensor, other_licensor):
    good = licensor.issue(platform, "portal=5")
    head, payload, signature = good.split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["features"]["portal"] = 5000  # altered after signing
    forged_payload = base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=")
    cases = [
        (other_licensor.issue(platform, "portal=5"), "bad signature"),  # re-signed elsewhere
        (f"{head}.{forged_payload.decode()}.{signature}", "bad signature"),
        (licensor.issue("another-platform", "portal=5"), "other platform"),
        (licensor.issue(platform, "portal=5", expires="2020-01-01"), "expired"),
        ("hello", "malformed"),
        ("CVL2." + good[5:], "malformed"),
        ("", "paste"),
        (good.replace(".", "!", 1), "malformed"),
        (f"{head}.{payload}.{signature}€", "malformed"),
    ]
    cases += [(cut, "truncated") for cut in _cut_variants(good)]
    for key, reason in cases:
        assert_error(install(root, key), 422, reason, case=key)
    assert root.get(LICENSES).json()["licenses"] == []


def test_every_truncation_of_a_key_is_refused_cleanly(licensor):
    """No cut of a key is accepted, and each gives a reason (never an unexpected error)."""
    key = licensor.issue("platform-x", "portal=5")
    public = licences.load_public_key(licensor.public_key)
    assert licences.verify_signature(key, public).features == {"portal": 5}
    for end in range(len(key)):
        with pytest.raises(Invalid):
            licences.verify_signature(key[:end], public)


def test_installing_needs_a_configured_public_key(make_user, app, licensor):
    app.state.access = type(app.state.access)(licences.Licensing.from_config(None))
    root = make_user("root", roles=["customer-admin"])
    platform = root.get(LICENSES).json()["platform_id"]
    assert root.get(LICENSES).json()["key_configured"] is False
    assert_error(install(root, licensor.issue(platform)), 422, "CRYOVAULT_LICENSE_PUBLIC_KEY")
    app.state.access = type(app.state.access)(licences.Licensing.from_config("not a key"))
    assert_error(install(root, licensor.issue(platform)), 422, "public key")


def test_new_users_take_seats_until_none_is_available(root, platform, licensor, client):
    assert install(root, licensor.issue(platform, "portal=3")).status_code == 201
    dana = new_user(root, "dana")
    assert dana.status_code == 201 and dana.json()["licenses"] == ["portal"]
    assert new_user(root, "erin").status_code == 201
    summary = root.get(USERS).json()["summary"]
    assert (summary["licenses_free"], summary["licenses_total"]) == (0, 3)
    assert_error(new_user(root, "frank"), 409, "no licence available")
    assert "frank" not in [u["username"] for u in root.get(USERS).json()["items"]]
    # Freeing a seat (deactivation) lets the next one in.
    root.patch(f"{USERS}/{dana.json()['id']}", json={"is_active": False})
    assert new_user(root, "frank").status_code == 201
    # Re-activating dana needs a seat again: none is free.
    assert_error(root.patch(f"{USERS}/{dana.json()['id']}", json={"is_active": True}), 409,
                 "no licence available")
    # A second licence adds seats.
    assert install(root, licensor.issue(platform, "portal=2")).status_code == 201
    assert root.patch(f"{USERS}/{dana.json()['id']}", json={"is_active": True}
                      ).json()["licenses"] == ["portal"]
    assert login(client, "dana").status_code == 200


def test_a_user_without_a_seat_cannot_sign_in(root, platform, licensor, make_user, client, app):
    early = [make_user(f"user{i}") for i in range(3)]  # created before any licence
    response = install(root, licensor.issue(platform, "portal=3", "spa=1"))
    assert (response.json()["seats_given"], response.json()["users_without_seat"]) == (3, 1)
    # Seats went by creation order: root, user0, user1; user2 has none.
    assert login(client, "user1", OLD).status_code == 200
    assert_error(login(client, "user2", OLD), 403, "no licence")
    # The licence manager moves user1's seat to user2.
    manager = make_user("lm", roles=["license-manager"])
    assert manager.delete(f"{USERS}/{early[1].id}/licenses/portal").status_code == 200
    assert_error(client.get("/api/v1/me"), 401)  # user1's session ended with the seat
    assert manager.post(f"{USERS}/{early[2].id}/licenses", json={"feature": "portal"}
                        ).json()["licenses"] == ["portal"]
    assert login(client, "user2", OLD).status_code == 200
    assert_error(login(client, "user1", OLD), 403, "no licence")
    # Seats of other features are assigned the same way and run out the same way.
    assert manager.post(f"{USERS}/{early[2].id}/licenses", json={"feature": "spa"}
                        ).json()["licenses"] == ["portal", "spa"]
    assert_error(manager.post(f"{USERS}/{early[0].id}/licenses", json={"feature": "spa"}), 409,
                 "no licence available")
    assert_error(manager.post(f"{USERS}/{early[0].id}/licenses", json={"feature": "cryo-et"}),
                 409, "no licence available")
    assert_error(manager.post(f"{USERS}/{early[2].id}/licenses", json={"feature": "spa"}), 409,
                 "already")
    assert_error(manager.post(f"{USERS}/{early[0].id}/licenses", json={"feature": "Bad Name"}),
                 422, "feature")
    assert_error(manager.delete(f"{USERS}/{early[0].id}/licenses/spa"), 404, "no 'spa' seat")
    # The built-in admin needs no seat.
    with app.state.sessions() as db:
        ensure_builtin_admin(db)
        admin = db.scalar(select(User).where(User.is_builtin.is_(True)))
        set_password(db, admin, "Builtin-pass-1")
        db.commit()
    assert login(client, "admin", "Builtin-pass-1").status_code == 200


def test_an_expired_licence_stops_sign_in(root, platform, licensor, client, app):
    response = install(root, licensor.issue(platform, "portal=5"))
    assert new_user(root, "dana").status_code == 201
    assert login(client, "dana").status_code == 200
    with app.state.sessions() as db:  # time passes: the licence is now past its expiry
        row = db.get(InstalledLicense, uuid.UUID(response.json()["id"]))
        row.expires_at = utcnow() - timedelta(days=1)
        db.commit()
    status = root.get(LICENSES).json()
    assert status["licenses"][0]["state"] == "expired"
    assert status["features"][0]["state"] == "expired"
    assert "expired on" in status["licenses"][0]["messages"][0]
    assert_error(login(client, "dana"), 403, "expired")
    assert_error(new_user(root, "erin"), 409, "no licence available")


def test_licences_close_to_expiry_carry_a_message(root, platform, licensor):
    assert install(root, licensor.issue(platform, "portal=5", days=10)).status_code == 201
    status = root.get(LICENSES).json()
    assert status["licenses"][0]["state"] == "valid"
    assert "expires in" in status["licenses"][0]["messages"][0]


def test_cli_issue_license_errors(tmp_path, licensor):
    runner = CliRunner()
    base = ["admin", "issue-license", "--private-key", str(licensor.private_key),
            "--platform-id", "p"]
    cases = [
        (base + ["--feature", "portal=5"], "--expires"),
        (base + ["--feature", "portal", "--days", "5"], "FEATURE=SEATS"),
        (base + ["--feature", "Portal=5", "--days", "5"], "not valid"),
        (base + ["--feature", "portal=5", "--expires", "soon"], "not a date"),
        (["admin", "issue-license", "--private-key", str(tmp_path / "missing.pem"),
          "--platform-id", "p", "--feature", "portal=1", "--days", "1"], "cannot read"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    again = runner.invoke(cli, ["admin", "make-license-keypair", "--private-key",
                                str(licensor.private_key)])
    assert again.exit_code == 2 and "exists" in again.output


def test_cli_create_user_takes_a_seat_too(root, platform, licensor, settings, client):
    assert install(root, licensor.issue(platform, "portal=2")).status_code == 201
    env = {"CRYOVAULT_DATABASE_URL": settings.database_url,
           "CRYOVAULT_LICENSE_PUBLIC_KEY": licensor.public_key}
    base = ["admin", "create-user", "--data-dir", str(settings.data_dir), "--password", STRONG]
    made = CliRunner().invoke(cli, [*base[:2], "gus", *base[2:]], env=env)
    assert made.exit_code == 0, made.output
    assert login(client, "gus").status_code == 200
    refused = CliRunner().invoke(cli, [*base[:2], "hal", *base[2:]], env=env)
    assert refused.exit_code == 2 and "no licence available" in refused.output
