"""Text stages: filler removal (整文 vs 素起こし), repeated words, punctuation, glossary, 要点."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import InvalidInput
from minutes import cleanup, glossary, hallucination, punctuate
from minutes.draft import MinutesHeader, build_draft, classify, extract_key_points
from minutes.metrics import cer, punctuation_f1
from minutes.types import Segment, SpeechRegion, Utterance, Word
from minutes.vad import snap_to_speech, transcription_regions

DATA = Path(__file__).parent / "data" / "minutes"
REF = json.loads((DATA / "short_meeting.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("raw,clean", [
    ("えー、ただいまから文教厚生委員会を開会いたします。", "ただいまから文教厚生委員会を開会いたします。"),
    ("あのー、保育所の、保育所の入所申請は、いつからですか。", "保育所の入所申請は、いつからですか。"),
    ("あのー保育所の保育所の入所申請は、いつからですか。", "保育所の入所申請は、いつからですか。"),
    ("えっと、来年4月から開始する予定です。", "来年4月から開始する予定です。"),
    ("承認されました。まあ、次回までに検討してください。", "承認されました。次回までに検討してください。"),
    ("えー、あの、本件は承認されました。", "本件は承認されました。"),
    ("予算は、えーと、まあまあの結果でした。", "予算は、まあまあの結果でした。"),
    # content words that look like fillers stay
    ("あの件については、一人一人いろいろ検討します。", "あの件については、一人一人いろいろ検討します。"),
    ("その予算は、ますます重要です。", "その予算は、ますます重要です。"),
])
def test_fillers_and_repeats_removed_only_in_clean_text(raw, clean):
    assert cleanup.clean_text(raw) == clean


def test_orthography_and_base_model_filler_quirks():
    assert cleanup.normalize_orthography("1時預かりと1般の方、1緒に、1部改正。") == "一時預かりと一般の方、一緒に、一部改正。"
    assert cleanup.normalize_orthography("11時に2.1定、資料を1部") == "11時に2.1定、資料を1部"
    assert cleanup.clean_text("部長です。絵、本議案は、あのう、えっとー、承認です。") == "部長です。本議案は、承認です。"
    assert cleanup.clean_text("絵を描きます。") == "絵を描きます。"


def test_builtin_council_terms():
    g = glossary.council_terms()
    assert g.apply("ご意義なしと認め、これより議案を再決いたします。") == "ご異議なしと認め、これより議案を採決いたします。"
    assert g.apply("ここで残疑休憩いたします。かけつすべきものと決定") == "ここで暫時休憩いたします。可決すべきものと決定"
    for ok in ("事業の意義は大きい。", "委員会を開会いたします。", "賛成の委員の挙手を求めます。"):
        assert g.apply(ok) == ok


def test_fixture_clean_text_matches_reference():
    for u in REF["utterances"]:
        assert cleanup.clean_text(u["text"]) == u["clean_text"], u["text"]


def test_normalize_punctuation():
    assert punctuate.normalize_punctuation("賛成です.反対は? はい,") == "賛成です。反対は。はい、"
    assert punctuate.normalize_punctuation("、、開会します。。") == "開会します。"
    assert punctuate.normalize_punctuation("約3,000世帯,2.5倍です.") == "約3,000世帯、2.5倍です。"
    assert punctuate.punctuate("約3,000世帯を対象に実施しました") == "約3,000世帯を対象に実施しました。"


def test_punctuation_restored_from_morphology_on_reference_texts():
    """Strip all 。、 from the reference, restore, and score against it (no timestamps used)."""
    ref = "".join(u["text"] for u in REF["utterances"])
    hyp = "".join(punctuate.punctuate(punctuate.punctuation_positions(u["text"])[0])
                  for u in REF["utterances"])
    periods = punctuation_f1(hyp.replace("、", ""), ref.replace("、", ""))
    assert periods.f1 >= 0.9, periods
    assert cer(hyp, ref) == 0.0  # restoration never changes the words


def test_punctuation_uses_pauses_from_word_timestamps():
    words = [Word(0.0, 0.3, "本件"), Word(0.3, 0.5, "は"), Word(1.1, 1.4, "原案"),
             Word(1.4, 1.6, "の"), Word(1.6, 1.9, "とおり"), Word(1.9, 2.3, "承認"),
             Word(2.3, 2.5, "し"), Word(2.5, 2.8, "ます")]
    text = "".join(w.text for w in words)
    assert punctuate.punctuate(text, words) == "本件は、原案のとおり承認します。"
    # without the pause no comma is invented
    assert punctuate.punctuate(text) == "本件は原案のとおり承認します。"


def test_punctuation_spaces_from_whisper_become_marks():
    out = punctuate.punctuate("休憩前に引き続き会議を開きます 本件はいかがですか 異議なし")
    assert out == "休憩前に引き続き会議を開きます。本件はいかがですか。異議なし。"


def test_turn_cut_mid_sentence_ends_with_comma_not_period():
    # a speaker turn split after a particle or a 連用形 goes on: 、 (a full sentence still gets 。)
    assert punctuate.punctuate("資格確認書は") == "資格確認書は、"
    assert punctuate.punctuate("約3000世帯を対象に実施し") == "約3000世帯を対象に実施し、"
    for complete in ("田中委員", "異議なし", "ご異議ありませんか", "お答えいたします"):
        assert punctuate.punctuate(complete) == complete + "。"
    # Whisper's own 。 after a particle is a comma
    assert punctuate.punctuate("来月末までに。市のホームページでお知らせをお願いします。") == \
        "来月末までに、市のホームページでお知らせをお願いします。"
    assert punctuate.punctuate("本日は。", end_of_turn=False) == "本日は、"


def test_sentence_initial_connectives_take_a_comma():
    out = punctuate.punctuate("以上で説明を終わります それでは確認いたします 次に報告事項に移ります "
                              "また資料は後日お配りします よって本案は可決されました")
    assert out == ("以上で説明を終わります。それでは、確認いたします。次に、報告事項に移ります。"
                   "また、資料は後日お配りします。よって、本案は可決されました。")
    # only at the start of a sentence: 次に inside a sentence is left alone
    assert punctuate.punctuate("保育所の次に学童を整備します") == "保育所の次に学童を整備します。"


def test_fillers_are_set_off_by_commas_and_removed_in_clean_text():
    raw = punctuate.punctuate("予算が限られていますのでまあ優先順位をつけて進めます")
    assert raw == "予算が限られていますので、まあ、優先順位をつけて進めます。"
    assert cleanup.clean_text(raw) == "予算が限られていますので、優先順位をつけて進めます。"
    raw = punctuate.punctuate("ご指摘の点につきましてはえー来年度に検討いたします")
    assert cleanup.clean_text(raw) == "ご指摘の点につきましては、来年度に検討いたします。"


def _words(pieces, mora_s, pause_after=None, pause_s=0.0):
    """Word timestamps for ``pieces`` at ``mora_s`` seconds per character (kana here), with a pause
    of ``pause_s`` after the piece ``pause_after``."""
    t, out = 0.0, []
    for piece in pieces:
        d = mora_s * len(piece)
        out.append(Word(t, t + d, piece))
        t += d + (pause_s if piece == pause_after else 0.0)
    return out


def test_no_pause_comma_inside_a_compound_particle():
    pieces = ["ほいくしょの", "ていいんに", "ついて", "うかがいます"]
    words = _words(pieces, 0.12, pause_after="ていいんに", pause_s=0.8)
    assert punctuate.punctuate("".join(pieces), words) == "ほいくしょのていいんについてうかがいます。"


def test_comma_pause_is_relative_to_the_speech_rate():
    # the same 0.42 s pause is a comma for a fast speaker and not for a slow one
    pieces = ["きょうのぎだいは", "ほいくしょのていいんの", "みなおしについてです"]
    fast = _words(pieces, 0.09, pause_after="きょうのぎだいは", pause_s=0.42)
    slow = _words(pieces, 0.17, pause_after="きょうのぎだいは", pause_s=0.42)
    text = "".join(pieces)
    assert punctuate.mora_seconds(fast) < punctuate.mora_seconds(slow)
    assert punctuate.punctuate(text, fast) == "きょうのぎだいは、ほいくしょのていいんのみなおしについてです。"
    assert punctuate.punctuate(text, slow) == "きょうのぎだいはほいくしょのていいんのみなおしについてです。"
    # a long pause is a comma at any rate
    slow_long = _words(pieces, 0.17, pause_after="きょうのぎだいは", pause_s=0.8)
    assert punctuate.punctuate(text, slow_long).startswith("きょうのぎだいは、")


# --- glossary --------------------------------------------------------------------------------

def test_glossary_reading_based_corrections():
    g = glossary.load(DATA / "short_meeting.glossary.csv")
    assert len(g.terms) == 5
    fixes = {
        "ただいまから文競構成委員会を開会いたします。": "ただいまから文教厚生委員会を開会いたします。",
        "担当は保育かとします。": "担当は保育課とします。",
        "国民健康保健との連携": "国民健康保険との連携",
        "いつから毎年バーカードでできますか。": "いつからマイナンバーカードでできますか。",
    }
    for wrong, right in fixes.items():
        assert g.apply(wrong) == right
    # correct text and similar-but-different registered terms are left alone
    for ok in ("保育課の保育所", "いつからマイナンバーカードでできますか。", "毎年の保育"):
        assert g.apply(ok) == ok


def test_glossary_literal_replacements_tsv_header_and_encodings(tmp_path):
    p = tmp_path / "g.tsv"
    p.write_bytes("誤\t正\n本県\t本件\nご意義\tご異議\n".encode("cp932"))
    g = glossary.load(p)
    assert g.replacements and not g.terms
    assert g.apply("ご意義なしと認め、本県は承認されました。") == "ご異議なしと認め、本件は承認されました。"
    # no header: a kana second column is a reading
    g2 = glossary.parse("新座市,にいざし\n# comment\n本県,本件\n")
    assert g2.terms[0].reading == "ニイザシ" and g2.replacements == [("本県", "本件")]


def test_glossary_bad_rows_are_reported_in_japanese():
    with pytest.raises(InvalidInput) as exc:
        glossary.parse("term,reading\n保育課,\n")
    assert "1行目" in exc.value.message
    with pytest.raises(InvalidInput) as exc:
        glossary.parse("term,reading\n保育課,保育\n")
    assert "ひらがなかカタカナ" in exc.value.message


# --- hallucination filter ----------------------------------------------------------------------

def _seg(text, **kw):
    base = dict(index=0, start=1.0, end=4.0, text=text, avg_logprob=-0.3, compression_ratio=1.3,
                no_speech_prob=0.05)
    base.update(kw)
    return Segment(**base)


def test_hallucination_filter_reasons():
    speech = [SpeechRegion(0.5, 5.0)]
    assert hallucination.judge(_seg("本件は承認されました。"), speech) == ""
    assert hallucination.judge(_seg("はい", no_speech_prob=0.7, avg_logprob=-1.2), speech) == "no_speech"
    half = [SpeechRegion(3.5, 4.0)]  # only 1/6 of the segment is speech
    assert hallucination.judge(_seg("はい", no_speech_prob=0.7), half) == "no_speech"
    # window-level no-speech probability alone never drops a segment that is speech
    assert hallucination.judge(_seg("本件は承認されました。", no_speech_prob=0.95), speech) == ""
    assert hallucination.judge(_seg("あ", compression_ratio=3.1), speech) == "compression"
    assert hallucination.judge(_seg("ありがとうございます" * 5), speech) == "repetition"
    assert hallucination.judge(_seg("ご視聴ありがとうございました"), speech) == "stock_phrase"
    # お疲れ様でした is said at the end of meetings: kept when Whisper heard it clearly over speech
    # (word probabilities as Whisper base gave them on a real closing line), dropped otherwise
    clear = [Word(1.0 + 0.4 * i, 1.4 + 0.4 * i, t, p) for i, (t, p) in
             enumerate([("お", 0.98), ("疲", 0.99), ("れ", 1.0), ("様", 0.89), ("でした。", 0.98)])]
    assert hallucination.judge(_seg("お疲れ様でした。", words=clear), speech) == ""
    unsure = [Word(w.start, w.end, w.text, 0.5) for w in clear]
    assert hallucination.judge(_seg("お疲れ様でした。", words=unsure), speech) == "stock_phrase"
    assert hallucination.judge(_seg("お疲れ様でした。", words=clear), half) == "stock_phrase"
    assert hallucination.judge(_seg("ご視聴ありがとうございました", words=clear), speech) == "stock_phrase"
    assert hallucination.judge(_seg("本件は承認されました。", start=10, end=14), speech) == "outside_speech"
    # a stutter is not a repetition loop
    assert hallucination.judge(_seg("保育所の保育所の入所申請"), speech) == ""


# --- VAD snapping ------------------------------------------------------------------------------

def test_segment_timestamps_snap_to_speech():
    regions = [SpeechRegion(1.0, 3.0), SpeechRegion(9.0, 12.0)]
    seg = Segment(0, 0.2, 11.5, "x", words=[Word(0.2, 1.5, "本件"), Word(3.5, 9.4, "は"),
                                            Word(9.4, 11.5, "承認")])
    snap_to_speech(seg, regions)
    assert seg.start == 1.0 and seg.words[1].start == 9.0 and seg.words[1].end == 9.4
    plain = Segment(1, 4.0, 10.0, "y")
    snap_to_speech(plain, regions)
    assert (plain.start, plain.end) == (9.0, 10.0)
    merged = transcription_regions([SpeechRegion(1, 2), SpeechRegion(2.5, 3), SpeechRegion(8, 9)], 20)
    assert len(merged) == 2 and merged[0].start == 0.7 and merged[1].end == 9.3


# --- draft -------------------------------------------------------------------------------------

def test_key_points_by_decision_and_assignment_cues():
    assert classify("本件は原案のとおり可決されました。") == "決定"
    assert classify("ご異議ありませんか。") == ""
    assert classify("次回までに資料を用意してください。") == "担当・期限"
    assert classify("担当は保育課とします。") == "担当・期限"
    assert classify("休憩前に引き続き会議を開きます。") == ""
    utts = [Utterance(u["start"], u["end"], u["speaker"], u["clean_text"], u["text"])
            for u in REF["utterances"]]
    kinds = [(p.kind, p.speaker) for p in extract_key_points(utts)]
    assert ("決定", "委員長") in kinds and ("担当・期限", "委員長") in kinds
    d = build_draft(utts, duration_s=43.8, model="whisper-base",
                    header=MinutesHeader.from_dict({"title": "文教厚生委員会", "attendees": "委員長、佐藤委員"}))
    assert d.header.attendees == ["委員長", "佐藤委員"]
    assert d.to_dict()["utterances"][0]["raw_text"].startswith("えー")


def test_glossary_term_written_in_kana_that_starts_on_a_particle():
    """Sudachi cuts a kana-written term into particles (かけつすべき → か/けつ/す/べき); an exact
    reading match of a long term may still start there, a short or inexact one may not."""
    council = glossary.council_terms()
    assert glossary.apply(council, "原案の通りかけつすべきものと決定") == "原案のとおり可決すべきものと決定"
    assert glossary.apply(council, "会議がかいかいいたしますと") == "会議が開会いたしますと"
    g = glossary.parse("term,reading\n保育所,ほいくじょ\n可決すべきもの,かけつすべきもの\n")
    # short term: a particle before it is never taken into the term
    assert glossary.apply(g, "のほいくじょ") == "の保育所"
    # inexact reading: no fuzzy match from a particle start
    assert glossary.apply(g, "原案の通りかけつすべきでない") == "原案の通りかけつすべきでない"
    # a real particle followed by other words is left alone
    assert glossary.apply(g, "これがかけつ") == "これがかけつ"


def _seg_words(words):
    """A segment from (text, start, end, probability) tuples, as the batched mode builds them."""
    ws = [Word(s, e, t, p) for t, s, e, p in words]
    return Segment(0, ws[0].start, ws[-1].end, "".join(w.text for w in ws).strip(), ws)


def test_fillers_whisper_wrote_as_kanji_or_latin_letters():
    # word timestamps and probabilities as Whisper base gave them on the committee recording
    seg = _seg_words([("絵", 0.73, 0.97, 0.59), ("定", 0.97, 1.25, 0.31), ("刻", 1.25, 1.41, 0.47),
                ("となりました", 1.41, 2.2, 0.99)])
    assert cleanup.fix_misheard_fillers(seg).text == "えー定刻となりました"
    seg = _seg_words([(" 営", 152.52, 152.52, 0.53), ("質", 152.52, 152.76, 0.8), ("疑", 152.76, 153.04, 0.98),
                ("が", 153.04, 153.16, 0.97), ("ない", 153.16, 153.4, 0.99)])
    assert cleanup.fix_misheard_fillers(seg).text == "えー質疑がない"
    seg = _seg_words([("つきましては", 69.0, 69.6, 0.99), ("A", 70.59, 70.82, 0.14), (" 処", 71.48, 71.58, 0.39),
                ("遇", 71.58, 71.74, 0.9), ("改善", 71.74, 72.1, 0.95)])
    fixed = cleanup.fix_misheard_fillers(seg)
    assert fixed.text == "つきましてはえー 処遇改善"
    assert [w.text for w in fixed.words][1] == "えー" and seg.words[1].text == "A"  # a copy
    raw = punctuate.punctuate(fixed.text, fixed.words)
    assert cleanup.clean_text(raw) == "つきましては、処遇改善。"
    # content words stay: 英 that makes a word with 語 (even when unsure of it), 絵 inside a
    # phrase, a confident A in A案
    for words in ([("英", 5.0, 5.2, 0.33), ("語", 5.2, 5.4, 0.99), ("の", 5.4, 5.5, 0.99)],
                  [("この", 5.0, 5.3, 0.9), ("絵", 5.3, 5.5, 0.4), ("は", 5.5, 5.6, 0.99)],
                  [("A", 5.0, 5.2, 0.9), ("案", 5.2, 5.4, 0.99), ("と", 5.4, 5.5, 0.99)]):
        seg = _seg_words(words)
        assert cleanup.fix_misheard_fillers(seg) is seg


@pytest.mark.parametrize("raw,fixed", [
    # 公用文: Arabic digits before a counter (横書き)
    ("八割、八割ということは、残りの二割は", "8割、8割ということは、残りの2割は"),
    ("定員を百二十人拡大し、年二回開催します。二〇二五年度、一万五千円", "定員を120人拡大し、年2回開催します。2025年度、1万5000円"),
    # numerals inside words stay
    ("数十人、一時預かり、十分な、二度と、四日市市、三日月、一人一人、千葉、百貨店",
     "数十人、一時預かり、十分な、二度と、四日市市、三日月、一人一人、千葉、百貨店"),
    # 形式名詞・補助用言 in kana
    ("原案の通り可決。従来通り受け付けます。宜しくお願いします。どうすれば良いのでしょうか。",
     "原案のとおり可決。従来どおり受け付けます。よろしくお願いします。どうすればよいのでしょうか。"),
    ("他に質疑はありませんか。", "ほかに質疑はありませんか。"),
    ("議案題15号", "議案第15号"),
    # a street, 良い as an adjective, その他 stay
    ("駅前の通りを歩く。良い結果です。その他の議案。", "駅前の通りを歩く。良い結果です。その他の議案。"),
])
def test_koyobun_orthography(raw, fixed):
    assert cleanup.normalize_orthography(raw) == fixed


def test_glossary_term_with_a_misheard_first_mora():
    # Whisper often mishears a term's first consonant (more so in noise): a term long enough for a
    # fuzzy match is also offered by its second kana, still under the reading-distance and
    # spelling guards (committee noisy: 暖事休憩; committee clean/mp3: 近く確認書).
    council = glossary.council_terms()
    assert glossary.apply(council, "ここで暖事休憩いたします") == "ここで暫時休憩いたします"
    g = glossary.parse("term,reading\n資格確認書,しかくかくにんしょ\n保育士,ほいくし\n")
    assert glossary.apply(g, "お持ちの方は近く確認書の") == "お持ちの方は資格確認書の"
    # the plain word stays; a short term (no fuzzy match) is not offered by its second kana
    assert glossary.apply(g, "駅の近くに確認に行く") == "駅の近くに確認に行く"
    assert glossary.apply(g, "お祝しの方") == "お祝しの方"
    # a term matched by its first kana wins (兵会 is 閉会 by reading, not 開会 by its second kana),
    # and a window two terms fit equally well is left alone
    assert glossary.apply(council, "委員会を兵会いたします") == "委員会を閉会いたします"
    assert glossary.apply(council, "委員会を警戒いたします") == "委員会を警戒いたします"
