"""Self-contained HTML reports (Japanese). Every value is escaped; no scripts."""
from __future__ import annotations

from html import escape

from .explain import Explanation, fmt_points

STYLE = """
body{font-family:"Noto Sans JP","Hiragino Sans","Yu Gothic",sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.15rem;border-bottom:2px solid #3a6;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #bbb;padding:.2rem .45rem;font-size:.85rem}
th{background:#eef5ee}td.n{text-align:right}.ok{color:#060;font-weight:bold}.ng{color:#b00;font-weight:bold}
details{margin:.15rem 0}summary{cursor:pointer}.muted{color:#666;font-size:.85rem}pre{white-space:pre-wrap;margin:.2rem 0}
"""


def _e(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return escape(fmt_points(v))
    return escape(str(v))


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="n">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
                                    for i, v in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{_e(title)}</h1>" + "".join(body) + "</body></html>")


def _verdict(summary: dict) -> str:
    if summary["violations"]:
        return f'<p class="ng">検証: ルール違反 {summary["violations"]} 件</p>'
    if summary["blocking_coalitions"]:
        return f'<p class="ng">検証: ルール違反なし。ただし優先順位の逆転（ブロッキング）{summary["blocking_coalitions"]} 件</p>'
    return '<p class="ok">検証: ルール違反なし・優先順位の逆転なし</p>'


def _summary_rows(s: dict) -> list[list]:
    rows = [["申込者数", s["applicants"]], ["入所決定", s["placed"]], ["保留", s["unplaced"]],
            ["ルール違反", s["violations"]], ["優先順位の逆転（ブロッキング）", s["blocking_coalitions"]],
            ["希望者がいるのに空いている席", s["empty_seats_wanted"]], ["兄弟が別々の結果", s["split_sibling_groups"]],
            ["転園（移動）", s["transfers_moved"]]]
    for k in sorted(s["by_rank"], key=_rank_order):
        rows.append([k, s["by_rank"][k]])
    return rows


def _rank_order(label: str) -> tuple[int, str]:
    digits = "".join(ch for ch in label if ch.isdigit())
    return (int(digits) if digits else 999, label)


def _cutoff(table: list[dict]) -> str:
    rows = [[r["nursery_id"], r["name"], f'{r["age"]}歳児', r["vacancies"], r["transfer_seats"], r["admitted"],
             r["free"], r["applicants"], r["first_choice"], r["waiting"], r["border_points"], r["border_rank"],
             r["border_rule"]] for r in table]
    return _table(["施設番号", "施設名", "年齢", "募集数", "転園で空く可能性のある席", "新規入所", "残り", "希望者",
                   "第1希望者", "待機", "ボーダー指数", "ボーダー順位", "同点時の決定基準"], rows,
                  {3, 4, 5, 6, 7, 8, 9, 10, 11})


def _violations(items: list[dict]) -> str:
    if not items:
        return "<p>なし</p>"
    return "<ul>" + "".join(f"<li>{_e(v['message'])}</li>" for v in items[:500]) + "</ul>"


def _blocking(items: list[dict]) -> str:
    if not items:
        return "<p>なし</p>"
    rows = [["・".join(b["applicant_ids"]), b["nursery_id"], "・".join(f"{x}歳児" for x in b["ages"]),
             "空席" if b["empty_seat"] else "・".join(b["passed_over_for"][:10])] for b in items[:2000]]
    return _table(["申込番号（見送られた側）", "施設", "年齢", "代わりに入所した申込（優先順位が低い）/空席"], rows)


def _empty(items: list[dict]) -> str:
    if not items:
        return "<p>なし</p>"
    rows = [[e["nursery_id"], f'{e["age"]}歳児', e["free"], e["wanted_by"], "・".join(e["applicant_ids"][:10])]
            for e in items]
    return _table(["施設", "年齢", "空席", "より希望している申込数", "申込番号（先頭10件）"], rows, {2, 3})


def solve_report(title: str, summary: dict, verifier: dict, explanations: dict[str, Explanation],
                 table: list[dict], meta: dict) -> str:
    body = [f'<p class="muted">{_e(" / ".join(f"{k}: {v}" for k, v in meta.items()))}</p>',
            _verdict(summary), "<h2>概要</h2>", _table(["項目", "件数"], _summary_rows(summary), {1}),
            "<h2>ルール違反</h2>", _violations(verifier["violation_list"]),
            "<h2>優先順位の逆転（ブロッキング）</h2>", _blocking(verifier["blocking_list"]),
            "<h2>希望者がいるのに空いている席</h2>", _empty(verifier["empty_seat_list"]),
            "<h2>施設・年齢別のボーダー指数（公表用）</h2>", _cutoff(table),
            "<h2>申込者ごとの説明</h2>"]
    for ex in sorted(explanations.values(), key=lambda e: e.priority_rank):
        body.append(f"<details><summary>{_e(ex.applicant_id)}（{ex.priority_rank}位・{_e(ex.points)}点）: "
                    f"{_e(ex.nursery_id or '保留')} — {_e(ex.reason)}</summary><pre>{_e(ex.text())}</pre></details>")
    return _page(title, body)


def compare_report(title: str, cmp: dict, meta: dict) -> str:
    t, m = cmp["tool"], cmp["manual"]
    labels = sorted(set(t["by_rank"]) | set(m["by_rank"]), key=_rank_order)
    rows = [["入所決定", t["placed"], m["placed"]], ["保留", t["unplaced"], m["unplaced"]],
            ["ルール違反", t["violations"], m["violations"]],
            ["優先順位の逆転（ブロッキング）", t["blocking_coalitions"], m["blocking_coalitions"]],
            ["希望者がいるのに空いている席", t["empty_seats_wanted"], m["empty_seats_wanted"]],
            ["兄弟が別々の結果", t["split_sibling_groups"], m["split_sibling_groups"]]]
    rows += [[k, t["by_rank"].get(k, 0), m["by_rank"].get(k, 0)] for k in labels]
    body = [f'<p class="muted">{_e(" / ".join(f"{k}: {v}" for k, v in meta.items()))}</p>',
            f"<p>一致率: <strong>{_e(cmp['agreement_pct'])}%</strong>（{cmp['same']} / {cmp['applicants']} 人が同じ結果、"
            f"{cmp['differences']} 人が異なる）</p>",
            "<h2>比較</h2>", _table(["項目", "ツール", "手作業"], rows, {1, 2}),
            "<h2>手作業の結果のルール違反</h2>", _violations(m["violation_list"]),
            "<h2>手作業の結果の優先順位の逆転（ブロッキング）</h2>", _blocking(m["blocking_list"]),
            "<h2>手作業の結果で希望者がいるのに空いている席</h2>", _empty(m["empty_seat_list"]),
            "<h2>ツールの結果の優先順位の逆転（ブロッキング）</h2>", _blocking(t["blocking_list"]),
            "<h2>結果が異なる申込者</h2>"]
    drows = []
    for d in cmp["difference_list"]:
        drows.append([d["applicant_id"], d["priority_rank"], d["points"],
                      f'{d["tool_nursery_id"] or "保留"}' + (f'（第{d["tool_preference_rank"]}希望）' if d["tool_preference_rank"] else ""),
                      f'{d["manual_nursery_id"] or "保留"}' + (f'（第{d["manual_preference_rank"]}希望）' if d["manual_preference_rank"] else "")])
    body.append(_table(["申込番号", "優先順位", "指数", "ツール", "手作業"], drows, {1, 2}))
    body.append("<h2>異なる申込者の説明</h2>")
    for d in cmp["difference_list"]:
        body.append(f"<details><summary>{_e(d['applicant_id'])}</summary>"
                    f"<p>ツール:</p><pre>{_e(d['tool_explanation'])}</pre>"
                    f"<p>手作業:</p><pre>{_e(d['manual_explanation'])}</pre></details>")
    return _page(title, body)
