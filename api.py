"""niiza-ai composition root: the FastAPI app (``create_app``) and the ``niiza-ai`` CLI (``main``).

Each service contributes ``router.api_router`` (mounted at /api/<service>), ``router.page_router``
(mounted at /<service>), ``storage.MIGRATIONS`` and a click group in ``cli.py``.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import click
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import audit, auth
from shared.config import Settings, documented_variables, load_settings
from shared.db import connect, healthy
from shared.deps import LoginRequired, PasswordChangeRequired
from shared.errors import NiizaError
from shared.middleware import BodySizeLimitMiddleware, SecurityHeadersMiddleware
from shared import admin as staff_admin
from shared.pages import api_router as auth_api_router
from shared.pages import login_redirect
from shared.pages import router as account_router
from shared.runtime import open_database
from shared.web import render, static_dirs

log = logging.getLogger("niiza_ai")

# (package, URL name) of each service; routers at /api/<name> and pages at /<name>.
SERVICES = (("chatbot", "chat"), ("minutes", "minutes"), ("allocation", "allocation"))

_HTTP_MESSAGES = {
    400: "リクエストの内容に誤りがあります。",
    401: "ログインが必要です。",
    403: "この操作を行う権限がありません。",
    404: "ページまたはデータが見つかりません。",
    405: "この方法では操作できません。",
    413: "送信データが大きすぎます。",
    429: "短時間に多くのリクエストがありました。しばらく待ってからお試しください。",
}


def _service_module(package: str, name: str):
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in (package, f"{package}.{name}"):
            return None
        raise


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _error_response(request: Request, status: int, code: str, message: str, details=None):
    if _wants_html(request):
        return render(request, "error.html", {"title": "エラー", "message": message},
                      status_code=status)
    body = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def health_report(settings: Settings) -> dict:
    db = connect(settings.db_path)
    try:
        db_ok = healthy(db)
    finally:
        db.conn.close()
    models = {}
    for svc_pkg, _ in SERVICES:
        mod = _service_module(svc_pkg, "health")
        if mod is not None:
            models.update(mod.model_status(settings))
    ok = db_ok and all(v.get("ok", False) for v in models.values())
    return {"status": "ok" if ok else "degraded", "db": "ok" if db_ok else "error", "models": models}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    open_database(settings).conn.close()  # create + migrate before serving

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stops = []
        for svc_pkg, _ in SERVICES:
            mod = _service_module(svc_pkg, "service")
            if mod is not None and hasattr(mod, "on_startup"):
                stop = mod.on_startup(settings)
                if callable(stop):
                    stops.append(stop)
        yield
        for stop in reversed(stops):
            stop()
        for svc_pkg, _ in SERVICES:  # per-app resources a router made (threads)
            mod = _service_module(svc_pkg, "router")
            if mod is not None and hasattr(mod, "on_app_shutdown"):
                mod.on_app_shutdown(app)
        pool = getattr(app.state, "db_pool", None)
        if pool is not None:
            pool.close()

    # Native OpenTelemetry off: the city runs offline with no collector, and with it on FastAPI
    # asks the global providers on every request whether they are configured.
    app = FastAPI(title="niiza-ai", version="0.1.0", docs_url=None, lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  description="新座市 AIサービス（AIチャットボット・AI議事録作成・保育所入所選考）のAPI")
    app.state.settings = settings

    for name, folder in static_dirs().items():
        app.mount(f"/static/{name}", StaticFiles(directory=folder), name=f"static-{name}")
    swagger = importlib.util.find_spec("swagger_ui_bundle")
    if swagger is not None:
        import swagger_ui_bundle
        app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
                  name="static-swagger")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="niiza-ai API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    @app.get("/health", tags=["system"], summary="稼働状況（DB・モデル）")
    def health():
        report = health_report(settings)
        return JSONResponse(report, status_code=200 if report["db"] == "ok" else 503)

    # Service routers first: every request is matched against the routes in order, and the
    # residents' chat API is the busiest (paths do not overlap, so the order changes nothing else).
    for svc_pkg, url_name in SERVICES:
        router_mod = _service_module(svc_pkg, "router")
        if router_mod is None:
            continue
        if hasattr(router_mod, "api_router"):
            app.include_router(router_mod.api_router, prefix=f"/api/{url_name}")
        if hasattr(router_mod, "page_router"):
            app.include_router(router_mod.page_router, prefix=f"/{url_name}")
    app.include_router(account_router)
    app.include_router(auth_api_router)
    app.include_router(staff_admin.api_router)
    app.include_router(staff_admin.page_router)

    @app.exception_handler(NiizaError)
    async def niiza_error(request: Request, exc: NiizaError):
        log.info("request failed: %s %s -> %s (%s)", request.method, request.url.path, exc.status,
                 exc.log_message)
        return _error_response(request, exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired):
        return login_redirect(exc.next_url)

    @app.exception_handler(PasswordChangeRequired)
    async def password_change(request: Request, exc: PasswordChangeRequired):
        return RedirectResponse("/account/password", status_code=303)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        details = [{"loc": list(e.get("loc", [])), "type": e.get("type")} for e in exc.errors()]
        return _error_response(request, 422, "invalid_input", "入力内容に誤りがあります。", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = _HTTP_MESSAGES.get(exc.status_code, "エラーが発生しました。")
        return _error_response(request, exc.status_code, f"http_{exc.status_code}", message)

    app.add_middleware(BodySizeLimitMiddleware, settings=settings)
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
    return app


# --- CLI ------------------------------------------------------------------------------------

class _Cli(click.Group):
    """Prints domain errors as their Japanese message and exits 1 instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NiizaError as exc:
            click.echo(f"エラー: {exc.message}", err=True)
            if exc.details:
                for d in exc.details if isinstance(exc.details, list) else [exc.details]:
                    click.echo(f"  - {d}", err=True)
            ctx.exit(1)


@click.group(cls=_Cli)
@click.version_option("0.1.0", prog_name="niiza-ai")
def cli():
    """niiza-ai: 新座市 AIサービス (FAQ chatbot, meeting minutes, nursery allocation)."""


def _context():
    from shared.runtime import cli_context
    return cli_context()


def bootstrap(settings: Settings, db, echo=click.echo) -> None:
    """First start on a data folder: sample data, and a one-time admin password when no user exists."""
    for svc_pkg, _ in SERVICES:
        mod = _service_module(svc_pkg, "service")
        if mod is not None and hasattr(mod, "bootstrap"):
            mod.bootstrap(db, settings, echo)
    if auth.count_users(db) == 0:
        password = auth.generate_password()
        user = auth.create_user(db, "admin", password, "admin", must_change_password=True)
        audit.record(db, "system", "user_created", "user", user.id, role="admin", bootstrap=True)
        echo("=" * 64)
        echo("初回起動: 管理者アカウントを作成しました (first start: admin account created)")
        echo("  ユーザー名 / user:      admin")
        echo(f"  初回パスワード / one-time password: {password}")
        echo("  この表示は一度だけです。初回ログイン時に変更してください。")
        echo("  (shown once; you must change it at first login)")
        echo("=" * 64)


@cli.command()
@click.option("--host", default=None, help="listen address (default 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port (default 8000)")
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes")
def serve(host, port, workers):
    """Start the web app (creates the database and sample data on first start)."""
    import dataclasses

    import uvicorn
    settings, db = _context()
    settings = dataclasses.replace(settings, host=host or settings.host, port=port or settings.port)
    bootstrap(settings, db)
    db.conn.close()
    logging.basicConfig(level=settings.log_level)
    click.echo(f"niiza-ai: {settings.public_url}/ (data: {settings.home.resolve()})")
    if workers > 1:
        if settings.minutes_worker == "thread":
            # N web processes would each load Whisper; jobs go to a separate worker process instead.
            os.environ["NIIZA_AI_MINUTES_WORKER"] = "none"
            click.echo("注意: --workers 2以上では議事録の文字起こしは別プロセスで行います。"
                       "`niiza-ai minutes worker` を起動してください。"
                       " (with several workers, run `niiza-ai minutes worker` separately)")
        uvicorn.run("api:app_from_env", factory=True, host=settings.host, port=settings.port,
                    workers=workers, proxy_headers=True, log_level=_uvicorn_log_level(settings))
    else:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, proxy_headers=True,
                    log_level=_uvicorn_log_level(settings))


def _uvicorn_log_level(settings: Settings) -> str:
    """uvicorn follows NIIZA_AI_LOG_LEVEL too (its access log is INFO: one line per request)."""
    level = str(settings.log_level).lower()
    return level if level in ("critical", "error", "warning", "info", "debug", "trace") else "info"


def app_from_env() -> FastAPI:
    """App factory for uvicorn workers: ``uvicorn --factory api:app_from_env``."""
    return create_app(load_settings())


@cli.command("config")
def show_config():
    """Print the settings in effect and the environment variables that change them."""
    settings, db = _context()
    click.echo(f"data folder: {settings.home.resolve()}")
    click.echo(f"database:    {settings.db_path.resolve()}")
    for var, default in documented_variables():
        click.echo(f"{var}={default}")


@cli.group()
def user():
    """Staff accounts (roles: clerk, childcare, admin)."""


def _read_password(prompt_twice: bool = True) -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise click.ClickException("パスワードが標準入力から読めませんでした。")
        return line
    return click.prompt("パスワード", hide_input=True, confirmation_prompt=prompt_twice)


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(auth.ROLES), required=True)
def user_add(name, role):
    """Add a staff user; the password is read from a prompt or stdin (never an argument)."""
    settings, db = _context()
    password = _read_password()
    u = auth.create_user(db, name, password, role)
    audit.record(db, "cli", "user_created", "user", u.id, role=role)
    click.echo(f"ユーザー {name} ({role}) を作成しました。")


@user.command("list")
def user_list():
    """List staff users."""
    settings, db = _context()
    for r in auth.list_users(db):
        state = "無効" if r["disabled"] else "有効"
        click.echo(f"{r['username']}\t{r['role']}\t{state}\t{r['created_at']}")


@user.command("passwd")
@click.argument("name")
def user_passwd(name):
    """Set a user's password (read from a prompt or stdin)."""
    settings, db = _context()
    u = auth.get_user(db, name)
    auth.set_password(db, u.id, _read_password())
    audit.record(db, "cli", "password_reset", "user", u.id)
    click.echo(f"{name} のパスワードを変更しました。")


@user.command("disable")
@click.argument("name")
def user_disable(name):
    """Disable a user and revoke their sessions."""
    settings, db = _context()
    u = auth.get_user(db, name)
    auth.disable_user(db, name)
    audit.record(db, "cli", "user_disabled", "user", u.id)
    click.echo(f"{name} を無効にしました。")


@user.command("token")
@click.argument("name")
@click.option("--hours", default=24 * 30, show_default=True, type=float)
def user_token(name, hours):
    """Issue an API bearer token for a user (printed once)."""
    settings, db = _context()
    u = auth.get_user(db, name)
    raw, token = auth.issue_token(db, u, kind="api", hours=hours, label="cli")
    audit.record(db, "cli", "token_issued", "user", u.id, via="cli")
    click.echo(raw)


@cli.group("audit")
def audit_log():
    """Audit log."""


@audit_log.command("tail")
@click.option("-n", "--lines", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def audit_tail(lines, as_json):
    """Print the newest audit log rows."""
    import json as _json
    settings, db = _context()
    for row in audit.tail(db, lines):
        if as_json:
            click.echo(_json.dumps(row, ensure_ascii=False))
        else:
            detail = " ".join(f"{k}={v}" for k, v in row["detail"].items())
            click.echo(f"{row['at']}  {row['actor']:<12} {row['action']:<18} "
                       f"{row['target_type']}:{row['target_id']}  {detail}".rstrip())


for _pkg, _group in (("chatbot", "faq"), ("minutes", "minutes"), ("allocation", "alloc")):
    _mod = _service_module(_pkg, "cli")
    if _mod is not None and hasattr(_mod, _group):
        cli.add_command(getattr(_mod, _group), name=_group)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="niiza-ai")


if __name__ == "__main__":
    main()
