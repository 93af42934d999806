"""Portal pages and forms of metadata, notes, samples and search (htmx partials)."""

from __future__ import annotations

import pytest

HX = {"HX-Request": "true"}


@pytest.fixture
def portal(client, alice):
    response = client.post("/api/v1/auth/login",
                           json={"username": "alice", "password": "password-123"})
    assert response.status_code == 200
    return client


def test_metadata_forms(portal, alice):
    folder = alice.create("folder", "Forms")
    url = f"/ui/elements/{folder['id']}/metadata"
    added = portal.post(url, data={"name": "Tilt", "value_type": "double", "value": "35.5",
                                   "quantity": "angle", "unit": "degree"}, headers=HX)
    assert added.status_code == 200 and "Tilt" in added.text and "deg" in added.text
    refused = portal.post(url, data={"name": "Bad", "value_type": "date", "value": "2024-13-01"},
                          headers=HX)
    assert refused.status_code == 422 and "not a date" in refused.text
    entry = alice.get(f"/api/v1/elements/{folder['id']}/metadata").json()["groups"][0][
        "entries"][0]
    converted = portal.post(f"{url}/{entry['id']}", data={
        "name": "Tilt", "value_type": "double", "value": "35.5", "quantity": "angle",
        "unit": "arcminute", "convert": "1"}, headers=HX)
    assert converted.status_code == 200 and "2130.0" in converted.text
    removed = portal.post(f"{url}/{entry['id']}/delete", headers=HX)
    assert removed.status_code == 200 and "Tilt" not in removed.text
    names = portal.get("/ui/metadata/names", params={"name": "ti"})
    assert names.status_code == 200
    assert 'id="quantities-data"' in portal.get(url).text


def test_notes_and_references_forms(portal, alice):
    folder = alice.create("folder", "Notes form")
    url = f"/ui/elements/{folder['id']}/notes"
    added = portal.post(url, data={"body": "**hi** <b>x</b>"}, headers=HX)
    assert added.status_code == 200 and "<strong>hi</strong>" in added.text
    assert "&lt;b&gt;x&lt;/b&gt;" in added.text
    assert portal.post(url, data={"body": ""}, headers=HX).status_code == 422
    other = alice.create("folder", "Target")
    linked = portal.post(f"/ui/elements/{folder['id']}/references",
                         data={"target": f"http://testserver/workspace/{other['id']}"},
                         headers=HX)
    assert linked.status_code == 200 and f"/workspace/{other['id']}" in linked.text
    external = portal.post(f"/ui/elements/{folder['id']}/references",
                           data={"target": "/data/session1", "label": "raw"}, headers=HX)
    assert "<code>/data/session1</code>" in external.text
    bad = portal.post(f"/ui/elements/{folder['id']}/references",
                      data={"target": "javascript:alert(1)"}, headers=HX)
    assert bad.status_code == 422


def test_search_and_samples_pages(portal, alice, make_user):
    alice.create("folder", "Searchable <b>folder")
    page = portal.get("/search", params={"q": "searchable"})
    assert page.status_code == 200
    assert "1 result" in page.text and "<mark>Searchable</mark>" in page.text
    assert "&lt;b&gt;" in page.text and 'id="reindex"' not in page.text
    literal = portal.get("/search", params={"q": '"* - :'})  # no word: a clear message
    assert literal.status_code == 200 and 'id="search-error"' in literal.text
    empty = portal.get("/search")
    assert empty.status_code == 200 and 'id="search-total"' not in empty.text
    created = portal.post("/ui/samples", data={"name": "Sample A"}, headers=HX)
    assert created.status_code == 204 and created.headers["HX-Redirect"].startswith("/samples/")
    sample = portal.get(created.headers["HX-Redirect"])
    assert sample.status_code == 200 and "Sample A" in sample.text
    listing = portal.get("/samples")
    assert "Sample A" in listing.text
    assert portal.post("/ui/search/reindex", headers=HX).status_code == 403
