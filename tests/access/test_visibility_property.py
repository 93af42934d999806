"""Who sees what, and who may do what, through the REST API (SPEC WS-1, AC-1 … AC-5).

A property test builds random trees, random grants, random breaks of inheritance and random
public switches through the API, then compares every user's view of every element (listings,
GET, path, sharing panel) and the status code of every action they try with `Reference`: a
plain model written from the spec alone, which knows nothing of how cryovault stores or
computes permissions. Two deterministic tests pin the classic scenarios down.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

API = "/api/v1/elements"

# --- The reference: SPEC WS-1 and AC-1 … AC-5, written out plainly --------------------------

CARD, VIEWER, COLLABORATOR, OWNER = 0, 1, 2, 3
LEVEL_OF = {"viewer": VIEWER, "collaborator": COLLABORATOR, "owner": OWNER}
NAME_OF = {CARD: "card", VIEWER: "viewer", COLLABORATOR: "collaborator", OWNER: "owner"}

REGULAR = ("ann", "ben", "cat")
ADMINS = {"eve": "workflow-admin", "fay": "customer-admin"}  # owners of everything (ADM-2)
EVERYONE = (*REGULAR, *ADMINS)

MAX_FOLDER_DEPTH = 2  # platform preference default: a root folder is at depth 0
CHILD_KINDS: dict[str | None, tuple[str, ...]] = {
    None: ("folder", "workflow", "file"),
    "folder": ("folder", "workflow"),
    "workflow": ("step",),
    "step": ("dataset", "file"),
    "dataset": ("file",),
    "file": (),
}
TEMPLATE_STEPS = {"free": (), "spa": ("Screening", "Imaging", "Processing")}


@dataclass
class PermissionSet:
    defined_on: int  # the element that owns this set (a root, or where inheritance was broken)
    grants: dict[str, int]  # username -> level
    everybody: int | None = None


@dataclass
class Node:
    id: str
    kind: str
    parent: int | None
    depth: int  # 0 at the root
    workflow_type: str | None
    template_step: bool
    permission_set: int  # index into Reference.sets: a reference, shared with other nodes


class Reference:
    """Elements and permission sets, with the spec's rules applied literally."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.sets: list[PermissionSet] = []
        self.deleted: set[int] = set()

    # structure
    def alive(self) -> list[int]:
        return [i for i in range(len(self.nodes)) if i not in self.deleted]

    def children(self, parent: int | None) -> list[int]:
        return [i for i in self.alive() if self.nodes[i].parent == parent]

    def subtree(self, top: int) -> list[int]:
        """`top` and everything below it."""
        found = [top]
        for i in found:
            found.extend(self.children(i))
        return found

    def ancestors(self, i: int) -> list[int]:
        """From the root down to `i`, inclusive."""
        chain = [i]
        while self.nodes[chain[-1]].parent is not None:
            chain.append(self.nodes[chain[-1]].parent)
        return chain[::-1]

    def child_kinds(self, i: int | None) -> tuple[str, ...]:
        if i is None:
            return CHILD_KINDS[None]
        node = self.nodes[i]
        kinds = CHILD_KINDS[node.kind]
        if node.kind == "workflow" and TEMPLATE_STEPS[node.workflow_type]:
            return ()  # template workflows have their fixed steps only (WS-2)
        return kinds

    # permissions
    def own_set(self, i: int) -> bool:
        return self.sets[self.nodes[i].permission_set].defined_on == i

    def level(self, user: str, i: int) -> int | None:
        """AC-2: the best of the user's grant and Everybody's in the element's set."""
        if user in ADMINS:
            return OWNER
        pset = self.sets[self.nodes[i].permission_set]
        granted = [lv for lv in (pset.grants.get(user), pset.everybody) if lv is not None]
        return max(granted, default=None)

    def access(self, user: str, i: int) -> int | None:
        """A level; CARD when only a set defined strictly below grants something (AC-4);
        None when the element is invisible (AC-5)."""
        level = self.level(user, i)
        if level is not None:
            return level
        below = self.subtree(i)[1:]
        if any(self.own_set(d) and self.level(user, d) is not None for d in below):
            return CARD
        return None

    # changes
    def add(self, element: dict, parent: int | None, creator: str, template_step=False) -> int:
        index = len(self.nodes)
        if parent is None:  # AC-1: a new root element is private to its creator
            self.sets.append(PermissionSet(index, {creator: OWNER}))
            pset = len(self.sets) - 1
        else:  # AC-3: a reference to the parent's set
            pset = self.nodes[parent].permission_set
        depth = 0 if parent is None else self.nodes[parent].depth + 1
        self.nodes.append(Node(element["id"], element["kind"], parent, depth,
                               element["workflow_type"], template_step, pset))
        return index

    def share(self, i: int, grants: dict[str, int], everybody: int | None) -> None:
        """AC-3: replacing the grants breaks inheritance for `i` and whatever below it still
        referred to the inherited set."""
        node = self.nodes[i]
        if self.own_set(i):
            self.sets[node.permission_set] = PermissionSet(i, dict(grants), everybody)
            return
        inherited = node.permission_set
        self.sets.append(PermissionSet(i, dict(grants), everybody))
        for d in self.subtree(i):
            if self.nodes[d].permission_set == inherited:
                self.nodes[d].permission_set = len(self.sets) - 1

    def delete(self, i: int) -> None:
        self.deleted.update(self.subtree(i))

    # what the API should say
    def sharing(self, i: int) -> dict:
        pset = self.sets[self.nodes[i].permission_set]
        return {
            "privacy": "public" if pset.everybody is not None else "private",
            "everybody": None if pset.everybody is None else NAME_OF[pset.everybody],
            "inherited": pset.defined_on != i,
            "grants": sorted((u, NAME_OF[lv]) for u, lv in pset.grants.items()),
        }

    def features(self) -> dict[str, bool]:
        """What an example exercises, for `--hypothesis-show-statistics`."""
        alive = self.alive()
        used = {self.nodes[i].permission_set for i in alive}
        return {
            "a card": any(self.access(u, i) == CARD for u in REGULAR for i in alive),
            "a broken inheritance": any(
                self.own_set(i) and self.nodes[i].parent is not None for i in alive),
            "a public set": any(self.sets[s].everybody is not None for s in used),
            "a set shared by several elements": len(used) < len(alive),
        }

    def describe(self) -> str:
        lines = []
        for i in self.alive():
            node = self.nodes[i]
            pset = self.sets[node.permission_set]
            lines.append(
                f"{'  ' * node.depth}#{i} {node.kind} {node.workflow_type or ''} "
                f"set#{node.permission_set} (on #{pset.defined_on}) "
                f"grants={ {u: NAME_OF[lv] for u, lv in pset.grants.items()} } "
                f"everybody={pset.everybody}"
            )
        return "\n".join(lines)


def expected_status(access: int | None, needed: int, success: int) -> int:
    """AC-5: invisible answers 404 (existence is never revealed), visible but too low 403."""
    if access is None:
        return 404
    return success if access >= needed else 403


# --- Driving the API -------------------------------------------------------------------------


def list_all(user, parent_id: str | None) -> tuple[int, list[dict]]:
    """Every page of a listing: (status, items)."""
    params: dict = {"limit": 1000}
    if parent_id:
        params["parent_id"] = parent_id
    items: list[dict] = []
    while True:
        response = user.get(API, params=params)
        if response.status_code != 200:
            return response.status_code, items
        page = response.json()
        items += page["items"]
        if not page["next_cursor"]:
            return 200, items
        params["cursor"] = page["next_cursor"]


def create_body(model: Reference, parent: int | None, kind: str, workflow_type: str) -> dict:
    body: dict = {"kind": kind, "name": f"{kind} {len(model.nodes)}",
                  "parent_id": None if parent is None else model.nodes[parent].id,
                  "description": f"secret of {kind} {len(model.nodes)}"}
    if kind == "workflow":
        body["workflow_type"] = workflow_type
    if kind == "dataset":
        body["dataset_type"] = "free"
    return body


def record_created(model: Reference, people, element: dict, parent: int | None, creator: str):
    index = model.add(element, parent, creator)
    steps = TEMPLATE_STEPS[element["workflow_type"]] if element["kind"] == "workflow" else ()
    if steps:  # WS-2: the template's steps come with the workflow, top to bottom
        status, items = list_all(people["eve"], element["id"])
        assert status == 200
        assert [(s["kind"], s["name"]) for s in items] == [("step", n) for n in steps]
        for step in items:
            model.add(step, index, creator, template_step=True)


def shown_as(element: dict, access: int | None) -> bool:
    """The element is shown with `access`; a card with its title only, nothing more (AC-4)."""
    if access is None or element["access"] != NAME_OF[access]:
        return False
    content = ("description", "creator", "created_at", "status")
    if access == CARD:
        return all(element[k] is None for k in content)
    return element["description"] is not None and element["creator"] is not None


def check_views(model: Reference, people, *, actions: bool) -> None:
    """Compare every user's view of every element with the reference; with `actions`, also the
    status of each action they may or may not take."""
    ours = {model.nodes[i].id: i for i in model.alive()}
    gone = [model.nodes[i].id for i in model.deleted]
    context = "\n" + model.describe()
    for name, user in people.items():
        # Files hold nothing; admins are alike, one of them is enough beyond the root.
        parents = [i for i in model.alive() if model.nodes[i].kind != "file"]
        for parent in [None, *(parents if name not in ADMINS or name == "eve" else [])]:
            parent_access = None if parent is None else model.access(name, parent)
            status, items = list_all(user, None if parent is None else model.nodes[parent].id)
            if parent is not None and parent_access is None:
                assert status == 404, (name, "list", parent, status, context)
                continue
            assert status == 200, (name, "list", parent, status, context)
            listed = {ours[e["id"]]: e for e in items if e["id"] in ours}
            if parent is not None:
                assert len(listed) == len(items), (name, "foreign children", parent, context)
            expected = {c: model.access(name, c) for c in model.children(parent)}
            expected = {c: a for c, a in expected.items() if a is not None}
            assert set(listed) == set(expected), (name, "list", parent, listed, context)
            for c, element in listed.items():
                assert shown_as(element, expected[c]), (
                    name, "list", parent, c, element, context)
            assert not {e["id"] for e in items} & set(gone), (name, "deleted listed", context)

        for i in model.alive():
            node = model.nodes[i]
            url = f"{API}/{node.id}"
            access = model.access(name, i)
            where = (name, i, node.kind, access, context)

            response = user.get(url)
            assert response.status_code == expected_status(access, CARD, 200), (
                *where, response.text)
            if access is not None:
                assert shown_as(response.json(), access), (*where, response.text)
            if name in ADMINS and name != "eve":
                continue

            response = user.get(f"{url}/path")
            assert response.status_code == expected_status(access, CARD, 200), where
            if access is not None:
                path = [ours[entry["id"]] for entry in response.json()]
                assert path == model.ancestors(i), (*where, path)

            response = user.get(f"{url}/sharing")
            assert response.status_code == expected_status(access, VIEWER, 200), (
                *where, response.text)
            if response.status_code == 200:
                sharing = response.json()
                actual = {k: sharing[k] for k in ("privacy", "everybody", "inherited")}
                actual["grants"] = sorted((g["username"], g["level"]) for g in sharing["grants"])
                assert actual == model.sharing(i), (*where, actual)
                assert sharing["can_edit"] == (access == OWNER), (*where, sharing)

            if not actions:
                continue
            response = user.patch(url, json={"description": f"edited by {name}"})
            assert response.status_code == expected_status(access, COLLABORATOR, 200), (
                *where, response.text)
            if response.status_code == 200:
                assert response.json()["access"] == NAME_OF[access], where

            # Actions that would change the tree are only tried where they must be refused.
            kinds = model.child_kinds(i)
            if node.kind == "folder" and node.depth >= MAX_FOLDER_DEPTH:
                kinds = tuple(k for k in kinds if k != "folder")
            if kinds and (access is None or access < COLLABORATOR):
                body = create_body(model, i, kinds[0], "free")
                response = user.post(API, json=body)
                assert response.status_code == expected_status(access, COLLABORATOR, 201), (
                    *where, "create", response.text)
            if access is None or access < OWNER:
                response = user.put(f"{url}/sharing", json={
                    "privacy": "public", "everybody": "collaborator",
                    "grants": [{"username": name, "level": "owner"}]})
                assert response.status_code == expected_status(access, OWNER, 200), (
                    *where, "share", response.text)
                if not node.template_step:
                    response = user.delete(url)
                    assert response.status_code == expected_status(access, OWNER, 202), (
                        *where, "delete", response.text)

    for element_id in gone:
        for user in people.values():
            assert user.get(f"{API}/{element_id}").status_code == 404, ("deleted", element_id)


# --- Random operations, drawn against the current reference ----------------------------------

PUBLICITY = [("private", None), ("public", None), ("public", "viewer"),
             ("public", "collaborator")]
GRANT_LEVELS = [None, None, None, "viewer", "collaborator", "owner"]  # mostly no grant


def draw_create(data, model: Reference, people) -> None:
    parents = [None, *(i for i in model.alive() if model.child_kinds(i))]
    parent = data.draw(st.sampled_from(parents), label="parent")
    kinds = model.child_kinds(parent)
    kind = data.draw(st.sampled_from(kinds), label="kind")
    workflow_type = data.draw(st.sampled_from(sorted(TEMPLATE_STEPS)), label="workflow_type")
    actor = data.draw(st.sampled_from(EVERYONE), label="actor")
    access = OWNER if parent is None else model.access(actor, parent)
    response = people[actor].post(API, json=create_body(model, parent, kind, workflow_type))
    where = ("create", kind, "in", parent, "by", actor, access, "\n" + model.describe())
    too_deep = (kind == "folder" and parent is not None
                and model.nodes[parent].depth + 1 > MAX_FOLDER_DEPTH)
    if too_deep and access is not None:
        # WS-1: the folder depth limit. Visible but not a collaborator: refused either way.
        allowed = {422} if access >= COLLABORATOR else {403, 422}
        assert response.status_code in allowed, (*where, response.text)
        return
    assert response.status_code == expected_status(access, COLLABORATOR, 201), (
        *where, response.text)
    if response.status_code == 201:
        element = response.json()
        # The creator of a root owns it; a child inherits the parent's set, so the same level.
        assert element["access"] == NAME_OF[access], (*where, element)
        record_created(model, people, element, parent, actor)


def draw_share(data, model: Reference, people) -> None:
    # Mostly below a root, to break inheritance; mostly by an owner, for it to take effect.
    inner = [i for i in model.alive() if model.nodes[i].parent is not None]
    below_root = inner and data.draw(st.integers(0, 3), label="below a root") > 0
    target = data.draw(st.sampled_from(inner if below_root else model.alive()), label="target")
    owners = [u for u in REGULAR if model.access(u, target) == OWNER]
    by_owner = owners and data.draw(st.integers(0, 3), label="by a regular owner") > 0
    actor = data.draw(st.sampled_from(owners if by_owner else EVERYONE), label="actor")
    privacy, everybody = data.draw(st.sampled_from(PUBLICITY), label="publicity")
    levels = data.draw(st.fixed_dictionaries(
        {u: st.sampled_from(GRANT_LEVELS) for u in EVERYONE}), label="grants")
    grants = {u: level for u, level in levels.items() if level is not None}
    access = model.access(actor, target)
    ownerless = (access == OWNER and data.draw(st.integers(0, 7), label="ownerless") == 0)
    if ownerless:
        grants = {u: level for u, level in grants.items() if level != "owner"}
    elif "owner" not in grants.values():
        grants[data.draw(st.sampled_from(EVERYONE), label="owner")] = "owner"
    body = {"privacy": privacy, "everybody": everybody,
            "grants": [{"username": u, "level": level} for u, level in grants.items()]}
    response = people[actor].put(f"{API}/{model.nodes[target].id}/sharing", json=body)
    where = ("share", target, "by", actor, access, body, "\n" + model.describe())
    if ownerless:  # AC-2: an element always keeps at least one owner
        assert response.status_code == 422, (*where, response.text)
        return
    assert response.status_code == expected_status(access, OWNER, 200), (*where, response.text)
    if response.status_code == 200:
        everybody_level = None if privacy == "private" else LEVEL_OF[everybody or "viewer"]
        model.share(target, {u: LEVEL_OF[level] for u, level in grants.items()},
                    everybody_level)
        sharing = response.json()
        assert sharing["inherited"] is False, where
        assert sharing["everybody"] == model.sharing(target)["everybody"], (*where, sharing)
        assert sharing["can_edit"] == (model.access(actor, target) == OWNER), (*where, sharing)


def draw_delete(data, model: Reference, people) -> None:
    candidates = [i for i in model.alive() if not model.nodes[i].template_step]
    target = data.draw(st.sampled_from(candidates), label="delete")
    owners = [u for u in EVERYONE if model.access(u, target) == OWNER]
    actor = data.draw(st.sampled_from(owners), label="deleted by")
    response = people[actor].delete(f"{API}/{model.nodes[target].id}")
    assert response.status_code == 202, (target, actor, response.text, model.describe())
    model.delete(target)


@pytest.fixture
def people(make_user) -> dict:
    """The users of every example. They are made once per test (hashing passwords is slow):
    each example builds its own new root elements, and whether an element is visible depends
    only on the permission sets at and below it, so earlier examples cannot leak into a later
    one; listings are filtered to the example's own elements."""
    users = {name: make_user(name) for name in REGULAR}
    users.update({name: make_user(name, roles=(role,)) for name, role in ADMINS.items()})
    return users


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_api_visibility_and_actions_follow_the_spec(people, data):
    model = Reference()
    operations = data.draw(st.lists(st.sampled_from(["create", "share"]),
                                    min_size=4, max_size=10), label="operations")
    draw_create(data, model, people)  # a first root, so there is something to share
    for operation in operations:
        if operation == "create":
            draw_create(data, model, people)
        else:
            draw_share(data, model, people)
    for feature, present in model.features().items():
        event(f"{feature}: {present}")
    check_views(model, people, actions=True)

    if data.draw(st.booleans(), label="delete something"):
        draw_delete(data, model, people)  # AC-4 cards must vanish with the sets below them
        check_views(model, people, actions=False)


# --- Deterministic scenarios -----------------------------------------------------------------


def _status(user, method: str, url: str, **kw) -> int:
    return getattr(user, method)(url, **kw).status_code


def _share(owner, element: dict, grants: dict[str, str], everybody: str | None = None) -> dict:
    body = {"privacy": "public" if everybody else "private", "everybody": everybody,
            "grants": [{"username": u, "level": level} for u, level in grants.items()]}
    response = owner.put(f"{API}/{element['id']}/sharing", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _access(user, element: dict) -> str | None:
    response = user.get(f"{API}/{element['id']}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()["access"]


def test_workflow_shared_inside_private_folder(make_user):
    """AC-4: alice's private folder holds a workflow shared with bob as viewer."""
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    folder = alice.create("folder", "F", description="alice's plans")
    workflow = alice.create("workflow", "W", folder["id"], workflow_type="spa")
    other = alice.create("workflow", "W2", folder["id"], workflow_type="free")
    steps = alice.children(workflow["id"])
    assert [s["name"] for s in steps] == ["Screening", "Imaging", "Processing"]
    sharing = _share(alice, workflow, {"alice": "owner", "bob": "viewer"})
    assert sharing["inherited"] is False

    [card] = [e for e in bob.children() if e["id"] == folder["id"]]
    assert card["access"] == "card"
    assert card["description"] is None and card["creator"] is None  # title only
    got = bob.get(f"{API}/{folder['id']}")
    assert got.status_code == 200 and got.json()["access"] == "card"
    assert got.json()["description"] is None
    assert _status(bob, "get", f"{API}/{folder['id']}/sharing") == 403
    assert [(e["id"], e["access"]) for e in bob.children(folder["id"])] == [
        (workflow["id"], "viewer")]
    assert _access(bob, other) is None
    assert _access(bob, workflow) == "viewer"
    assert [(s["id"], s["access"]) for s in bob.children(workflow["id"])] == [
        (s["id"], "viewer") for s in steps]
    path = bob.get(f"{API}/{steps[0]['id']}/path").json()
    assert [p["id"] for p in path] == [folder["id"], workflow["id"], steps[0]["id"]]

    dataset = {"kind": "dataset", "name": "D", "parent_id": steps[0]["id"],
               "dataset_type": "free"}
    assert _status(bob, "post", API, json=dataset) == 403
    assert _status(bob, "post", API, json={"kind": "workflow", "name": "X",
                                           "parent_id": folder["id"]}) == 403
    assert _status(bob, "patch", f"{API}/{folder['id']}", json={"description": "x"}) == 403
    assert _status(bob, "patch", f"{API}/{workflow['id']}", json={"description": "x"}) == 403
    assert _status(bob, "delete", f"{API}/{workflow['id']}") == 403
    assert _status(bob, "get", f"{API}/{workflow['id']}/sharing") == 200

    # Somebody with no grant sees none of it.
    assert folder["id"] not in {e["id"] for e in carol.children()}
    for element in (folder, workflow, other, *steps):
        assert _status(carol, "get", f"{API}/{element['id']}") == 404
        assert _status(carol, "patch", f"{API}/{element['id']}", json={"name": "x"}) == 404
    assert _status(carol, "post", API, json=dataset) == 404


def test_inheritance_is_by_reference_until_broken(make_user):
    """AC-3: later changes of a parent's set reach the children that still inherit it."""
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    admin = make_user("root", roles=("workflow-admin",))
    folder = alice.create("folder", "F")
    sub = alice.create("folder", "Sub", folder["id"])
    kept = alice.create("workflow", "Kept", sub["id"])
    broken = alice.create("workflow", "Broken", sub["id"])
    step = alice.create("step", "S", broken["id"])

    _share(alice, broken, {"alice": "owner", "bob": "collaborator"})
    sharing = alice.get(f"{API}/{step['id']}/sharing").json()
    assert sharing["inherited"] is True and sharing["inherited_from"]["id"] == broken["id"]
    # Made after the break, bob's dataset inherits the workflow's new set.
    dataset = bob.create("dataset", "D", step["id"], dataset_type="free")
    assert dataset["access"] == "collaborator"

    # The root folder goes public: what still inherits its set follows, the broken part not.
    _share(alice, folder, {"alice": "owner"}, everybody="viewer")
    assert _access(carol, folder) == "viewer"
    assert _access(carol, sub) == "viewer"
    assert _access(carol, kept) == "viewer"
    assert _access(carol, broken) is None
    assert _access(carol, dataset) is None
    assert _access(bob, sub) == "viewer"
    assert _access(bob, broken) == "collaborator"

    # A second share of an element that already has its own set keeps it its own.
    _share(alice, broken, {"alice": "owner", "carol": "viewer"})
    assert _access(bob, broken) is None and _access(bob, dataset) is None
    assert _access(carol, dataset) == "viewer"
    # Back to private: carol still sees the path down to what is shared with her.
    _share(alice, folder, {"alice": "owner"})
    assert [_access(carol, e) for e in (folder, sub, kept, broken)] == [
        "card", "card", None, "viewer"]
    assert _access(bob, folder) is None
    for element in (folder, sub, kept, broken, step, dataset):
        assert _access(admin, element) == "owner"
