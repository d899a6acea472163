"""Shared test fixtures: a real data folder in tmp, the real app over HTTP, staff logins."""
from __future__ import annotations

import itertools
import os

# Models and numeric libraries must not oversubscribe the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from fastapi.testclient import TestClient

from shared import auth
from shared.config import load_settings
from shared.runtime import open_database

_counter = itertools.count(1)
TEST_PASSWORD = "test-pass-2026"


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={}, home=tmp_path / "home", login_fail_delay_s=0.0)


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory):
    """The bundled Whisper base model, assembled once per test session (minutes tests)."""
    from minutes.model import ensure_bundled_model
    return ensure_bundled_model(tmp_path_factory.getbasetemp() / "minutes-models")


@pytest.fixture
def app(settings):
    from api import create_app
    return create_app(settings)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def db(settings, app):
    database = open_database(settings)
    yield database
    database.conn.close()


@pytest.fixture
def make_user(db):
    def _make(role: str, username: str | None = None, password: str = TEST_PASSWORD):
        name = username or f"{role}{next(_counter)}"
        return auth.create_user(db, name, password, role)
    return _make


@pytest.fixture
def login_as(client, make_user):
    """Create a user of ``role`` and return bearer headers from the real token endpoint."""
    def _login(role: str) -> dict:
        user = make_user(role)
        r = client.post("/api/auth/token", json={"username": user.username, "password": TEST_PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}
    return _login


def web_login(client, username: str, password: str = TEST_PASSWORD, next_url: str = ""):
    """Log in through the real login form (cookie session); returns the final response."""
    page = client.get("/login")
    import re
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf, "next": next_url},
                       follow_redirects=False)


def page_csrf(client, path: str = "/account/password") -> str:
    import re
    page = client.get(path)
    return re.search(r'<meta name="csrf-token" content="([^"]*)"', page.text).group(1)


# --- browser tests: a real uvicorn server and Debian's chromium through Playwright -------------

import socket
import threading
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
AXE_JS = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def live_server(app):
    """The real app served by uvicorn on a free port in a background thread; yields its base URL."""
    import uvicorn
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    import time
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--headless", "--disable-gpu",
                                    "--disable-background-networking", "--disable-component-update",
                                    "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="ja-JP")
    pg = context.new_page()
    yield pg
    context.close()


def axe_violations(page, impacts=("serious", "critical")) -> list[dict]:
    """Run axe-core (npm package, see tests/package.json) on the page; serious/critical only."""
    if not AXE_JS.exists():
        pytest.fail("axe-core missing: run `npm install --prefix tests`")
    # Evaluated through the DevTools protocol, so the page's strict CSP (no inline scripts) stays on.
    page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    result = page.evaluate("axe.run()")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in impacts]


def browser_login(page, base_url: str, username: str, password: str = TEST_PASSWORD):
    page.goto(base_url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
