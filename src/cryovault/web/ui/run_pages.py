"""Acquisition runs in the portal: the EPU run view (SPEC SPA-2), the Tomo run view (ET-1),
one micrograph or tilt series, and the Discovery viewer (SPA-8).

The run view draws one page of items and the counts; htmx then polls `/ui/runs/{id}/live` every
few seconds for the counts, the items that arrived after the last one shown, and the shown
items that changed (out-of-band swaps: the page is never reloaded and keeps its scroll
position).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from cryovault.access.levels import COLLABORATOR
from cryovault.errors import Invalid
from cryovault.ingest import items as run_items
from cryovault.ingest import run_views
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, page_context, templates
from cryovault.workspace import elements
from cryovault.workspace.views import ElementView

router = APIRouter(include_in_schema=False)

RUN_TYPES = {"epu_run": "micrographs", "tomo_run": "tilt series"}
PAGE_SIZE = 60
FAST_POLL_S, SLOW_POLL_S = 3, 30
STATUS_TEXT = {"completed": "Completed", "in_progress": "In progress", "failed": "Failed"}

# Metadata as the pages show it: (key, label); units come from the key's suffix.
KEY_FACTS = (("defocus_target_angstrom", "Defocus target"), ("dose_e_per_angstrom2", "Dose"),
             ("pixel_size_angstrom", "Pixel size"))
LABELS = {
    "defocus_target_angstrom": "Defocus target", "applied_defocus_angstrom": "Applied defocus",
    "dose_e_per_angstrom2": "Total dose", "dose_per_fraction_e_per_angstrom2": "Dose per fraction",
    "pixel_size_angstrom": "Pixel size", "exposure_time_s": "Exposure time",
    "number_of_fractions": "Fractions", "voltage_kv": "Voltage", "magnification":
    "Magnification", "microscope": "Microscope", "detector": "Detector", "camera": "Camera",
    "grid_square_id": "Grid square", "foil_hole_id": "Foil hole",
    "stage_x_um": "Stage X", "stage_y_um": "Stage Y", "stage_z_um": "Stage Z",
    "stage_alpha_deg": "Stage α (tilt)", "stage_beta_deg": "Stage β",
    "image_shift_x": "Image shift X", "image_shift_y": "Image shift Y",
    "beam_shift_x": "Beam shift X", "beam_shift_y": "Beam shift Y",
    "energy_filter_slit_width_ev": "Energy filter slit",
}
UNITS = (("_e_per_angstrom2", "e⁻/Å²"), ("_angstrom", "Å"), ("_um", "µm"), ("_deg", "°"),
         ("_kv", "kV"), ("_ev", "eV"), ("_px", "px"), ("_s", "s"))
HIDDEN_KEYS = frozenset({"image_shift_unit", "acquired_at"})  # the time is shown formatted


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e9:
        return f"{int(value):,}"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def format_value(key: str, value: object) -> str:
    """A metadata value with its unit (from the key's suffix); defocus in µm."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if key.startswith("defocus") or key.endswith("defocus_angstrom"):
            return f"{value / 1e4:.2f} µm"
        unit = next((u for suffix, u in UNITS if key.endswith(suffix)), "")
        return f"{_number(float(value))} {unit}".strip() if unit else _number(float(value))
    if isinstance(value, list):
        return ", ".join(format_value(key, v) for v in value)
    if key.endswith("_at") and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def label_of(key: str) -> str:
    if key in LABELS:
        return LABELS[key]
    stem = key
    for suffix, _ in UNITS:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem.replace("_", " ").strip().capitalize() or key


def _json_dict(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def metadata_rows(metadata: dict) -> list[tuple[str, str]]:
    known = [k for k in LABELS if k in metadata and k not in HIDDEN_KEYS]
    rest = sorted(k for k in metadata if k not in LABELS and k not in HIDDEN_KEYS)
    return [(label_of(k), format_value(k, metadata[k])) for k in known + rest]


def key_facts(metadata: dict) -> list[tuple[str, str]]:
    return [(label, format_value(key, metadata[key])) for key, label in KEY_FACTS
            if isinstance(metadata.get(key), int | float)]


templates.env.filters["run_value"] = lambda value, key: format_value(key, value)
templates.env.filters["run_label"] = label_of
templates.env.filters["run_json"] = lambda text: _json_dict(text)
templates.env.globals["run_metadata_rows"] = metadata_rows
templates.env.globals["run_key_facts"] = key_facts
templates.env.globals["RUN_STATUS_TEXT"] = STATUS_TEXT


def _run(db: Session, caller: Caller, dataset_id: str) -> ElementView:
    current = elements.get_element(db, caller.actor, parse_id(dataset_id, "dataset"))
    el = current.element
    if el.kind != "dataset" or el.dataset_type not in RUN_TYPES:
        raise Invalid(f"{el.kind} {el.name!r} is not an EPU or Tomo run: the run view shows "
                      "datasets of type epu_run or tomo_run")
    return current


def _status(value: str | None) -> str | None:
    return value or None


def _cards(db: Session, caller: Caller, current: ElementView, status: str | None,
           cursor: str | None) -> run_views.CardPage:
    cards = (run_views.micrograph_cards if current.element.dataset_type == "epu_run"
             else run_views.tilt_series_cards)
    return cards(db, caller.actor, current.id, status=status, limit=PAGE_SIZE, cursor=cursor)


def _poll_seconds(current: ElementView) -> int:
    return SLOW_POLL_S if current.element.status in ("completed", "suspended") else FAST_POLL_S


@router.get("/runs/{dataset_id}", response_class=HTMLResponse)
def run_view(request: Request, dataset_id: str, status: str | None = Query(None),
             view: str | None = Query(None), caller: Caller = Depends(page_caller),
             db: Session = Depends(get_db, scope="function")):
    current = _run(db, caller, dataset_id)
    status = _status(status)
    page = _cards(db, caller, current, status, None)
    return templates.TemplateResponse(request, "run_view.html", page_context(
        request, caller, mode="run", current=current, run=current.element,
        crumbs=elements.element_path(db, caller.actor, current.id), page=page, status=status,
        view=view if view in ("list", "cards") else "", poll_s=_poll_seconds(current),
        item_label=RUN_TYPES[current.element.dataset_type]))


@router.get("/ui/runs/{dataset_id}/items", response_class=HTMLResponse)
def run_items_page(request: Request, dataset_id: str, status: str | None = Query(None),
                   cursor: str | None = Query(None, max_length=2000),
                   caller: Caller = Depends(page_caller),
                   db: Session = Depends(get_db, scope="function")):
    """A page of items (the list after a filter change, or the next page)."""
    current = _run(db, caller, dataset_id)
    status = _status(status)
    page = _cards(db, caller, current, status, cursor)
    return templates.TemplateResponse(request, "partials/run_items.html", page_context(
        request, caller, run=current.element, page=page, status=status, first=cursor is None))


@router.get("/ui/runs/{dataset_id}/live", response_class=HTMLResponse)
def run_live(request: Request, dataset_id: str, status: str | None = Query(None),
             after: str | None = Query(None, max_length=2000),
             tail: bool = Query(False), watch: str | None = Query(None, max_length=40_000),
             caller: Caller = Depends(page_caller),
             db: Session = Depends(get_db, scope="function")):
    """What changed since the page was drawn, as out-of-band swaps: the counts; with `tail`
    (the page shows the last item), the items after `after`; the watched items that changed."""
    current = _run(db, caller, dataset_id)
    status = _status(status)
    watched = run_views.parse_watched(watch)
    # With `tail` and no `after`, the page showed no item yet: the first ones are new.
    page = _cards(db, caller, current, status, (after or None) if tail else None)
    if not tail:  # more pages follow what is shown: new items come with "Load more"
        page = run_views.CardPage([], page.total, page.counts, None, after or "")
    changed = run_views.changed_cards(db, caller.actor, current.id,
                                      current.element.dataset_type or "", watched)
    return templates.TemplateResponse(request, "partials/run_live.html", page_context(
        request, caller, run=current.element, page=page, status=status, changed=changed,
        tail=tail))


@router.get("/runs/{dataset_id}/micrographs/{micrograph_id}", response_class=HTMLResponse)
def micrograph_page(request: Request, dataset_id: str, micrograph_id: str,
                    caller: Caller = Depends(page_caller),
                    db: Session = Depends(get_db, scope="function")):
    current = _run(db, caller, dataset_id)
    view = run_views.micrograph_view(db, caller.actor, current.id,
                                     parse_id(micrograph_id, "micrograph"))
    images = [{"file_id": str(image.file_id), "label": image.label, "bin": image.bin,
               "original_width_px": image.original_width_px,
               "pixel_size_angstrom": image.pixel_size_angstrom} for image in view.images]
    return templates.TemplateResponse(request, "run_view.html", page_context(
        request, caller, mode="micrograph", current=current, run=current.element,
        crumbs=elements.element_path(db, caller.actor, current.id), item=view, images=images))


@router.get("/runs/{dataset_id}/tilt-series/{series_id}", response_class=HTMLResponse)
def tilt_series_page(request: Request, dataset_id: str, series_id: str,
                     caller: Caller = Depends(page_caller),
                     db: Session = Depends(get_db, scope="function")):
    current = _run(db, caller, dataset_id)
    series, tilts, files = run_items.get_tilt_series(db, caller.actor, current.id,
                                                     parse_id(series_id, "tilt series"))
    return templates.TemplateResponse(request, "run_view.html", page_context(
        request, caller, mode="tilt_series", current=current, run=current.element,
        crumbs=elements.element_path(db, caller.actor, current.id), series=series,
        metadata=run_views.item_metadata(series), tilts=tilts, files=files))


@router.get("/discovery/{element_id}", response_class=HTMLResponse)
def discovery_page(request: Request, element_id: str, caller: Caller = Depends(page_caller),
                   db: Session = Depends(get_db, scope="function")):
    current = elements.get_element(db, caller.actor, parse_id(element_id))
    el = current.element
    if not (el.kind == "workflow" or (el.kind == "dataset" and el.dataset_type == "epu_run")):
        raise Invalid(f"{el.kind} {el.name!r} has no atlases: Discovery opens from an EPU run or "
                      "from a workflow")
    if current.is_card:
        raise Invalid(f"{el.kind} {el.name!r} is only shown to you as a path to something shared "
                      "with you; open Discovery from a run you can see")
    return templates.TemplateResponse(request, "discovery.html", page_context(
        request, caller, current=current,
        crumbs=elements.element_path(db, caller.actor, current.id),
        COLLABORATOR=COLLABORATOR, element_kind=el.kind))
