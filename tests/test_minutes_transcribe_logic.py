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
    # the main decode keeps faster-whisper's temperature fallback; the re-decode is one
    # deterministic pass (no sampling at rising temperatures: slow and a new text every run)
    assert "temperature" not in model.calls[0][1] and model.calls[1][1]["temperature"] == 0.0


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


def test_plan_groups_balances_windows_over_the_workers():
    from minutes.transcribe import plan_groups

    wins = list(range(10))
    # one worker: as few calls as batches of 4 allow, sizes even
    assert [len(g) for g in plan_groups(wins, 4, 1)] == [4, 3, 3]
    # two workers: a multiple of 2 groups, even sizes, so the last round keeps both cores busy
    assert [len(g) for g in plan_groups(wins, 4, 2)] == [3, 3, 2, 2]
    assert [len(g) for g in plan_groups(wins, 2, 2)] == [2, 2, 2, 2, 1, 1]
    for batch, workers in [(4, 1), (4, 2), (3, 2), (2, 2), (1, 3), (8, 2)]:
        groups = plan_groups(wins, batch, workers)
        assert [w for g in groups for w in g] == wins  # every window once, in order
        assert all(0 < len(g) <= batch for g in groups)
        if workers > 1 and len(groups) < len(wins):
            assert len(groups) % workers == 0
    assert plan_groups(list(range(3)), 4, 2) == [[0, 1], [2]]  # fewer windows than slots
    assert plan_groups([7], 4, 2) == [[7]] and plan_groups([], 4, 2) == []


def test_batched_segment_is_split_at_long_pauses_and_sentence_ends():
    from minutes.transcribe import _convert_split, _Piece

    # three fine regions packed into one window: recording 10..12 → 0..2, 12.3..14 → 2.3..4
    # (a 0.3 s pause, kept), 30..36 → 5..11 (an 16 s pause, capped at 1 s in the window)
    pieces = [_Piece(10.0, 0.0, 2.0), _Piece(12.3, 2.3, 1.7), _Piece(30.0, 5.0, 6.0)]
    seg = fw_seg(0.1, 10.9, "ただいまから開会しますたなか委員どうぞ")
    out = _convert_split(seg, pieces)
    # the short pause stays inside a segment, the long one splits it
    assert len(out) == 2
    assert out[0].start >= 10.0 and out[0].end <= 14.0 + 1e-6
    assert out[1].start >= 30.0 and out[1].end <= 36.0 + 1e-6
    assert "".join(s.text for s in out) == "ただいまから開会しますたなか委員どうぞ"
    for s_out in out:  # every word mapped into one of the recording's speech regions
        assert all(any(p.orig_start - 1e-6 <= w.start <= w.end <= p.orig_start + p.duration + 1e-6
                       for p in pieces) for w in s_out.words)
    # a sentence end (Whisper's 。) before a short pause also starts a new segment
    words = [SimpleNamespace(start=0.2, end=1.9, word="開会します。", probability=0.9),
             SimpleNamespace(start=2.4, end=3.9, word="田中委員", probability=0.9)]
    sent = SimpleNamespace(start=0.0, end=4.0, text="開会します。田中委員", words=words, avg_logprob=-0.2,
                           compression_ratio=1.0, no_speech_prob=0.01, temperature=0.0)
    assert [s.text for s in _convert_split(sent, pieces)] == ["開会します。", "田中委員"]
    # a long turn is cut after max_s even without pauses
    parts = _convert_split(seg, pieces, pause_s=99.0, max_s=3.0)
    # checked where words cross a piece (or inside a piece longer than max_s): ≤ max_s + one piece
    assert len(parts) >= 3 and all(x.end - x.start <= 3.0 + 2.0 for x in parts)
    # one piece (no VAD): a long gap between two words splits too
    gap_words = [SimpleNamespace(start=0.2, end=1.9, word="開会します", probability=0.9),
                 SimpleNamespace(start=3.0, end=3.9, word="次に", probability=0.9)]
    one = SimpleNamespace(start=0.0, end=4.0, text="開会します次に", words=gap_words, avg_logprob=-0.2,
                          compression_ratio=1.0, no_speech_prob=0.01, temperature=0.0)
    assert [x.text for x in _convert_split(one, [_Piece(0.0, 0.0, 5.0)], max_s=4.0)] == ["開会します", "次に"]
    # ... but not inside a piece shorter than max_s (a VAD region: its pauses are < 0.3 s)
    assert len(_convert_split(one, [_Piece(0.0, 0.0, 5.0)])) == 1


def test_timeless_final_particle_stays_with_the_words_before_it():
    """The aligner may give 「か」 no time and place it at the next region's start; it must not open
    the next segment (「…いつになります」「かえっと…」)."""
    from minutes.transcribe import _convert_split, _Piece

    pieces = [_Piece(10.0, 0.0, 2.0), _Piece(20.0, 3.0, 2.0)]  # a 8 s pause between two regions
    words = [SimpleNamespace(start=0.2, end=1.9, word="いつになります", probability=0.9),
             SimpleNamespace(start=3.0, end=3.0, word="か", probability=0.5),
             SimpleNamespace(start=3.1, end=4.5, word="えっと次に", probability=0.9)]
    seg = SimpleNamespace(start=0.0, end=5.0, text="いつになりますかえっと次に", words=words, avg_logprob=-0.2,
                          compression_ratio=1.0, no_speech_prob=0.01, temperature=0.0)
    out = _convert_split(seg, pieces)
    assert [s.text for s in out] == ["いつになりますか", "えっと次に"]
    assert out[0].end <= 12.0 + 1e-6 and out[1].start >= 20.0
    # a word with real duration at the next region's start still opens the next segment
    words[1] = SimpleNamespace(start=3.0, end=3.4, word="か", probability=0.5)
    assert [s.text for s in _convert_split(seg, pieces)] == ["いつになります", "かえっと次に"]
