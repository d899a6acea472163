"""Login, logout, password change, the portal page and the token API."""
from __future__ import annotations

import hmac
import secrets
from urllib.parse import quote

import sqlite_utils
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from shared import audit, auth
from shared.config import Settings
from shared.deps import (SESSION_COOKIE, LoginRequired, authenticated_token, check_csrf,
                         client_address, current_user, get_db, get_settings, optional_user,
                         require_role)
from shared.errors import NiizaError
from shared.web import render

LOGIN_CSRF_COOKIE = "niiza_login_csrf"
ROLE_HOME = {"clerk": "/minutes", "childcare": "/allocation", "admin": "/"}

# Routes anyone may reach (residents included). Everything else must carry a role dependency.
router = APIRouter()


def _safe_next(next_url: str | None, user: auth.User | None = None) -> str:
    # Browsers treat "\\" like "/" and drop tabs/newlines, so "/\\evil" or "/\t/evil" would
    # leave the site: only plain local paths are accepted.
    if (next_url and next_url.startswith("/") and not next_url.startswith("//")
            and "\\" not in next_url and all(0x20 < ord(c) != 0x7f for c in next_url)):
        return next_url
    return ROLE_HOME.get(user.role, "/") if user else "/"


@router.get("/", include_in_schema=False)
def portal(request: Request, user=Depends(optional_user)):
    return render(request, "portal.html")


@router.get("/login", include_in_schema=False)
def login_page(request: Request, next: str = "", settings: Settings = Depends(get_settings)):
    csrf = secrets.token_urlsafe(24)
    resp = render(request, "login.html", {"login_csrf": csrf, "next_url": _safe_next(next)})
    resp.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                    secure=settings.cookie_secure, path="/login")
    return resp


@router.post("/login", include_in_schema=False)
def login_submit(request: Request, username: str = Form(""), password: str = Form(""),
                 csrf_token: str = Form(""), next: str = Form(""),
                 db: sqlite_utils.Database = Depends(get_db),
                 settings: Settings = Depends(get_settings)):
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    new_csrf = secrets.token_urlsafe(24)

    def fail(message: str, status: int):
        resp = render(request, "login.html", {"error": message, "login_csrf": new_csrf,
                                              "next_url": _safe_next(next), "username": username},
                      status_code=status)
        resp.set_cookie(LOGIN_CSRF_COOKIE, new_csrf, httponly=True, samesite="strict",
                        secure=settings.cookie_secure, path="/login")
        return resp

    if not cookie or not hmac.compare_digest(cookie, csrf_token):
        return fail("画面の有効期限が切れました。もう一度ログインしてください。", 403)
    try:
        user = auth.authenticate(db, username, password, client=client_address(request),
                                 max_failures=settings.login_max_failures,
                                 window_s=settings.login_window_s,
                                 fail_delay_s=settings.login_fail_delay_s)
    except NiizaError as exc:
        audit.record(db, username[:40] or "-", "login_failed", "user", username[:40] or "-",
                     reason=exc.code)
        return fail(exc.message, exc.status)
    raw, _ = auth.issue_token(db, user, kind="session", hours=settings.session_hours)
    audit.record(db, user.username, "login", "user", user.id, via="web")
    target = "/account/password" if user.must_change_password else _safe_next(next, user)
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(SESSION_COOKIE, raw, httponly=True, samesite="lax", secure=settings.cookie_secure,
                    max_age=settings.session_hours * 3600)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


class _Session:
    """Page dependency for the account pages: any logged-in staff member, CSRF checked,
    allowed even while the one-time password is still to be changed."""

    async def __call__(self, request: Request, db: sqlite_utils.Database = Depends(get_db)):
        token = authenticated_token(request, db)
        if token is None:
            raise LoginRequired(request.url.path)
        await check_csrf(request, token)
        return token


any_staff_session = _Session()


@router.post("/logout", include_in_schema=False)
def logout(request: Request, token=Depends(any_staff_session),
           db: sqlite_utils.Database = Depends(get_db)):
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        auth.revoke_token(db, raw)
    audit.record(db, token.user.username, "logout", "user", token.user.id)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@router.get("/account/password", include_in_schema=False)
def password_page(request: Request, token=Depends(any_staff_session)):
    return render(request, "password.html", {"must_change": token.user.must_change_password})


@router.post("/account/password", include_in_schema=False)
def password_submit(request: Request, old_password: str = Form(""), new_password: str = Form(""),
                    token=Depends(any_staff_session), db: sqlite_utils.Database = Depends(get_db)):
    try:
        auth.change_password(db, token.user, old_password, new_password,
                             keep_token=request.cookies.get(SESSION_COOKIE))
    except NiizaError as exc:
        return render(request, "password.html", {"error": exc.message,
                                                 "must_change": token.user.must_change_password},
                      status_code=exc.status)
    audit.record(db, token.user.username, "password_changed", "user", token.user.id)
    return RedirectResponse(ROLE_HOME.get(token.user.role, "/"), status_code=303)


# --- API tokens --------------------------------------------------------------------------

class TokenRequest(BaseModel):
    username: str
    password: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: str
    role: str


api_router = APIRouter(prefix="/api/auth", tags=["auth"])


@api_router.post("/token", response_model=TokenResponse, summary="職員のAPIトークンを発行")
def create_token(body: TokenRequest, request: Request, db: sqlite_utils.Database = Depends(get_db),
                 settings: Settings = Depends(get_settings)):
    try:
        user = auth.authenticate(db, body.username, body.password, client=client_address(request),
                                 max_failures=settings.login_max_failures,
                                 window_s=settings.login_window_s,
                                 fail_delay_s=settings.login_fail_delay_s)
    except NiizaError as exc:
        audit.record(db, body.username[:40] or "-", "login_failed", "user", body.username[:40] or "-",
                     reason=exc.code, via="api")
        raise
    if user.must_change_password:
        raise NiizaError("初回ログイン用パスワードを変更してから利用してください。",
                         code="password_change_required", status=403)
    raw, token = auth.issue_token(db, user, kind="api", hours=settings.session_hours, label="api")
    audit.record(db, user.username, "token_issued", "user", user.id, via="api")
    return TokenResponse(access_token=raw, expires_at=token.expires_at, role=user.role)


@api_router.get("/me", dependencies=[require_role("clerk", "childcare")],
                summary="ログイン中の職員")
def me(user: auth.User = Depends(current_user)):
    return {"username": user.username, "role": user.role, "role_label": auth.ROLE_LABELS[user.role]}


def login_redirect(next_path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(next_path)}", status_code=303)
