"""HTTP adapters for the chatbot: public /api/chat/ask + /feedback (rate-limited), staff
/api/chat/admin/..., and the /chat pages. Logic lives in service.py / admin.py."""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import sqlite_utils
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from shared import audit
from shared.auth import User
from shared.config import Settings
from shared.db import ConnectionPool
from shared.deps import (client_address, current_user, db_pool, get_db, get_settings,
                         require_page_role, require_role)
from shared.errors import InvalidInput, NotFound, TooManyRequests
from shared.web import render

from . import admin, importer, service, storage
from .storage import Faq

api_router = APIRouter(tags=["chat"])
page_router = APIRouter(tags=["chat pages"], include_in_schema=False)
admin_router = APIRouter(prefix="/admin", dependencies=[require_role("admin")], tags=["chat admin"])

# Answers computed at once per process. Most of an answer's CPU is the question's embedding,
# which runs outside the GIL and is batched while the encoder is busy (``embed.QueryBatcher``):
# more questions in flight make bigger batches. 50 clients, new questions, 1 worker, servers of
# each setting run side by side (interleaved rounds) on a loaded 2-core machine, two runs: server
# CPU per answer 7.4 / 6.6 ms with 4, 6.7 / 5.9 with 8, 5.1 / 5.8 with 16, 5.7 with 24, 6.0
# with 32.
ASK_CONCURRENCY = 16
RATE_MESSAGE = "短時間に多くの質問が送信されました。1分ほど待ってから、もう一度お試しください。"


class RateLimiter:
    """Sliding one-minute window per client address (per process)."""

    def __init__(self, per_minute: int, max_clients: int = 20_000):
        self.per_minute = max(1, int(per_minute))
        self.max_clients = max_clients
        self._hits: dict[str, deque] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            q = self._hits.get(client)
            if q is None:
                if len(self._hits) >= self.max_clients:
                    for k in [k for k, v in self._hits.items() if not v or now - v[-1] > 60]:
                        del self._hits[k]
                    if len(self._hits) >= self.max_clients:
                        self._hits.pop(next(iter(self._hits)))
                q = self._hits[client] = deque()
            while q and now - q[0] > 60:
                q.popleft()
            if len(q) >= self.per_minute:
                raise TooManyRequests(RATE_MESSAGE, code="chat_rate_limited")
            q.append(now)


def ask_executor(app) -> ThreadPoolExecutor:
    """The app's threads for answering (made on first use; the app shuts it down on exit).

    A fixed pool whose threads take the next queued question without going to sleep in between:
    anyio's ``to_thread`` behind a ``CapacityLimiter`` woke an idle thread (a futex round trip,
    ~10% of the server's GIL time under load) for every question."""
    ex = getattr(app.state, "chat_ask_executor", None)
    if ex is None:  # no await between the check and the set: one per app
        ex = app.state.chat_ask_executor = ThreadPoolExecutor(ASK_CONCURRENCY,
                                                              thread_name_prefix="chat-ask")
    return ex


async def rate_limited(request: Request) -> None:
    # async: a lock and a deque, no I/O; a sync dependency would cost a thread-pool round trip.
    # No sub-dependencies: each one costs FastAPI's dependency machinery on every request.
    limiter = getattr(request.app.state, "chat_limiter", None)
    if limiter is None:
        limiter = RateLimiter(request.app.state.settings.chat_rate_per_minute)
        request.app.state.chat_limiter = limiter
    limiter.check(client_address(request))


# --- public API ------------------------------------------------------------------------------


class AskIn(BaseModel):
    message: str = Field(..., max_length=5000)
    session_id: str | None = Field(None, max_length=64)


class FeedbackIn(BaseModel):
    session_id: str = Field("", max_length=64)
    faq_id: str | None = Field(None, max_length=64)
    helpful: bool
    log_id: int | None = None


@api_router.post("/ask", summary="住民の質問に回答する（公開・回数制限あり）",
                 dependencies=[Depends(rate_limited)])
async def ask(body: AskIn, request: Request) -> JSONResponse:
    # At most ASK_CONCURRENCY answers are computed at once (the CPU has few cores): with one
    # thread per request, 50 concurrent residents made ~40 threads fight over the GIL at every
    # SQLite/numpy call, and the event loop thread starved (profiled: 3-4x slower per answer than
    # serially; since then the lexical and kana scores no longer query SQLite and the threads
    # waiting for the encoder sleep on one condition); the others wait in the executor's queue.
    # The connection is taken from the pool inside that thread, not through the ``get_db``
    # dependency, and the plain-JSON answer is sent as is (no jsonable_encoder walk): both are
    # per-request framework costs.
    app = request.app
    out = await asyncio.get_running_loop().run_in_executor(
        ask_executor(app), _ask_pooled, db_pool(app), app.state.settings, body.message,
        body.session_id or "")
    return JSONResponse(out)


def on_app_shutdown(app) -> None:
    """Called by the app at shutdown: finish the answers in progress, drop the queued ones."""
    ex = getattr(app.state, "chat_ask_executor", None)
    if ex is not None:
        ex.shutdown(wait=True, cancel_futures=True)
        app.state.chat_ask_executor = None


def _ask_pooled(pool: ConnectionPool, settings: Settings, message: str, session_id: str) -> dict:
    db = pool.acquire()
    try:
        return service.ask(db, settings, message, session_id=session_id)
    finally:
        pool.release(db)


@api_router.post("/feedback", summary="回答が役に立ったかを記録する（公開）",
                 dependencies=[Depends(rate_limited)])
def feedback(body: FeedbackIn, db: sqlite_utils.Database = Depends(get_db)):
    return service.feedback(db, body.session_id, body.faq_id, body.helpful, body.log_id)


@api_router.get("/categories", summary="FAQの分類と件数（公開）")
def categories(db: sqlite_utils.Database = Depends(get_db)):
    rows = db.conn.execute(
        "SELECT category, count(*) FROM chat_faq WHERE category != '' GROUP BY category"
        " ORDER BY min(faq_id)").fetchall()
    return [{"category": c, "count": n} for c, n in rows]


def _public_faq(f: dict) -> dict:
    return {k: f[k] for k in ("faq_id", "category", "question", "answer", "department", "contact",
                              "url", "updated_at")}


@api_router.get("/faqs", summary="分類ごとのFAQ一覧（公開）")
def faqs_in_category(category: str, db: sqlite_utils.Database = Depends(get_db)):
    rows = db.conn.execute("SELECT faq_id, question FROM chat_faq WHERE category = ? ORDER BY faq_id",
                           (category,)).fetchall()
    return [{"faq_id": f, "question": q} for f, q in rows]


@api_router.get("/faqs/{faq_id}", summary="FAQ 1件（公開）")
def faq_public(faq_id: str, db: sqlite_utils.Database = Depends(get_db)):
    f = storage.get_faq(db, faq_id)
    if f is None:
        raise NotFound("指定されたFAQが見つかりません。")
    return _public_faq(f)


# --- staff API -------------------------------------------------------------------------------


class FaqIn(BaseModel):
    faq_id: str | None = Field(None, max_length=64)
    category: str = Field("", max_length=500)
    question: str = Field(..., max_length=importer.MAX_QUESTION)
    answer: str = Field(..., max_length=importer.MAX_ANSWER)
    department: str = Field("", max_length=500)
    contact: str = Field("", max_length=500)
    url: str = Field("", max_length=500)
    keywords: str = Field("", max_length=500)


def _validated(body: FaqIn, faq_id: str | None) -> Faq:
    """Validate one FAQ with the importer's rules (same messages as a CSV import)."""
    row = {k: getattr(body, k) or "" for k in ("category", "question", "answer", "department",
                                               "contact", "url", "keywords")}
    row["faq_id"] = faq_id or ""
    text = importer.export_csv([row])
    faqs = importer.parse(text.encode("utf-8"), "edit.csv")
    return faqs[0]


@admin_router.get("/faqs", summary="FAQ一覧（職員）")
def admin_faqs(db: sqlite_utils.Database = Depends(get_db)):
    return storage.list_faqs(db)


@admin_router.get("/faqs/{faq_id}", summary="FAQと変更履歴（職員）")
def admin_faq(faq_id: str, db: sqlite_utils.Database = Depends(get_db)):
    f = storage.get_faq(db, faq_id)
    if f is None and not storage.faq_history(db, faq_id):
        raise NotFound("指定されたFAQが見つかりません。")
    return {"faq": f, "history": storage.faq_history(db, faq_id)}


@admin_router.post("/faqs", status_code=201, summary="FAQを追加（職員）")
def admin_create(body: FaqIn, settings: Settings = Depends(get_settings),
                 db: sqlite_utils.Database = Depends(get_db), user: User = Depends(current_user)):
    faq = _validated(body, body.faq_id)
    if storage.get_faq(db, faq.faq_id) is not None:
        raise InvalidInput(f"FAQ番号 {faq.faq_id} は既に使われています。", code="duplicate_faq_id")
    service.save_faqs(db, settings, [faq], action="edit", actor=user.username)
    audit.record(db, user.username, "faq_create", "chat_faq", faq.faq_id)
    return storage.get_faq(db, faq.faq_id)


@admin_router.put("/faqs/{faq_id}", summary="FAQを更新（職員）")
def admin_update(faq_id: str, body: FaqIn, settings: Settings = Depends(get_settings),
                 db: sqlite_utils.Database = Depends(get_db), user: User = Depends(current_user)):
    if storage.get_faq(db, faq_id) is None:
        raise NotFound("指定されたFAQが見つかりません。")
    faq = _validated(body, faq_id)
    service.save_faqs(db, settings, [faq], action="edit", actor=user.username)
    audit.record(db, user.username, "faq_update", "chat_faq", faq_id)
    return storage.get_faq(db, faq_id)


@admin_router.delete("/faqs/{faq_id}", summary="FAQを削除（職員）")
def admin_delete(faq_id: str, db: sqlite_utils.Database = Depends(get_db),
                 user: User = Depends(current_user)):
    if not storage.delete_faq(db, faq_id, actor=user.username):
        raise NotFound("指定されたFAQが見つかりません。")
    audit.record(db, user.username, "faq_delete", "chat_faq", faq_id)
    return {"deleted": faq_id}


@admin_router.post("/import", summary="FAQをCSV/XLSXから取り込む（職員）")
async def admin_import(file: UploadFile = File(...), replace: bool = Form(False),
                       settings: Settings = Depends(get_settings),
                       db: sqlite_utils.Database = Depends(get_db), user: User = Depends(current_user)):
    data = await file.read()
    import anyio

    res = await anyio.to_thread.run_sync(
        lambda: service.import_file(db, settings, data, file.filename or "faq.csv", replace=replace,
                                    actor=user.username))
    audit.record(db, user.username, "faq_import", "chat_faq", file.filename or "upload",
                 rows=res["rows"], created=res["created"], updated=res["updated"],
                 deleted=res["deleted"], replace=replace)
    return res


@admin_router.get("/export.csv", summary="FAQをCSVで書き出す（職員）")
def admin_export(db: sqlite_utils.Database = Depends(get_db)):
    text = "\ufeff" + importer.export_csv(storage.list_faqs(db))
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="faq.csv"'})


class SynonymIn(BaseModel):
    term: str = Field(..., min_length=1, max_length=100)
    synonyms: list[str] = Field(default_factory=list, max_length=100)


class SynonymsIn(BaseModel):
    items: list[SynonymIn] = Field(default_factory=list, max_length=5000)


@admin_router.get("/synonyms", summary="同義語表（職員）")
def admin_synonyms(db: sqlite_utils.Database = Depends(get_db)):
    return storage.list_synonyms(db)


@admin_router.put("/synonyms", summary="同義語表を置き換える（職員）")
def admin_set_synonyms(body: SynonymsIn, db: sqlite_utils.Database = Depends(get_db),
                       user: User = Depends(current_user)):
    n = storage.set_synonyms(db, [(i.term, i.synonyms) for i in body.items], replace=True)
    audit.record(db, user.username, "synonyms_replace", "chat_synonym", "all", terms=n)
    return storage.list_synonyms(db)


@admin_router.get("/report", summary="回答できなかった質問・役に立たなかった回答（類似質問ごと）")
def admin_report(days: int = 90, settings: Settings = Depends(get_settings),
                 db: sqlite_utils.Database = Depends(get_db)):
    return admin.unanswered_report(db, settings, days=max(1, min(days, 3650)))


@admin_router.get("/dashboard", summary="利用状況（職員）")
def admin_dashboard(days: int = 30, db: sqlite_utils.Database = Depends(get_db)):
    return admin.dashboard(db, days=max(1, min(days, 3650)))


@admin_router.get("/log.csv", summary="質問ログのCSV（個人情報は伏せ字）")
def admin_log_csv(days: int = 365, db: sqlite_utils.Database = Depends(get_db),
                  user: User = Depends(current_user)):
    text = "\ufeff" + admin.log_csv(db, days=max(1, min(days, 3650)))
    audit.record(db, user.username, "chat_log_export", "chat_log", "csv", days=days)
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="chat_log.csv"'})


api_router.include_router(admin_router)


# --- pages -----------------------------------------------------------------------------------


def _page_context(db, settings) -> dict:
    cats = categories(db)
    sample = db.conn.execute("SELECT 1 FROM chat_faq WHERE is_sample = 1 LIMIT 1").fetchone() is not None
    return {"categories": cats, "max_chars": settings.chat_max_message_chars,
            "general_contact": service.general_phone(settings), "sample": sample}


@page_router.get("", response_class=HTMLResponse)
def chat_page(request: Request, settings: Settings = Depends(get_settings),
              db: sqlite_utils.Database = Depends(get_db)):
    return render(request, "chat.html", {**_page_context(db, settings), "embed": False})


@page_router.get("/embed", response_class=HTMLResponse)
def chat_embed(request: Request, settings: Settings = Depends(get_settings),
               db: sqlite_utils.Database = Depends(get_db)):
    return render(request, "chat_embed.html", {**_page_context(db, settings), "embed": True})


@page_router.get("/admin", response_class=HTMLResponse,
                 dependencies=[require_page_role("admin")])
def chat_admin_page(request: Request, settings: Settings = Depends(get_settings),
                    db: sqlite_utils.Database = Depends(get_db)):
    return render(request, "chat_admin.html", {"public_url": settings.public_url})
