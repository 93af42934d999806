"""API tests of the hierarchy: create, list, get, edit, path and delete elements
(SPEC WS-1 … WS-4, WS-6, ADM-5; DESIGN "Stable API contract")."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from fastapi.testclient import TestClient

from cryovault.workspace.elements import create_element
from tests.helpers import assert_error

ELEMENTS = "/api/v1/elements"
PREFERENCES = "/api/v1/preferences/platform"
ELEMENT_FIELDS = {
    "id", "kind", "name", "parent_id", "description", "status", "workflow_type",
    "dataset_type", "position", "creator", "created_at", "updated_at", "access",
}
TEMPLATE_STEPS = {
    "free": [],
    "spa": ["Screening", "Imaging", "Processing"],
    "spa_qm": ["Screening", "Imaging", "Processing"],
    "spa_lp": ["Screening", "Imaging", "Processing"],
    "et": ["Vitrification", "Milling", "Imaging", "Processing"],
}
STATUSES = ["not_started", "in_progress", "completed", "suspended", "warning"]
DATASET_TYPES = ["free", "epu_run", "tomo_run", "lp_run"]


@pytest.fixture
def lenient(app) -> TestClient:
    """A client that returns a server error as the 500 response a caller would get, instead of
    raising it in the test, so that one crash does not hide the cases after it."""
    return TestClient(app, raise_server_exceptions=False)


def url(element: dict | str, suffix: str = "") -> str:
    element_id = element["id"] if isinstance(element, dict) else element
    return f"{ELEMENTS}/{element_id}{suffix}"


def post(user, kind: str, name: str, parent: dict | None = None, **extra):
    body = {"kind": kind, "name": name, "parent_id": parent["id"] if parent else None, **extra}
    return user.post(ELEMENTS, json=body)


def step_named(user, workflow: dict, name: str) -> dict:
    return next(s for s in user.children(workflow["id"]) if s["name"] == name)


def cursor_of(value: object) -> str:
    """A cursor as a client could forge one: base64url of any JSON."""
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def share(owner, element: dict, **levels: str) -> None:
    grants = [{"username": owner.username, "level": "owner"}]
    grants += [{"username": name, "level": level} for name, level in levels.items()]
    response = owner.put(url(element, "/sharing"), json={"privacy": "private", "grants": grants})
    assert response.status_code == 200, response.text


# --- creating every kind -----------------------------------------------------------------------


def test_create_every_kind_returns_the_contract_element(alice):
    folder = alice.create("folder", "Project A", description="apoferritin")
    workflow = alice.create("workflow", "Free work", folder["id"], workflow_type="free")
    step = alice.create("step", "Grid prep", workflow["id"])
    dataset = alice.create("dataset", "Run 1", step["id"], dataset_type="free")
    in_dataset = alice.create("file", "notes.txt", dataset["id"])
    in_step = alice.create("file", "protocol.pdf", step["id"])
    at_root = alice.create("file", "readme.md")

    for element in (folder, workflow, step, dataset, in_dataset, in_step, at_root):
        assert set(element) >= ELEMENT_FIELDS, element
        uuid.UUID(element["id"])
        assert element["creator"] == "alice"
        assert element["access"] == "owner"
        assert element["created_at"] and element["updated_at"]
        assert alice.get(url(element)).json() == element

    assert (folder["kind"], folder["parent_id"], folder["description"]) == (
        "folder", None, "apoferritin")
    assert (workflow["kind"], workflow["parent_id"], workflow["workflow_type"]) == (
        "workflow", folder["id"], "free")
    assert (step["kind"], step["parent_id"], step["status"]) == ("step", workflow["id"],
                                                                 "not_started")
    assert (dataset["kind"], dataset["dataset_type"], dataset["status"]) == (
        "dataset", "free", "not_started")
    assert (in_dataset["kind"], in_dataset["parent_id"]) == ("file", dataset["id"])
    assert (in_step["kind"], in_step["parent_id"]) == ("file", step["id"])
    assert (at_root["kind"], at_root["parent_id"]) == ("file", None)
    # Only steps and datasets have a status; only workflows/datasets their type.
    for element in (folder, workflow, in_dataset, in_step, at_root):
        assert element["status"] is None, element
    for element in (folder, step, dataset, in_step):
        assert element["workflow_type"] is None, element
    for element in (folder, workflow, step, in_step):
        assert element["dataset_type"] is None, element

    assert {e["id"] for e in alice.children()} == {folder["id"], at_root["id"]}
    assert {e["id"] for e in alice.children(step["id"])} == {dataset["id"], in_step["id"]}


def test_defaults_free_workflow_and_free_dataset(alice):
    workflow = alice.create("workflow", "Untyped")
    assert workflow["workflow_type"] == "free"
    step = alice.create("step", "Mine", workflow["id"])
    dataset = alice.create("dataset", "Untyped", step["id"])
    assert dataset["dataset_type"] == "free"


def test_workflow_templates_create_their_steps_in_order(alice):
    folder = alice.create("folder", "F")
    for workflow_type in TEMPLATE_STEPS:
        _check_template(alice, folder, workflow_type)


def _check_template(alice, folder: dict, workflow_type: str) -> None:
    workflow = alice.create("workflow", f"W {workflow_type}", folder["id"],
                            workflow_type=workflow_type)
    assert workflow["workflow_type"] == workflow_type
    expected = TEMPLATE_STEPS[workflow_type]

    steps = alice.children(workflow["id"])  # no sort given: template order
    assert [s["name"] for s in steps] == expected
    assert all(s["kind"] == "step" and s["parent_id"] == workflow["id"] for s in steps)
    assert all(s["status"] == "not_started" for s in steps)
    positions = [s["position"] for s in steps]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)

    if expected:
        by_name = alice.children(workflow["id"], sort="name")
        assert [s["name"] for s in by_name] == sorted(expected, key=str.casefold)
        reverse = alice.children(workflow["id"], sort="position", order="desc")
        assert [s["name"] for s in reverse] == expected[::-1]
    else:
        # A free workflow takes the user's steps, listed in the order they were added.
        for name in ("Zeta", "alpha", "Mid"):
            alice.create("step", name, workflow["id"])
        assert [s["name"] for s in alice.children(workflow["id"])] == ["Zeta", "alpha", "Mid"]


def test_unknown_workflow_type_is_422(alice):
    assert_error(post(alice, "workflow", "W", workflow_type="cryo-sted"), 422, "workflow type",
                 "cryo-sted")
    assert_error(post(alice, "workflow", "W", workflow_type=""), 422, "workflow type")
    assert alice.children() == []


# --- dataset types per step (WS-4) --------------------------------------------------------------


DATASET_RULES = [
    # (workflow type, step, dataset types allowed)
    ("spa", "Screening", {"free", "epu_run"}),
    ("spa", "Imaging", {"free", "epu_run"}),
    ("spa", "Processing", {"free"}),
    ("spa_qm", "Imaging", {"free", "epu_run"}),
    ("spa_qm", "Processing", {"free"}),
    ("spa_lp", "Imaging", {"free", "epu_run"}),
    ("spa_lp", "Processing", {"free", "lp_run"}),
    ("et", "Vitrification", {"free"}),
    ("et", "Milling", {"free"}),
    ("et", "Imaging", {"free", "tomo_run"}),
    ("et", "Processing", {"free"}),
    ("free", None, {"free"}),
]


def test_dataset_types_allowed_per_step(alice):
    workflows = {t: alice.create("workflow", t, workflow_type=t) for t in TEMPLATE_STEPS}
    for workflow_type, step_name, allowed in DATASET_RULES:
        _check_dataset_types(alice, workflows[workflow_type], step_name, allowed)


def _check_dataset_types(alice, workflow: dict, step_name: str | None, allowed: set) -> None:
    if step_name is None:
        step = alice.create("step", "My step", workflow["id"])
    else:
        step = step_named(alice, workflow, step_name)
    for dataset_type in DATASET_TYPES:
        response = post(alice, "dataset", f"D {dataset_type}", step, dataset_type=dataset_type)
        if dataset_type in allowed:
            assert response.status_code == 201, (dataset_type, response.text)
            assert response.json()["dataset_type"] == dataset_type
        else:
            assert_error(response, 422, dataset_type, step["name"], case=dataset_type)
    names = sorted(d["name"] for d in alice.children(step["id"]))
    assert names == sorted(f"D {t}" for t in allowed)


def test_unknown_dataset_type_is_422(alice):
    workflow = alice.create("workflow", "W", workflow_type="spa")
    step = step_named(alice, workflow, "Imaging")
    assert_error(post(alice, "dataset", "D", step, dataset_type="movies"), 422, "dataset type",
                 "movies")
    assert_error(post(alice, "dataset", "D", step, dataset_type=""), 422, "dataset type")
    assert alice.children(step["id"]) == []


def test_types_only_on_their_kind(alice):
    workflow = alice.create("workflow", "W", workflow_type="free")
    for kind, parent in [("folder", None), ("step", workflow), ("file", None)]:
        assert_error(post(alice, kind, "X", parent, workflow_type="spa"), 422, "workflow_type",
                     case=kind)
        assert_error(post(alice, kind, "X", parent, dataset_type="free"), 422, "dataset_type",
                     case=kind)
    assert alice.children(workflow["id"]) == []


# --- files --------------------------------------------------------------------------------------


def test_files_refused_in_datasets_filled_by_the_platform(alice):
    for workflow_type, step_name, dataset_type in [
        ("spa", "Imaging", "epu_run"),
        ("et", "Imaging", "tomo_run"),
        ("spa_lp", "Processing", "lp_run"),
    ]:
        _check_managed_dataset(alice, workflow_type, step_name, dataset_type)


def _check_managed_dataset(alice, workflow_type: str, step_name: str, dataset_type: str) -> None:
    workflow = alice.create("workflow", workflow_type, workflow_type=workflow_type)
    step = step_named(alice, workflow, step_name)
    managed = alice.create("dataset", "Run", step["id"], dataset_type=dataset_type)
    assert_error(post(alice, "file", "movie.tiff", managed), 422, dataset_type, "file")
    assert alice.children(managed["id"]) == []
    # The same step takes files in a free dataset and directly.
    free = alice.create("dataset", "Manual", step["id"], dataset_type="free")
    assert alice.create("file", "movie.tiff", free["id"])["parent_id"] == free["id"]
    assert alice.create("file", "report.pdf", step["id"])["parent_id"] == step["id"]


# --- containment (WS-1) -------------------------------------------------------------------------


FORBIDDEN_CHILDREN = {
    None: ["step", "dataset"],
    "folder": ["step", "dataset", "file"],
    "workflow": ["folder", "workflow", "dataset", "file"],
    "step": ["folder", "workflow", "step"],
    "dataset": ["folder", "workflow", "step", "dataset"],
    "file": ["folder", "workflow", "step", "dataset", "file"],
}


def _one_of_each(alice) -> dict[str | None, dict | None]:
    folder = alice.create("folder", "F")
    workflow = alice.create("workflow", "W", folder["id"], workflow_type="free")
    step = alice.create("step", "S", workflow["id"])
    dataset = alice.create("dataset", "D", step["id"])
    file = alice.create("file", "f.txt", dataset["id"])
    return {None: None, "folder": folder, "workflow": workflow, "step": step,
            "dataset": dataset, "file": file}


def test_containment_rules_are_422_naming_the_rule(alice):
    parents = _one_of_each(alice)
    for parent_kind, kinds in FORBIDDEN_CHILDREN.items():
        parent = parents[parent_kind]
        before = alice.children(parent["id"] if parent else None)
        for kind in kinds:
            response = post(alice, kind, "Misplaced", parent)
            where = "root" if parent_kind is None else parent_kind
            assert_error(response, 422, kind, where, case=(parent_kind, kind))
        assert alice.children(parent["id"] if parent else None) == before


def test_allowed_children_are_created(alice):
    parents = _one_of_each(alice)
    allowed = {
        "folder": ["folder", "workflow"],
        "step": ["dataset", "file"],
        "dataset": ["file"],
    }
    for parent_kind, kinds in allowed.items():
        for kind in kinds:
            created = alice.create(kind, f"new {kind}", parents[parent_kind]["id"])
            assert created["kind"] == kind


def test_unknown_kind_is_422(alice):
    assert_error(post(alice, "sample", "X"), 422, "kind")
    assert_error(post(alice, "FOLDER", "X"), 422, "kind")


# --- folder depth and the preference (WS-1, ADM-5) ----------------------------------------------


def _folders(user, depth: int, parent: dict | None = None) -> list[dict]:
    """A chain of folders: depth 0 … `depth` below `parent` (or at the root)."""
    chain = []
    for level in range(depth + 1):
        parent = user.create("folder", f"Level {level}", parent["id"] if parent else None)
        chain.append(parent)
    return chain


def test_folder_depth_defaults_to_two(alice):
    assert alice.get(PREFERENCES).json()["max_folder_depth"] == 2
    chain = _folders(alice, 2)
    assert [f["name"] for f in chain] == ["Level 0", "Level 1", "Level 2"]
    assert_error(post(alice, "folder", "Level 3", chain[-1]), 422, "depth")
    assert alice.children(chain[-1]["id"]) == []
    # Workflows go at any depth.
    assert alice.create("workflow", "Deep", chain[-1]["id"])["kind"] == "workflow"


def test_preference_is_clamped_and_only_customer_admins_edit_it(alice, make_user):
    boss = make_user("boss", roles=["customer-admin"])
    assert_error(alice.patch(PREFERENCES, json={"max_folder_depth": 5}), 403, "admin")
    assert alice.get(PREFERENCES).json()["max_folder_depth"] == 2

    for requested, stored in [(-5, 0), (99, 10), (0, 0), (10**12, 10), (10, 10), (3, 3)]:
        response = boss.patch(PREFERENCES, json={"max_folder_depth": requested})
        assert response.status_code == 200, response.text
        assert response.json()["max_folder_depth"] == stored, requested
        assert alice.get(PREFERENCES).json()["max_folder_depth"] == stored

    for body in [{"max_folder_depth": "deep"}, {"max_folder_depth": 2.5},
                 {"max_folder_depth": [1]}, {"folder_depth": 2}]:
        assert_error(boss.patch(PREFERENCES, json=body), 422, case=body)
    assert alice.get(PREFERENCES).json()["max_folder_depth"] == 3


def test_workflow_admin_cannot_change_platform_preferences(make_user):
    admin = make_user("wfadmin", roles=["workflow-admin"])
    assert_error(admin.patch(PREFERENCES, json={"max_folder_depth": 4}), 403)


def test_preference_limits_new_folders_and_lowering_keeps_existing(alice, make_user):
    boss = make_user("boss", roles=["customer-admin"])
    chain = _folders(alice, 2)

    assert boss.patch(PREFERENCES, json={"max_folder_depth": 0}).status_code == 200
    # Existing folders stay, visible and usable.
    assert [f["id"] for f in alice.children(chain[0]["id"])] == [chain[1]["id"]]
    assert [f["id"] for f in alice.children(chain[1]["id"])] == [chain[2]["id"]]
    assert alice.get(url(chain[2])).status_code == 200
    assert alice.create("workflow", "Still fine", chain[2]["id"])["kind"] == "workflow"
    assert alice.patch(url(chain[2]), json={"name": "Renamed"}).status_code == 200
    # New nested folders are refused; root folders are not.
    assert_error(post(alice, "folder", "Nested", chain[0]), 422, "depth")
    assert alice.create("folder", "Another root")["kind"] == "folder"

    assert boss.patch(PREFERENCES, json={"max_folder_depth": 99}).status_code == 200
    deep = _folders(alice, 10)
    assert_error(post(alice, "folder", "Level 11", deep[-1]), 422, "depth")
    # Depth counts from the root, not from where the chain started.
    assert_error(post(alice, "folder", "Level 11", _folders(alice, 10 - 3, chain[2])[-1]),
                 422, "depth")


# --- names --------------------------------------------------------------------------------------


BAD_NAMES = [
    ("", "empty"),
    ("   ", "empty"),
    ("x" * 256, "255"),
    ("a/b", "/"),
    ("/", "/"),
    ("line\nbreak", "control"),
    ("tab\there", "control"),
    ("nul\x00byte", "control"),
    ("bell\x07", "control"),
]


def test_bad_names_are_422_on_create(alice):
    workflow = alice.create("workflow", "W", workflow_type="free")
    for name, rule in BAD_NAMES:
        assert_error(post(alice, "folder", name), 422, rule, case=name)
        assert_error(post(alice, "step", name, workflow), 422, rule, case=name)
    assert [e["name"] for e in alice.children()] == ["W"]
    assert alice.children(workflow["id"]) == []


def test_bad_names_are_422_on_rename(alice):
    folder = alice.create("folder", "Keep me")
    file = alice.create("file", "keep.txt")
    for name, rule in BAD_NAMES:
        for element in (folder, file):
            assert_error(alice.patch(url(element), json={"name": name}), 422, rule, case=name)
    assert alice.get(url(folder)).json()["name"] == "Keep me"
    assert alice.get(url(file)).json()["name"] == "keep.txt"


def test_good_names(alice):
    longest = alice.create("folder", "y" * 255)
    assert longest["name"] == "y" * 255
    unicode = alice.create("folder", "Apoferritin – 300 kV – Å")
    assert alice.get(url(unicode)).json()["name"] == "Apoferritin – 300 kV – Å"
    # Siblings may share a name: the id tells them apart.
    twin = alice.create("folder", "y" * 255)
    assert twin["id"] != longest["id"]
    renamed = alice.patch(url(twin), json={"name": "z" * 255})
    assert renamed.status_code == 200 and renamed.json()["name"] == "z" * 255


# --- unknown and malformed ids, unknown fields, wrong types --------------------------------------


def test_unknown_parent_is_404(alice, bob):
    missing_id = str(uuid.uuid4())
    missing = assert_error(post(alice, "folder", "Orphan", {"id": missing_id}), 404)
    # Someone else's private element is as unknown as a missing one: same answer.
    private = bob.create("folder", "Bob's")
    hidden = assert_error(post(alice, "folder", "Intruder", private), 404)
    assert hidden.replace(private["id"], "?") == missing.replace(missing_id, "?")
    assert "Bob's" not in hidden
    assert bob.children(private["id"]) == []


def test_malformed_ids_in_paths_are_404(alice):
    for bad_id in ["not-a-uuid", "123", "%00", "00000000-0000-0000-0000", "%20"]:
        _check_malformed_id(alice, bad_id)


def _check_malformed_id(alice, bad_id: str) -> None:
    assert_error(alice.get(f"{ELEMENTS}/{bad_id}"), 404, case=bad_id)
    assert_error(alice.patch(f"{ELEMENTS}/{bad_id}", json={"name": "x"}), 404, case=bad_id)
    assert_error(alice.delete(f"{ELEMENTS}/{bad_id}"), 404, case=bad_id)
    assert_error(alice.get(f"{ELEMENTS}/{bad_id}/path"), 404, case=bad_id)
    assert_error(alice.get(f"{ELEMENTS}/{bad_id}/sharing"), 404, case=bad_id)
    assert_error(alice.get(ELEMENTS, params={"parent_id": bad_id}), 404, case=bad_id)
    assert_error(alice.get(f"/api/v1/jobs/{bad_id}"), 404, case=bad_id)


def test_unknown_ids_are_404(alice):
    missing = str(uuid.uuid4())
    assert_error(alice.get(url(missing)), 404)
    assert_error(alice.patch(url(missing), json={"name": "x"}), 404)
    assert_error(alice.delete(url(missing)), 404)
    assert_error(alice.get(url(missing, "/path")), 404)
    assert_error(alice.get(ELEMENTS, params={"parent_id": missing}), 404)


BAD_CREATE_BODIES = [
    {"kind": "folder", "name": "X", "colour": "red"},
    {"kind": "folder", "name": "X", "id": str(uuid.UUID(int=7))},
    {"kind": "folder", "name": "X", "status": "completed"},
    {"kind": "folder"},
    {"name": "X"},
    {"kind": "folder", "name": 5},
    {"kind": "folder", "name": None},
    {"kind": "folder", "name": ["X"]},
    {"kind": 1, "name": "X"},
    {"kind": "folder", "name": "X", "parent_id": "not-a-uuid"},
    {"kind": "folder", "name": "X", "parent_id": 12},
    {"kind": "folder", "name": "X", "description": {"text": "x"}},
    {"kind": "folder", "name": "X", "description": None},
    {"kind": "workflow", "name": "X", "workflow_type": 3},
    [],
    "folder",
]


def test_unknown_fields_and_wrong_types_on_create_are_422(alice):
    for body in BAD_CREATE_BODIES:
        assert_error(alice.post(ELEMENTS, json=body), 422, case=body)
    assert alice.children() == []


def test_unknown_fields_and_wrong_types_on_patch_are_422(alice):
    folder = alice.create("folder", "F")
    step = alice.create("step", "S", alice.create("workflow", "W")["id"])
    for element, body in [
        (folder, {"colour": "red"}),
        (folder, {"parent_id": None}),
        (folder, {"kind": "workflow"}),
        (folder, {"name": 5}),
        (folder, {"description": ["x"]}),
        (step, {"status": 3}),
        (step, {"position": 4}),
        (folder, []),
    ]:
        assert_error(alice.patch(url(element), json=body), 422, case=body)
    assert alice.get(url(folder)).json()["name"] == "F"
    assert alice.get(url(folder)).json()["kind"] == "folder"


def test_unknown_field_message_names_the_field(alice):
    assert_error(alice.post(ELEMENTS, json={"kind": "folder", "name": "X", "colour": "red"}),
                 422, "colour")


def test_odd_characters_in_text_fields_never_crash(alice, lenient):
    """NUL bytes and lone surrogates cannot be stored on every backend: a 422 naming the field,
    or the value stored and returned as sent; never a 500 (DESIGN "Errors")."""
    folder = alice.create("folder", "F")
    failures = []
    attempts = [
        ("post", ELEMENTS, {"kind": "folder", "name": "D", "description": "a\x00b"}),
        ("post", ELEMENTS, {"kind": "folder", "name": "lone \udcff"}),
        ("post", ELEMENTS, {"kind": "folder", "name": "S", "description": "lone \ud800"}),
        ("patch", url(folder), {"description": "a\x00b"}),
        ("patch", url(folder), {"name": "lone \udcff"}),
    ]
    for method, target, body in attempts:
        raw = json.dumps(body)  # \u escapes, as any JSON client sends them
        response = getattr(lenient, method)(
            target, content=raw, headers={**alice.headers, "Content-Type": "application/json"})
        if response.status_code == 422:
            continue
        if response.status_code in (200, 201):
            element = alice.get(url(response.json())).json()
            if all(element[k] == v for k, v in body.items() if k != "kind"):
                continue
        failures.append((method, body, response.status_code, response.text[:120]))
    assert not failures, "\n".join(map(repr, failures))


# --- edit: rename, describe, status, fixed types ------------------------------------------------


def test_rename_and_describe(alice):
    folder = alice.create("folder", "Old")
    response = alice.patch(url(folder), json={"name": "  New name  ", "description": "About"})
    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["name"] == "New name"
    assert edited["description"] == "About"
    assert edited["updated_at"] >= folder["updated_at"]
    assert edited["created_at"] == folder["created_at"]
    assert alice.get(url(folder)).json() == edited
    # An empty PATCH changes nothing.
    assert alice.patch(url(folder), json={}).json()["name"] == "New name"
    too_long = alice.patch(url(folder), json={"description": "d" * 20_001})
    assert_error(too_long, 422, "description")


def test_workflow_type_can_never_change(alice):
    for workflow_type in ["spa", "free", "et"]:
        _check_fixed_type(alice, workflow_type)


def _check_fixed_type(alice, workflow_type: str) -> None:
    workflow = alice.create("workflow", "W", workflow_type=workflow_type)
    for other in TEMPLATE_STEPS:
        if other == workflow_type:
            continue
        response = alice.patch(url(workflow), json={"workflow_type": other})
        assert_error(response, 422, "can never change", case=other)
    # Naming the same type again is no change.
    same = alice.patch(url(workflow), json={"workflow_type": workflow_type})
    assert same.status_code == 200
    after = alice.get(url(workflow)).json()
    assert after["workflow_type"] == workflow_type
    assert [s["name"] for s in alice.children(workflow["id"])] == TEMPLATE_STEPS[workflow_type]


def test_dataset_type_can_never_change(alice):
    workflow = alice.create("workflow", "W", workflow_type="spa")
    dataset = alice.create("dataset", "D", step_named(alice, workflow, "Imaging")["id"],
                           dataset_type="epu_run")
    assert_error(alice.patch(url(dataset), json={"dataset_type": "free"}), 422, "never change")
    assert alice.get(url(dataset)).json()["dataset_type"] == "epu_run"


def test_status_of_steps_and_datasets(alice):
    workflow = alice.create("workflow", "W", workflow_type="spa")
    step = step_named(alice, workflow, "Imaging")
    dataset = alice.create("dataset", "D", step["id"])
    for element in (step, dataset):
        for status in STATUSES:
            response = alice.patch(url(element), json={"status": status})
            assert response.status_code == 200, (status, response.text)
            assert response.json()["status"] == status
            assert alice.get(url(element)).json()["status"] == status
    # The step's status shows in its workflow's listing.
    listed = {s["name"]: s["status"] for s in alice.children(workflow["id"])}
    assert listed == {"Screening": "not_started", "Imaging": "warning",
                      "Processing": "not_started"}
    for bad in ["done", "Completed", "deleting", ""]:
        assert_error(alice.patch(url(step), json={"status": bad}), 422, "status", case=bad)
    assert alice.get(url(step)).json()["status"] == "warning"


def test_status_refused_on_kinds_without_one(alice):
    folder = alice.create("folder", "F")
    workflow = alice.create("workflow", "W", folder["id"], workflow_type="free")
    file = alice.create("file", "f.txt")
    for element in (folder, workflow, file):
        response = alice.patch(url(element), json={"status": "completed"})
        assert_error(response, 422, "status", element["kind"], case=element["kind"])
        assert alice.get(url(element)).json()["status"] is None


def test_template_steps_keep_their_names(alice):
    workflow = alice.create("workflow", "W", workflow_type="spa")
    imaging = step_named(alice, workflow, "Imaging")
    assert_error(alice.patch(url(imaging), json={"name": "Collection"}), 422, "template")
    assert alice.get(url(imaging)).json()["name"] == "Imaging"


def test_user_steps_only_in_free_workflows(alice):
    free = alice.create("workflow", "Free", workflow_type="free")
    first = alice.create("step", "Grid prep", free["id"])
    second = alice.create("step", "Collection", free["id"])
    assert first["position"] < second["position"]
    renamed = alice.patch(url(first), json={"name": "Grid preparation"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Grid preparation"
    assert [s["name"] for s in alice.children(free["id"])] == ["Grid preparation", "Collection"]

    for workflow_type in ("spa", "spa_qm", "spa_lp", "et"):
        workflow = alice.create("workflow", workflow_type, workflow_type=workflow_type)
        response = post(alice, "step", "Extra", workflow)
        assert_error(response, 422, "free", case=workflow_type)
        names = [s["name"] for s in alice.children(workflow["id"])]
        assert names == TEMPLATE_STEPS[workflow_type]


# --- listing: sort and pagination ---------------------------------------------------------------


def test_sort_by_name_is_case_insensitive(alice):
    folder = alice.create("folder", "F")
    for name in ["beta", "Alpha", "gamma", "Delta", "alpha2", "EPSILON", "Zulu", "yankee"]:
        alice.create("workflow", name, folder["id"])
    ascending = [e["name"] for e in alice.children(folder["id"], sort="name")]
    assert ascending == ["Alpha", "alpha2", "beta", "Delta", "EPSILON", "gamma", "yankee", "Zulu"]
    descending = [e["name"] for e in alice.children(folder["id"], sort="name", order="desc")]
    assert descending == ascending[::-1]
    # Name is the default order outside workflows.
    assert [e["name"] for e in alice.children(folder["id"])] == ascending


def _pages(user, parent: dict, **params) -> list[dict]:
    items: list[dict] = []
    cursor = None
    for _ in range(100):
        query = dict(params, parent_id=parent["id"])
        if cursor:
            query["cursor"] = cursor
        response = user.get(ELEMENTS, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= params["limit"]
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["items"]) == params["limit"]
    raise AssertionError("pagination does not end")


def test_pagination_over_250_children_every_element_once(app, alice):
    parent = alice.create("folder", "Many")
    # 250 children, created in one transaction through the service for speed; the API lists them.
    with app.state.sessions() as db:
        created = []
        for i in range(250):
            number = (i * 37) % 250  # name order differs from creation order
            name = "same" if i % 25 == 0 else f"{'item' if i % 2 else 'ITEM'} {number:03d}"
            view = create_element(db, alice.actor, kind="workflow", name=name,
                                  parent_id=uuid.UUID(parent["id"]))
            created.append({"id": str(view.id), "name": name})
        db.commit()
    ids = [e["id"] for e in created]
    assert len(set(ids)) == 250

    by_name = [e["id"] for e in sorted(created, key=lambda e: (e["name"].casefold(), e["id"]))]
    for limit in (7, 100, 1000):
        asc = [e["id"] for e in _pages(alice, parent, sort="name", order="asc", limit=limit)]
        assert asc == by_name, limit
        desc = [e["id"] for e in _pages(alice, parent, sort="name", order="desc", limit=limit)]
        assert desc == by_name[::-1], limit
        date_asc = [e["id"] for e in _pages(alice, parent, sort="date", order="asc", limit=limit)]
        assert date_asc == ids, limit  # creation order
        date_desc = [e["id"] for e in _pages(alice, parent, sort="date", order="desc",
                                             limit=limit)]
        assert date_desc == ids[::-1], limit

    one_page = alice.get(ELEMENTS, params={"parent_id": parent["id"], "limit": 1000}).json()
    assert len(one_page["items"]) == 250 and one_page["next_cursor"] is None
    default = alice.get(ELEMENTS, params={"parent_id": parent["id"]}).json()
    assert default["next_cursor"] is not None  # the default page is smaller than 250
    exact = alice.get(ELEMENTS, params={"parent_id": parent["id"], "limit": 250}).json()
    assert len(exact["items"]) == 250 and exact["next_cursor"] is None


def test_pagination_within_a_workflow_by_position(alice):
    workflow = alice.create("workflow", "W", workflow_type="free")
    for i in range(12):
        alice.create("step", f"step {11 - i:02d}", workflow["id"])
    names = [s["name"] for s in _pages(alice, workflow, limit=5)]
    assert names == [f"step {11 - i:02d}" for i in range(12)]
    names = [s["name"] for s in _pages(alice, workflow, limit=5, sort="name")]
    assert names == [f"step {i:02d}" for i in range(12)]


BAD_LISTING_PARAMETERS = [
    ({"limit": 0}, "limit"),
    ({"limit": 5000}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"limit": -1}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"sort": "size"}, "sort"),
    ({"sort": "NAME"}, "sort"),
    ({"order": "up"}, "order"),
    ({"cursor": "garbage"}, "cursor"),
]


def test_bad_listing_parameters_are_422(alice):
    folder = alice.create("folder", "F")
    alice.create("folder", "child", folder["id"])
    for params, word in BAD_LISTING_PARAMETERS:
        response = alice.get(ELEMENTS, params={"parent_id": folder["id"], **params})
        assert_error(response, 422, word, case=params)
        assert_error(alice.get(ELEMENTS, params=params), 422, word, case=params)


UUID_1 = str(uuid.UUID(int=1))
GARBAGE_CURSORS = [
    # (sort used with it, cursor)
    ("name", "garbage"),
    ("name", "!!!!"),
    ("name", "%%%%"),
    ("name", cursor_of(5)),
    ("name", cursor_of([1, 2, 3])),
    ("name", cursor_of(["x", None])),
    ("name", cursor_of({"a": 1, "b": 2})),
    ("name", cursor_of(["x", "not-a-uuid"])),
    ("name", cursor_of([5, UUID_1])),
    ("date", cursor_of(["item 001", UUID_1])),
    ("date", cursor_of([20240101, UUID_1])),
    ("position", cursor_of(["first", UUID_1])),
    ("position", cursor_of([[1], UUID_1])),
    ("position", cursor_of([10**30, UUID_1])),
    ("position", cursor_of([2**63, UUID_1])),
    ("position", base64.urlsafe_b64encode(f'[Infinity, "{UUID_1}"]'.encode()).decode()),
    ("position", base64.urlsafe_b64encode(f'[NaN, "{UUID_1}"]'.encode()).decode()),
    ("name", "x" * 2001),
]


def test_garbage_cursors_are_422(alice, lenient):
    folder = alice.create("folder", "F")
    workflow = alice.create("workflow", "W", workflow_type="spa")
    for i in range(3):
        alice.create("workflow", f"W{i}", folder["id"])
    failures = []
    for sort, cursor in GARBAGE_CURSORS:
        parent = workflow if sort == "position" else folder
        response = lenient.get(ELEMENTS, headers=alice.headers, params={
            "parent_id": parent["id"], "sort": sort, "limit": 1, "cursor": cursor})
        if response.status_code != 422 or "cursor" not in response.json().get("detail", ""):
            failures.append((sort, cursor, response.status_code, response.text[:100]))
    assert not failures, "\n".join(map(repr, failures))


def test_forged_cursors_with_odd_values_never_crash(alice, lenient):
    """Cursors the server never issues, with values that are parseable: a page or a 422."""
    folder = alice.create("folder", "F")
    for i in range(3):
        alice.create("workflow", f"W{i}", folder["id"])
    failures = []
    for sort, value in [("name", "nul\x00byte"), ("name", "\udcff"), ("name", ""),
                        ("date", "2024-01-01T00:00:00"), ("date", "0001-01-01T00:00:00+00:00"),
                        ("date", "9999-12-31T23:59:59+14:00")]:
        cursor = cursor_of([value, UUID_1])
        response = lenient.get(ELEMENTS, headers=alice.headers, params={
            "parent_id": folder["id"], "sort": sort, "limit": 1, "cursor": cursor})
        if response.status_code not in (200, 422):
            failures.append((sort, value, response.status_code, response.text[:100]))
    assert not failures, "\n".join(map(repr, failures))


def test_a_cursor_is_bound_to_its_sort(alice):
    folder = alice.create("folder", "F")
    for i in range(3):
        alice.create("workflow", f"W{i}", folder["id"])
    page = alice.get(ELEMENTS, params={"parent_id": folder["id"], "sort": "name",
                                       "limit": 1}).json()
    response = alice.get(ELEMENTS, params={"parent_id": folder["id"], "sort": "date",
                                           "limit": 1, "cursor": page["next_cursor"]})
    assert_error(response, 422, "cursor")


# --- path ---------------------------------------------------------------------------------------


def test_path_from_the_root_down(alice):
    folder = alice.create("folder", "Project")
    sub = alice.create("folder", "Sub", folder["id"])
    workflow = alice.create("workflow", "SPA", sub["id"], workflow_type="spa")
    imaging = step_named(alice, workflow, "Imaging")
    dataset = alice.create("dataset", "Run", imaging["id"])
    file = alice.create("file", "a.mrc", dataset["id"])

    response = alice.get(url(file, "/path"))
    assert response.status_code == 200, response.text
    path = response.json()
    expected = [folder, sub, workflow, imaging, dataset, file]
    assert path == [{"id": e["id"], "kind": e["kind"], "name": e["name"]} for e in expected]
    assert alice.get(url(folder, "/path")).json() == [
        {"id": folder["id"], "kind": "folder", "name": "Project"}]
    root_file = alice.create("file", "root.txt")
    assert [p["id"] for p in alice.get(url(root_file, "/path")).json()] == [root_file["id"]]


def test_path_follows_a_rename(alice):
    folder = alice.create("folder", "Before")
    workflow = alice.create("workflow", "W", folder["id"])
    alice.patch(url(folder), json={"name": "After"})
    assert [p["name"] for p in alice.get(url(workflow, "/path")).json()] == ["After", "W"]


# --- delete (WS-6) ------------------------------------------------------------------------------


def test_delete_by_owner_removes_the_subtree_as_a_job(alice, bob):
    folder = alice.create("folder", "Doomed")
    workflow = alice.create("workflow", "W", folder["id"], workflow_type="spa")
    imaging = step_named(alice, workflow, "Imaging")
    dataset = alice.create("dataset", "Run", imaging["id"])
    file = alice.create("file", "a.mrc", dataset["id"])
    keeper = alice.create("folder", "Keeper")

    response = alice.delete(url(folder))
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"job_id"}
    uuid.UUID(body["job_id"])

    for element in (folder, workflow, imaging, dataset, file):
        assert_error(alice.get(url(element)), 404, case=element["kind"])
    assert_error(alice.get(ELEMENTS, params={"parent_id": folder["id"]}), 404)
    assert_error(alice.get(ELEMENTS, params={"parent_id": imaging["id"]}), 404)
    assert [e["id"] for e in alice.children()] == [keeper["id"]]
    assert_error(alice.delete(url(folder)), 404)

    jobs = alice.get("/api/v1/jobs")
    assert jobs.status_code == 200
    mine = [j for j in jobs.json()["items"] if j["id"] == body["job_id"]]
    assert len(mine) == 1
    job = mine[0]
    assert job["status"] == "completed"
    assert job["kind"] == "delete"
    assert job["element_name"] == "Doomed"
    assert job["user"] == "alice"
    assert alice.get(f"/api/v1/jobs/{body['job_id']}").json()["status"] == "completed"
    # A finished job is listed for its owner only.
    assert body["job_id"] not in {j["id"] for j in bob.get("/api/v1/jobs").json()["items"]}
    assert_error(bob.get(f"/api/v1/jobs/{body['job_id']}"), 404)


def test_delete_a_leaf_and_a_user_step(alice):
    workflow = alice.create("workflow", "W", workflow_type="free")
    step = alice.create("step", "Mine", workflow["id"])
    file = alice.create("file", "a.txt", step["id"])
    assert alice.delete(url(file)).status_code == 202
    assert alice.children(step["id"]) == []
    assert alice.delete(url(step)).status_code == 202
    assert alice.children(workflow["id"]) == []
    assert alice.get(url(workflow)).status_code == 200


def test_delete_needs_ownership(alice, bob, make_user):
    carol = make_user("carol")
    folder = alice.create("folder", "Shared")
    workflow = alice.create("workflow", "W", folder["id"])
    share(alice, folder, bob="collaborator", carol="viewer")

    assert_error(bob.delete(url(folder)), 403, "owner")
    assert_error(bob.delete(url(workflow)), 403, "owner")
    assert_error(carol.delete(url(folder)), 403, "owner")
    stranger = make_user("dave")
    assert_error(stranger.delete(url(folder)), 404)
    for user in (alice, bob, carol):
        assert user.get(url(folder)).status_code == 200
        assert user.get(url(workflow)).status_code == 200
    # Bob's own element inside alice's folder inherits alice's set, where bob is collaborator.
    mine = bob.create("workflow", "Bob's", folder["id"])
    assert_error(bob.delete(url(mine)), 403)
    assert alice.delete(url(mine)).status_code == 202


def test_deleting_a_template_step_is_422(alice):
    for workflow_type in ["spa", "spa_lp", "et"]:
        workflow = alice.create("workflow", "W", workflow_type=workflow_type)
        for step in alice.children(workflow["id"]):
            assert_error(alice.delete(url(step)), 422, "template", case=step["name"])
        names = [s["name"] for s in alice.children(workflow["id"])]
        assert names == TEMPLATE_STEPS[workflow_type]
        # Their content can go.
        step = alice.children(workflow["id"])[-1]
        dataset = alice.create("dataset", "D", step["id"])
        assert alice.delete(url(dataset)).status_code == 202
        assert alice.children(step["id"]) == []
