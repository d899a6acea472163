"""Staff accounts, password hashing (argon2), session/API tokens and login throttling.

Core logic only: the web layer (shared/deps.py, shared/pages.py) and the CLI call these functions.
Tokens are random; only their SHA-256 is stored. Passwords are hashed with argon2id.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from shared.db import now_iso
from shared.errors import Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthorized

ROLES = ("clerk", "childcare", "admin")
ROLE_LABELS = {"clerk": "議事録担当", "childcare": "保育課", "admin": "管理者"}
MIN_PASSWORD_LENGTH = 10
_USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{2,40}$")
_hasher = PasswordHasher()
# A valid hash to verify against when the user does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash("not-a-real-password-" + secrets.token_hex(8))


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    must_change_password: bool = False

    def has_role(self, *roles: str) -> bool:
        return self.role == "admin" or self.role in roles


@dataclass(frozen=True)
class Token:
    user: User
    kind: str  # "session" | "api"
    csrf_token: str
    expires_at: str


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"パスワードは{MIN_PASSWORD_LENGTH}文字以上にしてください。",
                           code="weak_password")
    if password.isdigit() or password.isalpha():
        raise InvalidInput("パスワードには英字と数字などを組み合わせてください。", code="weak_password")


def _user_from_row(row) -> User:
    return User(id=row["id"], username=row["username"], role=row["role"],
                must_change_password=bool(row["must_change_password"]))


def create_user(db: sqlite_utils.Database, username: str, password: str, role: str,
                *, must_change_password: bool = False) -> User:
    if role not in ROLES:
        raise InvalidInput(f"役割は {', '.join(ROLES)} のいずれかを指定してください。", code="bad_role")
    if not _USERNAME_RE.match(username):
        raise InvalidInput("ユーザー名は半角英数字と _ . - で2〜40文字にしてください。", code="bad_username")
    check_password_policy(password)
    if db.execute("SELECT 1 FROM auth_user WHERE username = ?", [username]).fetchone():
        raise InvalidInput("そのユーザー名は既に使われています。", code="user_exists")
    cur = db.execute(
        "INSERT INTO auth_user (username, password_hash, role, must_change_password, created_at)"
        " VALUES (?,?,?,?,?)",
        [username, hash_password(password), role, int(must_change_password), now_iso()],
    )
    return User(cur.lastrowid, username, role, must_change_password)


def count_users(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT count(*) FROM auth_user").fetchone()[0]


def list_users(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query("SELECT id, username, role, disabled, must_change_password, created_at"
                         " FROM auth_user ORDER BY username"))


def get_user(db: sqlite_utils.Database, username: str) -> User:
    rows = list(db.query("SELECT * FROM auth_user WHERE username = ? AND disabled = 0", [username]))
    if not rows:
        raise NotFound("ユーザーが見つかりません。", code="user_not_found")
    return _user_from_row(rows[0])


def set_password(db: sqlite_utils.Database, user_id: int, password: str,
                 *, must_change_password: bool = False) -> None:
    check_password_policy(password)
    db.execute(
        "UPDATE auth_user SET password_hash = ?, must_change_password = ?, password_changed_at = ?"
        " WHERE id = ?", [hash_password(password), int(must_change_password), now_iso(), user_id])


def disable_user(db: sqlite_utils.Database, username: str) -> None:
    user = get_user(db, username)
    db.execute("UPDATE auth_user SET disabled = 1 WHERE id = ?", [user.id])
    db.execute("DELETE FROM auth_token WHERE user_id = ?", [user.id])


def generate_password() -> str:
    """A one-time password a person can type: 4 groups of 4 letters/digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    groups = ["".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4)]
    if not any(c.isdigit() for c in "".join(groups)):
        groups[-1] = groups[-1][:3] + secrets.choice("23456789")
    return "-".join(groups)


# --- login and throttling ----------------------------------------------------------------

def _recent_failures(db, column: str, value: str, window_s: int) -> int:
    return db.execute(f"SELECT count(*) FROM auth_failure WHERE {column} = ? AND at > ?",
                      [value, time.time() - window_s]).fetchone()[0]


def authenticate(db: sqlite_utils.Database, username: str, password: str, *, client: str,
                 max_failures: int, window_s: int, fail_delay_s: float = 0.0) -> User:
    """Check a username/password. Raises TooManyRequests while throttled, Unauthorized when wrong.

    Throttling counts recent failures both per username and per client address, so neither
    guessing one account's password nor spraying many accounts from one address gets far.
    """
    username = (username or "").strip()
    if (_recent_failures(db, "username", username, window_s) >= max_failures
            or _recent_failures(db, "client", client, window_s) >= max_failures * 4):
        raise TooManyRequests("ログインの失敗が続いたため、しばらくログインできません。"
                              "時間をおいてからもう一度お試しください。", code="login_throttled")
    rows = list(db.query("SELECT * FROM auth_user WHERE username = ? AND disabled = 0", [username]))
    stored = rows[0]["password_hash"] if rows else _DUMMY_HASH
    try:
        ok = _hasher.verify(stored, password or "") and bool(rows)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok:
        db.execute("INSERT INTO auth_failure (username, client, at) VALUES (?,?,?)",
                   [username, client, time.time()])
        if fail_delay_s > 0:
            time.sleep(fail_delay_s)
        raise Unauthorized("ユーザー名またはパスワードが正しくありません。", code="login_failed")
    db.execute("DELETE FROM auth_failure WHERE username = ?", [username])
    if _hasher.check_needs_rehash(stored):
        db.execute("UPDATE auth_user SET password_hash = ? WHERE id = ?",
                   [hash_password(password), rows[0]["id"]])
    return _user_from_row(rows[0])


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_token(db: sqlite_utils.Database, user: User, *, kind: str, hours: float,
                label: str | None = None) -> tuple[str, Token]:
    raw = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    expires = (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat(timespec="seconds")
    db.execute(
        "INSERT INTO auth_token (token_hash, user_id, kind, csrf_token, created_at, expires_at, label)"
        " VALUES (?,?,?,?,?,?,?)", [_digest(raw), user.id, kind, csrf, now_iso(), expires, label])
    return raw, Token(user, kind, csrf, expires)


def resolve_token(db: sqlite_utils.Database, raw: str | None) -> Token | None:
    if not raw:
        return None
    rows = list(db.query(
        "SELECT u.*, t.kind, t.csrf_token, t.expires_at FROM auth_token t"
        " JOIN auth_user u ON u.id = t.user_id WHERE t.token_hash = ? AND u.disabled = 0",
        [_digest(raw)]))
    if not rows:
        return None
    row = rows[0]
    if row["expires_at"] < now_iso():
        db.execute("DELETE FROM auth_token WHERE token_hash = ?", [_digest(raw)])
        return None
    return Token(_user_from_row(row), row["kind"], row["csrf_token"], row["expires_at"])


def revoke_token(db: sqlite_utils.Database, raw: str) -> None:
    db.execute("DELETE FROM auth_token WHERE token_hash = ?", [_digest(raw)])


def change_password(db: sqlite_utils.Database, user: User, old: str, new: str,
                    *, keep_token: str | None = None) -> None:
    """Change a user's own password; every other session and API token of theirs is revoked."""
    row = db.execute("SELECT password_hash FROM auth_user WHERE id = ?", [user.id]).fetchone()
    try:
        _hasher.verify(row[0], old)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise Forbidden("現在のパスワードが正しくありません。", code="wrong_password") from None
    if old == new:
        raise InvalidInput("新しいパスワードは現在のものと異なるものにしてください。", code="same_password")
    set_password(db, user.id, new)
    db.execute("DELETE FROM auth_token WHERE user_id = ? AND token_hash != ?",
               [user.id, _digest(keep_token) if keep_token else ""])
