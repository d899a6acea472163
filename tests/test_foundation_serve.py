"""The README's first command: `niiza-ai serve` on a fresh data folder gives a working system."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_on_fresh_folder(tmp_path):
    port = _free_port()
    env = {**os.environ, "NIIZA_AI_HOME": str(tmp_path / "data"), "NIIZA_AI_LOGIN_FAIL_DELAY_S": "0"}
    proc = subprocess.Popen([sys.executable, "-c", "import api; api.main()", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                r = httpx.get(base + "/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise AssertionError("server did not start")
        assert r.status_code == 200 and r.json()["db"] == "ok"
        assert (tmp_path / "data" / "niiza-ai.db").exists()
        # staff pages need a login; the API needs a token
        for path in ("/minutes", "/allocation"):
            r = httpx.get(base + path, follow_redirects=False)
            assert r.status_code == 303, (path, r.status_code)
            assert r.headers["location"].startswith("/login")
        for path in ("/api/minutes/meetings", "/api/allocation/rounds"):
            assert httpx.get(base + path).status_code == 401, path
        assert httpx.get(base + "/docs").status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        lines = out.splitlines()
    text = "\n".join(lines)
    match = re.search(r"one-time password: (\S+)", text)
    assert match, text[-2000:]
    assert f"http://127.0.0.1:{port}/" in text
