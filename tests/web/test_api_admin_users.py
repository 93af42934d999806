"""User administration through the API (SPEC ADM-2, ADM-3): the panel's figures, adding users,
editing, deactivating, roles, and the refusals with their reasons."""

from __future__ import annotations

import pytest

from cryovault.access.users import BUILTIN_ADMIN, create_user, ensure_builtin_admin
from tests.helpers import assert_error

USERS = "/api/v1/admin/users"
LOGIN = "/api/v1/auth/login"
STRONG = "Cryo-vault-2026!"


@pytest.fixture
def root(make_user):
    return make_user("root", roles=["customer-admin"], email="root@example.org")


def new_user(caller, username="dana", **extra):
    body = {"username": username, "password": STRONG, "password_confirmation": STRONG, **extra}
    return caller.post(USERS, json=body)


def test_create_a_local_user_who_can_sign_in(root, client):
    response = new_user(root, "dana", email="Dana@Example.org", first_name="Dana",
                        last_name="Scully")
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["username"] == "dana"
    assert user["email"] == "Dana@Example.org"
    assert (user["first_name"], user["last_name"]) == ("Dana", "Scully")
    assert user["source"] == "local" and user["is_active"] and not user["is_builtin"]
    assert user["roles"] == [] and user["licenses"] == []
    assert user["available_roles"] == ["workflow-admin", "user-manager", "license-manager",
                                       "customer-role-manager", "customer-admin"]
    login = client.post(LOGIN, json={"username": "dana@example.org", "password": STRONG})
    assert login.status_code == 200, login.text
    listed = root.get(USERS).json()
    assert [u["username"] for u in listed["items"]] == ["dana", "root"]
    assert root.get(f"{USERS}/{user['id']}").json() == user


def test_summary_counts_users_but_never_the_builtin_admin(root, make_user, app):
    with app.state.sessions() as db:
        ensure_builtin_admin(db)
        db.commit()
    make_user("erin")
    frank = new_user(root, "frank").json()
    root.patch(f"{USERS}/{frank['id']}", json={"is_active": False})
    listed = root.get(USERS).json()
    assert listed["summary"] == {"users": 3, "active_users": 2, "licenses_free": None,
                                 "licenses_total": None}
    names = [u["username"] for u in listed["items"]]
    assert names[0] == BUILTIN_ADMIN  # listed first, flagged, never counted
    assert listed["items"][0]["is_builtin"] and listed["items"][0]["available_roles"] == []
    assert root.get(USERS, params={"q": "fra"}).json()["items"][0]["username"] == "frank"


BAD_NEW_USERS = [
    ({"username": ""}, 422, "username"),
    ({"username": "   "}, 422, "username"),
    ({"username": "no spaces"}, 422, "username"),
    ({"username": "x" * 151}, 422, "username"),
    ({"username": "dana", "password_confirmation": "Cryo-vault-2027!"}, 422, "confirmation"),
    ({"username": "dana", "password": "short-1A", "password_confirmation": "short-1A"}, 422,
     "weak"),
    ({"username": "dana", "password": "alllowercaseletters",
      "password_confirmation": "alllowercaseletters"}, 422, "weak"),
    ({"username": "dana", "password": "Dana-is-me-2026", "password_confirmation":
      "Dana-is-me-2026"}, 422, "username"),
    ({"username": "dana", "password": "Password123", "password_confirmation": "Password123"},
     422, "common"),
    ({"username": "dana", "email": "not-an-address"}, 422, "e-mail"),
    ({"username": "dana", "first_name": "a\x00b"}, 422, "first name"),
    ({"username": "dana", "password": None}, 422, "password"),
    ({"username": "dana", "role": "customer-admin"}, 422, "role"),
    ({"username": "dana", "source": "elsewhere"}, 422, "source"),
    ({"username": "dana", "source": "directory", "password": STRONG}, 422, "directory"),
]


@pytest.mark.parametrize(("change", "status", "word"), BAD_NEW_USERS)
def test_bad_new_users_are_refused_with_their_reason(root, change, status, word):
    body = {"username": "dana", "password": STRONG, "password_confirmation": STRONG, **change}
    assert_error(root.post(USERS, json=body), status, word, case=change)
    assert [u["username"] for u in root.get(USERS).json()["items"]] == ["root"]


def test_duplicate_usernames_and_emails_are_409(root):
    assert new_user(root, "dana", email="dana@example.org").status_code == 201
    assert_error(new_user(root, "DANA"), 409, "already exists")
    assert_error(new_user(root, "dana2", email="DANA@example.org"), 409, "e-mail")
    assert_error(new_user(root, "root2", email="root@example.org"), 409, "e-mail")
    # ... and editing into someone else's address too
    other = new_user(root, "eve").json()
    assert_error(root.patch(f"{USERS}/{other['id']}", json={"email": "dana@example.org"}),
                 409, "e-mail")


def test_edit_a_local_user_and_change_the_password(root, client):
    dana = new_user(root, "dana").json()
    url = f"{USERS}/{dana['id']}"
    edited = root.patch(url, json={"first_name": "Dana", "last_name": "Katz",
                                   "email": "dana@example.org"})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["first_name"], edited.json()["email"]) == ("Dana", "dana@example.org")
    assert_error(root.patch(url, json={"password": "Another-pass-7"}), 422, "confirmation")
    assert_error(root.patch(url, json={"password": "weak", "password_confirmation": "weak"}),
                 422, "weak")
    assert root.patch(url, json={"password": "Another-pass-7",
                                 "password_confirmation": "Another-pass-7"}).status_code == 200
    assert client.post(LOGIN, json={"username": "dana", "password": STRONG}).status_code == 401
    assert client.post(LOGIN, json={"username": "dana",
                                    "password": "Another-pass-7"}).status_code == 200
    assert root.patch(url, json={"email": ""}).json()["email"] is None
    assert_error(root.patch(url, json={"username": "renamed"}), 422, "username")
    assert_error(root.patch(f"{USERS}/not-an-id", json={}), 404, "user")
    assert_error(root.patch(f"{USERS}/00000000-0000-0000-0000-000000000000", json={}), 404)


def test_directory_users_are_read_only_here(root, app):
    with app.state.sessions() as db:
        user = create_user(db, "gina", None, email="gina@corp.example", source="ldap")
        db.commit()
        gina_id = user.id
    url = f"{USERS}/{gina_id}"
    assert root.get(url).json()["source"] == "directory"
    for change in ({"first_name": "G"}, {"email": "g@x.org"},
                   {"password": STRONG, "password_confirmation": STRONG}):
        assert_error(root.patch(url, json=change), 422, "directory", case=change)
    # activation is local: allowed
    assert root.patch(url, json={"is_active": False}).json()["is_active"] is False


def test_deactivated_users_cannot_sign_in_or_use_their_sessions(root, make_user, client):
    dana = new_user(root, "dana").json()
    assert client.post(LOGIN, json={"username": "dana", "password": STRONG}).status_code == 200
    assert client.get("/api/v1/me").status_code == 200
    assert root.patch(f"{USERS}/{dana['id']}", json={"is_active": False}).status_code == 200
    assert_error(client.get("/api/v1/me"), 401)
    assert_error(client.post(LOGIN, json={"username": "dana", "password": STRONG}), 401,
                 "deactivated")
    assert root.patch(f"{USERS}/{dana['id']}", json={"is_active": True}).status_code == 200
    assert client.post(LOGIN, json={"username": "dana", "password": STRONG}).status_code == 200


def test_the_builtin_admin_and_oneself_cannot_be_deactivated(root, app):
    with app.state.sessions() as db:
        ensure_builtin_admin(db)
        db.commit()
    builtin = next(u for u in root.get(USERS).json()["items"] if u["is_builtin"])
    assert_error(root.patch(f"{USERS}/{builtin['id']}", json={"is_active": False}), 422,
                 "built-in")
    assert_error(root.patch(f"{USERS}/{root.id}", json={"is_active": False}), 422, "own")
    assert_error(root.post(f"{USERS}/{builtin['id']}/roles", json={"role": "user-manager"}),
                 422, "built-in")
    assert_error(root.delete(f"{USERS}/{builtin['id']}/roles/customer-admin"), 422, "built-in")
    assert root.get(USERS).json()["summary"]["users"] == 1


def test_roles_assign_and_unassign(root, make_user):
    dana = new_user(root, "dana").json()
    url = f"{USERS}/{dana['id']}/roles"
    after = root.post(url, json={"role": "license-manager"}).json()
    assert after["roles"] == ["license-manager"]
    assert "license-manager" not in after["available_roles"]
    assert_error(root.post(url, json={"role": "license-manager"}), 409, "already")
    assert_error(root.post(url, json={"role": "superuser"}), 422, "unknown role")
    assert_error(root.post(url, json={"role": "license-manager", "x": 1}), 422)
    assert_error(root.delete(f"{url}/user-manager"), 404, "does not have")
    assert_error(root.delete(f"{url}/superuser"), 422, "unknown role")
    after = root.delete(f"{url}/license-manager").json()
    assert after["roles"] == [] and "license-manager" in after["available_roles"]


def test_there_is_always_a_customer_admin(root, make_user, app):
    with app.state.sessions() as db:
        ensure_builtin_admin(db)  # the service account holds the role but is not counted
        db.commit()
    roles = f"{USERS}/{root.id}/roles"
    assert_error(root.delete(f"{roles}/customer-admin"), 422, "last customer-admin")
    dana = new_user(root, "dana").json()
    assert root.post(f"{USERS}/{dana['id']}/roles", json={"role": "customer-admin"}
                     ).status_code == 200
    # Two holders now: root may step down, then dana is the last one.
    assert root.delete(f"{roles}/customer-admin").status_code == 200
    manager = make_user("manager", roles=["user-manager", "customer-role-manager"])
    assert_error(manager.patch(f"{USERS}/{dana['id']}", json={"is_active": False}), 422,
                 "last customer-admin")
    # A role manager cannot touch customer-admin at all (no escalation) ...
    assert_error(manager.post(f"{USERS}/{manager.id}/roles", json={"role": "customer-admin"}),
                 403, "customer-admin")
    # ... but manages the other roles.
    assert manager.post(f"{USERS}/{root.id}/roles", json={"role": "workflow-admin"}
                        ).status_code == 200


def test_a_deactivated_customer_admin_does_not_count(root, make_user):
    dana = new_user(root, "dana").json()
    root.post(f"{USERS}/{dana['id']}/roles", json={"role": "customer-admin"})
    assert root.patch(f"{USERS}/{dana['id']}", json={"is_active": False}).status_code == 200
    assert_error(root.delete(f"{USERS}/{root.id}/roles/customer-admin"), 422, "last")
    # removing the role from the deactivated holder is fine
    assert root.delete(f"{USERS}/{dana['id']}/roles/customer-admin").status_code == 200


def test_directory_endpoints_say_when_no_directory_is_configured(root):
    assert_error(root.get("/api/v1/admin/directory", params={"q": "ann"}), 503,
                 "directory unavailable")
    assert_error(root.post(USERS, json={"source": "directory", "username": "ann"}), 503,
                 "directory unavailable")
