"""Per-client rate limit on the public chat API (429 with a Japanese message)."""
from __future__ import annotations

import pytest

from shared.config import load_settings
from test_chat_support import load_small


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={}, home=tmp_path / "home", chat_rate_per_minute=3)


def test_rate_limit_per_client(client, db, settings):
    load_small(db, settings)
    for _ in range(3):
        assert client.post("/api/chat/ask", json={"message": "粗大ごみ"}).status_code == 200
    r = client.post("/api/chat/ask", json={"message": "粗大ごみ"})
    assert r.status_code == 429
    assert "しばらく" in r.json()["message"] or "待って" in r.json()["message"]
    assert client.post("/api/chat/feedback", json={"helpful": True}).status_code == 429
    # the staff pages are not throttled by residents' traffic
    assert client.get("/chat").status_code == 200


def test_limiter_counts_clients_separately():
    from chatbot.router import RateLimiter
    from shared.errors import TooManyRequests

    lim = RateLimiter(2)
    lim.check("a"), lim.check("a"), lim.check("b")
    with pytest.raises(TooManyRequests):
        lim.check("a")
    lim.check("b")
