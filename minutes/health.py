"""Whisper model status for /health: cheap checks only (no model loading, no hashing)."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def model_status(settings) -> dict:
    from minutes import model as model_mod  # noqa: PLC0415 (no heavy imports in minutes.model)

    info: dict = {"ok": False}
    try:
        spec = model_mod.resolve_model(settings)
    except Exception as exc:  # folder missing or incomplete
        info.update(error=getattr(exc, "message", type(exc).__name__))
        return {"whisper": info}
    fw_ok = importlib.util.find_spec("faster_whisper") is not None
    if spec.bundled:
        parts_ok = all(importlib.util.find_spec(pkg) is not None for pkg, _ in model_mod.BUNDLED_PARTS)
        assembled = (Path(spec.source) / "model.bin").is_file()
        ok = fw_ok and (parts_ok or assembled)
    else:
        ok = fw_ok and (Path(spec.source).is_dir() if spec.is_local else True)
    loaded = any(k[0] == spec.source for k in list(model_mod._cache))
    info.update(ok=ok, model=spec.label, device=spec.device, compute_type=spec.compute_type,
                loaded=loaded, worker=settings.minutes_worker)
    return {"whisper": info}
