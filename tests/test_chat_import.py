"""FAQ import/export: encodings, Japanese headers, XLSX, every bad-row case, all-or-nothing."""
from __future__ import annotations

import io

import openpyxl
import pytest

from chatbot import importer, service, storage
from shared.errors import InvalidInput
from test_chat_support import make_db

JP_HEADER = "番号,分類,質問,回答,担当課,連絡先,URL,キーワード,更新日,備考\n"
GOOD = (JP_HEADER
        + 'A1,ごみ・リサイクル,ペットボトルは何ごみですか,"資源ごみです。\n'
          'キャップとラベルは外してください。",環境課,048-477-1112,https://example.jp/pet,ペット,2025/4/1,内部メモ\n'
        + "A2,税,住民税の納付方法を教えてください,納付書で金融機関・コンビニで納付できます。,収納課,,,,,\n")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_encodings_and_japanese_headers(encoding):
    faqs = importer.parse(GOOD.encode(encoding), "faq.csv")
    assert [f.faq_id for f in faqs] == ["A1", "A2"]
    a1 = faqs[0]
    assert a1.category == "ごみ・リサイクル" and a1.department == "環境課"
    assert a1.answer == "資源ごみです。\nキャップとラベルは外してください。"  # line break kept
    assert a1.updated_at == "2025-04-01" and a1.url == "https://example.jp/pet"
    assert not hasattr(a1, "備考")  # unknown column ignored


def test_xlsx_with_aliases():
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["ID", "カテゴリー", "質問文", "回答文", "担当部署", "メモ"])
    ws.append(["X1", "図書館", "本の返却ポストはどこですか", "中央図書館の正面入口にあります。", "中央図書館", "x"])
    ws.append([2, "図書館", "CDは借りられますか", "はい、1人3点まで借りられます。", "中央図書館", None])
    buf = io.BytesIO()
    wb.save(buf)
    faqs = importer.parse(buf.getvalue(), "faq.xlsx")
    assert [f.faq_id for f in faqs] == ["X1", "2"]
    assert faqs[1].department == "中央図書館" and faqs[1].category == "図書館"


def test_missing_id_gets_a_stable_generated_one():
    data = "質問,回答\nごみの日はいつですか,地区ごとのカレンダーをご覧ください。\n".encode()
    a, b = importer.parse(data, "f.csv"), importer.parse(data, "f.csv")
    assert a[0].faq_id == b[0].faq_id and a[0].faq_id.startswith("Q")


def test_every_bad_row_is_reported_with_its_line():
    csv_text = (
        "faq_id,question,answer,url,updated_at\n"          # line 1
        "B1,正しい質問,正しい回答,,\n"                      # 2 ok
        "B2,,回答だけ,,\n"                                  # 3 empty question
        "B3,質問だけ,,,\n"                                  # 4 empty answer
        'B4,複数行の回答,"一行目\n二行目",,\n'              # 5-6 ok (multi-line)
        "B1,重複した番号,回答,,\n"                          # 7 duplicate id
        "B 5,番号に空白,回答,,\n"                           # 8 bad id
        "B6,リンク,回答,javascript:alert(1),\n"             # 9 bad url
        "B7,日付,回答,,2025-13-40\n"                        # 10 bad date
        "B8,列が多い,回答,,,余分\n"                         # 11 too many fields
        f"B9,{'長' * 501},回答,,\n"                        # 12 question too long
        "B10,制御文字\x07,回答,,\n"                        # 13 control character
    )
    with pytest.raises(InvalidInput) as ei:
        importer.parse(csv_text.encode(), "bad.csv")
    got = {(d["line"], d["field"]) for d in ei.value.details}
    assert got == {(3, "question"), (4, "answer"), (7, "faq_id"), (8, "faq_id"), (9, "url"),
                   (10, "updated_at"), (11, ""), (12, "question"), (13, "question")}
    assert "何も登録していません" in ei.value.message
    dup = next(d for d in ei.value.details if d["line"] == 7)
    assert "2 行目" in dup["message"]


@pytest.mark.parametrize("data,fragment", [
    ("faq_id,answer\nC1,回答\n".encode(), "質問"),
    ("faq_id,question\nC1,質問\n".encode(), "回答"),
    (b"", "データがありません"),
    (b"\xff\xfe\x00\x81\xff", "文字コード"),
])
def test_unusable_files(data, fragment):
    with pytest.raises(InvalidInput) as ei:
        importer.parse(data, "x.csv")
    assert fragment in ei.value.message


def test_failed_import_changes_nothing(tmp_path):
    settings, db = make_db(tmp_path)
    before = storage.list_faqs(db)
    gen = storage.generation(db)
    bad = "faq_id,question,answer\nT01,上書きしようとする質問,新しい回答\nZ9,,回答なし\n".encode()
    with pytest.raises(InvalidInput):
        service.import_file(db, settings, bad, "bad.csv", replace=True)
    assert storage.list_faqs(db) == before and storage.generation(db) == gen


def test_upsert_and_replace_in_one_transaction(tmp_path):
    settings, db = make_db(tmp_path)
    n0 = storage.count_faqs(db)
    res = service.import_file(db, settings, GOOD.encode(), "good.csv")
    assert res["created"] == 2 and storage.count_faqs(db) == n0 + 2
    # replace: only the file's FAQs remain, the index follows, deletions are in the history
    res = service.import_file(db, settings, GOOD.encode("cp932"), "good.csv", replace=True)
    assert res == {"created": 0, "updated": 2, "deleted": n0, "embedded": 0, "rows": 2}
    assert [f["faq_id"] for f in storage.list_faqs(db)] == ["A1", "A2"]
    assert db.conn.execute("SELECT count(*) FROM chat_faq_fts").fetchone()[0] == 2
    assert db.conn.execute("SELECT count(*) FROM chat_faq_vector").fetchone()[0] == 2
    assert storage.faq_history(db, "T01")[-1]["action"] == "delete"
    hit = service.retriever(db, settings).search(db, "ペットボトルの捨て方").hits[0]
    assert hit.faq_id == "A1"


def test_export_round_trip(tmp_path):
    settings, db = make_db(tmp_path)
    text = importer.export_csv(storage.list_faqs(db))
    again = importer.parse(("\ufeff" + text).encode("utf-8"), "export.csv")
    assert {f.faq_id: f.to_dict() for f in again} == {
        f["faq_id"]: {k: f[k] for k in storage.FAQ_FIELDS} for f in storage.list_faqs(db)}
