"""Block planning, time mapping, loop guard and skipped-speech re-decoding of minutes.transcribe.

A scripted stand-in for WhisperModel returns chosen segments for each call, so these checks are
exact and fast; the real model is exercised in test_minutes_pipeline.py.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from minutes.audio import SAMPLE_RATE
from minutes.transcribe import Progress, TranscribeOptions, plan_blocks, transcribe
from minutes.types import SpeechRegion


def fw_seg(start, end, text, *, cr=1.2):
    n = max(1, len(text))
    step = (end - start) / n
    words = [SimpleNamespace(start=start + i * step, end=start + (i + 1) * step, word=ch,
                             probability=0.9) for i, ch in enumerate(text)]
    return SimpleNamespace(start=start, end=end, text=text, words=words, avg_logprob=-0.2,
                           compression_ratio=cr, no_speech_prob=0.01, temperature=0.0)


class ScriptedModel:
    """Each transcribe() call pops the next scripted answer and records the call."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def transcribe(self, chunk, **kw):
        self.calls.append((chunk.size / SAMPLE_RATE, kw))
        answer = self.answers.pop(0) if self.answers else []
        return iter(answer), SimpleNamespace(language="ja")


def test_plan_blocks_clips_at_start_and_splits_long_speech():
    regions = [SpeechRegion(0, 10), SpeechRegion(20, 50), SpeechRegion(60, 70)]
    blocks = plan_blocks(regions, 5.0, 20.0)
    assert blocks == [[SpeechRegion(5.0, 10), SpeechRegion(20, 35.0)],
                      [SpeechRegion(35.0, 50), SpeechRegion(60, 65.0)],
                      [SpeechRegion(65.0, 70)]]


def test_times_map_back_through_concatenation_with_join_silence():
    audio = np.zeros(SAMPLE_RATE * 40, np.float32)
    fine = [SpeechRegion(2, 6), SpeechRegion(20, 24)]
    # concatenated: [2,6] at 0..4 (+0.3 pad each side → 1.7..6.3 = 4.6 s), 1 s silence, then [19.7, 24.3]
    model = ScriptedModel([[fw_seg(0.5, 3.0, "本件は"), fw_seg(6.0, 8.0, "承認")]])
    progress: list[Progress] = []
    segs = list(transcribe(model, audio, regions=fine, on_progress=progress.append))
    assert [s.index for s in segs] == [0, 1]
    assert abs(segs[0].start - 2.2) < 0.01  # 1.7 + 0.5
    assert abs(segs[1].start - 20.1) < 0.05  # 6.0 - (4.6 + 1.0) + 19.7
    assert model.calls[0][1]["condition_on_previous_text"] is True
    assert model.calls[0][1]["vad_filter"] is False
    assert progress[-1].fraction == 1.0


def test_skipped_speech_is_decoded_again_before_going_on():
    audio = np.zeros(SAMPLE_RATE * 60, np.float32)
    fine = [SpeechRegion(1, 5), SpeechRegion(6, 12), SpeechRegion(13, 18)]
    # Whisper returns text for the first and the last region only (it jumped over 6..12)
    first = [fw_seg(0.5, 4.0, "はじめ"), fw_seg(12.5, 16.0, "おわり")]
    gap = [fw_seg(0.2, 5.5, "とばされた")]
    model = ScriptedModel([first, gap])
    segs = list(transcribe(model, audio, regions=fine))
    assert [s.text for s in segs] == ["はじめ", "とばされた", "おわり"]
    assert [s.index for s in segs] == [0, 1, 2]
    assert all(segs[i].start <= segs[i + 1].start for i in range(2))
    assert len(model.calls) == 2 and model.calls[1][1]["condition_on_previous_text"] is False
    assert 5.5 < model.calls[1][0] < 8  # only the skipped speech was decoded again


def test_repetition_loop_restarts_the_block_without_conditioning():
    audio = np.zeros(SAMPLE_RATE * 30, np.float32)
    fine = [SpeechRegion(1, 20)]
    looping = [fw_seg(0.5, 4.0, "開会します"), fw_seg(4.0, 12.0, "ありがとうございます" * 6, cr=3.0)]
    retry = [fw_seg(0.1, 6.0, "採決します"), fw_seg(6.0, 15.0, "可決されました")]
    model = ScriptedModel([looping, retry])
    segs = list(transcribe(model, audio, regions=fine, options=TranscribeOptions(fill_gaps=False)))
    assert [s.text for s in segs] == ["開会します", "採決します", "可決されました"]
    assert model.calls[1][1]["condition_on_previous_text"] is False
    assert segs[1].start >= segs[0].end - 0.01


def test_resume_offset_skips_decoded_audio():
    audio = np.zeros(SAMPLE_RATE * 60, np.float32)
    fine = [SpeechRegion(1, 10), SpeechRegion(30, 40)]
    model = ScriptedModel([[fw_seg(0.5, 5.0, "つづき")]])
    segs = list(transcribe(model, audio, regions=fine, start=32.0, first_index=7,
                           options=TranscribeOptions(fill_gaps=False)))
    assert segs[0].index == 7 and segs[0].start >= 32.0
    assert abs(model.calls[0][0] - 8.3) < 0.05  # 32 .. 40.3 only
