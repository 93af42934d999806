"""Notes and references (SPEC WS-8) through the API: markdown without script injection,
authors and times, collaborators' edits, references to elements and external resources."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from cryovault.workspace.notes import render_markdown
from tests.helpers import assert_error

XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](  javascript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![img](javascript:alert(1))",
    "![img](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "<a href=\"javascript:alert(1)\">x</a>",
    "[x](java\tscript:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "<div style=\"background:url(javascript:alert(1))\">x</div>",
    "<<script>script>alert(1)<</script>/script>",
    "`<script>alert(1)</script>`",
    "<details open ontoggle=alert(1)>",
    "[x](file:///etc/passwd)",
    "\"><script>alert(1)</script>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
]


SAFE_TAGS = {"p", "strong", "em", "code", "pre", "a", "ul", "ol", "li", "blockquote", "h1",
             "h2", "h3", "h4", "h5", "h6", "hr", "br", "table", "thead", "tbody", "tr", "th",
             "td", "s", "img"}
SAFE_URL = ("http://", "https://", "mailto:", "/", "#")


class _Tags(HTMLParser):
    """Every element and attribute the browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _assert_safe(html: str, payload: str) -> None:
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        assert tag in SAFE_TAGS, (payload, tag, html)
        for name, value in attrs.items():
            assert not name.startswith("on") and name != "style", (payload, name, html)
            if name in ("href", "src"):
                assert (value or "").strip().lower().startswith(SAFE_URL), (payload, value)
                assert not (value or "").startswith("//"), (payload, value)


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_xss_payloads_render_inert(alice, payload):
    folder = alice.create("folder", "XSS")
    response = alice.post(f"/api/v1/elements/{folder['id']}/notes", json={"body": payload})
    assert response.status_code == 201, response.text
    note = response.json()
    assert note["body"] == payload  # stored as written
    _assert_safe(note["html"], payload)
    _assert_safe(str(render_markdown(payload)), payload)
    listed = alice.get(f"/api/v1/elements/{folder['id']}/notes").json()["items"][0]
    _assert_safe(listed["html"], payload)


def test_portal_notes_section_is_inert(app, client, alice):
    folder = alice.create("folder", "Portal XSS")
    for payload in XSS_PAYLOADS:
        alice.post(f"/api/v1/elements/{folder['id']}/notes", json={"body": payload})
    login = client.post("/api/v1/auth/login", json={"username": "alice",
                                                    "password": "password-123"})
    assert login.status_code == 200
    html = client.get(f"/ui/elements/{folder['id']}/notes").text
    bodies = re.findall(r'<div class="note-body markdown">(.*?)</div>', html, re.S)
    assert len(bodies) == len(XSS_PAYLOADS)
    for payload, body in zip(XSS_PAYLOADS, bodies, strict=True):
        _assert_safe(body, payload)
    # Textareas of the edit forms carry the raw text escaped.
    assert "<script>" not in html.replace("&lt;script&gt;", "")


def test_markdown_keeps_safe_formatting():
    html = str(render_markdown("**bold** *it* `code`\n\n- a\n- b\n\n[site](https://example.org)"
                               " [mail](mailto:a@b.org) [local](/workspace)"))
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html and "<li>a</li>" in html
    assert 'href="https://example.org"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert 'href="mailto:a@b.org"' in html and 'href="/workspace"' in html


def test_notes_authors_edits_and_permissions(alice, bob, make_user):
    folder = alice.create("folder", "Notes")
    carol = make_user("carol")
    grants = [{"username": "alice", "level": "owner"}, {"username": "bob",
                                                         "level": "collaborator"},
              {"username": "carol", "level": "viewer"}]
    alice.put(f"/api/v1/elements/{folder['id']}/sharing",
              json={"privacy": "private", "grants": grants})
    url = f"/api/v1/elements/{folder['id']}/notes"
    note = alice.post(url, json={"body": "first"}).json()
    assert note["author"] == "alice" and note["created_at"] == note["updated_at"]
    edited = bob.patch(f"{url}/{note['id']}", json={"body": "first, edited by bob"}).json()
    assert edited["body"] == "first, edited by bob" and edited["author"] == "alice"
    assert edited["updated_at"] > edited["created_at"]
    assert [n["body"] for n in carol.get(url).json()["items"]] == ["first, edited by bob"]
    assert_error(carol.post(url, json={"body": "x"}), 403, "collaborator")
    assert_error(carol.patch(f"{url}/{note['id']}", json={"body": "x"}), 403)
    assert_error(carol.delete(f"{url}/{note['id']}"), 403)
    stranger = make_user("dave")
    assert_error(stranger.get(url), 404)
    assert_error(alice.post(url, json={"body": "   "}), 422, "empty")
    assert_error(alice.post(url, json={"body": "x", "author": "eve"}), 422)
    assert_error(alice.post(url, json={"body": "a\x00b"}), 422, "NUL")
    assert_error(alice.post(url, json={"body": "x" * 50_001}), 422, "longer")
    assert bob.delete(f"{url}/{note['id']}").status_code == 204
    assert alice.get(url).json()["items"] == []
    assert_error(alice.delete(f"{url}/{note['id']}"), 404)


def test_references_to_elements_and_external_resources(alice, bob):
    folder = alice.create("folder", "Project")
    workflow = alice.create("workflow", "SPA run", folder["id"])
    url = f"/api/v1/elements/{workflow['id']}/references"
    to_folder = alice.post(url, json={"target_id": folder["id"], "label": "parent project"})
    assert to_folder.status_code == 201
    assert to_folder.json()["target"] == {"id": folder["id"], "kind": "folder",
                                          "name": "Project"}
    for target in ("https://www.ebi.ac.uk/emdb/EMD-1234", "/data/krios/2024-05-31/session1",
                   "s3://bucket/raw/", "\\\\nas\\cryo\\grid2", "C:\\EPU\\session"):
        response = alice.post(url, json={"url": target})
        assert response.status_code == 201, (target, response.text)
    for bad in ("javascript:alert(1)", "data:text/html,x", "relative/path", "",
                "https://x\n.org"):
        assert_error(alice.post(url, json={"url": bad}), 422, case=bad)
    assert_error(alice.post(url, json={"target_id": workflow["id"]}), 422, "itself")
    assert_error(alice.post(url, json={"target_id": folder["id"]}), 422, "already refers")
    assert_error(alice.post(url, json={"target_id": folder["id"], "url": "https://a.b"}), 422,
                 "not both")
    assert_error(alice.post(url, json={}), 422, "not both")
    # A target the user cannot see is not revealed.
    bobs = bob.create("folder", "Bob's private")
    assert_error(alice.post(url, json={"target_id": bobs["id"]}), 404)
    items = alice.get(url).json()["items"]
    assert len(items) == 6
    # A reader who cannot see the target gets "Private entity" without its id.
    grants = [{"username": "alice", "level": "owner"}, {"username": "bob", "level": "viewer"}]
    alice.put(f"/api/v1/elements/{workflow['id']}/sharing",
              json={"privacy": "private", "grants": grants})
    seen = bob.get(url).json()["items"]
    element_refs = [r for r in seen if r["target"] is not None]
    assert element_refs[0]["target"] == {"id": None, "kind": None, "name": "Private entity"}
    assert "Project" not in str(element_refs)
    assert_error(bob.post(url, json={"url": "https://x.org"}), 403)
    ref_id = items[0]["id"]
    assert alice.delete(f"{url}/{ref_id}").status_code == 204
    assert len(alice.get(url).json()["items"]) == 5
