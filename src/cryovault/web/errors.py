"""Domain exceptions and validation errors as JSON `{"detail": "…"}` with the right code."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from cryovault.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

STATUS = {NotFound: 404, Forbidden: 403, Invalid: 422, Conflict: 409, Unauthenticated: 401,
          TooLarge: 413, Unavailable: 503}


def _status_of(exc: DomainError) -> int:
    for cls, code in STATUS.items():
        if isinstance(exc, cls):
            return code
    return 400


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query",
                                                                             "path"))
        message = error.get("msg", "invalid value")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "the request is not valid"


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _page_error(request: Request, message: str, status: int) -> Response:
    """Portal errors: htmx requests get the message alone as plain text (app.js shows it with
    textContent in the form's error slot, never as HTML), page loads get the error page."""
    if request.headers.get("hx-request"):
        return PlainTextResponse(message, status_code=status)
    from cryovault.web.ui.common import templates

    return templates.TemplateResponse(request, "error.html",
                                      {"message": message, "status": status}, status_code=status)


def install(app: FastAPI) -> None:
    from cryovault.web.ui.common import LoginRequired, login_url

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": login_url(exc.next_path)})
        return RedirectResponse(login_url(exc.next_path), status_code=303)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if not _is_api(request):
            return _page_error(request, exc.message, _status_of(exc))
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
        return JSONResponse({"detail": exc.message}, status_code=_status_of(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if not _is_api(request):
            return _page_error(request, validation_message(exc), 422)
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and not _is_api(request):
            message = f"there is no page at {request.url.path}"
        if not _is_api(request) and exc.status_code >= 400:
            return _page_error(request, message, exc.status_code)
        return JSONResponse({"detail": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": "internal error; the administrators can find it in the server log"},
            status_code=500,
        )
