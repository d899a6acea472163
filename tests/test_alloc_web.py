"""Allocation API and pages over the real app: roles, upload with full validation, a background
run with progress, summary, downloads, explanations, comparison, audit records, restart recovery."""
from __future__ import annotations

import csv
import io
import json
import time

from allocation import storage

NURSERIES = ("nursery_id,name,capacity_0,capacity_1,capacity_2,capacity_3,capacity_4,capacity_5\n"
             "N1,さくら,1,1,0,0,0,0\nN2,ひまわり,1,1,0,0,0,0\n")
APPLICANTS = ("applicant_id,age_class,base_points,adjust_points,preferences,single_parent\n"
              "A1,0,40,0,N1;N2,0\nA2,0,40,0,N1;N2,1\nA3,0,30,0,N1,0\nA4,1,20,0,N2;N1,0\n")
RULES = 'tie_break = ["single_parent desc"]\nlottery_seed = 3\n'


def upload(client, headers, applicants=APPLICANTS, nurseries=NURSERIES, rules=RULES):
    files = {"applicants": ("申込.csv", applicants.encode("cp932"), "text/csv"),
             "nurseries": ("施設.csv", nurseries.encode("utf-8-sig"), "text/csv")}
    if rules is not None:
        files["rules"] = ("rules.toml", rules.encode(), "application/toml")
    return client.post("/api/allocation/rounds", files=files, data={"title": "テスト選考"}, headers=headers)


def wait_done(client, headers, run_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = client.get(f"/api/allocation/runs/{run_id}", headers=headers).json()
        if run["state"] in ("done", "failed"):
            return run
        time.sleep(0.1)
    raise AssertionError("run did not finish")


def test_roles(client, login_as):
    assert client.get("/api/allocation/rounds").status_code == 401
    assert client.get("/api/allocation/rounds", headers=login_as("clerk")).status_code == 403
    assert upload(client, login_as("clerk")).status_code == 403
    assert client.get("/api/allocation/rounds", headers=login_as("childcare")).status_code == 200
    assert client.get("/api/allocation/rounds", headers=login_as("admin")).status_code == 200
    r = client.get("/allocation", follow_redirects=False)
    assert r.status_code in (302, 303) and "/login" in r.headers["location"]


def _guards(dependant) -> list:
    from shared.deps import RoleRequirement

    found = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, RoleRequirement):
            found.append(dep.call)
        found.extend(_guards(dep))
    return found


def test_every_allocation_route_requires_childcare(app):
    from fastapi.routing import APIRoute, iter_route_contexts

    seen = 0
    for ctx in iter_route_contexts(app.routes):
        original = getattr(ctx, "original_route", ctx)
        if isinstance(original, APIRoute) and ctx.path.startswith(("/api/allocation", "/allocation")):
            seen += 1
            assert any(g.roles == ("childcare",) for g in _guards(ctx.dependant)), ctx.path
    assert seen >= 12


def test_upload_run_summary_download_compare_and_audit(client, login_as, db):
    h = login_as("childcare")
    r = upload(client, h)
    assert r.status_code == 201, r.text
    rnd = r.json()
    assert rnd["applicants"] == 4 and rnd["nurseries"] == 2 and len(rnd["applicants_sha256"]) == 64
    r = client.post(f"/api/allocation/rounds/{rnd['id']}/runs", json={}, headers=h)
    assert r.status_code == 202
    run = wait_done(client, h, r.json()["id"])
    assert run["state"] == "done" and run["status"] == "OPTIMAL" and run["seed"] == 3
    assert run["summary"]["placed"] == 3 and run["summary"]["blocking_coalitions"] == 0
    assert any(c["nursery_id"] == "N1" and c["age"] == 0 and c["border_points"] == 40 for c in run["cutoff"])
    # downloads
    r = client.get(f"/api/allocation/runs/{run['id']}/result.csv", headers=h)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    assert {x["applicant_id"]: x["nursery_id"] for x in rows} == {"A1": "N2", "A2": "N1", "A3": "", "A4": "N2"}
    x = client.get(f"/api/allocation/runs/{run['id']}/result.xlsx", headers=h)
    assert x.status_code == 200 and x.content[:2] == b"PK"
    cut = client.get(f"/api/allocation/runs/{run['id']}/cutoff.csv", headers=h)
    assert cut.status_code == 200 and "ボーダー指数" in cut.content.decode("utf-8-sig")
    rep = client.get(f"/api/allocation/runs/{run['id']}/report.html", headers=h)
    assert "ボーダー指数" in rep.text
    # one applicant's explanation
    res = client.get(f"/api/allocation/runs/{run['id']}/results", params={"applicant_id": "A3"}, headers=h).json()
    assert res["total"] == 1 and "ボーダー指数40" in res["items"][0]["explanation"]
    # comparison with a manual selection
    manual = "applicant_id,nursery_id\nA1,N1\nA2,N2\nA3,\nA4,\n"
    c = client.post(f"/api/allocation/runs/{run['id']}/compare",
                    files={"manual": ("manual.csv", manual.encode(), "text/csv")}, headers=h)
    assert c.status_code == 201, c.text
    cmp = c.json()
    assert cmp["agreement_pct"] == 25.0 and cmp["manual"]["blocking_coalitions"] == 3
    assert "一致率" in client.get(cmp["report_url"], headers=h).text
    # audit: hashes, rules, seed, solver; never child data
    rows = db.execute("SELECT action, detail FROM audit_log WHERE action LIKE 'alloc_%' ORDER BY id").fetchall()
    actions = [a for a, _ in rows]
    assert actions[:1] == ["alloc_round_created"] and "alloc_run_started" in actions
    assert "alloc_run_finished" in actions and "alloc_compare" in actions
    fin = json.loads(dict(rows)["alloc_run_finished"])
    assert fin["applicants_sha256"] == rnd["applicants_sha256"] and fin["seed"] == 3
    assert "OR-Tools" in fin["solver"] and "single_parent" in fin["rules"] and len(fin["result_sha256"]) == 64
    blob = " ".join(d for _, d in rows)
    assert "N1;N2" not in blob and "A3" not in blob
    # deleting the round removes its files, runs and results
    assert client.delete(f"/api/allocation/rounds/{rnd['id']}", headers=h).status_code == 204
    assert client.get(f"/api/allocation/runs/{run['id']}", headers=h).status_code == 404
    for table in ("alloc_input", "alloc_run", "alloc_result", "alloc_comparison"):
        assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'alloc_round_deleted'").fetchone()[0] == 1


def test_bad_upload_lists_every_error(client, login_as):
    h = login_as("childcare")
    bad = APPLICANTS + "A1,8,x,0,N9,0\n"
    r = upload(client, h, applicants=bad)
    assert r.status_code == 422
    body = r.json()
    assert "件の誤り" in body["message"]
    messages = " ".join(d["message"] for d in body["details"])
    for text in ("重複", "年齢クラス「8」", "基準指数「x」", "希望施設「N9」"):
        assert text in messages
    assert all(d["file"] == "申込.csv" and d["row"] == 6 for d in body["details"])
    assert client.get("/api/allocation/rounds", headers=h).json()["rounds"] == []


def test_pages_render(client, login_as, make_user):
    from tests.conftest import web_login

    user = make_user("childcare")
    web_login(client, user.username)
    page = client.get("/allocation")
    assert page.status_code == 200 and "保育所入所選考" in page.text
    assert "<script>" not in page.text and "style=" not in page.text


def test_stale_runs_are_failed_at_startup(settings, db):
    from allocation.service import on_startup

    rid = storage.create_round(db, title="t", created_by="x", applicants=20, nurseries=3,
                               inputs=[{"kind": "applicants", "filename": "a.csv", "sha256": "0" * 64, "data": b"x"},
                                       {"kind": "nurseries", "filename": "n.csv", "sha256": "1" * 64, "data": b"y"}],
                               rules_canonical="")
    old = storage.create_run(db, rid, seed=0, time_limit_s=10, workers=1, created_by="x")
    fresh = storage.create_run(db, rid, seed=0, time_limit_s=10, workers=1, created_by="x")
    db.execute("UPDATE alloc_run SET created_at = '2020-01-01T00:00:00+00:00', state = 'running' WHERE id = ?", [old])
    on_startup(settings)
    assert storage.get_run(db, old)["state"] == "failed"
    assert storage.get_run(db, fresh)["state"] == "queued"


def test_run_seed_out_of_range_is_a_japanese_422(client, login_as):
    h = login_as("childcare")
    rnd = upload(client, h).json()
    r = client.post(f"/api/allocation/rounds/{rnd['id']}/runs", json={"seed": 2**70}, headers=h)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] and any("\u3040" <= ch <= "\u9fff" for ch in body["message"])
    # a negative seed within 64 bits is a valid lottery seed
    r = client.post(f"/api/allocation/rounds/{rnd['id']}/runs", json={"seed": -5}, headers=h)
    assert r.status_code == 202
    assert wait_done(client, h, r.json()["id"])["seed"] == -5
