"""API tests of sharing: privacy, levels, inheritance, bare cards, workflow admins, user
auto-completion (SPEC AC-1 … AC-5, ADM-2; DESIGN "Stable API contract")."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.helpers import assert_error

ELEMENTS = "/api/v1/elements"
USERS = "/api/v1/users"


@pytest.fixture
def lenient(app) -> TestClient:
    """A client that returns a server error as the 500 response a caller would get."""
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def carol(make_user):
    return make_user("carol")


def url(element: dict | str, suffix: str = "") -> str:
    element_id = element["id"] if isinstance(element, dict) else element
    return f"{ELEMENTS}/{element_id}{suffix}"


def sharing(user, element: dict) -> dict:
    response = user.get(url(element, "/sharing"))
    assert response.status_code == 200, response.text
    return response.json()


def grants_of(body: dict) -> dict[str, str]:
    return {g["username"]: g["level"] for g in body["grants"]}


def put(user, element: dict, grants: dict[str, str], privacy: str = "private",
        everybody: str | None = None):
    body = {"privacy": privacy, "everybody": everybody,
            "grants": [{"username": u, "level": lvl} for u, lvl in grants.items()]}
    return user.put(url(element, "/sharing"), json=body)


def share(owner, element: dict, **levels: str) -> dict:
    response = put(owner, element, {owner.username: "owner", **levels})
    assert response.status_code == 200, response.text
    return response.json()


def visible_ids(user, parent: dict | None = None) -> set[str]:
    return {e["id"] for e in user.children(parent["id"] if parent else None)}


# --- defaults and inheritance (AC-1, AC-3) ------------------------------------------------------


def test_new_root_elements_are_private_to_their_creator(alice, bob):
    folder = alice.create("folder", "Private")
    workflow = alice.create("workflow", "Root workflow")
    file = alice.create("file", "root.txt")
    for element in (folder, workflow, file):
        body = sharing(alice, element)
        assert body["privacy"] == "private"
        assert body["everybody"] is None
        assert body["inherited"] is False
        assert grants_of(body) == {"alice": "owner"}
        assert body["can_edit"] is True
        assert_error(bob.get(url(element)), 404)
        assert_error(bob.get(url(element, "/sharing")), 404)
        assert_error(bob.get(url(element, "/path")), 404)
    assert bob.children() == []


def test_children_inherit_their_parents_permissions(alice):
    folder = alice.create("folder", "F")
    workflow = alice.create("workflow", "W", folder["id"], workflow_type="spa")
    step = alice.children(workflow["id"])[1]
    dataset = alice.create("dataset", "D", step["id"])
    for element in (workflow, step, dataset):
        body = sharing(alice, element)
        assert body["inherited"] is True, element["kind"]
        assert body["privacy"] == "private"
        assert grants_of(body) == {"alice": "owner"}
        assert body["inherited_from"]["id"] == folder["id"]


def test_put_breaks_inheritance_and_the_subtree_follows(alice, bob, carol):
    folder = alice.create("folder", "F")
    workflow = alice.create("workflow", "W", folder["id"], workflow_type="spa")
    other = alice.create("workflow", "Not shared", folder["id"])
    imaging = alice.children(workflow["id"])[1]
    dataset = alice.create("dataset", "D", imaging["id"])

    body = share(alice, workflow, bob="viewer")
    assert body["inherited"] is False
    assert body["privacy"] == "private"
    assert grants_of(body) == {"alice": "owner", "bob": "viewer"}
    assert body["can_edit"] is True
    assert sharing(alice, workflow) == body

    # Below the workflow: inherited from it, with bob in it.
    for element in (imaging, dataset):
        below = sharing(alice, element)
        assert below["inherited"] is True
        assert below["inherited_from"]["id"] == workflow["id"]
        assert grants_of(below) == {"alice": "owner", "bob": "viewer"}
    # Above it: unchanged.
    assert grants_of(sharing(alice, folder)) == {"alice": "owner"}
    assert grants_of(sharing(alice, other)) == {"alice": "owner"}

    for element in (workflow, imaging, dataset):
        got = bob.get(url(element))
        assert got.status_code == 200, got.text
        assert got.json()["access"] == "viewer"
    assert_error(bob.get(url(other)), 404)
    # A child made later inherits the workflow's set too.
    late = alice.create("file", "late.txt", dataset["id"])
    assert bob.get(url(late)).json()["access"] == "viewer"
    assert sharing(alice, late)["inherited_from"]["id"] == workflow["id"]

    # A change on the parent no longer reaches the child whose inheritance is broken.
    share(alice, folder, carol="collaborator")
    assert "carol" not in grants_of(sharing(alice, workflow))
    assert carol.get(url(folder)).json()["access"] == "collaborator"
    assert carol.get(url(other)).json()["access"] == "collaborator"
    assert_error(carol.get(url(workflow)), 404)
    assert_error(carol.get(url(dataset)), 404)
    assert visible_ids(carol, folder) == {other["id"]}
    assert_error(bob.get(url(other)), 404)


def test_inherited_field_in_the_body_is_ignored(alice, bob):
    folder = alice.create("folder", "F")
    workflow = alice.create("workflow", "W", folder["id"])
    body = {"privacy": "private", "inherited": True,
            "grants": [{"username": "alice", "level": "owner"},
                       {"username": "bob", "level": "viewer"}]}
    response = alice.put(url(workflow, "/sharing"), json=body)
    assert response.status_code == 200, response.text
    assert response.json()["inherited"] is False


def test_put_on_a_root_element_replaces_its_grants(alice, bob, carol):
    folder = alice.create("folder", "F")
    share(alice, folder, bob="collaborator")
    assert bob.get(url(folder)).json()["access"] == "collaborator"
    body = share(alice, folder, carol="viewer")
    assert grants_of(body) == {"alice": "owner", "carol": "viewer"}
    assert body["inherited"] is False
    assert_error(bob.get(url(folder)), 404)
    assert carol.get(url(folder)).json()["access"] == "viewer"


# --- bare cards (AC-4) --------------------------------------------------------------------------


def test_folders_above_a_shared_workflow_are_bare_cards(alice, bob):
    top = alice.create("folder", "Top secret", description="confidential")
    sub = alice.create("folder", "Sub", top["id"])
    workflow = alice.create("workflow", "Shared W", sub["id"], workflow_type="spa")
    hidden = alice.create("workflow", "Hidden W", sub["id"])
    alice.create("folder", "Hidden folder", top["id"])
    share(alice, workflow, bob="collaborator")

    root = bob.children()
    assert [e["id"] for e in root] == [top["id"]]
    card = root[0]
    assert card["access"] == "card"
    assert card["name"] == "Top secret"
    for field in ("description", "creator", "created_at", "updated_at", "workflow_type",
                  "position"):
        assert card[field] is None, field
    assert bob.get(url(top)).json() == card
    assert visible_ids(bob, top) == {sub["id"]}
    assert visible_ids(bob, sub) == {workflow["id"]}
    assert_error(bob.get(url(hidden)), 404)

    path = bob.get(url(workflow, "/path"))
    assert path.status_code == 200
    assert [p["name"] for p in path.json()] == ["Top secret", "Sub", "Shared W"]
    assert [p["name"] for p in bob.get(url(sub, "/path")).json()] == ["Top secret", "Sub"]

    # A card shows nothing and allows nothing.
    assert_error(bob.get(url(top, "/sharing")), 403)
    assert_error(bob.get(url(sub, "/sharing")), 403)
    assert_error(put(bob, sub, {"bob": "owner"}), 403)
    assert_error(bob.post(ELEMENTS, json={"kind": "workflow", "name": "X",
                                          "parent_id": sub["id"]}), 403)
    assert_error(bob.patch(url(sub), json={"name": "Renamed"}), 403)
    assert_error(bob.delete(url(sub)), 403)
    assert alice.get(url(sub)).json()["name"] == "Sub"

    # The shared part itself works as shared.
    imaging = bob.children(workflow["id"])[1]
    dataset = bob.create("dataset", "Bob's run", imaging["id"])
    assert dataset["access"] == "collaborator"


# --- public elements and Everybody (AC-1) -------------------------------------------------------


def test_public_with_everybody_viewer_then_collaborator(alice, make_user):
    carol = make_user("carol")
    folder = alice.create("folder", "Open")
    child = alice.create("workflow", "W", folder["id"])

    body = put(alice, folder, {"alice": "owner"}, privacy="public", everybody="viewer").json()
    assert body["privacy"] == "public"
    assert body["everybody"] == "viewer"
    assert grants_of(body) == {"alice": "owner"}
    assert sharing(alice, child)["everybody"] == "viewer"
    assert sharing(alice, child)["privacy"] == "public"

    assert folder["id"] in visible_ids(carol)
    assert carol.get(url(folder)).json()["access"] == "viewer"
    assert carol.get(url(child)).json()["access"] == "viewer"
    viewer_sees = sharing(carol, folder)
    assert viewer_sees["can_edit"] is False
    assert grants_of(viewer_sees) == {"alice": "owner"}
    assert_error(carol.post(ELEMENTS, json={"kind": "workflow", "name": "X",
                                            "parent_id": folder["id"]}), 403, "collaborator")
    assert_error(carol.patch(url(folder), json={"name": "Mine"}), 403)
    assert_error(put(carol, folder, {"carol": "owner"}), 403)

    body = put(alice, folder, {"alice": "owner"}, privacy="public",
               everybody="collaborator").json()
    assert body["everybody"] == "collaborator"
    assert carol.get(url(folder)).json()["access"] == "collaborator"
    created = carol.create("workflow", "Carol's", folder["id"])
    assert created["creator"] == "carol"
    assert carol.patch(url(folder), json={"description": "edited"}).status_code == 200
    assert_error(carol.delete(url(folder)), 403, "owner")
    assert_error(put(carol, folder, {"carol": "owner"}), 403)

    body = put(alice, folder, {"alice": "owner"}).json()
    assert (body["privacy"], body["everybody"]) == ("private", None)
    assert_error(carol.get(url(folder)), 404)
    assert_error(carol.get(url(created)), 404)


def test_a_user_grant_and_everybody_combine_to_the_higher_level(alice, bob):
    folder = alice.create("folder", "F")
    put(alice, folder, {"alice": "owner", "bob": "viewer"}, privacy="public",
        everybody="collaborator")
    assert bob.get(url(folder)).json()["access"] == "collaborator"


# --- bad sharing requests -----------------------------------------------------------------------


def test_bad_sharing_bodies_are_422_and_change_nothing(alice, bob):
    folder = alice.create("folder", "F")
    share(alice, folder, bob="viewer")
    before = sharing(alice, folder)

    def body(grants, **extra):
        return {"privacy": "private", **extra,
                "grants": [{"username": u, "level": lvl} for u, lvl in grants]}

    cases = [
        (body([("alice", "owner")], privacy="private", everybody="viewer"), ["everybody"]),
        (body([("alice", "owner")], privacy="private", everybody="collaborator"),
         ["everybody"]),
        (body([("bob", "viewer")]), ["owner"]),
        (body([]), ["owner"]),
        (body([("alice", "owner"), ("nobody", "viewer")]), ["nobody"]),
        (body([("alice", "owner"), ("bob", "viewer"), ("bob", "collaborator")]), ["bob"]),
        (body([("alice", "owner"), ("bob", "viewer"), ("BOB", "viewer")]), ["bob"]),
        (body([("alice", "owner"), ("bob", "admin")]), ["level"]),
        (body([("alice", "owner"), ("bob", "Viewer")]), []),
        (body([("alice", "owner")], privacy="public", everybody="owner"), []),
        (body([("alice", "owner")], privacy="secret"), ["privacy"]),
        (body([("alice", "owner"), ("", "viewer")]), []),
        (body([("alice", "owner"), ("b" * 151, "viewer")]), []),
        (body([("alice", "owner")], public=True), ["public"]),
        ({"privacy": "private"}, ["grants"]),
        ({"privacy": "private", "grants": "alice"}, ["grants"]),
        ({"privacy": "private", "grants": [{"username": "alice"}]}, []),
        ({"privacy": "private", "grants": [{"username": "alice", "level": "owner",
                                             "until": "2030-01-01"}]}, []),
        ({"privacy": "private", "grants": [["alice", "owner"]]}, []),
        ({"grants": [{"username": "alice", "level": "owner"}]}, ["privacy"]),
        ([], []),
    ]
    for request_body, words in cases:
        response = alice.put(url(folder, "/sharing"), json=request_body)
        assert_error(response, 422, *words, case=request_body)
    assert sharing(alice, folder) == before
    assert bob.get(url(folder)).json()["access"] == "viewer"


def test_odd_usernames_in_grants_are_422_not_a_crash(alice, lenient):
    folder = alice.create("folder", "F")
    failures = []
    for username in ["bob\x00", "\x00", "bob\n", "\udcff"]:
        body = {"privacy": "private", "grants": [{"username": "alice", "level": "owner"},
                                                 {"username": username, "level": "viewer"}]}
        response = lenient.put(url(folder, "/sharing"), content=json.dumps(body),
                               headers={**alice.headers, "Content-Type": "application/json"})
        if response.status_code != 422:
            failures.append((username, response.status_code, response.text[:120]))
    assert not failures, "\n".join(map(repr, failures))
    assert grants_of(sharing(alice, folder)) == {"alice": "owner"}


def test_unknown_and_malformed_elements(alice):
    missing = str(uuid.uuid4())
    assert_error(alice.get(url(missing, "/sharing")), 404)
    assert_error(put(alice, {"id": missing}, {"alice": "owner"}), 404)
    assert_error(alice.get(url("not-a-uuid", "/sharing")), 404)
    assert_error(put(alice, {"id": "not-a-uuid"}, {"alice": "owner"}), 404)


# --- who may see and edit sharing (AC-2) --------------------------------------------------------


def test_only_owners_edit_sharing(alice, bob, carol, make_user):
    dave = make_user("dave")
    folder = alice.create("folder", "F")
    share(alice, folder, bob="viewer", carol="collaborator")

    for user in (bob, carol):
        seen = sharing(user, folder)
        assert seen["can_edit"] is False
        assert grants_of(seen) == {"alice": "owner", "bob": "viewer", "carol": "collaborator"}
        assert_error(put(user, folder, {user.username: "owner"}), 403, "owner",
                     case=user.username)
        assert_error(put(user, folder, {"alice": "owner", user.username: "owner"}), 403,
                     case=user.username)
    assert_error(dave.get(url(folder, "/sharing")), 404)
    assert_error(put(dave, folder, {"dave": "owner"}), 404)
    assert grants_of(sharing(alice, folder)) == {"alice": "owner", "bob": "viewer",
                                                 "carol": "collaborator"}
    # Levels are what they say: a collaborator writes, a viewer does not.
    assert carol.create("workflow", "By carol", folder["id"])["access"] == "collaborator"
    assert_error(bob.post(ELEMENTS, json={"kind": "workflow", "name": "By bob",
                                          "parent_id": folder["id"]}), 403, "collaborator")
    assert_error(bob.patch(url(folder), json={"name": "Bob's"}), 403)


def test_a_second_owner_may_share_and_ownership_can_be_handed_over(alice, bob, carol):
    folder = alice.create("folder", "F")
    share(alice, folder, bob="owner")
    assert sharing(bob, folder)["can_edit"] is True
    body = put(bob, folder, {"bob": "owner", "carol": "viewer"})
    assert body.status_code == 200, body.text
    assert grants_of(body.json()) == {"bob": "owner", "carol": "viewer"}
    assert_error(alice.get(url(folder)), 404)

    handed = put(bob, folder, {"carol": "owner", "bob": "viewer"})
    assert handed.status_code == 200
    assert handed.json()["can_edit"] is False
    assert_error(put(bob, folder, {"bob": "owner"}), 403)
    assert sharing(carol, folder)["can_edit"] is True


# --- roles (ADM-2) ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["workflow-admin", "customer-admin"])
def test_workflow_admins_see_and_edit_everything(alice, bob, make_user, role):
    admin = make_user("wadmin", roles=[role])
    folder = alice.create("folder", "Alice's private", description="secret")
    workflow = alice.create("workflow", "W", folder["id"], workflow_type="spa")

    assert folder["id"] in visible_ids(admin)
    seen = admin.get(url(folder)).json()
    assert seen["access"] == "owner"
    assert seen["description"] == "secret"
    assert [s["name"] for s in admin.children(workflow["id"])] == [
        "Screening", "Imaging", "Processing"]
    panel = sharing(admin, folder)
    assert panel["can_edit"] is True
    assert grants_of(panel) == {"alice": "owner"}

    body = put(admin, workflow, {"alice": "owner", "bob": "viewer"})
    assert body.status_code == 200, body.text
    assert bob.get(url(workflow)).json()["access"] == "viewer"
    created = admin.create("workflow", "Admin's", folder["id"])
    assert created["creator"] == "wadmin"
    assert alice.get(url(created)).json()["access"] == "owner"
    renamed = admin.patch(url(folder), json={"name": "Renamed by admin"})
    assert renamed.status_code == 200
    assert alice.get(url(folder)).json()["name"] == "Renamed by admin"
    assert admin.delete(url(created)).status_code == 202
    assert_error(alice.get(url(created)), 404)


def test_other_roles_do_not_open_the_workspace(alice, make_user):
    folder = alice.create("folder", "Private")
    for role in ("user-manager", "license-manager", "customer-role-manager"):
        user = make_user(role.replace("-", ""), roles=[role])
        assert_error(user.get(url(folder)), 404, case=role)
        assert folder["id"] not in visible_ids(user)


# --- user auto-completion -----------------------------------------------------------------------


def test_users_autocomplete(client, alice, bob, make_user):
    make_user("bobby", email="bobby@lab.example.org")
    make_user("robert", email="bob.r@example.org")
    make_user("under_score")

    def usernames(**params) -> list[str]:
        response = alice.get(USERS, params=params)
        assert response.status_code == 200, response.text
        for user in response.json():
            assert set(user) >= {"username", "display_name", "email"}
            assert "password" not in str(user).lower()
        return sorted(u["username"] for u in response.json())

    assert usernames(q="bo") == ["bob", "bobby", "robert"]
    assert usernames(q="BOB") == ["bob", "bobby", "robert"]
    assert usernames(q="bobb") == ["bobby"]
    assert usernames(q="alice@ex") == ["alice"]
    assert usernames(q="zzz") == []
    assert usernames(q="_") == []
    assert usernames(q="under_") == ["under_score"]
    assert len(usernames(q="bo", limit=1)) == 1
    everyone = usernames(q="")
    assert {"alice", "bob", "bobby", "robert", "under_score"} <= set(everyone)

    [entry] = alice.get(USERS, params={"q": "bobby"}).json()
    assert entry["username"] == "bobby"
    assert entry["email"] == "bobby@lab.example.org"
    assert entry["display_name"]

    for params in ({"q": "b", "limit": 0}, {"q": "b", "limit": 101}, {"q": "x" * 151},
                   {"q": "b", "limit": "many"}):
        assert_error(alice.get(USERS, params=params), 422, case=params)
    assert_error(client.get(USERS, params={"q": "bo"}), 401)


def test_users_autocomplete_with_odd_characters_never_crashes(alice, lenient):
    failures = []
    for q in ["\x00", "bo\x00b", "\\", "bo\\"]:
        response = lenient.get(USERS, headers=alice.headers, params={"q": q})
        if response.status_code not in (200, 422):
            failures.append((q, response.status_code, response.text[:120]))
        elif response.status_code == 200 and response.json() != []:
            failures.append((q, "matched", response.json()))
    assert not failures, "\n".join(map(repr, failures))
