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
