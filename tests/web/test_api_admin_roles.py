"""The role matrix: every administration endpoint × every role → allowed or 403.

The reference table below is written from SPEC ADM-2/ADM-3, not from the code:
- workflow-admin: full access to workspace elements, *no* user administration;
- user-manager: create and edit users (and so see them, and search the directory to add them);
- license-manager: see users and their roles, install licences, assign and unassign seats;
- customer-role-manager: assign and unassign roles (seeing the users it assigns them to), except
  the customer-admin role itself, which only a customer-admin gives or takes (no escalation);
- customer-admin: all of the above, and the platform preferences (ADM-5);
- the admin panel (users, counts, licences) is for the four administration roles (ADM-3);
- everybody signed in reads the platform preferences, their own preferences, and the plugins.
"""

from __future__ import annotations

import pytest

from cryovault.settings import Settings
from tests.helpers import assert_error

NONE, WA, UM, LM, CRM, CA = ("(no role)", "workflow-admin", "user-manager", "license-manager",
                             "customer-role-manager", "customer-admin")
ROLES = [NONE, WA, UM, LM, CRM, CA]
ADMIN4 = {UM, LM, CRM, CA}
EVERYBODY = set(ROLES)

# endpoint name -> roles allowed (from SPEC ADM-2/ADM-3, see the module docstring)
REFERENCE = {
    "list users": ADMIN4,
    "get user": ADMIN4,
    "create user": {UM, CA},
    "edit user": {UM, CA},
    "deactivate user": {UM, CA},
    "search directory": {UM, CA},
    "assign role": {CRM, CA},
    "unassign role": {CRM, CA},
    "assign customer-admin": {CA},
    "unassign customer-admin": {CA},
    "assign licence": {LM, CA},
    "unassign licence": {LM, CA},
    "licence status": ADMIN4,
    "install licence": {LM, CA},
    "show licence file": ADMIN4,
    "read platform preferences": EVERYBODY,
    "edit platform preferences": {CA},
    "read own preferences": EVERYBODY,
    "edit own preferences": EVERYBODY,
    "list plugins": EVERYBODY,
    # Settings > Health (ADM-6): the operators of the workspace
    "platform health": {WA, CA},
    "reindex": {WA, CA},
    "stop live exports": {WA, CA},
}

STRONG = "Cryo-vault-2026!"


@pytest.fixture
def settings(database_url, tmp_path, licensor) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, auto_upgrade=False,
                    license_public_key=licensor.public_key)


@pytest.fixture
def world(make_user, licensor):
    """root (customer-admin) installs a licence; target holds workflow-admin, customer-admin and
    a portal seat; a second, not yet installed, licence key is ready."""
    root = make_user("root", roles=["customer-admin"])
    target = make_user("target", roles=["workflow-admin", "customer-admin"])
    platform = root.get("/api/v1/admin/licenses").json()["platform_id"]
    installed = root.post("/api/v1/admin/licenses",
                          json={"key": licensor.issue(platform, "portal=20", "spa=5")})
    assert installed.status_code == 201, installed.text
    return {"root": root, "target": target, "license_id": installed.json()["id"],
            "second_key": licensor.issue(platform, "portal=5")}


def _call(name: str, caller, world) -> tuple:
    """(response, success status) for the endpoint `name` called by `caller`."""
    t = f"/api/v1/admin/users/{world['target'].id}"
    calls = {
        "list users": (lambda: caller.get("/api/v1/admin/users"), 200),
        "get user": (lambda: caller.get(t), 200),
        "create user": (lambda: caller.post("/api/v1/admin/users", json={
            "username": "newcomer", "password": STRONG, "password_confirmation": STRONG}), 201),
        "edit user": (lambda: caller.patch(t, json={"first_name": "Tess"}), 200),
        "deactivate user": (lambda: caller.patch(t, json={"is_active": False}), 200),
        # No directory is configured here: an allowed caller gets past the rights check and
        # learns that the directory is unavailable.
        "search directory": (lambda: caller.get("/api/v1/admin/directory?q=ann"), 503),
        "assign role": (lambda: caller.post(f"{t}/roles", json={"role": "user-manager"}), 200),
        "unassign role": (lambda: caller.delete(f"{t}/roles/workflow-admin"), 200),
        "assign customer-admin": (lambda: caller.post(
            f"/api/v1/admin/users/{world['root'].id}/roles", json={"role": "customer-admin"}),
            409),  # root holds it already: allowed callers get past the rights check
        "unassign customer-admin": (lambda: caller.delete(f"{t}/roles/customer-admin"), 200),
        "assign licence": (lambda: caller.post(f"{t}/licenses", json={"feature": "spa"}), 200),
        "unassign licence": (lambda: caller.delete(f"{t}/licenses/portal"), 200),
        "licence status": (lambda: caller.get("/api/v1/admin/licenses"), 200),
        "install licence": (lambda: caller.post("/api/v1/admin/licenses",
                                                json={"key": world["second_key"]}), 201),
        "show licence file": (lambda: caller.get(
            f"/api/v1/admin/licenses/{world['license_id']}"), 200),
        "read platform preferences": (lambda: caller.get("/api/v1/preferences/platform"), 200),
        "edit platform preferences": (lambda: caller.patch(
            "/api/v1/preferences/platform", json={"max_folder_depth": 4}), 200),
        "read own preferences": (lambda: caller.get("/api/v1/preferences/user"), 200),
        "edit own preferences": (lambda: caller.patch("/api/v1/preferences/user",
                                                      json={"language": "fr"}), 200),
        "list plugins": (lambda: caller.get("/api/v1/plugins"), 200),
        "platform health": (lambda: caller.get("/api/v1/admin/health"), 200),
        "reindex": (lambda: caller.post("/api/v1/admin/reindex"), 202),
        "stop live exports": (lambda: caller.post("/api/v1/admin/live-exports/stop"), 200),
    }
    call, success = calls[name]
    return call(), success


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(REFERENCE))
def test_role_matrix(endpoint, role, make_user, world):
    caller = make_user("caller", roles=[] if role == NONE else [role])
    response, success = _call(endpoint, caller, world)
    if role in REFERENCE[endpoint]:
        assert response.status_code == success, (endpoint, role, response.text)
    else:
        assert_error(response, 403, case=(endpoint, role))


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")
def test_the_reference_table_covers_every_admin_route(app):
    """A new administration route must be added to the matrix."""
    covered = {
        ("GET", "/api/v1/admin/users"), ("POST", "/api/v1/admin/users"),
        ("GET", "/api/v1/admin/users/{user_id}"), ("PATCH", "/api/v1/admin/users/{user_id}"),
        ("POST", "/api/v1/admin/users/{user_id}/roles"),
        ("DELETE", "/api/v1/admin/users/{user_id}/roles/{role}"),
        ("POST", "/api/v1/admin/users/{user_id}/licenses"),
        ("DELETE", "/api/v1/admin/users/{user_id}/licenses/{feature}"),
        ("GET", "/api/v1/admin/directory"), ("GET", "/api/v1/admin/licenses"),
        ("POST", "/api/v1/admin/licenses"), ("GET", "/api/v1/admin/licenses/{license_id}"),
        ("GET", "/api/v1/admin/health"), ("POST", "/api/v1/admin/reindex"),
        ("POST", "/api/v1/admin/live-exports/stop"),
    }
    routes = {(method.upper(), path) for path, operations in app.openapi()["paths"].items()
              if path.startswith("/api/v1/admin") for method in operations}
    assert routes == covered


def test_without_credentials_every_admin_endpoint_is_401(client, world):
    for path in ("/api/v1/admin/users", "/api/v1/admin/licenses", "/api/v1/admin/directory?q=a",
                 "/api/v1/preferences/user", "/api/v1/plugins"):
        assert_error(client.get(path), 401, case=path)
