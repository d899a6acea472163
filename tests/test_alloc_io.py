"""Input reading and validation: encodings, Japanese headers, Excel, every bad-input case."""
from __future__ import annotations

import pytest

from allocation.io import format_error, load_assignment, load_round
from allocation.rules import compute_priority, deciding_rule, parse_rules
from shared.errors import InvalidInput

NURSERIES = """nursery_id,name,capacity_0,capacity_1,capacity_2,capacity_3,capacity_4,capacity_5
N1,さくら保育園,1,2,0,3,3,3
N2,ひまわり保育園,0,1,1,3,3,3
"""
APPLICANTS = """applicant_id,age_class,base_points,adjust_points,preferences,sibling_group,sibling_mode,current_nursery
A1,0,40,2,N1;N2,,,
A2,1,38,0,N2,,,
A3,1,38,0,N1;N2,S1,same_nursery,
A4,3,38,0,N1,S1,same_nursery,
A5,2,30,1,N2,,,N1
"""
JP_APPLICANTS = """申込番号,年齢クラス,基準指数,調整指数,希望施設,兄弟グループ,兄弟条件,在園施設,ひとり親
A1,0歳児,40,2,N1;N2,,,,なし
A2,1歳,38,0,N2,,,,あり
"""


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def details(exc: pytest.ExceptionInfo) -> list[dict]:
    return exc.value.details


def test_utf8_round_is_read(tmp_path):
    rnd = load_round(write(tmp_path, "a.csv", APPLICANTS), write(tmp_path, "n.csv", NURSERIES))
    assert [a.applicant_id for a in rnd.applicants] == ["A1", "A2", "A3", "A4", "A5"]
    a1 = rnd.by_id["A1"]
    assert a1.points == 42 and a1.preferences == ("N1", "N2") and a1.age_class == 0
    assert rnd.by_id["A3"].sibling_mode == "same_nursery"
    assert rnd.by_id["A5"].current_nursery == "N1" and rnd.by_id["A5"].options == ("N2", "N1")
    assert rnd.nursery_by_id["N1"].capacity == (1, 2, 0, 3, 3, 3)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp932", "shift_jis"])
def test_encodings_and_japanese_headers(tmp_path, encoding):
    rules = parse_rules('tie_break = ["ひとり親 desc"]')
    nur = NURSERIES.replace("nursery_id,name", "施設番号,施設名")
    rnd = load_round(write(tmp_path, "a.csv", JP_APPLICANTS, encoding), write(tmp_path, "n.csv", nur, encoding), rules)
    assert rnd.by_id["A1"].age_class == 0 and rnd.by_id["A2"].age_class == 1
    assert rnd.by_id["A2"].extra["ひとり親"] == 1 and rnd.by_id["A1"].extra["ひとり親"] == 0
    assert rnd.nursery_by_id["N1"].name == "さくら保育園"


def test_xlsx_with_sheet_option(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "説明"
    ws.append(["このシートは説明です"])
    ws2 = wb.create_sheet("申込")
    ws2.append(["申込番号", "年齢クラス", "基準指数", "調整指数", "第1希望", "第2希望"])
    ws2.append(["A1", 0, 40, 0, "N1", "N2"])
    ws2.append(["A2", 1, 35.0, None, "N2", None])
    path = tmp_path / "applicants.xlsx"
    wb.save(path)
    rnd = load_round(path, write(tmp_path, "n.csv", NURSERIES), applicants_sheet="申込")
    assert rnd.by_id["A1"].preferences == ("N1", "N2")
    assert rnd.by_id["A2"].points == 35 and rnd.by_id["A2"].preferences == ("N2",)
    with pytest.raises(InvalidInput) as e:
        load_round(path, write(tmp_path, "n.csv", NURSERIES), applicants_sheet="ありません")
    assert "シート「ありません」" in details(e)[0]["message"]


def test_every_bad_input_reported_at_once(tmp_path):
    nur = NURSERIES + "N3,すみれ,-1,0,0,0,0,0\nN1,重複,0,0,0,0,0,0\n"
    app = """applicant_id,age_class,base_points,adjust_points,preferences,sibling_group,sibling_mode,current_nursery
A1,0,40,0,N1;N9,,,
A1,1,40,0,N1,,,
A3,7,40,0,N1,,,
A4,1,四十,0,N1,,,
A5,1,40,x,N1,,,
A6,1,40,0,N1,G1,same_nursery,
A7,1,40,0,N1,G1,all_or_none,
A8,1,40,0,N1,G2,same_nursery,
A9,1,40,0,N2,,,N99
A10,1,40,0,N1;N1,,,
A11,1,40,0,N1,,bogus,
"""
    with pytest.raises(InvalidInput) as e:
        load_round(write(tmp_path, "a.csv", app), write(tmp_path, "n.csv", nur))
    errs = details(e)
    text = "\n".join(format_error(x) for x in errs)
    expected = [
        ("a.csv", 2, "preferences", "希望施設「N9」は施設一覧にありません"),
        ("a.csv", 3, "applicant_id", "申込番号「A1」が重複"),
        ("a.csv", 4, "age_class", "年齢クラス「7」が範囲外"),
        ("a.csv", 5, "base_points", "基準指数「四十」が数値ではありません"),
        ("a.csv", 6, "adjust_points", "調整指数「x」が数値ではありません"),
        ("a.csv", 7, "sibling_mode", "兄弟条件が揃っていません"),
        ("a.csv", 8, "sibling_mode", "兄弟条件が揃っていません"),
        ("a.csv", 9, "sibling_group", "兄弟グループ「G2」の申込が1件しかありません"),
        ("a.csv", 10, "current_nursery", "在園施設（転園元）「N99」は施設一覧にありません"),
        ("a.csv", 11, "preferences", "2回以上"),
        ("a.csv", 12, "sibling_mode", "兄弟条件「bogus」"),
        ("n.csv", 4, "capacity_0", "負の値"),
        ("n.csv", 5, "nursery_id", "施設番号「N1」が重複"),
    ]
    for file, row, col, msg in expected:
        assert any(x["file"] == file and x["row"] == row and x["column"] == col and msg in x["message"]
                   for x in errs), (file, row, col, msg, text)
    assert "件の誤り" in e.value.message


def test_unreadable_encoding_and_missing_columns(tmp_path):
    bad = tmp_path / "a.csv"
    bad.write_bytes(b"\xff\xfd\xfa\x80\x81\x82,\x00\xff\n\x80\x80\x80")
    with pytest.raises(InvalidInput) as e:
        load_round(bad, write(tmp_path, "n.csv", "nursery_id,name\nN1,x\n"))
    msgs = [x["message"] for x in details(e)]
    assert any("文字コードを判別できません" in m for m in msgs)
    assert any("capacity_0" in m for m in msgs)  # the nursery file's problem is reported too


def test_missing_tie_break_column(tmp_path):
    rules = parse_rules('tie_break = ["income_tax asc"]')
    with pytest.raises(InvalidInput) as e:
        load_round(write(tmp_path, "a.csv", APPLICANTS), write(tmp_path, "n.csv", NURSERIES), rules)
    assert "income_tax" in details(e)[0]["message"]


def test_rules_errors_all_reported():
    with pytest.raises(InvalidInput) as e:
        parse_rules('tie_break = ["a sideways", {direction="asc"}]\nlottery_seed = "x"\n'
                    '[[shared_cap]]\nnursery_id = "N1"\nages = [1]\ncapacity = -2\n')
    assert len(e.value.details) == 5


def test_tie_break_order_and_seeded_lottery():
    from allocation.models import Applicant

    def app(aid, pts, single, tax):
        return Applicant(aid, 1, pts, 0, ("N1",), extra={"single_parent": single, "income_tax": tax})

    apps = [app("A", 40, 0, 100), app("B", 40, 1, 900), app("C", 40, 0, 50), app("D", 41, 0, 0),
            app("E", 40, 0, 50), app("F", 40, 0, 50)]
    rules = parse_rules('tie_break = ["single_parent desc", "income_tax asc"]\nlottery_seed = 7')
    p = compute_priority(apps, rules)
    assert p.order[:2] == ["D", "B"]
    assert p.tie_rule["B"] == "指数"
    assert set(p.order[2:5]) == {"C", "E", "F"} and p.order[5] == "A"
    assert p.tie_rule["A"] == "income_tax 昇順"
    assert p.tie_rule[p.order[3]] == "抽選"
    assert deciding_rule(p, "B", "C") == "single_parent 降順"
    # reproducible for a seed, independent of row order; another seed can change the lottery
    p2 = compute_priority(list(reversed(apps)), rules)
    assert p2.order == p.order and p2.rank == p.rank
    orders = {tuple(compute_priority(apps, parse_rules(f"lottery_seed = {s}\n" + 'tie_break = ["single_parent desc", "income_tax asc"]')).order)
              for s in range(12)}
    assert len(orders) > 1


def test_load_assignment_errors(tmp_path):
    rnd = load_round(write(tmp_path, "a.csv", APPLICANTS), write(tmp_path, "n.csv", NURSERIES))
    got = load_assignment(write(tmp_path, "m.csv", "申込番号,内定施設\nA1,N1\nA2,\n"), rnd)
    assert got["A1"] == "N1" and got["A2"] is None and got["A5"] is None
    with pytest.raises(InvalidInput) as e:
        load_assignment(write(tmp_path, "m.csv", "applicant_id,nursery_id\nA1,N7\nZ9,N1\nA2,N1\nA2,N2\n"), rnd)
    assert [x["row"] for x in e.value.details] == [2, 3, 5]


@pytest.mark.parametrize("text,expected,seed", [
    ('tie_break = ["single_parent desc", "income_tax ASC"]\nlottery_seed = 5', [("single_parent", "desc"), ("income_tax", "asc")], 5),
    ('[tie_break]\ncolumns = ["single_parent desc", "waiting_months descending"]\nseed = 9',
     [("single_parent", "desc"), ("waiting_months", "desc")], 9),
    ('[[tie_break]]\ncolumn = "a"\ndirection = "asc"\n[[tie_break]]\nname = "b"\norder = "降順"\n[lottery]\nseed = 3',
     [("a", "asc"), ("b", "desc")], 3),
    ('seed = 11\ntiebreak = ["x desc"]\n[meta]\ntitle = "新座市"', [("x", "desc")], 11),
])
def test_rules_toml_spellings(text, expected, seed):
    r = parse_rules(text)
    assert [(t.column, t.direction) for t in r.tie_break] == expected and r.lottery_seed == seed


def test_result_xlsx_keeps_formula_like_text_as_text():
    """An ID or reason that starts with "=" must not become a live formula when staff open the file."""
    import io

    import openpyxl

    from allocation.io import RESULT_COLUMNS, rows_xlsx_bytes

    row = {c: "" for c in RESULT_COLUMNS}
    row.update(applicant_id='=HYPERLINK("http://example.invalid","x")', reason="=1+1")
    ws = openpyxl.load_workbook(io.BytesIO(rows_xlsx_bytes([row]))).active
    cells = {h.value: c for h, c in zip(ws[1], ws[2])}
    assert cells["applicant_id"].data_type == "s"
    assert cells["applicant_id"].value == '=HYPERLINK("http://example.invalid","x")'
    assert cells["reason"].data_type == "s" and cells["reason"].value == "=1+1"
