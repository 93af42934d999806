"""Administration and settings pages (SPEC ADM-3 … ADM-6) through the test client: who sees
what, the forms' answers, translations (gettext catalogs) and the user's date format."""

from __future__ import annotations

import html
import re

import pytest
from babel.messages.extract import extract_from_dir

from cryovault.web.context import SESSION_COOKIE
from cryovault.web.ui import i18n
from cryovault.web.ui.common import UI_DIR

STRONG = "Cryo-vault-2026!"
HX = {"HX-Request": "true"}


def sign_in(client, username, password="password-123"):
    response = client.post("/login", data={"login": username, "password": password,
                                           "next": "/workspace"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return response


@pytest.fixture
def root(make_user, client):
    user = make_user("root", roles=["customer-admin"])
    sign_in(client, "root")
    return user


def test_admin_navigation_only_for_the_administration_roles(make_user, client):
    make_user("wadmin", roles=["workflow-admin"])
    make_user("lm", roles=["license-manager"])
    sign_in(client, "wadmin")
    page = client.get("/workspace").text
    assert 'id="nav-admin"' not in page and 'id="nav-settings"' in page
    assert client.get("/admin/users").status_code == 403
    assert client.get("/admin/licenses").status_code == 403
    client.cookies.clear()
    sign_in(client, "lm")
    assert 'href="/admin/users"' in client.get("/workspace").text
    users = client.get("/admin/users")
    assert users.status_code == 200
    assert 'id="add-user"' not in users.text  # a licence manager does not create users
    assert client.get("/admin/licenses").status_code == 200


def test_add_edit_and_manage_a_user_from_the_pages(root, client):
    page = client.get("/admin/users")
    assert page.status_code == 200 and 'id="add-user"' in page.text
    refused = client.post("/ui/admin/users", headers=HX, data={
        "username": "dana", "password": STRONG, "password_confirmation": "other-Pass-1"})
    assert refused.status_code == 422 and "confirmation" in refused.text
    created = client.post("/ui/admin/users", headers=HX, data={
        "username": "dana", "password": STRONG, "password_confirmation": STRONG,
        "first_name": "Dana", "email": "dana@example.org"})
    assert created.status_code == 204, created.text
    user_url = created.headers["HX-Redirect"]
    user_id = user_url.rsplit("/", 1)[1]
    detail = client.get(user_url).text
    assert 'id="role-select"' in detail and "customer-admin" in detail
    assert client.post(f"/ui/admin/users/{user_id}/roles", headers=HX,
                       data={"role": "user-manager"}).status_code == 204
    detail = client.get(user_url).text
    roles = re.search(r'<select id="role-select".*?</select>', detail, re.S).group(0)
    assert "user-manager" not in roles and "license-manager" in roles  # only roles not held
    assert client.post(f"/ui/admin/users/{user_id}/roles/user-manager/remove",
                       headers=HX).status_code == 204
    last = client.post(f"/ui/admin/users/{root.id}/roles/customer-admin/remove", headers=HX)
    assert last.status_code == 422 and "last customer-admin" in last.text
    assert client.post(f"/ui/admin/users/{user_id}", headers=HX, data={
        "email": "dana@example.org", "first_name": "Dana", "last_name": "Katz"}
    ).status_code == 204
    assert "Katz" in client.get("/admin/users").text
    assert client.post(f"/ui/admin/users/{user_id}/active", headers=HX,
                       data={"active": "false"}).status_code == 204
    assert "deactivated" in client.get(user_url).text


def test_license_page_installs_and_shows_the_file(root, client, app, licensor):
    from cryovault.access.config import AccessConfig
    from cryovault.access.licences import Licensing

    app.state.access = AccessConfig(Licensing.from_config(licensor.public_key))
    page = client.get("/admin/licenses").text
    platform = re.search(r'id="platform-id">([^<]+)<', page).group(1)
    bad = client.post("/ui/admin/licenses", headers=HX, data={"key": "CVL1.abc"})
    assert bad.status_code == 422 and "truncated" in bad.text
    key = licensor.issue(platform, "portal=4")
    assert client.post("/ui/admin/licenses", headers=HX, data={"key": key}).status_code == 204
    page = html.unescape(client.get("/admin/licenses").text)
    assert "Show licence file" in page and '"portal": 4' in page and key in page


def test_directory_suggestions_report_problems_inline(root, client):
    response = client.get("/ui/admin/directory", params={"q": "ann"})
    assert response.status_code == 200 and "directory unavailable" in response.text


def test_preferences_pages(root, client, make_user):
    page = client.get("/settings").text
    assert 'id="platform-preferences"' in page
    saved = client.post("/ui/preferences/platform", headers=HX,
                        data={"max_folder_depth": "42", "export_public_path": "/exports"})
    assert saved.status_code == 204
    assert 'value="10"' in client.get("/settings").text  # clamped
    bad = client.post("/ui/preferences/platform", headers=HX, data={"max_folder_depth": "x"})
    assert bad.status_code == 422 and "whole number" in bad.text
    plugins = client.get("/settings?tab=plugins").text
    assert "core-workflow-templates" in plugins and "workflow-templates" in plugins
    make_user("plain")
    client.cookies.clear()
    sign_in(client, "plain")
    page = client.get("/settings").text
    assert 'id="platform-preferences-view"' in page and 'id="platform-preferences"' not in page
    refused = client.post("/ui/preferences/platform", headers=HX,
                          data={"max_folder_depth": "1", "export_public_path": ""})
    assert refused.status_code == 403


def test_language_and_date_format_change_the_pages(root, client):
    assert ">Workspace<" in client.get("/workspace").text
    saved = client.post("/ui/preferences/user", headers=HX,
                        data={"language": "fr", "date_format": "dmy-dot"})
    assert saved.status_code == 204 and saved.cookies.get(i18n.LANGUAGE_COOKIE) == "fr"
    page = client.get("/workspace").text
    assert ">Espace de travail<" in page and '<html lang="fr">' in page
    assert ">Tableau de bord<" in page and ">Se déconnecter<" in page
    users = client.get("/admin/users").text
    assert "Ajouter un utilisateur" in users and "utilisateurs activés" in users
    client.post("/ui/preferences/user", headers=HX, data={"language": "de"})
    assert ">Arbeitsbereich<" in client.get("/workspace").text
    bad = client.post("/ui/preferences/user", headers=HX, data={"language": "xx"})
    assert bad.status_code == 422 and "unknown language" in bad.text
    client.cookies.delete(SESSION_COOKIE)
    assert ">Anmelden<" in client.get("/login").text  # the cookie remembers the language


def test_dates_follow_the_users_format(root, client):
    from datetime import UTC, datetime

    from cryovault.preferences import UserPreferences
    from cryovault.web.ui.common import templates

    moment = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
    render = templates.env.from_string("{{ moment|when }}").render
    assert render(moment=moment) == "2026-03-14 09:30 UTC"
    assert render(moment=moment, user_preferences=UserPreferences("en", "dmy-dot")) == \
        "14.03.2026 09:30 UTC"
    assert render(moment=moment, user_preferences=UserPreferences("en", "mdy")) == \
        "03/14/2026 09:30 AM UTC"


def test_login_page_negotiates_the_language(client):
    assert ">Se connecter<" in client.get("/login", headers={"Accept-Language": "fr-CH, en;q=0.5"}
                                          ).text
    assert ">Sign in<" in client.get("/login", headers={"Accept-Language": "es, it"}).text
    assert ">Anmelden<" in client.get("/login", headers={"Accept-Language": "en;q=0.3, de"}).text


@pytest.mark.parametrize("language", [code for code in i18n.CATALOGS if code != "en"])
def test_every_marked_text_is_translated(language):
    """Each text marked in the templates has a translation in each catalog (make i18n)."""
    marked = {message for _, _, message, _, _ in extract_from_dir(
        str(UI_DIR / "templates"), method_map=[("**.html", "jinja2")],
        options_map={"**.html": {"extensions": "jinja2.ext.i18n"}})}
    assert len(marked) > 100
    catalog = i18n.translations(language)
    missing = [m for m in marked if isinstance(m, str) and catalog.gettext(m) == m
               and m not in {"Administration", "Messages", "Licence", "Version", "Description",
                             "Type", "Licences", "Profile", "Name", "local"}]
    assert missing == []
