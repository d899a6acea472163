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


# --- batched mode: window planning and segment splitting (pure logic) -------------------------

def test_split_long_region_cuts_at_the_longest_silence_in_the_second_half():
    from minutes.transcribe import split_long_region

    fine = [SpeechRegion(0, 5), SpeechRegion(5.2, 14), SpeechRegion(15.0, 22), SpeechRegion(22.3, 40)]
    parts = split_long_region(SpeechRegion(0, 40), fine, 20.0)
    # silences inside the first 20 s: 5.0-5.2 (first half, short) and 14.0-15.0 → cut at 14.5
    assert parts[0] == SpeechRegion(0, 14.5)
    assert all(p.end - p.start <= 20.0 + 1e-6 for p in parts)
    assert parts[-1].end == 40 and all(a.end == b.start for a, b in zip(parts, parts[1:]))
    # no silence at all: hard cuts at the limit
    hard = split_long_region(SpeechRegion(0, 50), [SpeechRegion(0, 50)], 20.0)
    assert [(p.start, p.end) for p in hard] == [(0, 20.0), (20.0, 40.0), (40.0, 50)]


def test_plan_windows_packs_fine_regions_without_the_silences():
    from minutes.transcribe import plan_windows

    fine = [SpeechRegion(1, 6), SpeechRegion(6.5, 12), SpeechRegion(40, 48), SpeechRegion(48.4, 60),
            SpeechRegion(100, 104)]
    block = [SpeechRegion(0.7, 12.3), SpeechRegion(39.7, 60.3), SpeechRegion(99.7, 104.3)]
    wins = plan_windows(block, fine, 29.5, 1.0)
    pieces = [r for w in wins for r in w]
    # only the speech (fine regions) is sent, in order, never a second of the long silences
    assert pieces == fine
    for w in wins:
        length = sum(r.end - r.start for r in w) + sum(
            min(b.start - a.end, 1.0) for a, b in zip(w, w[1:]))
        assert length <= 29.5 + 1e-6
    # 5.0 + 0.5 + 5.5 + 1.0 + 8.0 = 20 s fit in the first window; 0.4 + 11.6 would overflow it
    assert wins[0] == fine[:3] and wins[1] == fine[3:]
    # a resume offset inside the block: only what follows it
    later = plan_windows([SpeechRegion(50.0, 60.3), SpeechRegion(99.7, 104.3)], fine, 29.5, 1.0)
    assert [r for w in later for r in w] == [SpeechRegion(50.0, 60), SpeechRegion(100, 104)]


def test_batched_segment_is_split_at_joins_and_at_pauses():
    from minutes.transcribe import _convert_split, _Piece

    # two pieces concatenated with 1 s between them: recording 10..14 → 0..4, 30..36 → 5..11
    pieces = [_Piece(10.0, 0.0, 4.0), _Piece(30.0, 5.0, 6.0)]
    seg = fw_seg(0.2, 10.8, "ただいまから開会しますたなか委員")
    fine = [SpeechRegion(10, 12), SpeechRegion(12.5, 14), SpeechRegion(30, 36)]
    out = _convert_split(seg, pieces, fine)
    # split where the words cross into the second piece, and at the pause between 12 and 12.5
    assert len(out) == 3
    for seg_out, region in zip(out, fine):  # every word (by its middle) in its segment's region
        assert all(region.start <= (w.start + w.end) / 2 <= region.end for w in seg_out.words)
    assert out[2].start >= 30.0 and out[2].end <= 36.0
    assert "".join(s.text for s in out) == "ただいまから開会しますたなか委員"
    assert all(s.words and s.words[0].start == s.start for s in out)
    # without fine regions only the join splits
    assert len(_convert_split(seg, pieces)) == 2
