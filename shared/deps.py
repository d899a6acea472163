"""FastAPI dependencies: settings, database, staff authentication, roles and CSRF.

Every staff route carries ``require_role(...)`` (API) or ``require_page_role(...)`` (HTML page);
a test walks the route table to make sure none is missing.
"""
from __future__ import annotations

import hmac
import threading
from typing import AsyncIterator

import sqlite_utils
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from shared.auth import ROLES, Token, User, resolve_token
from shared.config import Settings
from shared.db import ConnectionPool
from shared.errors import Forbidden, Unauthorized

SESSION_COOKIE = "niiza_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_pool_lock = threading.Lock()


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to /login."""

    def __init__(self, next_url: str):
        self.next_url = next_url


class PasswordChangeRequired(Exception):
    """The user logged in with a one-time password and must set their own first."""


# Cheap dependencies are ``async def``: a plain ``def`` dependency costs a round trip through the
# thread pool on every request (measured: several ms per request under 50 concurrent clients).
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def db_pool(app) -> ConnectionPool:
    """The app's pool of database connections (made on first use, one per database file)."""
    state = app.state
    settings = state.settings
    pool = getattr(state, "db_pool", None)
    if pool is not None and getattr(state, "db_pool_settings", None) is settings:
        return pool  # same settings object as last time: same file (no Path arithmetic per request)
    path = settings.db_path
    with _pool_lock:
        pool = getattr(state, "db_pool", None)
        if pool is None or pool.path != path:
            if pool is not None:
                pool.close()  # connections still in use are closed when released
            pool = ConnectionPool(path)
            state.db_pool = pool
        state.db_pool_settings = settings
    return pool


async def get_db(request: Request) -> AsyncIterator[sqlite_utils.Database]:
    """A database connection for this request, from the app's pool (returned afterwards; an
    unfinished transaction is rolled back). Opening a new one runs in the thread pool."""
    pool = db_pool(request.app)
    db = pool.try_acquire()
    if db is None:
        db = await run_in_threadpool(pool.open)
    try:
        yield db
    finally:
        pool.release(db)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticated_token(request: Request, db: sqlite_utils.Database) -> Token | None:
    """The bearer token, else the session cookie; cached on request.state."""
    if hasattr(request.state, "token"):
        return request.state.token
    token = None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = resolve_token(db, auth[7:].strip())
        if token is not None:
            request.state.auth_via = "bearer"
    else:
        token = resolve_token(db, request.cookies.get(SESSION_COOKIE))
        if token is not None:
            request.state.auth_via = "cookie"
    request.state.token = token
    request.state.user = token.user if token else None
    return token


async def check_csrf(request: Request, token: Token) -> None:
    if request.method in _SAFE_METHODS or getattr(request.state, "auth_via", None) != "cookie":
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        form = await request.form()
        sent = form.get("csrf_token")
    if not sent or not hmac.compare_digest(str(sent), token.csrf_token):
        raise Forbidden("画面の有効期限が切れたか、不正な送信です。ページを再読み込みしてからやり直してください。",
                        code="csrf_failed")


class RoleRequirement:
    """Dependency that lets a request through only for a logged-in user with one of ``roles``."""

    def __init__(self, roles: tuple[str, ...], *, page: bool):
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {unknown}")
        self.roles = roles
        self.page = page

    async def __call__(self, request: Request, db: sqlite_utils.Database = Depends(get_db)) -> User:
        token = authenticated_token(request, db)
        if token is None:
            if self.page:
                raise LoginRequired(request.url.path)
            raise Unauthorized()
        if token.user.must_change_password and token.kind == "session":
            if self.page:
                raise PasswordChangeRequired()
            raise Forbidden("初回ログイン用パスワードを変更してください。", code="password_change_required")
        if not token.user.has_role(*self.roles):
            raise Forbidden()
        await check_csrf(request, token)
        return token.user

    def __repr__(self) -> str:
        return f"RoleRequirement({self.roles}, page={self.page})"


def require_role(*roles: str):
    """For API routes/routers: 401 without credentials, 403 with the wrong role."""
    return Depends(RoleRequirement(tuple(roles), page=False))


def require_page_role(*roles: str):
    """For HTML pages: redirect to /login without a session, 403 page with the wrong role."""
    return Depends(RoleRequirement(tuple(roles), page=True))


def current_user(request: Request) -> User:
    """The user a role dependency already authenticated (use together with one)."""
    user = getattr(request.state, "user", None)
    if user is None:
        raise Unauthorized()
    return user


def optional_user(request: Request, db: sqlite_utils.Database = Depends(get_db)) -> User | None:
    token = authenticated_token(request, db)
    return token.user if token else None
