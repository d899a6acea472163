"""The resident chat page and the staff page in a real browser (Debian chromium via Playwright):
ask → answer → feedback, candidates, category chips, keyboard-only use, safe rendering of FAQ
text, small screens, axe-core (no serious/critical violations)."""
from __future__ import annotations

import pytest

from chatbot import storage
from chatbot.confidence import Calibration
from chatbot.storage import Faq
from tests.conftest import axe_violations, browser_login
from test_chat_support import load_small, small_calibration


@pytest.fixture
def chat_server(live_server, db, settings):
    load_small(db, settings)
    storage.save_calibration(db, small_calibration().to_dict(), source="test")
    return live_server


def _ask(page, text):
    n = page.locator("#chat-log .msg-bot").count()
    page.fill("#chat-input", text)
    page.click("#chat-send")
    page.wait_for_function(f"() => document.querySelectorAll('#chat-log .msg-bot').length > {n}")
    return page.locator("#chat-log .msg-bot").last


def test_ask_answer_feedback_and_axe(chat_server, page, db):
    page.goto(chat_server + "/chat")
    assert page.get_attribute("#chat-log", "aria-live") == "polite"
    assert page.locator("label[for=chat-input]").count() == 1
    assert axe_violations(page) == []
    ans = _ask(page, "住民票ってコンビニで取れる？")
    assert ans.get_attribute("data-kind") == "answer"
    assert "コンビニエンスストア" in ans.inner_text()
    assert ans.locator("a[href='tel:0484771111']").count() == 1  # department phone as tel: link
    assert ans.locator("a[href='https://www.example.lg.jp/juminhyo']").count() >= 1  # linkified URL
    ans.get_by_role("button", name="役に立った", exact=True).click()
    ans.locator(".feedback-thanks").wait_for()
    row = db.conn.execute("SELECT faq_id, helpful FROM chat_feedback").fetchone()
    assert row == ("T01", 1)
    assert axe_violations(page) == []  # with an answer, links and buttons on the page


def test_candidates_when_unsure_and_category_chips(chat_server, page, db):
    storage.save_calibration(db, Calibration(t_score=50, t_oos=-50).to_dict(), source="test")
    page.goto(chat_server + "/chat")
    ans = _ask(page, "コンビニで手続きしたい")
    assert ans.get_attribute("data-kind") == "suggest" and "もしかして" in ans.inner_text()
    cands = ans.locator("button.candidate")
    assert 1 <= cands.count() <= 3
    first_q = cands.first.inner_text()
    cands.first.click()
    page.wait_for_function("() => document.querySelector('#chat-log .msg-bot:last-child .answer-question')")
    assert page.locator("#chat-log .msg-bot").last.locator(".answer-question").inner_text() == first_q
    page.click("button.chip[data-category='図書館']")
    page.wait_for_function("() => document.activeElement.classList.contains('candidate')")
    assert page.evaluate("document.activeElement.textContent") in (
        "図書館の本の貸出期間は何日ですか", "生まれた年によって図書館カードの色は変わりますか")
    assert axe_violations(page) == []


def test_keyboard_only(chat_server, page, db):
    page.goto(chat_server + "/chat")
    for _ in range(40):  # Tab through the page until the question field has focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "chat-input":
            break
    assert page.evaluate("document.activeElement.id") == "chat-input"
    page.keyboard.type("粗大ゴミの出し方")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#chat-log .msg-bot[data-kind=answer]')")
    assert page.evaluate("document.activeElement.id") == "chat-input"  # ready for the next question
    # backwards into the newest answer: its buttons are reachable without a mouse
    for _ in range(10):
        page.keyboard.press("Shift+Tab")
        if page.evaluate("document.activeElement.textContent") == "役に立たなかった":
            break
    assert page.evaluate("document.activeElement.textContent") == "役に立たなかった"
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('.feedback-thanks')")
    assert db.conn.execute("SELECT helpful FROM chat_feedback").fetchone() == (0,)
    # focus is visible (outline) on keyboard focus
    page.keyboard.press("Shift+Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_faq_text_is_rendered_as_text_never_html(chat_server, page, db, settings):
    from chatbot import service
    evil = Faq("X1", "危険なタグを含むFAQのテスト用の質問です",
               "<img src=x onerror=\"document.title='pwned'\"> 詳しくは https://example.jp/a?b=1&c=<b> へ"
               "\njavascript:alert(1) は無効です。電話 048-477-9999",
               "テスト", "テスト課", "048-477-9999")
    service.save_faqs(db, settings, [evil], action="edit")
    page.goto(chat_server + "/chat")
    ans = _ask(page, "危険なタグを含むFAQのテスト用の質問です")
    assert ans.get_attribute("data-kind") == "answer"
    assert ans.locator("img").count() == 0 and page.title() != "pwned"
    assert "<img src=x" in ans.inner_text()
    hrefs = ans.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert "https://example.jp/a?b=1&c=" in hrefs and "tel:048-477-9999" in hrefs
    assert not any(h.startswith("javascript") for h in hrefs)


@pytest.mark.parametrize("width", [360, 640])  # a phone, and 1280 px at 200 % zoom
def test_small_screens_do_not_scroll_sideways(chat_server, browser, width):
    ctx = browser.new_context(locale="ja-JP", viewport={"width": width, "height": 740})
    page = ctx.new_page()
    try:
        page.goto(chat_server + "/chat")
        _ask(page, "住民票ってコンビニで取れる？")
        page.click("#text-size-toggle")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1
        box = page.locator("#chat-send").bounding_box()
        assert box["height"] >= 40 and box["x"] + box["width"] <= width
    finally:
        ctx.close()


def test_embed_page_and_widget_snippet(chat_server, page):
    page.goto(chat_server + "/chat/embed")
    assert page.locator("#chat-input").count() == 1 and page.locator(".site-header").count() == 0
    assert axe_violations(page) == []
    page.set_content(f'<html lang="ja"><body><h1>市のページ</h1>'
                     f'<script src="{chat_server}/static/chatbot/widget.js"></script></body></html>')
    btn = page.locator("#niiza-chat-launcher")
    assert btn.get_attribute("aria-expanded") == "false"
    btn.click()
    assert btn.get_attribute("aria-expanded") == "true"
    assert page.get_attribute("#niiza-chat-panel iframe", "src") == chat_server + "/chat/embed"
    btn.click()  # the same button closes the panel
    assert btn.get_attribute("aria-expanded") == "false" and page.locator("#niiza-chat-panel").is_hidden()
    btn.focus()
    page.keyboard.press("Enter")
    assert btn.get_attribute("aria-expanded") == "true"
    btn.focus()
    page.keyboard.press("Escape")  # Escape on the host page closes it too
    assert btn.get_attribute("aria-expanded") == "false"


def test_staff_page_for_admin_only(chat_server, page, make_user):
    clerk = make_user("clerk")
    browser_login(page, chat_server, clerk.username)
    page.wait_for_load_state()
    resp = page.goto(chat_server + "/chat/admin")
    assert resp.status == 403
    page.context.clear_cookies()
    admin = make_user("admin")
    browser_login(page, chat_server, admin.username)
    page.wait_for_url(chat_server + "/")
    page.goto(chat_server + "/chat/admin")
    page.wait_for_function("() => document.querySelectorAll('#faq-table tbody tr').length >= 15")
    page.click("button[aria-label='T09 を編集']")
    page.wait_for_function("() => document.getElementById('f-question').value.length > 0")
    page.fill("#f-answer", "図書館の本は1人15冊まで、3週間借りられます。")
    page.click("#faq-save")
    page.wait_for_function("() => document.getElementById('admin-status').textContent.includes('保存しました')")
    # the page reloads the FAQ and its history after announcing the save
    page.wait_for_function("() => document.querySelectorAll('#faq-history li').length === 2")
    assert page.locator("#faq-history li").count() == 2
    assert axe_violations(page) == []
