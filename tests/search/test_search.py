"""Search (SPEC PLT-2, AC-5) on both engines: what is found, how "search in" and kinds narrow
it, literal handling of engine syntax, and a permission matrix proving that no result and no
count ever includes an element the user cannot read."""

from __future__ import annotations

import itertools
import uuid

import pytest
from fastapi.testclient import TestClient

from cryovault.jobs.runner import JobEnvironment, run_job
from tests.helpers import assert_error

SEARCH = "/api/v1/search"
ELEMENT_FIELDS = {"id", "kind", "name", "parent_id", "description", "status", "workflow_type",
                  "dataset_type", "position", "creator", "created_at", "updated_at", "access"}


def search(user, q, **params):
    response = user.get(SEARCH, params={"q": q, **params})
    assert response.status_code == 200, response.text
    return response.json()


def names(result) -> list[str]:
    return sorted(item["name"] for item in result["items"])


def share(owner, element, **levels):
    grants = [{"username": owner.username, "level": "owner"}]
    grants += [{"username": u, "level": lv} for u, lv in levels.items()]
    response = owner.put(f"/api/v1/elements/{element['id']}/sharing",
                         json={"privacy": "private", "grants": grants})
    assert response.status_code == 200, response.text


def test_names_metadata_and_notes_are_found_with_path_and_snippet(alice):
    folder = alice.create("folder", "Ribosome project")
    workflow = alice.create("workflow", "70S SPA", folder["id"], workflow_type="spa")
    imaging = next(s for s in alice.children(workflow["id"]) if s["name"] == "Imaging")
    dataset = alice.create("dataset", "Grid 2 session", imaging["id"])
    alice.post(f"/api/v1/elements/{dataset['id']}/metadata",
               json={"name": "Cryo holder", "type": "string", "value": "Autoloader cassette"})
    alice.post(f"/api/v1/elements/{workflow['id']}/notes",
               json={"body": "The *glacios* screening showed thin ice in the centre."})

    result = search(alice, "grid")
    assert result["total"] == 1
    hit = result["items"][0]
    assert set(hit) >= ELEMENT_FIELDS | {"path"}
    assert [p["name"] for p in hit["path"]] == ["Ribosome project", "70S SPA", "Imaging",
                                                "Grid 2 session"]
    assert hit["matched_in"] == "name"

    by_value = search(alice, "autoloader")
    assert names(by_value) == ["Grid 2 session"]
    assert by_value["items"][0]["matched_in"] == "metadata"
    assert "Autoloader cassette" in by_value["items"][0]["snippet"]
    assert names(search(alice, "cryo holder")) == ["Grid 2 session"]  # the metadata's name

    by_note = search(alice, "glacios")
    assert names(by_note) == ["70S SPA"] and by_note["items"][0]["matched_in"] == "notes"
    assert "glacios" in by_note["items"][0]["snippet"]

    # Prefixes of 3+ letters match longer words; accents and case do not matter.
    assert names(search(alice, "RIBO")) == ["Ribosome project"]
    assert names(search(alice, "cèntre")) == ["70S SPA"]
    # All words must match.
    assert search(alice, "grid glacios")["total"] == 0


def test_search_in_and_kinds_narrow(alice):
    folder = alice.create("folder", "Apoferritin")
    workflow = alice.create("workflow", "Screening apoferritin", folder["id"])
    alice.post(f"/api/v1/elements/{folder['id']}/notes", json={"body": "about ferritin"})
    alice.post(f"/api/v1/elements/{workflow['id']}/metadata",
               json={"name": "Protein", "type": "string", "value": "apoferritin"})
    assert names(search(alice, "apoferritin")) == ["Apoferritin", "Screening apoferritin"]
    assert names(search(alice, "apoferritin", kinds="workflow")) == ["Screening apoferritin"]
    assert names(search(alice, "apoferritin", kinds="folder,workflow")) == [
        "Apoferritin", "Screening apoferritin"]
    assert names(search(alice, "protein", **{"in": "name"})) == []
    assert names(search(alice, "protein", **{"in": "metadata"})) == ["Screening apoferritin"]
    assert names(search(alice, "ferritin", **{"in": "notes"})) == ["Apoferritin"]
    assert names(search(alice, "ferritin", **{"in": "name,metadata"})) == []
    assert_error(alice.get(SEARCH, params={"q": "x", "in": "names"}), 422, "name, metadata")
    assert_error(alice.get(SEARCH, params={"q": "x", "kinds": "galaxy"}), 422, "kinds")


@pytest.fixture
def lenient(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("query", [
    '"', '""', '"unterminated', "*", "apo*", "NEAR", "NEAR(a b)", "a NEAR b", "-", "-apo",
    ":", "name:apo", "{name_terms}: x", "a AND", "OR", "NOT x", "(", ")", "^", "'", "\\",
    "a & b | !c", "x <-> y", "x:*", "x:AB", "'a':*", "%", "_", "\x00", "🙂",
])
def test_engine_syntax_is_searched_literally(alice, lenient, query):
    alice.create("folder", "Apoferritin NEAR edge")
    response = lenient.get(SEARCH, params={"q": query}, headers=alice.headers)
    if response.status_code == 422:
        assert_error(response, 422, "letter or digit", case=query)
    else:
        assert response.status_code == 200, (query, response.text)
        body = response.json()
        assert body["total"] == len(body["items"])


def test_literal_words_still_match(alice):
    alice.create("folder", "Apoferritin NEAR edge")
    assert search(alice, '"apoferritin near"')["total"] == 1
    assert search(alice, "apoferritin:near")["total"] == 1  # ":" joins words, names no column
    assert search(alice, "name:apoferritin")["total"] == 0  # "name" is a word like any other
    assert search(alice, "-near")["total"] == 1  # '-' is not NOT
    assert search(alice, "apo* near*")["total"] == 1


def test_bad_parameters_are_422(alice):
    assert_error(alice.get(SEARCH), 422)
    assert_error(alice.get(SEARCH, params={"q": "   "}), 422, "letter or digit")
    assert_error(alice.get(SEARCH, params={"q": "x" * 501}), 422)
    assert_error(alice.get(SEARCH, params={"q": "x", "limit": 0}), 422, "limit")
    assert_error(alice.get(SEARCH, params={"q": "x", "limit": 101}), 422, "limit")
    assert_error(alice.get(SEARCH, params={"q": "x", "offset": -1}), 422, "offset")


def test_pagination_and_total(alice):
    folder = alice.create("folder", "Grids")
    for i in range(7):
        alice.create("workflow", f"Grid batch {i}", folder["id"])
    first = search(alice, "batch", limit=3)
    second = search(alice, "batch", limit=3, offset=3)
    third = search(alice, "batch", limit=3, offset=6)
    assert first["total"] == second["total"] == third["total"] == 7
    seen = [i["id"] for page in (first, second, third) for i in page["items"]]
    assert len(seen) == len(set(seen)) == 7
    assert search(alice, "batch", offset=50)["items"] == []


def test_index_follows_every_write(alice, bob, app):
    folder = alice.create("folder", "Original title")
    assert search(alice, "original")["total"] == 1
    alice.patch(f"/api/v1/elements/{folder['id']}", json={"name": "Renamed title",
                                                           "description": "vitrobot"})
    assert search(alice, "original")["total"] == 0
    assert search(alice, "renamed")["total"] == 1
    assert search(alice, "vitrobot", **{"in": "metadata"})["total"] == 1
    entry = alice.post(f"/api/v1/elements/{folder['id']}/metadata",
                       json={"name": "Blot time", "type": "double", "value": 3.5,
                             "unit": "second"}).json()
    assert search(alice, "blot")["total"] == 1
    alice.delete(f"/api/v1/elements/{folder['id']}/metadata/{entry['id']}")
    assert search(alice, "blot")["total"] == 0
    note = alice.post(f"/api/v1/elements/{folder['id']}/notes", json={"body": "ethane"}).json()
    assert search(alice, "ethane")["total"] == 1
    alice.patch(f"/api/v1/elements/{folder['id']}/notes/{note['id']}", json={"body": "propane"})
    assert (search(alice, "ethane")["total"], search(alice, "propane")["total"]) == (0, 1)
    # Sharing changes apply at once (a trigger copies the permission set into the index).
    child = alice.create("workflow", "Renamed child", folder["id"])
    assert search(bob, "renamed")["total"] == 0
    share(alice, child, bob="viewer")  # breaks inheritance: child gets its own set
    assert names(search(bob, "renamed")) == ["Renamed child"]
    share(alice, folder, bob="viewer")
    assert names(search(bob, "renamed")) == ["Renamed child", "Renamed title"]
    # Deletion: hidden as soon as requested, gone when the job ran.
    response = alice.delete(f"/api/v1/elements/{folder['id']}")
    assert response.status_code == 202
    assert search(alice, "renamed")["total"] == 0


def test_permission_matrix_never_leaks_results_or_counts(make_user):
    """Four users, elements with every kind of access; for each user and query, the results and
    the total are exactly the elements the user may read."""
    owner = make_user("owner")
    viewer = make_user("viewer")
    collab = make_user("collab")
    stranger = make_user("stranger")
    admin = make_user("admin", roles=["workflow-admin"])
    secret = owner.create("folder", "Secret cryo project")
    owner.post(f"/api/v1/elements/{secret['id']}/metadata",
               json={"name": "Protein", "type": "string", "value": "cryo kinase"})
    shared_wf = owner.create("workflow", "Shared cryo workflow", secret["id"])
    share(owner, shared_wf, viewer="viewer", collab="collaborator")
    inner = owner.create("step", "Cryo step inside", shared_wf["id"])
    hidden_wf = owner.create("workflow", "Hidden cryo workflow", secret["id"])
    owner.post(f"/api/v1/elements/{hidden_wf['id']}/notes", json={"body": "cryo notes"})
    public = owner.create("folder", "Public cryo folder")
    owner.put(f"/api/v1/elements/{public['id']}/sharing", json={
        "privacy": "public", "everybody": "viewer",
        "grants": [{"username": "owner", "level": "owner"}]})
    own = stranger.create("folder", "Stranger cryo folder")
    # A page through the whole result set, with a small limit, is exactly what may be read.
    everything = {"Secret cryo project", "Shared cryo workflow", "Cryo step inside",
                  "Hidden cryo workflow", "Public cryo folder", "Stranger cryo folder"}
    readable = [
        (owner, everything - {"Stranger cryo folder"}),
        (viewer, {"Shared cryo workflow", "Cryo step inside", "Public cryo folder"}),
        (collab, {"Shared cryo workflow", "Cryo step inside", "Public cryo folder"}),
        (stranger, {"Public cryo folder", "Stranger cryo folder"}),
        (admin, everything),
    ]
    queries = ["cryo", "kinase", "notes", "secret", "hidden", "inside", "folder", "workflow"]
    for (user, allowed), query in itertools.product(readable, queries):
        for fields in ("name,metadata,notes", "name", "metadata", "notes"):
            seen: list[str] = []
            offset = 0
            while True:
                page = search(user, query, limit=2, offset=offset, **{"in": fields})
                seen += [item["name"] for item in page["items"]]
                offset += 2
                if offset >= page["total"]:
                    break
            assert len(seen) == page["total"], (user.username, query, fields)
            assert set(seen) <= allowed, (user.username, query, fields, set(seen) - allowed)
        # Every readable element matching the name is found.
        by_name = {n for n in allowed if query in n.lower()}
        found = {i["name"] for i in search(user, query, limit=100, **{"in": "name"})["items"]}
        assert found == by_name, (user.username, query)
    # Bob-like viewers never learn about content of cards above what is shared.
    assert search(viewer, "kinase")["total"] == 0
    assert search(viewer, "secret")["total"] == 0
    assert search(viewer, "notes")["total"] == 0
    # The path of a shared element shows its card ancestors by name only (AC-4).
    hit = search(viewer, "inside")["items"][0]
    assert [p["name"] for p in hit["path"]] == ["Secret cryo project", "Shared cryo workflow",
                                                "Cryo step inside"]
    assert hit["id"] == inner["id"] and own["id"] != hit["id"]


def test_reindex_job_rebuilds_and_is_admin_only(app, alice, make_user):
    admin = make_user("root", roles=["customer-admin"])
    folder = alice.create("folder", "Reindexed beta-galactosidase")
    alice.post(f"/api/v1/elements/{folder['id']}/notes", json={"body": "aldolase"})
    with app.state.sessions() as db:  # lose the index, as a crash or a bulk import might
        from sqlalchemy import text

        db.execute(text("DELETE FROM search_documents"))
        db.commit()
    assert search(alice, "galactosidase")["total"] == 0
    assert_error(alice.post(f"{SEARCH}/reindex"), 403, "admins")
    response = admin.post(f"{SEARCH}/reindex")
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    # a no-op if the background task ran it
    run_job(JobEnvironment(app.state.sessions), uuid.UUID(job_id))
    jobs = {j["id"]: j for j in admin.get("/api/v1/jobs").json()["items"]}
    assert jobs[job_id]["status"] == "completed" and jobs[job_id]["kind"] == "reindex"
    assert names(search(alice, "galactosidase")) == ["Reindexed beta-galactosidase"]
    assert names(search(alice, "aldolase")) == ["Reindexed beta-galactosidase"]


def test_counts_beyond_the_cap_say_so(alice, monkeypatch):
    from cryovault.search import service

    folder = alice.create("folder", "Capped")
    for i in range(5):
        alice.create("workflow", f"Capped run {i}", folder["id"])
    assert search(alice, "capped run") == {**search(alice, "capped run"), "total": 5,
                                           "total_exact": True}
    monkeypatch.setattr(service, "COUNT_MAX", 3)
    result = search(alice, "capped run", limit=2)
    assert (result["total"], result["total_exact"]) == (3, False)
    assert len(result["items"]) == 2
    assert len(search(alice, "capped run", limit=10)["items"]) == 5  # all still listed


def test_prefixes_standing_for_many_words(alice):
    """A prefix is expanded to the index's words it stands for; past 20 words the engine's own
    prefix search takes over: the results are the same either way."""
    folder = alice.create("folder", "Prefixes")
    for i in range(25):
        alice.create("workflow", f"Vitrobot{chr(97 + i)}run", folder["id"])
    assert search(alice, "vitrobot", limit=100)["total"] == 25  # 25 words: prefix search
    assert search(alice, "vitrobotc")["total"] == 1  # one word
    assert search(alice, "vitrobotzz")["total"] == 0  # no word starts with it
