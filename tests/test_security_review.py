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
