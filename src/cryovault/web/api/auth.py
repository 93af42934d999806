"""Sign in and out, who am I, API tokens (SPEC ADM-1)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.orm import Session

from cryovault.access import credentials
from cryovault.web.api.schemas import (
    LoginIn,
    LoginOut,
    NewTokenOut,
    TokenIn,
    TokenOut,
    UserOut,
    parse_id,
)
from cryovault.web.context import SESSION_COOKIE, Caller, current_caller, get_db

router = APIRouter(tags=["auth"])


@router.post("/auth/login", response_model=LoginOut)
def login(body: LoginIn, request: Request, response: Response,
          db: Session = Depends(get_db, scope="function")):
    settings = request.app.state.settings
    user = credentials.authenticate(db, body.username, body.password, request.app.state.access)
    secret = credentials.open_session(db, user, timedelta(minutes=settings.session_idle_minutes))
    response.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="lax",
                        secure=settings.cookie_secure, max_age=settings.session_max_hours * 3600)
    return LoginOut(user=UserOut.of(user))


@router.post("/auth/logout", status_code=204)
def logout(request: Request, db: Session = Depends(get_db, scope="function")) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        credentials.close_session(db, cookie)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/me", response_model=UserOut)
def me(caller: Caller = Depends(current_caller)):
    return UserOut.of(caller.user)


@router.post("/auth/tokens", response_model=NewTokenOut, status_code=201)
def create_token(body: TokenIn, caller: Caller = Depends(current_caller),
                 db: Session = Depends(get_db, scope="function")):
    token, secret = credentials.create_token(db, caller.user, body.name)
    return NewTokenOut(id=token.id, name=token.name, created_at=token.created_at,
                       last_used_at=None, token=secret)


@router.get("/auth/tokens", response_model=list[TokenOut])
def list_tokens(caller: Caller = Depends(current_caller),
                db: Session = Depends(get_db, scope="function")):
    return [TokenOut(id=t.id, name=t.name, created_at=t.created_at, last_used_at=t.last_used_at)
            for t in credentials.list_tokens(db, caller.user)]


@router.delete("/auth/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, caller: Caller = Depends(current_caller),
                 db: Session = Depends(get_db, scope="function")) -> Response:
    credentials.revoke_token(db, caller.user, parse_id(token_id, "API token"))
    return Response(status_code=204)
