"""Staff administration by the admin role: add/reset/disable users, audit log view."""
from __future__ import annotations

from shared import audit, auth
from tests.conftest import axe_violations, browser_login


def test_admin_adds_user_with_one_time_password(client, login_as, db):
    admin = login_as("admin")
    r = client.post("/api/admin/users", json={"username": "suzuki", "role": "clerk"}, headers=admin)
    assert r.status_code == 201
    pw = r.json()["one_time_password"]
    user = auth.authenticate(db, "suzuki", pw, client="t", max_failures=5, window_s=60)
    assert user.role == "clerk" and user.must_change_password
    assert any(row["action"] == "user_created" and row["detail"].get("via") == "web"
               for row in audit.tail(db, 10))
    # duplicate name and bad role are refused in Japanese
    r = client.post("/api/admin/users", json={"username": "suzuki", "role": "clerk"}, headers=admin)
    assert r.status_code == 422 and "既に使われています" in r.json()["message"]
    r = client.post("/api/admin/users", json={"username": "kato", "role": "mayor"}, headers=admin)
    assert r.status_code == 422


def test_admin_disable_and_reset(client, login_as, make_user, db):
    admin = login_as("admin")
    target = make_user("childcare")
    token = client.post("/api/auth/token", json={"username": target.username,
                                                 "password": "test-pass-2026"}).json()["access_token"]
    r = client.post(f"/api/admin/users/{target.username}/reset", headers=admin)
    assert r.status_code == 200
    # the reset revoked the old token
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    r = client.post(f"/api/admin/users/{target.username}/disable", headers=admin)
    assert r.status_code == 200
    assert [u for u in auth.list_users(db) if u["username"] == target.username][0]["disabled"] == 1
    actions = [row["action"] for row in audit.tail(db, 10)]
    assert "password_reset" in actions and "user_disabled" in actions


def test_non_admin_cannot_manage_users(client, login_as):
    clerk = login_as("clerk")
    assert client.get("/api/admin/users", headers=clerk).status_code == 403
    assert client.post("/api/admin/users", json={"username": "x1", "role": "admin"},
                       headers=clerk).status_code == 403


def test_admin_pages_in_browser(live_server, page, make_user):
    admin = make_user("admin")
    browser_login(page, live_server, admin.username)
    page.wait_for_url(live_server + "/")
    page.goto(live_server + "/admin/users")
    assert axe_violations(page) == []
    page.fill("#new-username", "yamada")
    page.select_option("#new-role", "childcare")
    page.click("#add-user-form button[type=submit]")
    result = page.locator("#admin-result")
    result.get_by_text("初回用パスワード").wait_for()
    page.goto(live_server + "/admin/audit")
    assert "user_created" in page.inner_text("main")
    assert axe_violations(page) == []
