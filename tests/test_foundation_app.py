"""Foundation: health, docs, security headers, error format, size limits — real HTTP, real SQLite."""
from __future__ import annotations

from shared.db import connect


def test_health_reports_db_ok(client, settings):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["db"] == "ok"
    assert "models" in body
    assert settings.db_path.exists()


def test_pages_name_the_configured_city(tmp_path):
    from fastapi.testclient import TestClient

    from api import create_app
    from shared.config import load_settings

    settings = load_settings(environ={"NIIZA_AI_CITY_NAME": "川越市", "NIIZA_AI_CITY_OFFICE": "川越市役所",
                                      "NIIZA_AI_CITY_PHONE": "049-224-8811",
                                      "NIIZA_AI_CITY_ADDRESS": "〒350-8601 埼玉県川越市元町1-3-1"},
                             home=tmp_path / "home", login_fail_delay_s=0.0)
    with TestClient(create_app(settings)) as c:
        html = c.get("/login").text
    assert "<title>職員ログイン｜川越市 AIサービス</title>" in html
    assert 'href="tel:049-224-8811"' in html and "〒350-8601" in html and "新座" not in html


def test_database_is_wal_and_migrated(client, settings):
    db = connect(settings.db_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = set(db.table_names())
    assert {"auth_user", "auth_token", "audit_log", "_migrations"} <= names
    versions = db.execute("SELECT version FROM _migrations WHERE service='shared'").fetchall()
    assert [v[0] for v in versions] == [1, 2]


def test_docs_and_openapi_list_routers(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assert "/static/swagger/swagger-ui-bundle.js" in r.text  # served locally, works offline
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/health" in paths
    assert "/api/auth/token" in paths
    for prefix in ("/api/chat/", "/api/minutes/", "/api/allocation/", "/api/admin/"):
        assert any(p.startswith(prefix) for p in paths), prefix


def test_security_headers_on_pages(client):
    for path in ("/", "/login", "/health"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"


def test_unknown_route_gives_japanese_json_error(client):
    r = client.get("/api/nothing-here")
    assert r.status_code == 404
    assert r.json()["code"] == "http_404"
    assert "見つかりません" in r.json()["message"]


def test_request_body_limit(client, settings):
    big = "x" * (settings.max_request_bytes + 10)
    r = client.post("/api/auth/token", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "大きすぎます" in r.json()["message"]


def test_validation_error_is_japanese(client):
    r = client.post("/api/auth/token", json={"username": "x"})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_input"
    assert r.json()["message"] == "入力内容に誤りがあります。"
