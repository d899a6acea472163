"""Login page in a real browser: keyboard-only login, axe-core, one-time password flow."""
from __future__ import annotations

from shared import auth
from tests.conftest import axe_violations


def test_login_by_keyboard_and_accessible(live_server, page, make_user):
    user = make_user("admin")
    page.goto(live_server + "/login?next=/")
    assert axe_violations(page) == []
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")
    # walk focus to the username field by keyboard only
    for _ in range(15):
        if page.evaluate("document.activeElement.id") == "username":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type(user.username)
    page.keyboard.press("Tab")
    page.keyboard.type("test-pass-2026")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server + "/")
    assert user.username in page.inner_text("header")
    assert axe_violations(page) == []


def test_wrong_password_shows_japanese_alert(live_server, page, make_user):
    user = make_user("clerk")
    page.goto(live_server + "/login")
    page.fill("#username", user.username)
    page.fill("#password", "wrong-password-9")
    page.click("button[type=submit]")
    alert = page.locator("[role=alert]")
    assert "ユーザー名またはパスワードが正しくありません" in alert.inner_text()


def test_first_login_forces_password_change(live_server, page, db):
    auth.create_user(db, "firstadmin", "onetime-pass-1", "admin", must_change_password=True)
    page.goto(live_server + "/login")
    page.fill("#username", "firstadmin")
    page.fill("#password", "onetime-pass-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/account/password")
    page.fill("#old_password", "onetime-pass-1")
    page.fill("#new_password", "brand-new-pass-2")
    page.click("main button[type=submit]")
    page.wait_for_url(live_server + "/")
    assert auth.authenticate(db, "firstadmin", "brand-new-pass-2", client="t", max_failures=5,
                             window_s=60).must_change_password is False


def test_text_size_button(live_server, page):
    page.goto(live_server + "/")
    before = page.evaluate("getComputedStyle(document.documentElement).fontSize")
    page.click("#text-size-toggle")
    after = page.evaluate("getComputedStyle(document.documentElement).fontSize")
    assert float(after[:-2]) > float(before[:-2])
    assert page.get_attribute("#text-size-toggle", "aria-pressed") == "true"
