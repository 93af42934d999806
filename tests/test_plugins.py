"""Plugins (SPEC ADM-6): entry points in the group cryovault.plugins, found in installed
distributions, listed with name, type and version; broken ones are listed as failed."""

from __future__ import annotations

import sys
import textwrap

from cryovault import plugins


def _install_fake_distribution(root, monkeypatch) -> None:
    """A distribution on sys.path as pip would leave it: a module and a .dist-info folder."""
    (root / "cv_fake_plugin.py").write_text(textwrap.dedent("""
        from cryovault.plugins import Plugin
        from cryovault.workspace.templates import StepTemplate, WorkflowTemplate, register_template

        def activate():
            register_template(WorkflowTemplate("fake_cryo", "Fake cryo", (StepTemplate("Only"),)))

        PLUGIN = Plugin(type="workflow-templates", description="a fake template", activate=activate)
        NOT_A_PLUGIN = 42
    """))
    info = root / "cv_fake_plugin-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cv-fake-plugin\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(
        "[cryovault.plugins]\nfake = cv_fake_plugin:PLUGIN\nodd = cv_fake_plugin:NOT_A_PLUGIN\n"
        "missing = cv_no_such_module:PLUGIN\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "cv_fake_plugin", raising=False)


def test_installed_plugins_are_listed_and_activated(tmp_path, monkeypatch):
    from cryovault.workspace import templates

    _install_fake_distribution(tmp_path, monkeypatch)
    listed = {p.name: p for p in plugins.installed_plugins()}
    assert listed["core-workflow-templates"].package == "cryovault"
    fake = listed["fake"]
    assert (fake.type, fake.version, fake.package, fake.state) == (
        "workflow-templates", "1.2.3", "cv-fake-plugin", "loaded")
    assert listed["odd"].state == "failed"
    assert "not a cryovault.plugins.Plugin" in listed["odd"].message
    assert listed["missing"].state == "failed" and "cannot be loaded" in listed["missing"].message
    plugins.activate_plugins()
    try:
        assert templates.get_template("fake_cryo").label == "Fake cryo"
        assert {p.name: p.state for p in plugins.installed_plugins()}["fake"] == "active"
    finally:
        templates._REGISTRY.pop("fake_cryo", None)
        for key in [k for k in plugins._activated if k.startswith("cv_")]:
            del plugins._activated[key]


def test_plugins_api(make_user, tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, monkeypatch)
    user = make_user("plain")
    names = {p["name"]: p for p in user.get("/api/v1/plugins").json()}
    assert names["fake"]["version"] == "1.2.3" and names["fake"]["type"] == "workflow-templates"
