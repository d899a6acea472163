"""ASGI middleware: security headers on every response and request body size limits."""
from __future__ import annotations

import json

from shared.config import Settings

_BASE_CSP = ("default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
             "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
             "form-action 'self'")
# FastAPI's Swagger page needs one inline script; it is served from local files (no CDN).
_DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
             "script-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'")
EMBED_PATHS = ("/chat/embed",)


class SecurityHeadersMiddleware:
    def __init__(self, app, settings: Settings):
        self.app = app
        origins = " ".join(settings.embed_origins.split())
        self.page_csp = (_BASE_CSP + "; frame-ancestors 'none'").encode()
        self.embed_csp = (_BASE_CSP + f"; frame-ancestors 'self' {origins}".rstrip()).encode()
        self.docs_csp = _DOCS_CSP.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path.startswith(EMBED_PATHS):
            csp, frame = self.embed_csp, None
        elif path in ("/docs", "/redoc"):
            csp, frame = self.docs_csp, b"DENY"
        else:
            csp, frame = self.page_csp, b"DENY"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                ]
                if frame:
                    headers.append((b"x-frame-options", frame))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Reject bodies over the limit: multipart uploads get ``max_upload_bytes``, others
    ``max_request_bytes``. Checks Content-Length first and counts streamed bytes too."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.upload_limit = settings.max_upload_bytes
        self.request_limit = settings.max_request_bytes

    def _limit(self, scope) -> int:
        for k, v in scope.get("headers", []):
            if k == b"content-type" and v.startswith(b"multipart/form-data"):
                return self.upload_limit
        return self.request_limit

    async def _reject(self, send, limit: int):
        body = json.dumps({"code": "too_large",
                           "message": f"送信データが大きすぎます（上限 {limit:,} バイト）。"},
                          ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self._limit(scope)
        declared = chunked = None
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    return await self._reject(send, limit)
                if declared > limit:
                    return await self._reject(send, limit)
            elif k == b"transfer-encoding":
                chunked = True
        if declared is not None and not chunked:
            # the server reads exactly the declared length (within the limit): nothing to count,
            # and no wrapped receive/send on every request (the chatbot's hot path)
            return await self.app(scope, receive, send)
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, limit)
