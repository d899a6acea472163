"""The batched recogniser's wider-beam rescue of unsure windows (minutes.transcribe)."""
from __future__ import annotations

from types import SimpleNamespace

from minutes.transcribe import TranscribeOptions, _rescue_windows


def _seg(text: str, logprob: float):
    return SimpleNamespace(text=text, avg_logprob=logprob)


def test_only_unsure_windows_are_decoded_again_with_the_wider_beam():
    first = {0: [_seg("ただいまから委員会を開会いたします", -0.2)],
             1: [_seg("ギアンダイヨンジュウイチゴウ", -0.6)],
             2: [_seg("質疑はありませんか", -0.45)]}
    calls = []

    def decode(sub, beam_size):
        calls.append((list(sub), beam_size))
        return {1: [_seg("議案第41号について", -0.3)], 2: [_seg("質疑は", -0.3)]}

    opts = TranscribeOptions(mode="batched", beam_size=2, rescue_logprob=-0.4, rescue_beam_size=5)
    out = _rescue_windows(opts, first, [0, 1, 2], decode)
    assert calls == [([1, 2], 5)]  # the confident window 0 is not decoded again
    assert out[0] is first[0]
    assert out[1][0].text == "議案第41号について"
    # much shorter than the first decode: speech would be lost, the first text is kept
    assert out[2] is first[2]


def test_a_looping_wider_decode_is_rejected():
    first = {0: [_seg("防災行政無線の更新", -0.7)]}

    def decode(sub, beam_size):
        return {0: [_seg("更新の" * 30, -0.2)]}

    opts = TranscribeOptions(mode="batched", rescue_logprob=-0.4)
    assert _rescue_windows(opts, first, [0], decode)[0] is first[0]


def test_rescue_off_or_nothing_unsure_decodes_nothing():
    first = {0: [_seg("説明が終わりました", -0.1)]}

    def decode(sub, beam_size):
        raise AssertionError("no window is unsure")

    opts = TranscribeOptions(mode="batched", rescue_logprob=-0.4)
    assert _rescue_windows(opts, first, [0], decode) == first


def test_kanji_selection_keeps_the_first_text_when_the_wider_beam_spells_in_kana():
    first = {0: [_seg("執行部から説明をお願いします", -0.5)], 1: [_seg("ギアンダイについて", -0.5)]}

    def decode(sub, beam_size):
        return {0: [_seg("しっこぶから説明をお願いします", -0.3)], 1: [_seg("議案第について", -0.3)]}

    opts = TranscribeOptions(mode="batched", rescue_logprob=-0.4, rescue_select="kanji")
    out = _rescue_windows(opts, first, [0, 1], decode)
    assert out[0] is first[0]
    assert out[1][0].text == "議案第について"


# --- real model on the shipped fixture ------------------------------------------------------

def test_rescue_reuses_the_encoder_output_and_gives_the_wider_beams_text():
    """Every window rescued (bar at log-probability 0) with the wider beam's text winning gives
    exactly a plain beam-5 batched decode, and no window is encoded twice."""
    import json
    from pathlib import Path

    from shared.config import load_settings
    from minutes import pipeline
    from minutes.metrics import cer
    from minutes.model import get_model
    from minutes.transcribe import transcribe

    data = Path(__file__).parent / "data" / "minutes"
    ref = "".join(u["text"] for u in json.loads((data / "short_meeting.json").read_text("utf-8"))["utterances"])
    settings = load_settings(environ={}, home=Path("/tmp/niiza-recogniser-test-home"))
    prepared = pipeline.prepare(data / "short_meeting.mp3")
    model, _ = get_model(settings)

    class Counting:
        def __init__(self, m):
            self._m, self.encoded = m, 0

        def __getattr__(self, name):
            return getattr(self._m, name)

        def encode(self, features):
            self.encoded += 1 if features.ndim == 2 else features.shape[0]
            return self._m.encode(features)

    def run(**kw):
        counting = Counting(model)
        opts = TranscribeOptions(mode="batched", batch_size=3, workers=1, fill_gaps=False, **kw)
        segs = list(transcribe(counting, prepared.audio, regions=prepared.regions, options=opts))
        return "".join(s.text for s in segs), counting.encoded

    plain5, n5 = run(beam_size=5, rescue_logprob=None)
    rescued, n_rescued = run(beam_size=2, rescue_logprob=0.0, rescue_beam_size=5, rescue_select="wider")
    assert n5 >= 1 and n_rescued == n5
    assert rescued == plain5
    assert cer(rescued, ref) <= 0.2


def test_rescue_setting_reaches_the_transcribe_options():
    from minutes.pipeline import PipelineOptions
    from shared.config import load_settings

    off = PipelineOptions().transcribe_options(load_settings(environ={}))
    assert off.rescue_logprob is None
    on = PipelineOptions().transcribe_options(
        load_settings(environ={"NIIZA_AI_WHISPER_RESCUE_BEAM_SIZE": "5"}))
    assert (on.rescue_logprob, on.rescue_beam_size, on.beam_size) == (0.0, 5, 2)


def test_kana_trigger_decodes_again_only_windows_with_little_kanji():
    first = {0: [_seg("ただいまから総務常任委員会を開会いたします", -0.2)],
             1: [_seg("ギアンダイヨンジュウイチゴウについてしつもんします", -0.2)]}
    calls = []

    def decode(sub, beam_size):
        calls.append(list(sub))
        return {1: [_seg("議案第41号について質問します", -0.2)]}

    opts = TranscribeOptions(mode="batched", beam_size=2, rescue_logprob=0.0,
                             rescue_trigger="kana", rescue_kanji_share=0.5)
    out = _rescue_windows(opts, first, [0, 1], decode)
    assert calls == [[1]]  # window 0 is kanji-dense enough: not decoded again
    assert out[1][0].text == "議案第41号について質問します" and out[0] is first[0]
