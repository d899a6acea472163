"""Schema of the shared tables: staff accounts, tokens, login failures, audit log."""
from __future__ import annotations

from shared.db import Migration


def _m1_accounts(db):
    db.execute(
        """CREATE TABLE auth_user (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('clerk','childcare','admin')),
            must_change_password INTEGER NOT NULL DEFAULT 0,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            password_changed_at TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE auth_token (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES auth_user(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('session','api')),
            csrf_token TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            label TEXT
        )"""
    )
    db.execute("CREATE INDEX auth_token_user ON auth_token(user_id)")
    db.execute(
        """CREATE TABLE auth_failure (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL,
            client TEXT NOT NULL,
            at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX auth_failure_user ON auth_failure(username, at)")
    db.execute("CREATE INDEX auth_failure_client ON auth_failure(client, at)")


def _m2_audit(db):
    db.execute(
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target_type TEXT NOT NULL,
            target_id TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX audit_log_at ON audit_log(at)")


MIGRATIONS = [
    Migration("shared", 1, "staff accounts and tokens", _m1_accounts),
    Migration("shared", 2, "audit log", _m2_audit),
]
