"""Process-wide wiring: settings read once, the database opened and migrated.

Used by the CLI (``cli_context``) and the app factory. The list of service packages whose
``storage.MIGRATIONS`` make up the schema lives here, in one place.
"""
from __future__ import annotations

import importlib
from functools import lru_cache

import sqlite_utils

from shared.config import Settings, load_settings
from shared.db import Migration, connect, migrate

SERVICE_PACKAGES = ("shared", "chatbot", "minutes", "allocation")


def all_migrations() -> list[Migration]:
    steps: list[Migration] = []
    for pkg in SERVICE_PACKAGES:
        try:
            module = importlib.import_module(f"{pkg}.storage")
        except ModuleNotFoundError as exc:
            if exc.name not in (pkg, f"{pkg}.storage"):
                raise
            continue
        steps.extend(getattr(module, "MIGRATIONS", []))
    return steps


def open_database(settings: Settings) -> sqlite_utils.Database:
    """Connect and bring the schema up to date."""
    settings.ensure_dirs()
    db = connect(settings.db_path)
    migrate(db, all_migrations())
    return db


@lru_cache(maxsize=1)
def _cli_settings() -> Settings:
    return load_settings()


def cli_context() -> tuple[Settings, sqlite_utils.Database]:
    """Settings (read once per process) and a migrated database connection, for CLI commands."""
    settings = _cli_settings()
    return settings, open_database(settings)
