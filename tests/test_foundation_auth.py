"""Staff login, throttling, roles on every route, CSRF, audit log — real HTTP through the app."""
from __future__ import annotations

import re
import time

import pytest
from fastapi.routing import APIRoute

try:  # FastAPI >= 0.16x keeps included routers nested; this flattens them with full paths
    from fastapi.routing import iter_route_contexts
except ImportError:  # older FastAPI: app.routes is already flat
    def iter_route_contexts(routes):
        return iter(routes)

from shared import audit, auth
from shared.deps import RoleRequirement
from shared.pages import _Session
from tests.conftest import TEST_PASSWORD, page_csrf, web_login

# Routes anyone may reach. Everything else must carry a role (or staff session) dependency.
PUBLIC_PATHS = {"/", "/login", "/health", "/docs", "/openapi.json", "/api/auth/token"}


def _is_public(path: str) -> bool:
    if path in PUBLIC_PATHS:
        return True
    for prefix in ("/api/chat", "/chat"):
        if path == prefix or path.startswith(prefix + "/"):
            return not path.startswith(prefix + "/admin")
    return False


def api_routes(app):
    """(path, methods, dependant) of every API route, included routers flattened."""
    for ctx in iter_route_contexts(app.routes):
        original = getattr(ctx, "original_route", ctx)
        if isinstance(original, APIRoute):
            yield ctx.path, set(ctx.methods or ()), ctx.dependant


def _guards(dependant) -> list:
    found = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, (RoleRequirement, _Session)):
            found.append(dep.call)
        found.extend(_guards(dep))
    return found


def test_every_non_public_route_has_a_role_check(app):
    missing = []
    checked = 0
    for path, methods, dependant in api_routes(app):
        if _is_public(path):
            continue
        checked += 1
        if not _guards(dependant):
            missing.append(f"{sorted(methods)} {path}")
    assert not missing, f"routes without a role check: {missing}"
    assert checked >= 4  # logout, password page/form, /api/auth/me at least


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_staff_api_routes_answer_401_then_403(app, client, login_as):
    tokens = {role: login_as(role) for role in ("clerk", "childcare")}
    seen = 0
    for path, methods, dependant in api_routes(app):
        if not path.startswith("/api/"):
            continue
        guards = [g for g in _guards(dependant) if isinstance(g, RoleRequirement)]
        if not guards:
            continue
        roles = set(guards[0].roles)
        for method in methods - {"HEAD"}:
            url = _fill(path)
            r = client.request(method, url)
            assert r.status_code == 401, (method, url, r.status_code)
            assert r.json()["code"] == "unauthorized"
            wrong = [role for role in tokens if role not in roles]
            if wrong:
                r = client.request(method, url, headers=tokens[wrong[0]])
                assert r.status_code == 403, (method, url, r.status_code)
                assert r.json()["message"] == "この操作を行う権限がありません。"
            seen += 1
    assert seen >= 1


def test_staff_pages_redirect_to_login(app, client):
    for path, methods, dependant in api_routes(app):
        if "GET" not in methods:
            continue
        guards = [g for g in _guards(dependant) if isinstance(g, RoleRequirement) and g.page]
        if not guards:
            continue
        r = client.get(_fill(path), follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=")


def test_login_success_sets_session_and_audits(client, make_user, db):
    user = make_user("clerk")
    r = web_login(client, user.username, next_url="/")
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    assert "niiza_session" in r.cookies or client.cookies.get("niiza_session")
    me = client.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["username"] == user.username
    actions = [row["action"] for row in audit.tail(db, 5)]
    assert "login" in actions


def test_login_failure_is_generic_401(client, make_user, db):
    user = make_user("clerk")
    wrong_pw = web_login(client, user.username, password="wrong-password-1")
    no_user = web_login(client, "nobody", password="wrong-password-1")
    assert wrong_pw.status_code == no_user.status_code == 401
    msg = "ユーザー名またはパスワードが正しくありません。"
    assert msg in wrong_pw.text and msg in no_user.text
    r = client.post("/api/auth/token", json={"username": user.username, "password": "nope-nope-1"})
    assert r.status_code == 401 and r.json()["code"] == "login_failed"
    assert any(row["action"] == "login_failed" for row in audit.tail(db, 10))


def test_failed_login_is_delayed(settings, db, make_user):
    user = make_user("clerk")
    t0 = time.perf_counter()
    with pytest.raises(Exception):
        auth.authenticate(db, user.username, "wrong-password-1", client="t", max_failures=5,
                          window_s=60, fail_delay_s=0.3)
    assert time.perf_counter() - t0 >= 0.3


def test_repeated_failures_are_throttled(client, make_user, settings):
    user = make_user("childcare")
    for _ in range(settings.login_max_failures):
        r = client.post("/api/auth/token", json={"username": user.username, "password": "bad-pass-123"})
        assert r.status_code == 401
    # Even the right password is refused while throttled.
    r = client.post("/api/auth/token", json={"username": user.username, "password": TEST_PASSWORD})
    assert r.status_code == 429
    assert "しばらく" in r.json()["message"]


def test_wrong_role_token_gets_403(client, login_as):
    headers = login_as("clerk")
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    assert client.get("/api/auth/me").status_code == 401


def test_csrf_required_for_cookie_posts(client, make_user):
    user = make_user("admin")
    web_login(client, user.username)
    # Logout form without the CSRF token is refused, with it accepted.
    r = client.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/api/auth/me").status_code == 200  # still logged in
    token = page_csrf(client)
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/auth/me").status_code == 401


def test_login_form_needs_its_csrf_cookie(client, make_user):
    user = make_user("clerk")
    r = client.post("/login", data={"username": user.username, "password": TEST_PASSWORD,
                                     "csrf_token": "made-up"}, follow_redirects=False)
    assert r.status_code == 403


def test_one_time_password_must_be_changed(client, db):
    auth.create_user(db, "newadmin", "first-pass-123", "admin", must_change_password=True)
    r = web_login(client, "newadmin", password="first-pass-123")
    assert r.headers["location"] == "/account/password"
    # API token refused until changed
    r = client.post("/api/auth/token", json={"username": "newadmin", "password": "first-pass-123"})
    assert r.status_code == 403
    csrf = page_csrf(client)
    r = client.post("/account/password", data={"old_password": "first-pass-123",
                                               "new_password": "my-own-pass-456", "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303
    r = client.post("/api/auth/token", json={"username": "newadmin", "password": "my-own-pass-456"})
    assert r.status_code == 200
    assert any(row["action"] == "password_changed" for row in audit.tail(db, 10))


def test_passwords_are_hashed_with_argon2(db, make_user):
    user = make_user("clerk")
    stored = db.execute("SELECT password_hash FROM auth_user WHERE id=?", [user.id]).fetchone()[0]
    assert stored.startswith("$argon2id$")
    assert TEST_PASSWORD not in stored


def test_audit_refuses_personal_fields(db):
    with pytest.raises(ValueError):
        audit.record(db, "x", "edit", "child", "1", name="山田太郎")


def test_password_change_revokes_other_sessions(client, make_user):
    user = make_user("clerk")
    other = client.post("/api/auth/token", json={"username": user.username,
                                                 "password": TEST_PASSWORD}).json()["access_token"]
    web_login(client, user.username)
    csrf = page_csrf(client)
    r = client.post("/account/password", data={"old_password": TEST_PASSWORD,
                                               "new_password": "changed-pass-777", "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/auth/me").status_code == 200  # this session stays
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {other}"}).status_code == 401
