"""API tests of sign-in, sessions and API tokens (SPEC ADM-1; DESIGN "Stable API contract")."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from cryovault.web.context import SESSION_COOKIE
from tests.helpers import assert_error

LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
TOKENS = "/api/v1/auth/tokens"
ME = "/api/v1/me"
PASSWORD = "password-123"


def login(client, username: str, password: str = PASSWORD):
    return client.post(LOGIN, json={"username": username, "password": password})


# --- login -------------------------------------------------------------------------------------


def test_login_by_username_sets_the_session_cookie(client, alice):
    response = login(client, "alice")
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert user["username"] == "alice"
    assert user["id"] == str(alice.id)
    assert user["email"] == "alice@example.org"
    assert "password" not in str(response.json()).lower()
    assert client.cookies.get(SESSION_COOKIE)
    set_cookie = response.headers["set-cookie"].lower()
    assert "httponly" in set_cookie
    assert "samesite=lax" in set_cookie


@pytest.mark.parametrize("login_name", ["alice@example.org", "ALICE@Example.ORG", "Alice"])
def test_login_by_email_or_any_case(client, alice, login_name):
    response = login(client, login_name)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == "alice"
    assert client.get(ME).json()["username"] == "alice"


WRONG_CREDENTIALS = [
    ("alice", "wrong-password"),
    ("alice@example.org", "wrong-password"),
    ("alice", ""),
    ("alice", PASSWORD.upper()),
    ("nobody", PASSWORD),
    ("nobody@example.org", PASSWORD),
    ("", PASSWORD),
]


def test_wrong_credentials_are_401(client, alice):
    for login_name, password in WRONG_CREDENTIALS:
        response = login(client, login_name, password)
        assert_error(response, 401, "password", case=(login_name, password))
        assert not client.cookies.get(SESSION_COOKIE)
        assert_error(client.get(ME), 401)


def test_unknown_user_and_wrong_password_answer_alike(client, alice):
    """The answer must not reveal whether the account exists."""
    unknown = login(client, "nobody", "wrong-password").json()
    wrong = login(client, "alice", "wrong-password").json()
    assert unknown == wrong


MALFORMED_LOGIN_BODIES = [
    {"username": "alice"},
    {"password": PASSWORD},
    {},
    {"username": "alice", "password": PASSWORD, "remember": True},
    {"username": 5, "password": PASSWORD},
    {"username": "alice", "password": None},
    ["alice", PASSWORD],
    "alice",
]


def test_login_with_a_malformed_body_is_422(client, alice):
    for body in MALFORMED_LOGIN_BODIES:
        assert_error(client.post(LOGIN, json=body), 422, case=body)
        assert not client.cookies.get(SESSION_COOKIE)


def test_login_with_malformed_json_is_422(client, alice):
    for raw in ['{"username": "alice", "password": ', "not json", ""]:
        response = client.post(LOGIN, content=raw, headers={"Content-Type": "application/json"})
        assert_error(response, 422, case=raw)
    assert not client.cookies.get(SESSION_COOKIE)


def test_login_with_a_nul_character_is_refused_not_a_crash(client, alice):
    # Bad input is never a 500 (DESIGN "Errors"); no account has such a name, so it is a 401.
    for login_name in ["ali\x00ce", "alice\x00@example.org", "\x00"]:
        assert_error(login(client, login_name), 401, case=login_name)


# --- cookie session ----------------------------------------------------------------------------


def test_cookie_session_works_for_me_and_the_api(client, alice):
    assert_error(client.get(ME), 401)
    assert login(client, "alice").status_code == 200
    me = client.get(ME)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "alice"
    assert me.json()["id"] == str(alice.id)
    # The session opens the rest of the API too.
    created = client.post("/api/v1/elements", json={"kind": "folder", "name": "By cookie"})
    assert created.status_code == 201, created.text
    assert created.json()["creator"] == "alice"
    listing = client.get("/api/v1/elements")
    assert [e["name"] for e in listing.json()["items"]] == ["By cookie"]


def test_logout_ends_the_session(client, alice):
    assert login(client, "alice").status_code == 200
    secret = client.cookies.get(SESSION_COOKIE)
    assert client.get(ME).status_code == 200

    response = client.post(LOGOUT)
    assert response.status_code == 204
    assert not client.cookies.get(SESSION_COOKIE)
    assert_error(client.get(ME), 401)

    # The old cookie is dead on the server too, not only forgotten by the browser.
    client.cookies.set(SESSION_COOKIE, secret)
    assert_error(client.get(ME), 401, "session")
    assert_error(client.get("/api/v1/elements"), 401)


def test_logout_without_a_session_is_harmless(client):
    assert client.post(LOGOUT).status_code == 204


def test_two_sessions_are_independent(client, alice, bob):
    assert login(client, "alice").status_code == 200
    alice_cookie = client.cookies.get(SESSION_COOKIE)
    client.cookies.clear()
    assert login(client, "bob").status_code == 200
    bob_cookie = client.cookies.get(SESSION_COOKIE)
    assert alice_cookie != bob_cookie
    assert client.post(LOGOUT).status_code == 204  # ends bob's session only

    client.cookies.set(SESSION_COOKIE, alice_cookie)
    assert client.get(ME).json()["username"] == "alice"
    client.cookies.set(SESSION_COOKIE, bob_cookie)
    assert_error(client.get(ME), 401)


def test_forged_session_cookie_is_401(client, alice):
    for cookie in ["garbage", "x" * 500, ""]:
        client.cookies.set(SESSION_COOKIE, cookie)
        assert_error(client.get(ME), 401, case=cookie)


# --- API tokens --------------------------------------------------------------------------------


def test_token_lifecycle_create_list_use_revoke(client, alice):
    created = alice.post(TOKENS, json={"name": "Krios 1"})
    assert created.status_code == 201, created.text
    token = created.json()
    assert {"id", "name", "token"} <= set(token)
    assert token["name"] == "Krios 1"
    assert isinstance(token["token"], str) and len(token["token"]) >= 20
    uuid.UUID(token["id"])

    bearer = {"Authorization": f"Bearer {token['token']}"}
    me = client.get(ME, headers=bearer)
    assert me.status_code == 200 and me.json()["username"] == "alice"

    listed = alice.get(TOKENS)
    assert listed.status_code == 200
    names = {t["id"]: t["name"] for t in listed.json()}
    assert names[token["id"]] == "Krios 1"
    assert "tests" in names.values()  # the fixture's own token
    # The secret is shown once, at creation, never again.
    assert token["token"] not in listed.text
    assert all("token" not in t for t in listed.json())

    revoked = alice.delete(f"{TOKENS}/{token['id']}")
    assert revoked.status_code == 204
    assert revoked.content == b""
    assert_error(client.get(ME, headers=bearer), 401, "token")
    assert_error(client.get("/api/v1/elements", headers=bearer), 401)
    assert token["id"] not in {t["id"] for t in alice.get(TOKENS).json()}
    # The fixture's token still works.
    assert alice.get(ME).status_code == 200


def test_token_created_from_a_cookie_session(client, alice):
    assert login(client, "alice").status_code == 200
    created = client.post(TOKENS, json={"name": "script"})
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    client.cookies.clear()
    me = client.get(ME, headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["username"] == "alice"


def test_tokens_are_private_to_their_owner(client, alice, bob):
    token = alice.post(TOKENS, json={"name": "alice's"}).json()
    assert token["id"] not in {t["id"] for t in bob.get(TOKENS).json()}
    assert_error(bob.delete(f"{TOKENS}/{token['id']}"), 404)
    me = client.get(ME, headers={"Authorization": f"Bearer {token['token']}"})
    assert me.json()["username"] == "alice"


def test_revoking_twice_or_unknown_or_malformed_token_is_404(alice):
    token = alice.post(TOKENS, json={"name": "once"}).json()
    assert alice.delete(f"{TOKENS}/{token['id']}").status_code == 204
    assert_error(alice.delete(f"{TOKENS}/{token['id']}"), 404)
    assert_error(alice.delete(f"{TOKENS}/{uuid.uuid4()}"), 404)
    assert_error(alice.delete(f"{TOKENS}/not-a-uuid"), 404)


BAD_TOKEN_BODIES = [
    {"name": ""},
    {"name": "   "},
    {"name": "x" * 256},
    {},
    {"name": None},
    {"name": 42},
    {"name": "ok", "scope": "all"},
]


def test_token_with_a_bad_name_is_422(alice):
    before = len(alice.get(TOKENS).json())
    for body in BAD_TOKEN_BODIES:
        assert_error(alice.post(TOKENS, json=body), 422, case=body)
    assert len(alice.get(TOKENS).json()) == before


def test_token_name_with_a_nul_character_is_not_a_crash(app, alice):
    """A 422, or the token created under the name as sent; never a 500 (DESIGN "Errors")."""
    lenient = TestClient(app, raise_server_exceptions=False)
    response = lenient.post(TOKENS, json={"name": "Krios\x00 1"}, headers=alice.headers)
    if response.status_code == 422:
        assert_error(response, 422, "name")
    else:
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "Krios\x00 1"


def test_token_endpoints_need_authentication(client, alice):
    assert_error(client.post(TOKENS, json={"name": "anonymous"}), 401)
    assert_error(client.get(TOKENS), 401)
    token_id = alice.get(TOKENS).json()[0]["id"]
    assert_error(client.delete(f"{TOKENS}/{token_id}"), 401)


BAD_HEADERS = [
    "Bearer not-a-real-token",
    "Bearer cvt_" + "A" * 43,
    "Bearer ",
    "Bearer",
    "Basic YWxpY2U6cGFzc3dvcmQtMTIz",
    "Token {token}",
    "{token}",
]


def test_bad_authorization_header_is_401(client, alice):
    for header in BAD_HEADERS:
        response = client.get(ME, headers={"Authorization": header.format(token=alice.token)})
        assert_error(response, 401, case=header)
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), header


def test_bearer_scheme_is_case_insensitive(client, alice):
    response = client.get(ME, headers={"Authorization": f"bearer {alice.token}"})
    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_a_bad_header_is_not_rescued_by_a_good_cookie(client, alice):
    assert login(client, "alice").status_code == 200
    assert_error(client.get(ME, headers={"Authorization": "Bearer wrong"}), 401)


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", ME),
        ("get", "/api/v1/elements"),
        ("get", f"/api/v1/elements/{uuid.UUID(int=1)}"),
        ("patch", f"/api/v1/elements/{uuid.UUID(int=1)}"),
        ("delete", f"/api/v1/elements/{uuid.UUID(int=1)}"),
        ("get", f"/api/v1/elements/{uuid.UUID(int=1)}/path"),
        ("get", f"/api/v1/elements/{uuid.UUID(int=1)}/sharing"),
        ("get", "/api/v1/jobs"),
        ("get", "/api/v1/users?q=a"),
        ("get", "/api/v1/preferences/platform"),
    ],
)
def test_no_authentication_is_401(client, method, url):
    kwargs = {"json": {"name": "x"}} if method == "patch" else {}
    assert_error(getattr(client, method)(url, **kwargs), 401, "sign in")


def test_no_authentication_on_create_is_401(client):
    response = client.post("/api/v1/elements", json={"kind": "folder", "name": "anonymous"})
    assert_error(response, 401)


def test_malformed_json_is_422(client, alice):
    for raw in ['{"kind": "folder", "name": ', "{kind: folder}", "[", "\x00", "{}{}"]:
        response = client.post(
            "/api/v1/elements", content=raw,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert_error(response, 422, case=raw)
    assert alice.children() == []


def test_malformed_json_on_token_creation_is_422(client, alice):
    response = client.post(
        TOKENS, content='{"name": "unterminated',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 422)
