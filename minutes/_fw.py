"""The single place that imports faster-whisper.

``HF_HUB_OFFLINE=1`` is put in the environment (unless the operator set it) *before*
faster_whisper / huggingface_hub are imported, so that a local model folder never touches a hub
and a model *name* only resolves from the local cache. An operator whose server has internet and
wants names downloaded sets ``HF_HUB_OFFLINE=0`` explicitly (see minutes/README.md).
"""
from __future__ import annotations

import os
from types import ModuleType


def faster_whisper() -> ModuleType:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import faster_whisper as fw  # noqa: PLC0415 (lazy on purpose: heavy import)

    return fw


def hub_offline() -> bool:
    """The effective offline flag as huggingface_hub read it at import time."""
    faster_whisper()
    from huggingface_hub import constants  # noqa: PLC0415

    return bool(constants.HF_HUB_OFFLINE)
