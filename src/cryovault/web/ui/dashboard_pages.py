"""Dashboard (PLT-1), jobs list and the user guide."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse
from markdown_it import MarkdownIt
from sqlalchemy.orm import Session

from cryovault.access.licences import license_status
from cryovault.errors import NotFound
from cryovault.jobs.records import list_jobs
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, page_context, templates
from cryovault.workspace.recent import recent_elements

router = APIRouter(include_in_schema=False)

# The guide lives in the repository's docs/ folder (a source checkout or editable install).
DOCS_DIR = Path(__file__).resolve().parents[4] / "docs"
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, caller: Caller = Depends(page_caller),
              db: Session = Depends(get_db, scope="function")):
    jobs = list_jobs(db, caller.actor)
    counts = Counter(view.job.status for view in jobs)
    return templates.TemplateResponse(request, "dashboard.html", page_context(
        request, caller, recent=recent_elements(db, caller.actor), job_counts=counts,
        jobs=jobs[:5], licensing=license_status(db, request.app.state.access.licensing)))


@router.get("/guide", response_class=HTMLResponse)
def guide(request: Request, caller: Caller = Depends(page_caller)):
    source = DOCS_DIR / "user-guide.md"
    if not source.is_file():
        raise NotFound("the user guide is not installed with this copy of cryovault")
    html = _markdown.render(source.read_text(encoding="utf-8"))
    html = html.replace('src="images/', 'src="/guide/images/')
    return templates.TemplateResponse(request, "guide.html", page_context(
        request, caller, guide_html=html))


@router.get("/guide/images/{name}")
def guide_image(name: str, caller: Caller = Depends(page_caller)):
    images = (DOCS_DIR / "images").resolve()
    path = (images / name).resolve()
    if path.parent != images or path.suffix.lower() != ".png" or not path.is_file():
        raise NotFound(f"no image {name!r} in the user guide")
    return FileResponse(path, media_type="image/png")
