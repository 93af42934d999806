"""Portal page tests through the test client: every page and htmx partial of src/cryovault/web/ui
(sign-in, workspace, explorer tree, data panel, sharing tab, element forms, dashboard, jobs,
user guide), with the login redirects, error pages and htmx error messages they answer."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from cryovault.access.actor import Actor
from cryovault.db.users import User
from cryovault.web.context import SESSION_COOKIE
from cryovault.web.ui import dashboard_pages
from cryovault.web.ui.common import safe_next
from cryovault.workspace.elements import create_element

PASSWORD = "password-123"
HX = {"HX-Request": "true"}
ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def login(app) -> Iterator:
    """`login(user)`: a fresh client (own cookie jar) signed in through the login form."""
    clients: list[TestClient] = []

    def login_as(user, login: str | None = None) -> TestClient:
        page = TestClient(app)
        clients.append(page)
        response = page.post("/login", data={"login": login or user.username,
                                             "password": PASSWORD, "next": "/workspace"},
                             follow_redirects=False)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/workspace"
        assert page.cookies.get(SESSION_COOKIE)
        return page

    yield login_as
    for page in clients:
        page.close()


def share(owner, element: dict, *, privacy: str = "private", **levels: str) -> None:
    """Give `element` its own permission set: the owner, plus `levels` by username."""
    grants = [{"username": owner.username, "level": "owner"}]
    grants += [{"username": name, "level": level} for name, level in levels.items()]
    body = {"privacy": privacy, "grants": grants}
    response = owner.put(f"/api/v1/elements/{element['id']}/sharing", json=body)
    assert response.status_code == 200, response.text


def bulk(app, user, kind: str, parent: dict | None, count: int, prefix: str) -> list[str]:
    """Create `count` elements through the service in one transaction (fast), ids in order."""
    parent_id = uuid.UUID(parent["id"]) if parent else None
    actor = Actor(user.id, user.username, frozenset())
    with app.state.sessions() as db:
        ids = [str(create_element(db, actor, kind=kind, name=f"{prefix} {i:03d}",
                                  parent_id=parent_id).id) for i in range(count)]
        db.commit()
    return ids


def listed(page_html: str) -> list[str]:
    """Names of the listed items in the central area, list or cards view, in page order."""
    block = page_html.split('id="items"', 1)[1].split('<nav class="pager"', 1)[0]
    names = re.findall(r'<a (?:class="card-name" )?href="/(?:workspace|files)/' + ID
                       + r'">([^<]*)</a>', block)
    return [html.unescape(n) for n in names]


def listed_ids(page_html: str) -> list[str]:
    block = page_html.split('id="items"', 1)[1].split('<nav class="pager"', 1)[0]
    return re.findall(r'data-id="(' + ID + ')"', block)


def tree_names(fragment: str) -> list[str]:
    return [html.unescape(n) for n in re.findall(r'<span class="tree-name">([^<]*)</span>',
                                                 fragment)]


def href(page_html: str, anchor_id: str) -> str | None:
    found = re.search(r'<a href="([^"]*)" id="' + anchor_id + '"', page_html)
    return html.unescape(found.group(1)) if found else None


def more_url(fragment: str) -> str | None:
    found = re.search(r'<button class="link small" hx-get="([^"]*)"', fragment)
    return html.unescape(found.group(1)) if found else None


def assert_error_page(response, status: int, *words: str) -> str:
    """A full error page (error.html) with `status` and each of `words` in its message."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    body = response.text
    assert "<!doctype html>" in body.lower() and f"HTTP {status}" in body, body[:500]
    message = re.search(r'<p class="error-message">(.*?)</p>', body, re.S)
    assert message, body[:500]
    for word in words:
        assert word.lower() in html.unescape(message.group(1)).lower(), (word, message.group(1))
    return html.unescape(message.group(1))


def assert_htmx_error(response, status: int, *words: str) -> str:
    """An htmx error: the message alone, as plain text (shown with textContent), no page."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert "<html" not in body.lower() and body.strip(), body[:500]
    for word in words:
        assert word.lower() in body.lower(), (word, body)
    return body


def assert_refresh(response) -> None:
    assert response.status_code == 204, (response.status_code, response.text[:500])
    assert response.headers.get("hx-refresh") == "true"


def assert_login_redirect(response, next_path: str) -> None:
    assert response.status_code == 303, (response.status_code, response.text[:300])
    location = response.headers["location"]
    assert location.startswith("/login?next=")
    assert parse_qs(urlsplit(location).query)["next"] == [next_path]


# --- sign-in and sign-out ----------------------------------------------------------------------


def test_root_redirects_to_the_workspace(client):
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/workspace"


def test_login_page_and_wrong_password(client, alice):
    page = client.get("/login?next=/dashboard")
    assert page.status_code == 200
    assert 'action="/login"' in page.text
    assert 'name="next" value="/dashboard"' in page.text
    assert 'id="login-error"' not in page.text

    for login, password in (("alice", "wrong-password"), ("nobody", PASSWORD)):
        response = client.post("/login", data={"login": login, "password": password,
                                                "next": "/dashboard"}, follow_redirects=False)
        assert response.status_code == 401
        assert 'id="login-error"' in response.text
        assert "wrong username/e-mail or password" in response.text
        assert f'value="{login}"' in response.text  # the login typed is kept
        assert 'name="next" value="/dashboard"' in response.text
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    response = client.post("/login", data={"login": " ", "password": ""})
    assert response.status_code == 401
    assert "enter your username or e-mail and your password" in response.text
    assert not client.cookies.get(SESSION_COOKIE)


def test_login_by_email_and_next_only_for_local_paths(app, alice):
    page = TestClient(app)
    for login in ("alice@example.org", "ALICE@example.ORG", "Alice"):
        response = page.post("/login", data={"login": login, "password": PASSWORD,
                                              "next": "/dashboard"}, follow_redirects=False)
        assert response.status_code == 303, (login, response.text)
        assert response.headers["location"] == "/dashboard"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=") and "httponly" in cookie.lower()
        assert page.get("/dashboard").status_code == 200

    for target, expected in (("/jobs?x=1", "/jobs?x=1"), ("//evil.com", "/workspace"),
                             ("https://evil.com", "/workspace"), ("/\\evil.com", "/workspace")):
        response = page.post("/login", data={"login": "alice", "password": PASSWORD,
                                              "next": target}, follow_redirects=False)
        assert response.status_code == 303, target
        assert response.headers["location"] == expected, target
    # The login form itself never carries a foreign target.
    for target in ("//evil.com", "https://evil.com"):
        form = page.get("/login", params={"next": target})
        assert 'name="next" value="/workspace"' in form.text, target
    page.close()


@pytest.mark.parametrize("target", [
    "//evil.com", "//evil.com/workspace", "https://evil.com", "http://evil.com/x", "/\\evil.com",
    "\\\\evil.com", "evil.com", "javascript:alert(1)", "", None, "ftp://x/",
])
def test_safe_next_refuses_foreign_targets(target):
    assert safe_next(target) == "/workspace"


def test_safe_next_keeps_local_paths():
    for target in ("/workspace", "/dashboard", "/workspace/abc?view=cards&sort=date", "/"):
        assert safe_next(target) == target


def test_login_form_escapes_what_it_echoes(client):
    page = client.get("/login", params={"next": '/x"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in page.text
    assert 'value="/x&#34;&gt;&lt;script&gt;' in page.text or \
        'value="/x&quot;&gt;&lt;script&gt;' in page.text
    response = client.post("/login", data={"login": '"><b>x</b>', "password": "wrong-password"})
    assert response.status_code == 401 and "<b>x</b>" not in response.text


def test_deactivated_user_cannot_sign_in_and_loses_the_session(app, alice, login):
    page = login(alice)
    with app.state.sessions() as db:
        db.get(User, alice.id).is_active = False
        db.commit()
    assert_login_redirect(page.get("/dashboard", follow_redirects=False), "/dashboard")
    response = page.post("/login", data={"login": "alice", "password": PASSWORD})
    assert response.status_code == 401 and "deactivated" in response.text


def test_api_login_cookie_opens_pages(app, alice):
    page = TestClient(app)
    response = page.post("/api/v1/auth/login", json={"username": "alice@example.org",
                                                      "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert page.cookies.get(SESSION_COOKIE)
    assert page.get("/workspace").status_code == 200
    page.close()


def test_logout_ends_the_session(app, alice, login):
    page = login(alice)
    secret = page.cookies.get(SESSION_COOKIE)
    response = page.post("/logout", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"] or \
        "max-age=0" in response.headers["set-cookie"].lower()
    assert_login_redirect(page.get("/workspace", follow_redirects=False), "/workspace")
    # The old cookie is dead on the server too, not only deleted in the browser.
    replay = TestClient(app, cookies={SESSION_COOKIE: secret})
    assert_login_redirect(replay.get("/workspace", follow_redirects=False), "/workspace")
    replay.close()
    # Signing out without a session is harmless.
    assert page.post("/logout", follow_redirects=False).status_code == 303


def test_pages_without_a_session_go_to_login(client, alice):
    folder = alice.create("folder", "Project")
    pages = ["/workspace", f"/workspace/{folder['id']}?view=cards&sort=date", "/dashboard",
             "/jobs", "/guide", "/guide/images/a.png", "/ui/tree",
             f"/ui/tree?parent={folder['id']}", f"/ui/elements/{folder['id']}/panel",
             f"/ui/elements/{folder['id']}/sharing", "/ui/users?username=al"]
    for path in pages:
        assert_login_redirect(client.get(path, follow_redirects=False), path)
        response = client.get(path, headers=HX, follow_redirects=False)
        assert response.status_code == 401, path
        # A fragment is no page to come back to: without HX-Current-URL, the workspace.
        assert response.headers["hx-redirect"] == "/login?next=/workspace", path
    # A bad or expired cookie is the same as none.
    client.cookies.set(SESSION_COOKIE, "forged")
    assert_login_redirect(client.get("/workspace", follow_redirects=False), "/workspace")
    client.cookies.clear()
    posts = {"/ui/elements": {"kind": "folder", "name": "x"},
             f"/ui/elements/{folder['id']}/rename": {"name": "y"},
             f"/ui/elements/{folder['id']}/details": {"description": "z"},
             "/ui/elements/delete": {"ids": folder["id"]},
             f"/ui/elements/{folder['id']}/sharing/privacy": {"privacy": "public"},
             f"/ui/elements/{folder['id']}/sharing/grants": {"username": "alice"},
             f"/ui/elements/{folder['id']}/sharing/remove": {"username": "alice"}}
    for path, data in posts.items():
        response = client.post(path, data=data, headers=HX, follow_redirects=False)
        assert response.status_code == 401, path
        assert response.headers["hx-redirect"].startswith("/login?next=")
    assert alice.get(f"/api/v1/elements/{folder['id']}").json()["name"] == "Project"


def test_htmx_login_redirect_leads_back_to_a_page_that_opens(app, alice):
    """After a session expires, an htmx form post sends the browser to the login page; the
    `next` it carries must be a page a GET can open again, not the POST-only form action."""
    anonymous = TestClient(app)
    response = anonymous.post("/ui/elements", data={"kind": "folder", "name": "x"},
                              headers={**HX, "HX-Current-URL": "http://testserver/workspace"},
                              follow_redirects=False)
    assert response.status_code == 401
    next_path = parse_qs(urlsplit(response.headers["hx-redirect"]).query)["next"][0]
    signed_in = anonymous.post("/login", data={"login": "alice", "password": PASSWORD,
                                               "next": next_path})
    assert signed_in.status_code == 200, (next_path, signed_in.status_code)
    anonymous.close()


# --- the workspace page ------------------------------------------------------------------------


def test_workspace_root_lists_own_roots_and_offers_folders_and_workflows(alice, bob, login):
    alice.create("folder", "Beta project")
    alice.create("workflow", "Alpha session", workflow_type="spa")
    alice.create("file", "readme.md")
    bob.create("folder", "Bob private")
    page = login(alice).get("/workspace")
    assert page.status_code == 200
    assert "<title>Workspace · cryovault</title>" in page.text
    assert listed(page.text) == ["Alpha session", "Beta project", "readme.md"]
    assert "Bob private" not in page.text
    kinds = re.findall(r'<option value="(\w+)">', page.text.split('id="add-kind"')[1]
                       .split("</select>")[0])
    assert kinds == ["folder", "workflow"]
    assert 'id="add-element"' in page.text and 'id="add-template"' in page.text
    assert "Workspace root" in page.text  # the panel
    assert 'id="rename-current"' not in page.text and 'id="delete-current"' not in page.text
    assert 'id="sharing-tab"' not in page.text


def test_workspace_element_page_list_and_cards(alice, login):
    folder = alice.create("folder", "Project <A>", description="apoferritin")
    wf = alice.create("workflow", "Session 1", folder["id"], workflow_type="spa")
    alice.create("workflow", "Free work", folder["id"], workflow_type="free")
    page = login(alice)

    listing = page.get(f"/workspace/{folder['id']}")
    assert listing.status_code == 200
    text = listing.text
    assert "<title>Project &lt;A&gt; · cryovault</title>" in text
    assert "Project <A>" not in text  # names are escaped everywhere
    assert '<table class="list" id="items">' in text
    assert listed(text) == ["Free work", "Session 1"]
    assert listed_ids(text)[1] == wf["id"]
    assert 'id="rename-current"' in text and 'id="delete-current"' in text
    assert 'data-after="/workspace"' in text  # deleting a root element goes back to the root
    assert 'id="sharing-tab"' in text and f'hx-get="/ui/elements/{folder["id"]}/sharing"' in text
    assert 'id="general-metadata"' in text and "apoferritin" in text
    # The breadcrumb ends on the current element, unlinked.
    assert '<span class="crumb current" aria-current="page"><small class="kind">folder</small>' \
        ' Project &lt;A&gt;</span>' in text
    # Workflow cards show their steps' statuses in template order.
    dots = re.findall(r'title="(\w+): Not started"', text)
    assert dots == ["Screening", "Imaging", "Processing"]
    assert 'value="workflow"' in text and 'value="folder"' in text  # depth 1: folders allowed

    cards = page.get(f"/workspace/{folder['id']}", params={"view": "cards"})
    assert cards.status_code == 200
    assert '<ul class="cards" id="items">' in cards.text
    assert listed(cards.text) == ["Free work", "Session 1"]
    assert 'id="view-cards" checked' in cards.text
    assert re.findall(r'title="(\w+): Not started"', cards.text) == dots
    # An unknown view falls back to the list.
    assert '<table class="list" id="items">' in page.get(
        f"/workspace/{folder['id']}", params={"view": "bogus"}).text

    # Inside the workflow: breadcrumb through the folder, steps in template order by default.
    steps = page.get(f"/workspace/{wf['id']}")
    assert steps.status_code == 200
    assert listed(steps.text) == ["Screening", "Imaging", "Processing"]
    assert f'<a class="crumb" href="/workspace/{folder["id"]}">' in steps.text
    assert '<option value="position" selected>Template order</option>' in steps.text
    assert 'id="add-element"' not in steps.text  # a template workflow takes no new steps
    assert f'data-after="/workspace/{folder["id"]}"' in steps.text
    by_name = page.get(f"/workspace/{wf['id']}", params={"sort": "name", "view": "cards"})
    assert listed(by_name.text) == ["Imaging", "Processing", "Screening"]
    by_name_desc = page.get(f"/workspace/{wf['id']}", params={"sort": "name", "order": "desc"})
    assert listed(by_name_desc.text) == ["Screening", "Processing", "Imaging"]
    assert '<option value="desc" selected>' in by_name_desc.text


def test_workspace_sort_and_order(app, alice, login):
    folder = alice.create("folder", "Sorted")
    # Created in this order: date order differs from name order.
    for name in ("bravo", "Alpha", "charlie"):
        alice.create("workflow", name, folder["id"])
    page = login(alice)
    url = f"/workspace/{folder['id']}"
    assert listed(page.get(url).text) == ["Alpha", "bravo", "charlie"]  # case-insensitive
    assert listed(page.get(url, params={"order": "desc"}).text) == ["charlie", "bravo", "Alpha"]
    assert listed(page.get(url, params={"sort": "date"}).text) == ["bravo", "Alpha", "charlie"]
    assert listed(page.get(url, params={"sort": "date", "order": "desc"}).text) == \
        ["charlie", "Alpha", "bravo"]
    assert_error_page(page.get(url, params={"sort": "size"}), 422, "sort must be one of")
    assert_error_page(page.get(url, params={"order": "up"}), 422, "order must be asc or desc")
    assert_error_page(page.get(url, params={"cursor": "not-a-cursor"}), 422, "cursor")
    # htmx view switches get the central area alone.
    central = page.get(url, params={"view": "cards"}, headers={**HX, "HX-Target": "central"})
    assert central.status_code == 200
    assert "<html" not in central.text and '<nav class="breadcrumb"' in central.text
    assert listed(central.text) == ["Alpha", "bravo", "charlie"]
    full = page.get(url, headers=HX)  # htmx, but not aimed at the central area
    assert "<!doctype html>" in full.text


@pytest.mark.parametrize("view", ["list", "cards"])
def test_workspace_pagination_follows_next_page_links(app, alice, login, view):
    folder = alice.create("folder", "Big")
    ids = bulk(app, alice, "folder", folder, 105, "Item")
    names = [f"Item {i:03d}" for i in range(105)]
    page = login(alice)
    url = f"/workspace/{folder['id']}"

    first = page.get(url, params={"view": view, "sort": "name"})
    assert first.status_code == 200
    assert listed(first.text) == names[:100]
    assert listed_ids(first.text) == ids[:100]
    assert "« First page" not in first.text
    link = href(first.text, "next-page")
    assert link and "Next page »" in first.text
    assert f"view={view}" in link and "sort=name" in link

    second = page.get(urljoin(url, link))
    assert second.status_code == 200, second.text[:300]
    assert listed(second.text) == names[100:]
    assert href(second.text, "next-page") is None
    assert "« First page" in second.text

    # Sorted by date, newest first, across pages as well.
    first = page.get(url, params={"view": view, "sort": "date", "order": "desc"})
    second = page.get(urljoin(url, href(first.text, "next-page")))
    assert second.status_code == 200, second.text[:300]
    assert listed(first.text) + listed(second.text) == names[::-1]


def test_next_page_link_of_a_default_sorted_page_opens(app, alice, login):
    """Opened without `sort` (the default: name, template order in a workflow), the page's own
    "Next page" and "First page" links must open."""
    folder = alice.create("folder", "Big")
    bulk(app, alice, "folder", folder, 101, "Item")
    wf = alice.create("workflow", "Many steps", workflow_type="free")
    bulk(app, alice, "step", wf, 103, "Step")
    page = login(alice)
    for element, names in ((folder, [f"Item {i:03d}" for i in range(101)]),
                           (wf, [f"Step {i:03d}" for i in range(103)])):
        url = f"/workspace/{element['id']}"
        first = page.get(url)
        assert listed(first.text) == names[:100]
        second = page.get(urljoin(url, href(first.text, "next-page")))
        assert second.status_code == 200, (element["name"], second.text[:600])
        assert listed(second.text) == names[100:]
        back = re.search(r'<a href="([^"]*)">« First page</a>', second.text)
        again = page.get(urljoin(url, html.unescape(back.group(1))))
        assert again.status_code == 200 and listed(again.text) == names[:100]


def test_unknown_malformed_and_invisible_elements_are_404_pages(alice, bob, login):
    hidden = bob.create("folder", "Bob's secret")
    page = login(alice)
    for element_id in ("not-a-uuid", str(uuid.uuid4()), hidden["id"]):
        for path in (f"/workspace/{element_id}", f"/ui/elements/{element_id}/panel",
                     f"/ui/elements/{element_id}/sharing", f"/ui/tree?parent={element_id}"):
            message = assert_error_page(page.get(path), 404, "no element with id")
            assert "secret" not in message
            response = page.get(path, headers=HX)
            assert_htmx_error(response, 404, "no element with id")
        for path, data in ((f"/ui/elements/{element_id}/rename", {"name": "x"}),
                           (f"/ui/elements/{element_id}/details", {"description": "x"}),
                           ("/ui/elements/delete", {"ids": element_id}),
                           ("/ui/elements", {"kind": "folder", "name": "x",
                                             "parent_id": element_id}),
                           (f"/ui/elements/{element_id}/sharing/grants", {"username": "alice"})):
            assert_htmx_error(page.post(path, data=data, headers=HX), 404, "no element")
    assert_error_page(page.get("/no/such/page"), 404, "there is no page at /no/such/page")
    assert bob.get(f"/api/v1/elements/{hidden['id']}").json()["name"] == "Bob's secret"


def test_card_ancestor_page_shows_the_path_only(alice, bob, login):
    folder = alice.create("folder", "Alice folder", description="private words")
    inner = alice.create("folder", "Alice inner", folder["id"])
    wf = alice.create("workflow", "Shared session", inner["id"], workflow_type="spa")
    alice.create("workflow", "Not shared", inner["id"])
    share(alice, wf, bob="viewer")
    page = login(bob)

    root = page.get("/workspace")
    assert listed(root.text) == ["Alice folder"]
    assert '<span class="badge muted">path only</span>' in root.text

    for element in (folder, inner):
        card = page.get(f"/workspace/{element['id']}")
        assert card.status_code == 200
        text = card.text
        assert '<span class="badge muted">path only</span>' in text
        assert "only as the path to something shared with you inside it" in text
        for control in ('id="rename-current"', 'id="delete-current"', 'id="add-element"',
                        'id="add-dialog"', 'id="sharing-tab"', 'id="details-form"',
                        'data-actions="download delete"'):
            assert control not in text, control
        assert "private words" not in text and "Your access" not in text
    inner_page = page.get(f"/workspace/{inner['id']}").text
    assert listed(inner_page) == ["Shared session"]
    assert "Not shared" not in inner_page

    # On the shared workflow itself bob is a viewer: details, no editing.
    shared = page.get(f"/workspace/{wf['id']}").text
    assert "path only" not in shared and 'id="sharing-tab"' in shared
    assert 'id="rename-current"' not in shared and 'id="delete-current"' not in shared
    assert 'id="details-form"' not in shared and "<dd>viewer</dd>" in shared
    assert listed(shared) == ["Screening", "Imaging", "Processing"]

    # Cards refuse the actions the page hides.
    assert_error_page(page.post(f"/ui/elements/{folder['id']}/rename", data={"name": "x"}),
                      403, "only shown to you as a path")
    assert_htmx_error(page.get(f"/ui/elements/{folder['id']}/sharing", headers=HX), 403,
                      "only shown to you as a path")


# --- the explorer tree -------------------------------------------------------------------------


def test_tree_root_and_children(alice, bob, login):
    folder = alice.create("folder", "Project")
    alice.create("folder", "Archive")
    alice.create("file", "root-notes.txt")
    wf = alice.create("workflow", "Session", folder["id"], workflow_type="spa")
    bob.create("folder", "Bob private")
    page = login(alice)

    root = page.get("/ui/tree", headers=HX)
    assert root.status_code == 200
    assert "<html" not in root.text
    assert tree_names(root.text) == ["Archive", "Project"]  # files stay in the central area
    assert f'hx-get="/ui/tree?parent={folder["id"]}&sort=name&order=asc"' in root.text
    assert more_url(root.text) is None
    assert tree_names(page.get("/ui/tree", params={"order": "desc"}).text) == \
        ["Project", "Archive"]
    assert tree_names(page.get("/ui/tree", params={"sort": "date"}).text) == \
        ["Project", "Archive"]
    # An unknown sort falls back to names.
    assert tree_names(page.get("/ui/tree", params={"sort": "size"}).text) == \
        ["Archive", "Project"]

    child = page.get("/ui/tree", params={"parent": folder["id"]})
    assert tree_names(child.text) == ["Session"]
    steps = page.get("/ui/tree", params={"parent": wf["id"]})
    assert tree_names(steps.text) == ["Imaging", "Processing", "Screening"]
    empty = page.get("/ui/tree", params={"parent": alice.create("folder", "Empty")["id"]})
    assert "tree-empty" in empty.text and tree_names(empty.text) == []


def test_tree_pagination(app, alice, login):
    folder = alice.create("folder", "Big")
    bulk(app, alice, "folder", folder, 105, "Node")
    names = [f"Node {i:03d}" for i in range(105)]
    page = login(alice)
    first = page.get("/ui/tree", params={"parent": folder["id"]})
    assert tree_names(first.text) == names[:100]
    link = more_url(first.text)
    assert link and f"parent={folder['id']}" in link
    second = page.get(link)
    assert second.status_code == 200, second.text[:300]
    assert tree_names(second.text) == names[100:]
    assert more_url(second.text) is None and "tree-empty" not in second.text

    # Root level, by date, newest first.
    bulk(app, alice, "folder", None, 101, "Root")
    first = page.get("/ui/tree", params={"sort": "date", "order": "desc"})
    second = page.get(more_url(first.text))
    assert second.status_code == 200, second.text[:300]
    assert tree_names(first.text) + tree_names(second.text) == \
        [f"Root {i:03d}" for i in range(100, -1, -1)] + ["Big"]


def test_tree_pages_are_not_filled_with_hidden_files(app, alice, login):
    """Files are listed in the central area, not in the tree: a step holding 120 files and one
    dataset shows the dataset on the tree's first page, not an empty page with "More…"."""
    wf = alice.create("workflow", "Session", workflow_type="free")
    step = alice.create("step", "Imaging", wf["id"])
    bulk(app, alice, "file", step, 120, "a-movie")
    alice.create("dataset", "z-run", step["id"])
    page = login(alice)
    first = page.get("/ui/tree", params={"parent": step["id"]})
    assert first.status_code == 200
    assert tree_names(first.text) == ["z-run"], first.text[:300]
    assert more_url(first.text) is None


# --- data panel and sharing tab ----------------------------------------------------------------


def test_panel_for_owner_and_viewer(alice, bob, login):
    folder = alice.create("folder", "Project", description="<i>apoferritin</i>")
    wf = alice.create("workflow", "Free", folder["id"], workflow_type="free")
    step = alice.create("step", "Grid prep", wf["id"])
    share(alice, folder, bob="viewer")

    owner = login(alice)
    panel = owner.get(f"/ui/elements/{folder['id']}/panel", headers=HX)
    assert panel.status_code == 200 and "<html" not in panel.text
    assert 'id="general-metadata"' in panel.text and 'id="details-form"' in panel.text
    assert "&lt;i&gt;apoferritin&lt;/i&gt;" in panel.text
    assert "<dd>owner</dd>" in panel.text and "<dd>alice</dd>" in panel.text
    assert 'id="status-select"' not in panel.text  # folders have no status
    step_panel = owner.get(f"/ui/elements/{step['id']}/panel").text
    assert 'id="status-select"' in step_panel
    assert '<option value="not_started" selected>' in step_panel

    viewer = login(bob).get(f"/ui/elements/{folder['id']}/panel")
    assert viewer.status_code == 200
    assert 'id="details-form"' not in viewer.text
    assert '<p class="description">&lt;i&gt;apoferritin&lt;/i&gt;</p>' in viewer.text
    assert "<dd>viewer</dd>" in viewer.text


def test_sharing_tab_editable_for_owner_read_only_for_viewer(alice, bob, make_user, login):
    make_user("carol")
    folder = alice.create("folder", "Project")
    wf = alice.create("workflow", "Session", folder["id"])
    share(alice, folder, bob="viewer", carol="collaborator")

    owner = login(alice).get(f"/ui/elements/{folder['id']}/sharing", headers=HX)
    assert owner.status_code == 200 and "<html" not in owner.text
    assert 'id="sharing-panel"' in owner.text
    assert 'id="sharing-readonly"' not in owner.text
    assert 'id="add-grant"' in owner.text
    assert 'value="private" checked id="privacy-private"' in owner.text
    assert 'data-username="alice"' in owner.text.split('id="owners"')[1].split("</ul>")[0]
    members = owner.text.split('id="members"')[1].split("</ul>")[0]
    assert re.findall(r'data-username="(\w+)"', members) == ["carol", "bob"]

    for user in (bob, make_user("dave")):
        if user.username == "dave":
            share(alice, folder, bob="viewer", carol="collaborator", dave="collaborator")
        tab = login(user).get(f"/ui/elements/{folder['id']}/sharing")
        assert tab.status_code == 200
        assert 'id="sharing-readonly"' in tab.text
        for control in ('id="add-grant"', "hx-post", 'id="privacy-private"'):
            assert control not in tab.text, (user.username, control)
        assert '<p id="privacy-state">Private</p>' in tab.text

    # An element inside says where its sharing comes from.
    inherited = login(alice).get(f"/ui/elements/{wf['id']}/sharing").text
    assert "Inherited from" in inherited and f'href="/workspace/{folder["id"]}"' in inherited


def test_sharing_forms_add_change_remove_and_privacy(alice, bob, login):
    folder = alice.create("folder", "Project")
    page = login(alice)
    base = f"/ui/elements/{folder['id']}/sharing"

    def members(fragment: str) -> dict[str, str]:
        block = fragment.split('id="members"')[1].split("</ul>")[0]
        found = re.findall(r'data-username="(\w+)".*?<option value="(\w+)" selected>', block,
                           re.S)
        return dict(found)

    added = page.post(f"{base}/grants", data={"username": " BOB ", "level": "viewer"},
                      headers=HX)
    assert added.status_code == 200, added.text
    assert 'id="sharing-panel"' in added.text and members(added.text) == {"bob": "viewer"}
    assert bob.get(f"/api/v1/elements/{folder['id']}").json()["access"] == "viewer"

    changed = page.post(f"{base}/grants", data={"username": "bob", "level": "collaborator"},
                        headers=HX)
    assert members(changed.text) == {"bob": "collaborator"}
    assert bob.get(f"/api/v1/elements/{folder['id']}").json()["access"] == "collaborator"

    public = page.post(f"{base}/privacy", data={"privacy": "public", "everybody": "collaborator"},
                       headers=HX)
    assert public.status_code == 200
    assert 'value="public" checked id="privacy-public"' in public.text
    assert '<option value="collaborator" selected>collaborator</option>' in public.text
    assert members(public.text) == {"bob": "collaborator"}  # grants are kept
    private = page.post(f"{base}/privacy", data={"privacy": "private"}, headers=HX)
    assert 'value="private" checked id="privacy-private"' in private.text
    assert 'id="everybody-level" disabled' in private.text

    removed = page.post(f"{base}/remove", data={"username": "Bob"}, headers=HX)
    assert removed.status_code == 200
    assert members(removed.text) == {} and "Nobody yet." in removed.text
    assert bob.get(f"/api/v1/elements/{folder['id']}").status_code == 404

    # Broken rules come back as messages for the form's error slot.
    assert_htmx_error(page.post(f"{base}/remove", data={"username": "alice"}, headers=HX),
                      422, "must keep at least one owner")
    assert_htmx_error(page.post(f"{base}/grants", data={"username": "alice", "level": "viewer"},
                                headers=HX), 422, "must keep at least one owner")
    assert_htmx_error(page.post(f"{base}/grants", data={"username": "nobody"}, headers=HX),
                      422, "no such user: nobody")
    assert_htmx_error(page.post(f"{base}/grants", data={"username": "  "}, headers=HX),
                      422, "type the username")
    assert_htmx_error(page.post(f"{base}/grants", data={"username": "bob", "level": "god"},
                                headers=HX), 422, "unknown permission level")
    assert_htmx_error(page.post(f"{base}/privacy", data={"privacy": "secret"}, headers=HX),
                      422, "privacy must be")
    assert_error_page(page.post(f"{base}/privacy", data={}), 422, "privacy")
    assert alice.get(f"/api/v1/elements/{folder['id']}/sharing").json()["privacy"] == "private"


def test_sharing_forms_are_refused_to_non_owners(alice, bob, login):
    folder = alice.create("folder", "Project")
    share(alice, folder, bob="collaborator")
    page = login(bob)
    base = f"/ui/elements/{folder['id']}/sharing"
    for path, data in ((f"{base}/grants", {"username": "bob", "level": "owner"}),
                       (f"{base}/remove", {"username": "alice"}),
                       (f"{base}/privacy", {"privacy": "public"})):
        assert_htmx_error(page.post(path, data=data, headers=HX), 403,
                          "you are collaborator", "must be owner")
    grants = alice.get(f"/api/v1/elements/{folder['id']}/sharing").json()["grants"]
    assert {g["username"]: g["level"] for g in grants} == {"alice": "owner",
                                                           "bob": "collaborator"}


def test_user_autocomplete_options(alice, bob, make_user, login):
    make_user("albert", email="bert@example.org")
    make_user("zed", email="alpha@example.org")
    page = login(bob)
    options = page.get("/ui/users", params={"username": "al"}, headers=HX)
    assert options.status_code == 200 and "<html" not in options.text
    values = re.findall(r'<option value="([^"]*)">', options.text)
    assert values == ["albert", "alice", "zed"]  # username or e-mail starting with "al"
    assert "alice · alice@example.org" in options.text
    assert re.findall(r'<option value="([^"]*)">', page.get("/ui/users?q=ALI").text) == ["alice"]
    assert page.get("/ui/users?username=+").text.strip() == ""
    assert page.get("/ui/users?username=nobody").text.strip() == ""
    assert_htmx_error(page.get("/ui/users", params={"q": "a" * 151}, headers=HX), 422, "q")


def test_user_autocomplete_takes_wildcards_literally(alice, bob, login):
    """Options are users whose username, e-mail or name *starts with* what was typed: no user
    name starts with "%", so "%" must not list everybody."""
    page = login(bob)
    for typed in ("%", "%%", "a%"):
        options = page.get("/ui/users", params={"username": typed})
        assert options.status_code == 200
        assert re.findall(r'<option value="([^"]*)">', options.text) == [], typed
    assert re.findall(r'<option value="([^"]*)">', page.get("/ui/users?q=_").text) == []


# --- element forms -----------------------------------------------------------------------------


def test_create_every_kind_through_the_add_dialog(alice, login):
    page = login(alice)
    # The dialog sends every select it shows; only the one of the chosen kind counts.
    assert_refresh(page.post("/ui/elements", data={
        "kind": "folder", "name": "Project", "parent_id": "", "workflow_type": "spa",
        "dataset_type": "free", "description": "from the portal"}, headers=HX))
    folder = alice.children()[0]
    assert (folder["name"], folder["description"], folder["workflow_type"]) == \
        ("Project", "from the portal", None)

    assert_refresh(page.post("/ui/elements", data={
        "kind": "workflow", "name": "Session", "parent_id": folder["id"],
        "workflow_type": "et", "dataset_type": "free"}, headers=HX))
    wf = alice.children(folder["id"])[0]
    assert wf["workflow_type"] == "et"
    assert [s["name"] for s in alice.children(wf["id"])] == \
        ["Vitrification", "Milling", "Imaging", "Processing"]

    assert_refresh(page.post("/ui/elements", data={
        "kind": "workflow", "name": "Free", "parent_id": folder["id"]}, headers=HX))
    free = next(w for w in alice.children(folder["id"]) if w["name"] == "Free")
    assert free["workflow_type"] == "free"
    free_page = page.get(f"/workspace/{free['id']}").text
    assert re.findall(r'<option value="(\w+)">', free_page.split('id="add-kind"')[1]
                      .split("</select>")[0]) == ["step"]
    assert_refresh(page.post("/ui/elements", data={
        "kind": "step", "name": "Grid prep", "parent_id": free["id"], "workflow_type": "spa"},
        headers=HX))
    step = alice.children(free["id"])[0]
    assert step["name"] == "Grid prep" and step["status"] == "not_started"

    imaging = next(s for s in alice.children(wf["id"]) if s["name"] == "Imaging")
    step_page = page.get(f"/workspace/{imaging['id']}").text
    assert re.findall(r'<option value="(\w+)">', step_page.split('id="add-dataset-type"')[1]
                      .split("</select>")[0]) == ["free", "tomo_run"]
    for dataset_type in ("free", "tomo_run"):
        assert_refresh(page.post("/ui/elements", data={
            "kind": "dataset", "name": f"Run {dataset_type}", "parent_id": imaging["id"],
            "dataset_type": dataset_type, "workflow_type": "spa"}, headers=HX))
    assert sorted(d["dataset_type"] for d in alice.children(imaging["id"])) == \
        ["free", "tomo_run"]
    # The new elements are on the pages.
    assert listed(page.get(f"/workspace/{imaging['id']}").text) == ["Run free", "Run tomo_run"]


def test_create_refusals_are_messages(alice, bob, login):
    folder = alice.create("folder", "Project")
    wf = alice.create("workflow", "Session", folder["id"], workflow_type="spa")
    screening = alice.children(wf["id"])[0]
    page = login(alice)

    def create(**data):
        return page.post("/ui/elements", data=data, headers=HX)

    for name, words in (("a/b", ["'/'"]), ("", ["must not be empty"]),
                        ("   ", ["must not be empty"]), ("..", ["not valid names"]),
                        ("tab\there", ["control characters"]), ("x" * 256, ["255"])):
        assert_htmx_error(create(kind="folder", name=name), 422, *words)
    assert_htmx_error(create(kind="<script>", name="x"), 422, "unknown kind")
    refused = create(kind="<script>", name="x")  # plain text, which the page never parses
    assert refused.headers["content-type"].startswith("text/plain")
    assert "'<script>'" in refused.text
    assert_htmx_error(create(name="x"), 422, "kind")  # a missing field
    assert_htmx_error(create(kind="step", name="Extra", parent_id=wf["id"]), 422,
                      "only free workflows take new steps")
    assert_htmx_error(create(kind="workflow", name="x", workflow_type="nope"), 422,
                      "unknown workflow type")
    assert_htmx_error(create(kind="dataset", name="x", parent_id=screening["id"],
                             dataset_type="lp_run"), 422, "accepts datasets of type")
    assert_htmx_error(create(kind="step", name="x"), 422, "cannot be created at the root")
    # The same refusal on a plain form post is an error page.
    assert_error_page(page.post("/ui/elements", data={"kind": "folder", "name": "a/b"}), 422,
                      "must not contain '/'")
    assert_error_page(page.post("/ui/elements", data={"kind": "folder", "name": "x",
                                                      "parent_id": "zzz"}), 404)
    # Creating inside what one may only view is forbidden.
    share(alice, folder, bob="viewer")
    assert_htmx_error(login(bob).post("/ui/elements", data={
        "kind": "workflow", "name": "Mine", "parent_id": folder["id"]}, headers=HX),
        403, "you are viewer")
    assert [e["name"] for e in alice.children(folder["id"])] == ["Session"]


def test_folder_depth_limit(alice, login):
    page = login(alice)
    parent = None
    for depth in range(3):  # default maximum folder depth 2: levels 0, 1 and 2
        assert_refresh(page.post("/ui/elements", data={
            "kind": "folder", "name": f"Level {depth}", "parent_id": parent or ""}, headers=HX))
        parent = alice.children(parent)[0]["id"]
    deepest = page.get(f"/workspace/{parent}").text
    kinds = re.findall(r'<option value="(\w+)">', deepest.split('id="add-kind"')[1]
                       .split("</select>")[0])
    assert kinds == ["workflow"]  # no folder offered any deeper
    assert_htmx_error(page.post("/ui/elements", data={
        "kind": "folder", "name": "Level 3", "parent_id": parent}, headers=HX),
        422, "at most 3 levels deep")
    assert alice.children(parent) == []
    assert_refresh(page.post("/ui/elements", data={
        "kind": "workflow", "name": "Deep workflow", "parent_id": parent}, headers=HX))


def test_rename_and_details(alice, bob, login):
    folder = alice.create("folder", "Project")
    wf = alice.create("workflow", "Session", folder["id"], workflow_type="free")
    step = alice.create("step", "Grid prep", wf["id"])
    spa = alice.create("workflow", "SPA", folder["id"], workflow_type="spa")
    page = login(alice)

    assert_refresh(page.post(f"/ui/elements/{folder['id']}/rename",
                             data={"name": "  Renamed <b>  "}, headers=HX))
    assert alice.get(f"/api/v1/elements/{folder['id']}").json()["name"] == "Renamed <b>"
    assert "<h1>" in page.get(f"/workspace/{folder['id']}").text
    assert "Renamed &lt;b&gt;" in page.get(f"/workspace/{folder['id']}").text
    assert_htmx_error(page.post(f"/ui/elements/{folder['id']}/rename", data={"name": ""},
                                headers=HX), 422, "must not be empty")
    assert_htmx_error(page.post(f"/ui/elements/{folder['id']}/rename", data={"name": "x/y"},
                                headers=HX), 422, "'/'")
    spa_step = alice.children(spa["id"])[0]
    assert_htmx_error(page.post(f"/ui/elements/{spa_step['id']}/rename", data={"name": "x"},
                                headers=HX), 422, "keep their template names")

    assert_refresh(page.post(f"/ui/elements/{step['id']}/details",
                             data={"description": "glow discharge", "status": "in_progress"},
                             headers=HX))
    got = alice.get(f"/api/v1/elements/{step['id']}").json()
    assert (got["description"], got["status"]) == ("glow discharge", "in_progress")
    assert 'class="status status-in_progress">In progress</span>' in \
        page.get(f"/workspace/{step['id']}").text
    # The details form of a folder sends no status.
    assert_refresh(page.post(f"/ui/elements/{folder['id']}/details",
                             data={"description": "new words"}, headers=HX))
    assert alice.get(f"/api/v1/elements/{folder['id']}").json()["description"] == "new words"
    assert_htmx_error(page.post(f"/ui/elements/{folder['id']}/details",
                                data={"status": "completed"}, headers=HX), 422, "has no status")
    assert_htmx_error(page.post(f"/ui/elements/{step['id']}/details",
                                data={"status": "done"}, headers=HX), 422, "unknown status")
    assert_htmx_error(page.post(f"/ui/elements/{step['id']}/details",
                                data={"description": "x" * 20_001}, headers=HX), 422,
                      "description")
    assert alice.get(f"/api/v1/elements/{step['id']}").json()["status"] == "in_progress"


def test_viewer_gets_403_for_rename_details_and_delete(alice, bob, login):
    folder = alice.create("folder", "Project")
    share(alice, folder, bob="viewer")
    page = login(bob)
    folder_page = page.get(f"/workspace/{folder['id']}").text
    assert 'id="rename-current"' not in folder_page and 'id="delete-current"' not in folder_page
    assert 'id="add-element"' not in folder_page
    assert_error_page(page.post(f"/ui/elements/{folder['id']}/rename", data={"name": "Mine"}),
                      403, "you are viewer", "must be collaborator")
    assert "Not allowed" in page.post(f"/ui/elements/{folder['id']}/rename",
                                      data={"name": "Mine"}).text
    assert_htmx_error(page.post(f"/ui/elements/{folder['id']}/details",
                                data={"description": "Mine"}, headers=HX), 403, "you are viewer")
    assert_error_page(page.post("/ui/elements/delete", data={"ids": [folder["id"]]}), 403,
                      "you are viewer", "must be owner")
    got = alice.get(f"/api/v1/elements/{folder['id']}").json()
    assert (got["name"], got["description"]) == ("Project", "")


def test_delete_by_the_owner(alice, login):
    folder = alice.create("folder", "Project")
    wf = alice.create("workflow", "Session", folder["id"], workflow_type="spa")
    other = alice.create("workflow", "Other", folder["id"])
    keep = alice.create("workflow", "Keep", folder["id"])
    page = login(alice)
    page.get(f"/workspace/{wf['id']}")  # a recent visit of the doomed workflow

    response = page.post("/ui/elements/delete", data={"ids": [wf["id"], other["id"]]},
                         headers=HX)
    assert_refresh(response)
    # The test client returns after the background job ran: the subtree is gone.
    for element in (wf, other):
        assert_error_page(page.get(f"/workspace/{element['id']}"), 404)
        assert alice.get(f"/api/v1/elements/{element['id']}").status_code == 404
    assert listed(page.get(f"/workspace/{folder['id']}").text) == ["Keep"]
    jobs = page.get("/jobs").text
    completed = jobs.split('id="jobs-completed"')[1].split("</section>")[0]
    assert completed.count('data-status="completed"') == 2
    assert "Session" in completed and "Other" in completed
    dashboard = page.get("/dashboard").text
    assert "Session" not in dashboard.split('id="recent"')[1].split("</section>")[0]
    assert "No jobs." not in jobs
    assert keep["id"] in page.get(f"/workspace/{folder['id']}").text

    assert_htmx_error(page.post("/ui/elements/delete", data={}, headers=HX), 422,
                      "select at least one element")
    spa = alice.create("workflow", "SPA", folder["id"], workflow_type="spa")
    assert_htmx_error(page.post("/ui/elements/delete",
                                data={"ids": [alice.children(spa["id"])[0]["id"]]}, headers=HX),
                      422, "cannot be deleted on their own")


def test_delete_is_all_or_nothing(alice, bob, login):
    mine = alice.create("folder", "Mine")
    mine_too = alice.create("folder", "Mine too")
    theirs = bob.create("folder", "Theirs")
    share(bob, theirs, alice="collaborator")
    page = login(alice)

    for ids in ([mine["id"], theirs["id"]], [theirs["id"], mine["id"]],
                [mine["id"], mine_too["id"], theirs["id"]]):
        assert_htmx_error(page.post("/ui/elements/delete", data={"ids": ids}, headers=HX), 403,
                          "you are collaborator", "must be owner")
    for ids, status in (([mine["id"], str(uuid.uuid4())], 404), ([mine["id"], "junk"], 404)):
        assert page.post("/ui/elements/delete", data={"ids": ids},
                         headers=HX).status_code == status
    # Nothing was deleted nor left marked as being deleted.
    for element in (mine, mine_too):
        got = alice.get(f"/api/v1/elements/{element['id']}")
        assert got.status_code == 200, got.text
        assert got.json()["status"] != "deleting"
        assert page.get(f"/workspace/{element['id']}").status_code == 200
    assert bob.get(f"/api/v1/elements/{theirs['id']}").status_code == 200
    jobs = page.get("/jobs").text
    assert "No jobs." in jobs
    assert sorted(listed(page.get("/workspace").text)) == ["Mine", "Mine too", "Theirs"]
    # The non-owner's own delete is refused the same way.
    bob_page = login(bob)
    share(alice, mine, bob="collaborator")
    assert_error_page(bob_page.post("/ui/elements/delete", data={"ids": mine["id"]}), 403)
    assert alice.get(f"/api/v1/elements/{mine['id']}").status_code == 200


# --- dashboard, jobs, guide --------------------------------------------------------------------


def test_dashboard_recent_elements(alice, bob, login):
    own = alice.create("folder", "Own folder")
    wf = alice.create("workflow", "Own workflow", own["id"], workflow_type="spa")
    step = alice.children(wf["id"])[0]
    theirs = bob.create("folder", "Bob shared")
    share(bob, theirs, alice="viewer")
    page = login(alice)

    def recent() -> list[str]:
        dashboard = page.get("/dashboard")
        assert dashboard.status_code == 200
        block = dashboard.text.split('id="recent"')[1].split("</section>")[0]
        return [html.unescape(n).strip() for n in
                re.findall(r'<a href="/workspace/' + ID + r'">.*?</span>([^<]*)</a>', block)]

    assert recent() == []
    assert "The folders and workflows you open appear here." in page.get("/dashboard").text
    for element in (theirs, own, wf, step):
        assert page.get(f"/workspace/{element['id']}").status_code == 200
    assert recent() == ["Own workflow", "Own folder", "Bob shared"]  # steps are not tracked
    page.get(f"/workspace/{theirs['id']}")
    assert recent() == ["Bob shared", "Own workflow", "Own folder"]

    share(bob, theirs)  # alice loses her access
    assert recent() == ["Own workflow", "Own folder"]
    dashboard = page.get("/dashboard").text
    assert "Bob shared" not in dashboard
    assert 'id="jobs-summary"' in dashboard and "cryovault" in dashboard
    assert recent() == ["Own workflow", "Own folder"]


def test_jobs_page(alice, bob, login):
    folder = alice.create("folder", "Doomed <x>")
    page = login(alice)
    empty = page.get("/jobs")
    assert empty.status_code == 200 and "No jobs." in empty.text
    assert_refresh(page.post("/ui/elements/delete", data={"ids": folder["id"]}, headers=HX))
    jobs = page.get("/jobs").text
    row = jobs.split("<tbody>")[1].split("</tbody>")[0]
    assert "<td>delete</td>" in row and "Doomed &lt;x&gt;" in row and "<td>alice</td>" in row
    assert 'data-status="completed"' in row
    assert 'id="jobs-completed"' in jobs and 'id="remove-finished"' in jobs
    # the owner removes the finished job from the list; the panel's partial follows
    job_id = re.search(r'data-job="(' + ID + ')"', row).group(1)
    removed = page.post(f"/ui/jobs/{job_id}/remove", headers=HX)
    assert removed.status_code == 204 and removed.headers["hx-trigger"] == "jobs-changed"
    assert "No jobs." in page.get("/ui/jobs").text
    assert page.get("/ui/jobs/summary").text == ""
    dashboard = page.get("/dashboard").text
    summary = dashboard.split('id="jobs-summary"')[1].split("</section>")[0]
    assert '<span class="count">0</span> completed' in summary
    # Finished jobs are only their starter's.
    assert "No jobs." in login(bob).get("/jobs").text


def test_user_guide_as_installed(alice, login):
    """The real docs/ folder: the guide page when docs/user-guide.md exists, else a 404 page."""
    page = login(alice)
    source = dashboard_pages.DOCS_DIR / "user-guide.md"
    response = page.get("/guide")
    if source.is_file():
        assert response.status_code == 200
        assert '<article class="prose">' in response.text
        assert 'src="images/' not in response.text
    else:
        assert_error_page(response, 404, "the user guide is not installed")


def test_user_guide_rendering_and_images(alice, login, monkeypatch, tmp_path):
    docs = tmp_path / "docs"
    (docs / "images").mkdir(parents=True)
    (docs / "user-guide.md").write_text(
        "# Welcome\n\nSee ![tree](images/tree.png).\n\n<script>alert(1)</script>\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n", encoding="utf-8")
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    (docs / "images" / "tree.png").write_bytes(png)
    (docs / "images" / "notes.txt").write_text("not an image")
    (docs / "secret.png").write_bytes(png)
    (docs / "images" / "link.png").symlink_to(docs / "secret.png")
    monkeypatch.setattr(dashboard_pages, "DOCS_DIR", docs)
    page = login(alice)

    guide = page.get("/guide")
    assert guide.status_code == 200
    assert "<h1>Welcome</h1>" in guide.text
    assert '<img src="/guide/images/tree.png" alt="tree"' in guide.text
    assert "<script>alert(1)</script>" not in guide.text  # raw HTML is not rendered
    assert "<table>" in guide.text
    image = page.get("/guide/images/tree.png")
    assert image.status_code == 200 and image.content == png
    assert image.headers["content-type"] == "image/png"

    # (A literal "../" is resolved by the client; encoded dots reach the server.)
    for name in ("notes.txt", "missing.png", "%2E%2E", "%2E%2E%2Fsecret.png", "..%2Fsecret.png",
                 "link.png", "..%5Csecret.png", "TREE.PNG.txt"):
        response = page.get(f"/guide/images/{name}")
        assert response.status_code == 404, (name, response.status_code)
        assert png not in response.content
