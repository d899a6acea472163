"""AI議事録作成 (meeting minutes): recording → transcript → editable minutes draft.

Core pipeline only; no web imports in this package except ``router.py`` (added by the web layer).
Heavy dependencies (faster-whisper, CTranslate2, SudachiPy, python-docx) are imported lazily
inside the stage modules, so importing :mod:`minutes` is cheap.
"""
