"""CLI (user add via stdin, audit tail, bootstrap admin) and settings from the environment."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared import auth
from shared.config import load_settings
from shared.runtime import open_database


def _cli(args, home: Path, stdin: str = "", extra_env=None):
    import os
    env = {**os.environ, "NIIZA_AI_HOME": str(home), **(extra_env or {})}
    return subprocess.run([sys.executable, "-c", "import api; api.main()", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)


def test_settings_from_environment(tmp_path):
    s = load_settings(environ={"NIIZA_AI_HOME": str(tmp_path), "NIIZA_AI_PORT": "8123",
                               "NIIZA_AI_COOKIE_SECURE": "true", "NIIZA_AI_WHISPER_DEVICE": "cuda",
                               "NIIZA_AI_LOGIN_FAIL_DELAY_S": "0.25"})
    assert s.home == tmp_path and s.port == 8123 and s.cookie_secure is True
    assert s.db_path == tmp_path / "niiza-ai.db"
    assert s.whisper_compute == "float16"  # cuda default
    assert s.login_fail_delay_s == 0.25


def test_settings_defaults_and_bad_values(tmp_path):
    s = load_settings(environ={}, home=tmp_path)
    assert s.host == "127.0.0.1" and s.port == 8000 and s.whisper_compute == "int8"
    assert load_settings(environ={}).home == Path("./var")
    with pytest.raises(ValueError, match="NIIZA_AI_PORT"):
        load_settings(environ={"NIIZA_AI_PORT": "eighty", "NIIZA_AI_HOME": str(tmp_path)})


def test_user_add_reads_password_from_stdin_and_audits(tmp_path):
    r = _cli(["user", "add", "tanaka", "--role", "childcare"], tmp_path, stdin="strong-pass-789\n")
    assert r.returncode == 0, r.stderr
    db = open_database(load_settings(environ={}, home=tmp_path))
    user = auth.authenticate(db, "tanaka", "strong-pass-789", client="t", max_failures=5, window_s=60)
    assert user.role == "childcare"
    r = _cli(["audit", "tail"], tmp_path)
    assert "user_created" in r.stdout and "strong-pass" not in r.stdout


def test_user_add_rejects_weak_password_with_japanese_message(tmp_path):
    r = _cli(["user", "add", "sato", "--role", "clerk"], tmp_path, stdin="short\n")
    assert r.returncode == 1
    assert "10文字以上" in r.stderr


def test_bootstrap_creates_one_time_admin_once(tmp_path):
    from api import bootstrap
    settings = load_settings(environ={}, home=tmp_path)
    db = open_database(settings)
    lines = []
    bootstrap(settings, db, echo=lines.append)
    text = "\n".join(lines)
    password = [ln.split(":")[-1].strip() for ln in lines if "one-time password" in ln][0]
    user = auth.authenticate(db, "admin", password, client="t", max_failures=5, window_s=60)
    assert user.role == "admin" and user.must_change_password
    stored = db.execute("SELECT password_hash FROM auth_user").fetchone()[0]
    assert password not in stored and "admin" in text
    lines2 = []
    bootstrap(settings, db, echo=lines2.append)
    assert not any("one-time password" in ln for ln in lines2)
