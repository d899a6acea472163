"""Domain errors: a stable machine ``code`` plus a Japanese ``message`` for users.

The API maps them to JSON ``{"code", "message", "details"}`` with ``status``; the CLI prints the
message and exits non-zero. Log lines use ``log_message`` (English) and never personal values.
"""
from __future__ import annotations

from typing import Any


class NiizaError(Exception):
    status = 400
    code = "bad_request"
    message = "リクエストの内容に誤りがあります。"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 status: int | None = None, details: Any = None, log_message: str | None = None):
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details
        self.log_message = log_message or self.code
        super().__init__(self.message)

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


class InvalidInput(NiizaError):
    status = 422
    code = "invalid_input"
    message = "入力内容に誤りがあります。"


class NotFound(NiizaError):
    status = 404
    code = "not_found"
    message = "指定されたデータが見つかりません。"


class Conflict(NiizaError):
    status = 409
    code = "conflict"
    message = "他の操作と競合しました。もう一度お試しください。"


class Unauthorized(NiizaError):
    status = 401
    code = "unauthorized"
    message = "ログインが必要です。"


class Forbidden(NiizaError):
    status = 403
    code = "forbidden"
    message = "この操作を行う権限がありません。"


class TooLarge(NiizaError):
    status = 413
    code = "too_large"
    message = "ファイルまたはリクエストが大きすぎます。"


class TooManyRequests(NiizaError):
    status = 429
    code = "too_many_requests"
    message = "短時間に多くのリクエストがありました。しばらく待ってからもう一度お試しください。"
