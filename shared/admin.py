"""Staff administration for the `admin` role: users (add, reset, disable) and the audit log."""
from __future__ import annotations

import sqlite_utils
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from shared import audit, auth
from shared.deps import current_user, get_db, require_page_role, require_role
from shared.errors import InvalidInput
from shared.web import render

api_router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[require_role("admin")])
page_router = APIRouter(prefix="/admin", dependencies=[require_page_role("admin")])


class NewUser(BaseModel):
    username: str
    role: str


class CreatedUser(BaseModel):
    username: str
    role: str
    one_time_password: str


@api_router.get("/users", summary="職員ユーザーの一覧")
def users(db: sqlite_utils.Database = Depends(get_db)):
    return {"users": auth.list_users(db)}


@api_router.post("/users", response_model=CreatedUser, status_code=201,
                 summary="職員ユーザーを追加（初回用パスワードを一度だけ返す）")
def add_user(body: NewUser, db: sqlite_utils.Database = Depends(get_db),
             user: auth.User = Depends(current_user)):
    password = auth.generate_password()
    created = auth.create_user(db, body.username.strip(), password, body.role, must_change_password=True)
    audit.record(db, user.username, "user_created", "user", created.id, role=created.role, via="web")
    return CreatedUser(username=created.username, role=created.role, one_time_password=password)


@api_router.post("/users/{username}/reset", response_model=CreatedUser,
                 summary="パスワードを初期化（初回用パスワードを一度だけ返す）")
def reset_user(username: str, db: sqlite_utils.Database = Depends(get_db),
               user: auth.User = Depends(current_user)):
    target = auth.get_user(db, username)
    password = auth.generate_password()
    auth.set_password(db, target.id, password, must_change_password=True)
    db.execute("DELETE FROM auth_token WHERE user_id = ?", [target.id])
    audit.record(db, user.username, "password_reset", "user", target.id, via="web")
    return CreatedUser(username=target.username, role=target.role, one_time_password=password)


@api_router.post("/users/{username}/disable", summary="職員ユーザーを無効化")
def disable(username: str, db: sqlite_utils.Database = Depends(get_db),
            user: auth.User = Depends(current_user)):
    if username == user.username:
        raise InvalidInput("自分自身は無効にできません。", code="cannot_disable_self")
    target = auth.get_user(db, username)
    auth.disable_user(db, username)
    audit.record(db, user.username, "user_disabled", "user", target.id, via="web")
    return {"username": username, "disabled": True}


@api_router.get("/audit", summary="監査ログ（新しい順）")
def audit_rows(limit: int = 200, db: sqlite_utils.Database = Depends(get_db)):
    return {"rows": list(reversed(audit.tail(db, max(1, min(limit, 2000)))))}


@page_router.get("/users", include_in_schema=False)
def users_page(request: Request, db: sqlite_utils.Database = Depends(get_db)):
    return render(request, "admin_users.html", {"users": auth.list_users(db), "roles": auth.ROLES,
                                                "role_labels": auth.ROLE_LABELS})


@page_router.get("/audit", include_in_schema=False)
def audit_page(request: Request, db: sqlite_utils.Database = Depends(get_db)):
    return render(request, "admin_audit.html", {"rows": list(reversed(audit.tail(db, 300)))})
