"""The clerk's flow in a real browser (Debian chromium via Playwright) against a live server whose
in-process worker transcribes with the real Whisper base model."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from shared.config import load_settings
from tests.conftest import axe_violations, browser_login

ROOT = Path(__file__).resolve().parent.parent
MP3 = ROOT / "tests" / "data" / "minutes" / "short_meeting.mp3"


@pytest.fixture
def settings(tmp_path, whisper_dir):
    return load_settings(environ={}, home=tmp_path / "home", login_fail_delay_s=0.0,
                         whisper_model=str(whisper_dir), whisper_beam_size=1, minutes_worker="thread")


def test_upload_wait_edit_export_reopen(live_server, page, make_user, tmp_path):
    user = make_user("clerk")
    browser_login(page, live_server, user.username)
    page.wait_for_load_state()
    page.click("nav >> text=議事録作成")
    page.wait_for_url(live_server + "/minutes")
    assert page.locator("h1").inner_text() == "AI議事録作成"
    assert axe_violations(page) == []

    # a file that is not audio: a clear Japanese message, nothing registered
    bogus = tmp_path / "議事録.mp3"
    bogus.write_text("これは音声ではありません。" * 20, encoding="utf-8")
    page.set_input_files("#upload-file", str(bogus))
    page.click("#upload-submit")
    # (the page's CSP forbids eval, so waits use locators, not wait_for_function)
    expect(page.locator("#upload-error")).to_contain_text("音声ファイルとして読み込めませんでした")

    # the real recording
    page.set_input_files("#upload-file", str(MP3))
    page.fill("#upload-title-input", "文教厚生委員会")
    page.fill("#upload-held-at", "令和8年11月29日 午前10時")
    page.click("#upload-submit")
    expect(page.locator("#upload-status")).to_contain_text("登録しました")
    expect(page.locator("#meeting-rows tr").first).to_contain_text("文教厚生委員会")
    expect(page.locator("#meeting-rows tr").first.locator("progress")).to_be_visible()
    # the list polls: a progress bar while the job runs, then 完了
    page.wait_for_selector('#meeting-rows tr[data-state="done"]', timeout=180_000)
    assert "完了" in page.locator("#meeting-rows tr").first.inner_text()

    page.click("#meeting-rows tr >> text=文教厚生委員会")
    page.wait_for_url(re.compile(r".*/minutes/\d+$"))
    editor_url = page.url
    lines = page.locator("#transcript .utt")
    assert lines.count() >= 4
    assert page.locator("#player").get_attribute("src").endswith("/audio")
    assert axe_violations(page) == []

    # slow playback down so the highlighted line cannot run ahead of the checks on a busy machine
    page.evaluate("document.getElementById('player').playbackRate = 0.25")
    # keyboard: focus the first line's time button and press Enter
    lines.first.locator("button.utt-time").focus()
    page.keyboard.press("Enter")
    expect(lines.first).to_have_class(re.compile(r"\bplaying\b"), timeout=15_000)

    # click a line's time: the player jumps there and that line is highlighted
    third = lines.nth(2)
    start = float(third.get_attribute("data-start"))
    third.locator("button.utt-time").click()
    expect(third).to_have_class(re.compile(r"\bplaying\b"), timeout=15_000)
    expect(page.locator("#transcript .utt.playing")).to_have_count(1)
    assert page.evaluate("document.getElementById('player').currentTime") >= start - 0.01
    # clicking the line itself (here its speaker name) plays from that line too
    fourth = lines.nth(3)
    fourth.locator(".utt-speaker").click()
    expect(fourth).to_have_class(re.compile(r"\bplaying\b"), timeout=15_000)
    assert page.evaluate("document.getElementById('player').currentTime") >= float(fourth.get_attribute("data-start")) - 0.01
    page.evaluate("document.getElementById('player').pause()")

    # 素起こし (fillers kept) can be shown beside the edited text
    raw = lines.first.locator(".utt-raw")
    assert not raw.is_visible()
    page.check("#show-raw")
    expect(raw).to_be_visible()
    assert raw.inner_text().startswith("素起こし：")

    # edit the first line inline and save with the keyboard (Ctrl+Enter)
    first = lines.first
    edited = "ただいまから文教厚生委員会を開会いたします。（ブラウザで修正）"
    box = first.locator("textarea")
    box.fill(edited)
    assert first.locator('[data-action="save"]').is_enabled()
    box.press("Control+Enter")
    expect(first.locator(".utt-msg")).to_contain_text("保存しました")
    assert first.get_attribute("data-version") == "2"

    # rename 話者1 once for the whole meeting
    page.fill("#speaker-list input >> nth=0", "委員長")
    page.click("#speaker-list button >> nth=0")
    expect(page.locator("#speaker-status")).to_contain_text("変更しました")

    # the version history shows the machine draft and the edit
    first.locator('[data-action="history"]').click()
    dialog = page.locator("#history-dialog")
    dialog.wait_for(state="visible")
    items = page.locator("#history-list .history-item")
    assert items.count() == 2
    assert "自動の文字起こし" in items.nth(1).inner_text()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    # export docx: the download carries the edit
    with page.expect_download() as dl:
        page.click('a[data-format="docx"]')
    saved = tmp_path / "minutes.docx"
    dl.value.save_as(saved)
    from docx import Document
    text = "\n".join(p.text for p in Document(str(saved)).paragraphs)
    assert edited in text and "委員長：" in text

    # re-open the meeting: the edit is there
    page.goto(live_server + "/minutes")
    page.goto(editor_url)
    assert page.locator("#transcript .utt textarea").first.input_value() == edited
    assert "委員長" in page.locator("#transcript .utt .utt-speaker").first.inner_text()


def test_editor_controls_header_speakers_history_delete(live_server, page, make_user, db, settings):
    """The editor's other controls on a finished meeting (draft stored directly, no transcription)."""
    import shutil

    from minutes import jobs, storage
    incoming = jobs.new_upload_path(settings)
    shutil.copy(MP3, incoming)
    meeting_id, job_id = jobs.accept_upload(db, settings, incoming, header={"title": "第1回 会議"}, owner_id=None)
    db.execute("UPDATE minutes_job SET state='done', progress=100, stage='done' WHERE id=?", [job_id])
    storage.replace_draft(db, meeting_id, [
        {"start": 0.8, "end": 4.6, "speaker": "話者1", "text": "ただいまから委員会を開会いたします。",
         "raw_text": "えー、ただいまから委員会を開会いたします。"},
        {"start": 5.2, "end": 10.6, "speaker": "話者2", "text": "入所申請はいつからですか。",
         "raw_text": "あのー、入所申請はいつからですか。"},
        {"start": 11.2, "end": 14.7, "speaker": "話者3", "text": "来年4月から開始する予定です。",
         "raw_text": "えっと、来年4月から開始する予定です。"}], ["話者1", "話者2", "話者3"])
    audio = jobs.resolve_audio(settings, storage.get_meeting(db, meeting_id)["audio_path"])

    user = make_user("clerk")
    browser_login(page, live_server, user.username)
    page.wait_for_load_state()
    page.goto(f"{live_server}/minutes/{meeting_id}")
    assert page.locator("#job-panel").is_hidden()
    expect(page.locator("#key-points")).to_contain_text("予定です")

    # header
    page.fill("#h-title", "第2回 文教厚生委員会")
    page.fill("#h-place", "第1委員会室")
    page.click("#header-form button[type=submit]")
    expect(page.locator("#header-status")).to_contain_text("保存しました")
    expect(page.locator("h1")).to_have_text("第2回 文教厚生委員会")
    m = storage.get_meeting(db, meeting_id)
    assert (m["title"], m["place"]) == ("第2回 文教厚生委員会", "第1委員会室")

    # merge 話者3 into 話者2, then undo
    expect(page.locator("#merge-source option")).to_have_count(3)
    page.select_option("#merge-source", label="話者3")
    page.select_option("#merge-target", label="話者2")
    page.click("#merge-form button[type=submit]")
    expect(page.locator("#speaker-status")).to_contain_text("統合しました")
    expect(page.locator("#transcript .utt").nth(2).locator(".utt-speaker")).to_have_text("話者2")
    page.click("#speaker-list .merged button")
    expect(page.locator("#speaker-status")).to_contain_text("解除しました")
    expect(page.locator("#transcript .utt").nth(2).locator(".utt-speaker")).to_have_text("話者3")

    # edit, then restore the machine version from the history dialog
    line = page.locator("#transcript .utt").nth(1)
    line.locator("textarea").fill("入所申請はいつから始まりますか。")
    line.locator('[data-action="save"]').click()
    expect(line.locator(".utt-msg")).to_contain_text("第2版")
    line.locator('[data-action="history"]').click()
    page.locator("#history-dialog button", has_text="この版に戻す").click()
    expect(line.locator(".utt-msg")).to_contain_text("第1版の内容に戻しました")
    assert line.locator("textarea").input_value() == "入所申請はいつからですか。"
    assert [v["source"] for v in storage.utterance_versions(db, meeting_id, int(line.get_attribute("data-id")))] \
        == ["restore", "edit", "machine"]

    # 用語登録 on the list page (keyboard: open the disclosure, type, save)
    page.goto(live_server + "/minutes")
    page.click("#glossary-details summary")
    expect(page.locator("#glossary-status")).to_contain_text("登録済み：0件")
    page.fill("#glossary-text", "用語,読み\n保育課,ほいくか\n文教厚生委員会,ぶんきょうこうせいいいんかい")
    page.click("#glossary-form button[type=submit]")
    expect(page.locator("#glossary-status")).to_contain_text("保存しました（2件）")
    page.fill("#glossary-text", "保育課")  # no second column
    page.click("#glossary-form button[type=submit]")
    expect(page.locator("#glossary-error")).to_contain_text("1行目")
    assert axe_violations(page) == []
    page.goto(f"{live_server}/minutes/{meeting_id}")

    # delete (confirm dialog accepted): back to the list, file and rows gone
    page.once("dialog", lambda d: d.accept())
    page.click("#delete-meeting")
    page.wait_for_url(live_server + "/minutes")
    assert not audio.exists()
    assert db.execute("SELECT COUNT(*) FROM minutes_meeting").fetchone()[0] == 0
    expect(page.locator("#meeting-rows")).to_contain_text("まだ登録された会議はありません")
