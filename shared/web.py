"""Jinja2 templates shared by every service's pages.

Templates are looked up in ``shared/templates`` and each service's ``templates`` folder, so a
service template can ``{% extends "base.html" %}``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from shared.config import city_info

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PACKAGES = ("shared", "chatbot", "minutes", "allocation")


@lru_cache(maxsize=1)
def templates() -> Jinja2Templates:
    dirs = [ROOT / pkg / "templates" for pkg in TEMPLATE_PACKAGES]
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(d)) for d in dirs if d.is_dir()]),
        autoescape=select_autoescape(["html", "xml"], default=True),
    )
    return Jinja2Templates(env=env)


def static_dirs() -> dict[str, Path]:
    """URL name → folder, for /static/<name>/..."""
    return {pkg: ROOT / pkg / "static" for pkg in TEMPLATE_PACKAGES
            if (ROOT / pkg / "static").is_dir()}


def render(request: Request, name: str, context: dict | None = None, status_code: int = 200):
    token = getattr(request.state, "token", None)
    settings = getattr(request.app.state, "settings", None)
    ctx = {
        "user": getattr(request.state, "user", None),
        "csrf_token": token.csrf_token if token else "",
        "city": city_info(settings),
    }
    ctx.update(context or {})
    return templates().TemplateResponse(request, name, ctx, status_code=status_code)
