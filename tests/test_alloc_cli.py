"""The `alloc` command group (contract: option names, CSV columns, --json) and the comparison."""
from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from allocation.cli import alloc
from allocation.compare import compare
from allocation.models import Applicant, Nursery, Round

NURSERIES = """nursery_id,name,capacity_0,capacity_1,capacity_2,capacity_3,capacity_4,capacity_5
N1,さくら,1,1,0,0,0,0
N2,ひまわり,1,1,0,0,0,0
"""
APPLICANTS = """applicant_id,age_class,base_points,adjust_points,preferences,single_parent
A1,0,40,0,N1;N2,0
A2,0,40,0,N1;N2,1
A3,0,30,0,N1,0
A4,1,20,0,N2;N1,0
"""
RULES = 'tie_break = ["single_parent desc"]\nlottery_seed = 3\n'


def files(tmp_path, applicants=APPLICANTS, nurseries=NURSERIES, encoding="utf-8"):
    (tmp_path / "a.csv").write_bytes(applicants.encode(encoding))
    (tmp_path / "n.csv").write_bytes(nurseries.encode(encoding))
    (tmp_path / "rules.toml").write_text(RULES, encoding="utf-8")
    return ["--applicants", str(tmp_path / "a.csv"), "--nurseries", str(tmp_path / "n.csv"),
            "--rules", str(tmp_path / "rules.toml")]


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_solve_writes_contract_csv_and_report(tmp_path):
    out, rep, cut = tmp_path / "result.csv", tmp_path / "report.html", tmp_path / "cutoff.csv"
    r = CliRunner().invoke(alloc, ["solve", *files(tmp_path), "--out", str(out), "--report", str(rep), "--cutoff", str(cut),
                                   "--seed", "3", "--time-limit", "10", "--workers", "2", "--json"])
    assert r.exit_code == 0, r.output
    rows = read_csv(out)
    assert list(rows[0].keys()) == ["applicant_id", "nursery_id", "preference_rank", "priority_rank", "reason"]
    got = {x["applicant_id"]: x for x in rows}
    # A2 wins the tie on single_parent
    assert got["A2"]["nursery_id"] == "N1" and got["A2"]["priority_rank"] == "1"
    assert got["A1"]["nursery_id"] == "N2" and got["A1"]["preference_rank"] == "2"
    assert got["A3"]["nursery_id"] == "" and got["A3"]["preference_rank"] == "" and got["A3"]["reason"].startswith("保留")
    summary = json.loads(r.output)
    assert summary["status"] == "OPTIMAL" and summary["placed"] == 3 and summary["blocking_coalitions"] == 0
    cutoff = list(csv.DictReader(io.StringIO(cut.read_text(encoding="utf-8-sig"))))
    n1_0 = next(r for r in cutoff if r["施設番号"] == "N1" and r["年齢クラス"] == "0")
    assert n1_0["ボーダー指数"] == "40" and n1_0["同点時の決定基準"] == "single_parent 降順" and n1_0["待機"] == "2"
    html = rep.read_text(encoding="utf-8")
    assert "ボーダー指数" in html and "さくら" in html and "<script" not in html


def test_solve_accepts_cp932_with_japanese_headers(tmp_path):
    jp = APPLICANTS.replace("applicant_id,age_class,base_points,adjust_points,preferences",
                            "申込番号,年齢クラス,基準指数,調整指数,希望施設")
    out = tmp_path / "r.csv"
    r = CliRunner().invoke(alloc, ["solve", *files(tmp_path, jp, NURSERIES.replace("name", "施設名"), "cp932"),
                                   "--out", str(out), "--time-limit", "10"])
    assert r.exit_code == 0, r.output
    assert {x["applicant_id"]: x["nursery_id"] for x in read_csv(out)}["A2"] == "N1"


def test_bad_input_exits_nonzero_with_every_error(tmp_path):
    bad = APPLICANTS + "A1,9,x,0,N7,0\n"
    r = CliRunner().invoke(alloc, ["solve", *files(tmp_path, bad), "--out", str(tmp_path / "r.csv")])
    assert r.exit_code == 1
    assert "件の誤りがあります" in r.output
    for text in ("6行目", "重複", "年齢クラス「9」", "基準指数「x」", "希望施設「N7」"):
        assert text in r.output
    assert not (tmp_path / "r.csv").exists()


def test_check_json_and_exit_codes(tmp_path):
    args = files(tmp_path)
    good = tmp_path / "good.csv"
    good.write_text("applicant_id,nursery_id\nA1,N2\nA2,N1\nA3,\nA4,N2\n", encoding="utf-8")
    r = CliRunner().invoke(alloc, ["check", *args, "--result", str(good), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["ok"] and data["blocking_coalitions"] == 0 and data["placed"] == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("applicant_id,nursery_id\nA1,N1\nA2,N1\nA3,\nA4,N2\n", encoding="utf-8")
    r = CliRunner().invoke(alloc, ["check", *args, "--result", str(bad), "--json"])
    assert r.exit_code == 1
    data = json.loads(r.output)
    assert data["violations"] == 1 and data["violation_list"][0]["kind"] == "capacity"
    unstable = tmp_path / "unstable.csv"
    unstable.write_text("applicant_id,nursery_id\nA1,N1\nA2,N2\nA3,\nA4,N2\n", encoding="utf-8")
    r = CliRunner().invoke(alloc, ["check", *args, "--result", str(unstable)])
    assert r.exit_code == 1 and "逆転" in r.output


def test_compare_numbers_on_hand_made_case(tmp_path):
    manual = tmp_path / "manual.csv"
    # staff gave N1 to A1 (lost the tie-break to A2), forgot A4, who wanted N2 (free 1歳 seat)
    manual.write_text("applicant_id,nursery_id\nA1,N1\nA2,N2\nA3,\nA4,\n", encoding="utf-8")
    rep = tmp_path / "compare.html"
    r = CliRunner().invoke(alloc, ["compare", *files(tmp_path), "--manual", str(manual), "--report", str(rep),
                                   "--json", "--time-limit", "10"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)
    assert c["applicants"] == 4 and c["same"] == 1 and c["agreement_pct"] == 25.0
    assert c["tool"]["placed"] == 3 and c["manual"]["placed"] == 2
    assert c["tool"]["by_rank"] == {"第1希望": 2, "第2希望": 1} and c["manual"]["by_rank"] == {"第1希望": 1, "第2希望": 1}
    assert c["tool"]["blocking_coalitions"] == 0
    blocks = {(tuple(b["applicant_ids"]), b["nursery_id"]) for b in c["manual"]["blocking_list"]}
    assert blocks == {(("A2",), "N1"), (("A4",), "N2"), (("A4",), "N1")}
    assert c["manual"]["empty_seats_wanted"] == 2
    diffs = {d["applicant_id"]: d for d in c["difference_list"]}
    assert set(diffs) == {"A1", "A2", "A4"}
    assert diffs["A2"]["tool_nursery_id"] == "N1" and diffs["A2"]["manual_nursery_id"] == "N2"
    assert "第1希望" in diffs["A4"]["tool_explanation"]
    assert "一致率" in rep.read_text(encoding="utf-8")


def test_compare_function_counts_split_siblings():
    nurs = [Nursery("N1", "N1", (1, 1, 0, 0, 0, 0)), Nursery("N2", "N2", (1, 1, 0, 0, 0, 0))]
    apps = [Applicant("S0", 0, 40, 0, ("N1", "N2"), "G", "independent"),
            Applicant("S1", 1, 40, 0, ("N1", "N2"), "G", "independent")]
    rnd = Round(apps, nurs)
    c = compare(rnd, {"S0": "N1", "S1": "N1"}, {"S0": "N1", "S1": "N2"})
    assert c["tool"]["split_sibling_groups"] == 0 and c["manual"]["split_sibling_groups"] == 1
    assert c["agreement_pct"] == 50.0


def test_generate_then_solve_and_compare(tmp_path):
    out = tmp_path / "round"
    r = CliRunner().invoke(alloc, ["generate", "--children", "300", "--nurseries", "20", "--siblings", "0.08",
                                   "--transfers", "0.05", "--seed", "4", "--out", str(out), "--manual"])
    assert r.exit_code == 0, r.output
    apps = read_csv(out / "applicants.csv")
    assert len(apps) == 300 and sum(1 for a in apps if a["sibling_group"]) >= 20
    assert sum(1 for a in apps if a["current_nursery"]) == 15
    ages = [int(a["age_class"]) for a in apps]
    assert sum(1 for x in ages if x <= 2) > 2 * sum(1 for x in ages if x >= 3)
    args = ["--applicants", str(out / "applicants.csv"), "--nurseries", str(out / "nurseries.csv"),
            "--rules", str(out / "rules.toml")]
    r = CliRunner().invoke(alloc, ["compare", *args, "--manual", str(out / "manual.csv"), "--json",
                                   "--time-limit", "30"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)
    assert c["tool"]["blocking_coalitions"] == 0 and c["tool"]["violations"] == 0
    assert c["manual"]["blocking_coalitions"] + c["manual"]["violations"] > 0  # the human errors are found
    # same seed, same files
    again = tmp_path / "again"
    CliRunner().invoke(alloc, ["generate", "--children", "300", "--nurseries", "20", "--seed", "4", "--out", str(again),
                               "--manual"])
    assert (again / "applicants.csv").read_bytes() == (out / "applicants.csv").read_bytes()
    assert (again / "manual.csv").read_bytes() == (out / "manual.csv").read_bytes()


def test_solve_reads_xlsx_sheets(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "表紙"
    ws = wb.create_sheet("申込者")
    for line in APPLICANTS.strip().splitlines():
        ws.append(line.split(","))
    wb.save(tmp_path / "a.xlsx")
    wb2 = openpyxl.Workbook()
    for line in NURSERIES.strip().splitlines():
        wb2.active.append([int(c) if c.isdigit() else c for c in line.split(",")])
    wb2.save(tmp_path / "n.xlsx")
    (tmp_path / "rules.toml").write_text(RULES, encoding="utf-8")
    out = tmp_path / "r.csv"
    r = CliRunner().invoke(alloc, ["solve", "--applicants", str(tmp_path / "a.xlsx"), "--applicants-sheet", "申込者",
                                   "--nurseries", str(tmp_path / "n.xlsx"), "--rules", str(tmp_path / "rules.toml"),
                                   "--out", str(out), "--time-limit", "10"])
    assert r.exit_code == 0, r.output
    assert {x["applicant_id"]: x["nursery_id"] for x in read_csv(out)} == {"A1": "N2", "A2": "N1", "A3": "", "A4": "N2"}


def test_check_without_rules_uses_the_recorded_priority(tmp_path):
    # solved with a tie-break rule; checked without it: the result's own priority_rank is used
    args = files(tmp_path)
    out = tmp_path / "result.csv"
    r = CliRunner().invoke(alloc, ["solve", *args, "--out", str(out), "--time-limit", "10"])
    assert r.exit_code == 0, r.output
    plain = ["--applicants", str(tmp_path / "a.csv"), "--nurseries", str(tmp_path / "n.csv")]
    r = CliRunner().invoke(alloc, ["check", *plain, "--result", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["blocking_coalitions"] == 0
