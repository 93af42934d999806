"""Shared pieces of the portal: templates, the signed-in page caller, redirects to login."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from sqlalchemy.orm import Session

from cryovault import __version__
from cryovault.access import credentials
from cryovault.access.actor import Actor
from cryovault.access.roles import ROLES, WORKFLOW_ADMIN
from cryovault.db.users import User
from cryovault.errors import Unauthenticated
from cryovault.formats.filetypes import viewer_kind
from cryovault.preferences import DEFAULT_USER_PREFERENCES, user_preferences
from cryovault.storage.usage import human_bytes
from cryovault.web.context import SESSION_COOKIE, Caller, get_db
from cryovault.web.ui import i18n

UI_DIR = Path(__file__).parent
templates = Jinja2Templates(directory=str(UI_DIR / "templates"))
templates.env.globals["version"] = __version__
i18n.install(templates.env)

STATUS_LABELS = {
    "not_started": "Not started", "in_progress": "In progress", "completed": "Completed",
    "suspended": "Suspended", "warning": "Warning", "deleting": "Deleting",
}


@pass_context
def _when(context: Context, value: datetime | None) -> str:
    """A UTC time in the signed-in user's date format (ADM-5)."""
    if value is None:
        return ""
    preferences = context.get("user_preferences") or DEFAULT_USER_PREFERENCES
    return value.strftime(preferences.date_pattern) + " UTC"


def _is_image_name(name: str) -> bool:
    """Files shown with a thumbnail: those the image viewer opens, by their name."""
    return viewer_kind(name, b"") == "image"


templates.env.filters["when"] = _when
templates.env.filters["is_image_name"] = _is_image_name
templates.env.filters["bytes"] = human_bytes
templates.env.globals["STATUS_LABELS"] = STATUS_LABELS


class LoginRequired(Exception):
    """A page was asked for without a valid session: go to the login page, then come back."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(next_path, safe="/")


def safe_next(value: str | None) -> str:
    """Only local paths: never redirect a user to another site after login."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/workspace"
    return value


def page_caller(request: Request, db: Session = Depends(get_db, scope="function")) -> Caller:
    settings = request.app.state.settings
    secret = request.cookies.get(SESSION_COOKIE)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("hx-request"):
        # A partial or a form post: come back to the page it was part of, not to the fragment.
        current = urlsplit(request.headers.get("hx-current-url", ""))
        target = safe_next(current.path + (f"?{current.query}" if current.query else ""))
    if not secret:
        raise LoginRequired(target)
    try:
        user: User = credentials.resolve_session(
            db, secret, timedelta(minutes=settings.session_idle_minutes),
            timedelta(hours=settings.session_max_hours))
    except Unauthenticated:
        raise LoginRequired(target) from None
    prefs = user_preferences(db, user.id)
    db.commit()
    return Caller(user, Actor.of(user), prefs)


def page_context(request: Request, caller: Caller, **extra) -> dict:
    actor = caller.actor
    admin_roles = [r for r in ROLES if r != WORKFLOW_ADMIN and r in actor.roles]
    return {
        "request": request,
        "user": caller.user,
        "actor": actor,
        "is_admin": bool(admin_roles),
        "path": request.url.path,
        "lang": caller.preferences.language,
        "user_preferences": caller.preferences,
        **extra,
    }
