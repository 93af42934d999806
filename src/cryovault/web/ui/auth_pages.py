"""Sign-in and sign-out pages (SPEC ADM-1)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from cryovault.access import credentials
from cryovault.errors import Forbidden, Unauthenticated, Unavailable
from cryovault.preferences import user_preferences
from cryovault.web.context import SESSION_COOKIE, get_db
from cryovault.web.ui import i18n
from cryovault.web.ui.common import safe_next, templates

router = APIRouter(include_in_schema=False)


def _language(request: Request) -> str:
    return i18n.negotiate(request.cookies.get(i18n.LANGUAGE_COOKIE),
                          request.headers.get("accept-language"))


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/workspace"):
    return templates.TemplateResponse(request, "login.html",
                                      {"next": safe_next(next), "error": None, "login": "",
                                       "lang": _language(request)})


@router.post("/login")
def login_submit(request: Request, login: str = Form(""), password: str = Form(""),
                 next: str = Form("/workspace"), db: Session = Depends(get_db, scope="function")):
    settings = request.app.state.settings
    try:
        if not login.strip() or not password:
            raise Unauthenticated("enter your username or e-mail and your password")
        user = credentials.authenticate(db, login, password, request.app.state.access)
    except (Unauthenticated, Forbidden, Unavailable) as exc:
        status = {Forbidden: 403, Unavailable: 503}.get(type(exc), 401)
        return templates.TemplateResponse(
            request, "login.html", {"next": safe_next(next), "error": exc.message,
                                    "login": login, "lang": _language(request)},
            status_code=status)
    secret = credentials.open_session(db, user, timedelta(minutes=settings.session_idle_minutes))
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="lax",
                        secure=settings.cookie_secure, max_age=settings.session_max_hours * 3600)
    # The sign-in page speaks the user's language next time too.
    response.set_cookie(i18n.LANGUAGE_COOKIE, user_preferences(db, user.id).language,
                        max_age=365 * 24 * 3600, samesite="lax", secure=settings.cookie_secure)
    return response


@router.post("/logout")
def logout(request: Request, db: Session = Depends(get_db, scope="function")):
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        credentials.close_session(db, secret)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
