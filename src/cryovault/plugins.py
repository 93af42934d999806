"""Plugins (SPEC ADM-6): Python packages that extend cryovault through the entry-point group
`cryovault.plugins`.

An entry point names a `Plugin`:

    [project.entry-points."cryovault.plugins"]
    my-templates = "my_package.cryovault_plugin:PLUGIN"

where `PLUGIN = Plugin(type="workflow-templates", description=..., activate=register)`;
`activate` runs once when the application starts (e.g. it calls
`cryovault.workspace.templates.register_template`). The Settings page lists every plugin with its
name, type, version and whether it loaded."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

GROUP = "cryovault.plugins"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plugin:
    type: str  # what it extends: workflow-templates, storage-backend, pipeline, ingest, …
    description: str = ""
    activate: Callable[[], None] | None = None


@dataclass(frozen=True)
class InstalledPlugin:
    name: str
    type: str
    version: str
    package: str
    description: str
    state: str  # active | loaded | failed
    message: str = ""


_activated: dict[str, str] = {}  # entry point value -> "" or the error of its activation
_lock = threading.Lock()


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def _describe(ep: EntryPoint) -> tuple[Plugin | None, str]:
    try:
        plugin = ep.load()
    except Exception as exc:  # a broken plugin must not break the platform
        return None, f"cannot be loaded: {type(exc).__name__}: {exc}"
    if not isinstance(plugin, Plugin):
        return None, (f"{ep.value} is not a cryovault.plugins.Plugin "
                      f"(it is a {type(plugin).__name__})")
    return plugin, ""


def activate_plugins() -> None:
    """Run each plugin's `activate` once per process (application start-up)."""
    with _lock:
        for ep in _entry_points():
            if ep.value in _activated:
                continue
            plugin, problem = _describe(ep)
            if plugin is not None and plugin.activate is not None:
                try:
                    plugin.activate()
                except Exception as exc:
                    problem = f"activation failed: {type(exc).__name__}: {exc}"
            if problem:
                log.error("plugin %s: %s", ep.name, problem)
            _activated[ep.value] = problem


def installed_plugins() -> list[InstalledPlugin]:
    found = []
    for ep in _entry_points():
        plugin, problem = _describe(ep)
        dist = ep.dist
        version = dist.version if dist is not None else "unknown"
        package = dist.metadata["Name"] if dist is not None else ep.module
        if plugin is None:
            found.append(InstalledPlugin(ep.name, "unknown", version, package, "", "failed",
                                         problem))
            continue
        activation = _activated.get(ep.value)
        if activation:
            state, message = "failed", activation
        elif activation == "":
            state, message = "active", ""
        else:
            state, message = "loaded", "not activated in this process yet"
        found.append(InstalledPlugin(ep.name, plugin.type, version, package, plugin.description,
                                     state, message))
    return found


def _register_core_templates() -> None:
    import cryovault.workspace.templates  # noqa: F401  (registers the templates on import)


CORE_TEMPLATES = Plugin(
    type="workflow-templates",
    description="Free, SPA, SPA with quality monitor, SPA with live processing and "
                "tomography workflow templates",
    activate=_register_core_templates,
)
