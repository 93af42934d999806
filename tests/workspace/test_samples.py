"""Samples (SPEC WS-9): registered with typed metadata, linked, listing what refers to them."""

from __future__ import annotations

import pytest

from tests.helpers import assert_error


def test_register_link_and_list_referrers(alice, bob):
    sample = alice.post("/api/v1/samples", json={
        "name": "Apoferritin batch 7", "description": "from the core facility",
        "metadata": [
            {"name": "Protein", "type": "string", "value": "apoferritin"},
            {"name": "Concentration", "type": "double", "value": 2.5,
             "unit": "milligram / milliliter"},
            {"name": "Vitrified on", "type": "date", "value": "2024-05-30"},
            {"name": "Blot force", "type": "integer", "value": 3},
        ]})
    assert sample.status_code == 201, sample.text
    sample = sample.json()
    assert sample["kind"] == "sample" and sample["parent_id"] is None
    # Samples are not among the workspace root's children; they have their own list.
    assert all(e["kind"] != "sample" for e in alice.children())
    assert [s["name"] for s in alice.get("/api/v1/samples").json()["items"]] == [
        "Apoferritin batch 7"]
    assert alice.get("/api/v1/samples", params={"q": "batch"}).json()["items"]
    assert alice.get("/api/v1/samples", params={"q": "%"}).json()["items"] == []
    assert bob.get("/api/v1/samples").json()["items"] == []

    folder = alice.create("folder", "Project")
    workflow = alice.create("workflow", "SPA", folder["id"], workflow_type="spa")
    imaging = next(s for s in alice.children(workflow["id"]) if s["name"] == "Imaging")
    dataset = alice.create("dataset", "Grid 1", imaging["id"])
    for element in (workflow, dataset):
        response = alice.post(f"/api/v1/elements/{element['id']}/samples",
                              json={"sample_id": sample["id"]})
        assert response.status_code == 201, response.text
    detail = alice.get(f"/api/v1/samples/{sample['id']}").json()
    assert sorted(e["name"] for e in detail["referred_by"]) == ["Grid 1", "SPA"]
    entries = {e["name"]: e for g in detail["metadata"]["groups"] for e in g["entries"]}
    assert entries["Concentration"]["quantity"] == "mass concentration"
    assert entries["Concentration"]["base_value"] == pytest.approx(2.5)  # = 2.5 kg/m³
    assert entries["Vitrified on"]["value"] == "2024-05-30"
    # Found by search through its metadata.
    found = alice.get("/api/v1/search", params={"q": "apoferritin", "kinds": "sample"}).json()
    assert [i["name"] for i in found["items"]] == ["Apoferritin batch 7"]

    # Shared with bob, the sample lists only the referrers bob may read.
    grants = [{"username": "alice", "level": "owner"}, {"username": "bob", "level": "viewer"}]
    alice.put(f"/api/v1/elements/{sample['id']}/sharing",
              json={"privacy": "private", "grants": grants})
    assert bob.get(f"/api/v1/samples/{sample['id']}").json()["referred_by"] == []
    alice.put(f"/api/v1/elements/{dataset['id']}/sharing",
              json={"privacy": "private", "grants": grants})
    names = [e["name"] for e in bob.get(f"/api/v1/samples/{sample['id']}").json()["referred_by"]]
    assert names == ["Grid 1"]


def test_bad_samples_and_links(alice, bob):
    assert_error(alice.post("/api/v1/samples", json={"name": ""}), 422, "empty")
    assert_error(alice.post("/api/v1/samples", json={
        "name": "S", "metadata": [{"name": "c", "type": "double", "value": "x"}]}), 422,
        "not a number")
    assert alice.get("/api/v1/samples").json()["items"] == []  # nothing half-created
    folder = alice.create("folder", "Not a sample")
    other = alice.create("folder", "Target")
    assert_error(alice.post(f"/api/v1/elements/{other['id']}/samples",
                            json={"sample_id": folder["id"]}), 422, "not a sample")
    assert_error(alice.get(f"/api/v1/samples/{folder['id']}"), 422, "not a sample")
    assert_error(alice.get("/api/v1/samples/nope"), 404)
    sample = alice.post("/api/v1/samples", json={"name": "Private sample"}).json()
    assert_error(bob.get(f"/api/v1/samples/{sample['id']}"), 404)
    bobs = bob.create("folder", "Bob's")
    assert_error(bob.post(f"/api/v1/elements/{bobs['id']}/samples",
                          json={"sample_id": sample["id"]}), 404)
    assert_error(alice.post("/api/v1/elements", json={"kind": "sample", "name": "x"}), 422)
