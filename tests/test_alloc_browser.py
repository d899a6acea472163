"""The childcare section's flow in a real browser (Debian chromium via Playwright):
upload → validation errors shown → fixed upload → run with progress → summary → download CSV →
explanation → comparison."""
from __future__ import annotations

import csv
import io

from playwright.sync_api import expect

from tests.conftest import axe_violations, browser_login

NURSERIES = ("nursery_id,name,capacity_0,capacity_1,capacity_2,capacity_3,capacity_4,capacity_5\n"
             "N1,さくら保育園,1,1,0,0,0,0\nN2,ひまわり保育園,1,1,0,0,0,0\n")
APPLICANTS = ("申込番号,年齢クラス,基準指数,調整指数,希望施設,ひとり親\n"
              "A1,0,40,0,N1;N2,0\nA2,0,40,0,N1;N2,1\nA3,0,30,0,N1,0\nA4,1,20,0,N2;N1,0\n")
RULES = 'tie_break = ["ひとり親 desc"]\nlottery_seed = 3\n'


def test_upload_run_summary_download(live_server, page, make_user, tmp_path):
    (tmp_path / "applicants.csv").write_bytes(APPLICANTS.encode("cp932"))
    (tmp_path / "bad.csv").write_bytes((APPLICANTS + "A9,7,40,0,N8,0\n").encode("cp932"))
    (tmp_path / "nurseries.csv").write_text(NURSERIES, encoding="utf-8")
    (tmp_path / "rules.toml").write_text(RULES, encoding="utf-8")
    (tmp_path / "manual.csv").write_text("applicant_id,nursery_id\nA1,N1\nA2,N2\nA3,\nA4,N2\n", encoding="utf-8")

    user = make_user("childcare")
    browser_login(page, live_server, user.username)
    page.wait_for_load_state()
    page.click("nav >> text=保育所入所選考")
    page.wait_for_url(live_server + "/allocation")
    assert axe_violations(page) == []

    # invalid input: every error listed, in Japanese, nothing registered
    page.set_input_files("#alloc-applicants", str(tmp_path / "bad.csv"))
    page.set_input_files("#alloc-nurseries", str(tmp_path / "nurseries.csv"))
    page.set_input_files("#alloc-rules", str(tmp_path / "rules.toml"))
    page.click("#alloc-upload-submit")
    err = page.locator("#alloc-upload-error")
    expect(err).to_contain_text("年齢クラス「7」が範囲外")
    expect(err).to_contain_text("希望施設「N8」は施設一覧にありません")
    expect(err).to_contain_text("6行目")

    # the fixed file: registered, run starts, the page follows the run
    page.set_input_files("#alloc-applicants", str(tmp_path / "applicants.csv"))
    page.fill("#alloc-title", "ブラウザテスト選考")
    page.click("#alloc-upload-submit")
    page.wait_for_url(live_server + "/allocation/runs/*", timeout=30_000)
    expect(page.locator("#alloc-verdict")).to_contain_text("ルール違反なし", timeout=60_000)
    expect(page.locator("#alloc-placed")).to_have_text("3")
    expect(page.locator("#alloc-cutoff")).to_contain_text("さくら保育園")
    assert axe_violations(page) == []

    with page.expect_download() as dl:
        page.click("#alloc-download-csv")
    rows = list(csv.DictReader(io.StringIO(open(dl.value.path(), encoding="utf-8").read())))
    assert {r["applicant_id"]: r["nursery_id"] for r in rows} == {"A1": "N2", "A2": "N1", "A3": "", "A4": "N2"}

    page.fill("#alloc-explain-id", "A3")
    page.click("#alloc-explain-form button")
    expect(page.locator("#alloc-explain-out")).to_contain_text("ボーダー指数40")

    page.set_input_files("#alloc-manual", str(tmp_path / "manual.csv"))
    page.click("#alloc-compare-form button")
    expect(page.locator("#alloc-compare-out")).to_contain_text("一致率 50%")

    # the stored round can be deleted from the list (after a confirmation)
    page.goto(live_server + "/allocation")
    expect(page.locator("text=ブラウザテスト選考")).to_be_visible()
    page.once("dialog", lambda d: d.accept())
    page.click(".alloc-delete-button")
    expect(page.locator("text=ブラウザテスト選考")).to_have_count(0)
