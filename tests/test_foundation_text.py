"""Japanese normalisation on real examples residents and recognisers produce."""
import pytest

from shared.text import katakana_to_hiragana, normalize, strip_punctuation


@pytest.mark.parametrize("raw, expected", [
    ("ｺﾝﾋﾞﾆで住民票", "コンビニで住民票"),                     # half-width kana
    ("ＡＢＣ　１２３", "abc 123"),                               # full-width ASCII + ideographic space
    ("マイナンバーカ－ド", "マイナンバーカード"),                  # dash used as long vowel
    ("サーーバー", "サーバー"),                                   # doubled long vowel
    ("粗大ごみの申し込み", "粗大ごみの申込"),                      # okurigana variant
    ("引っ越しの手続きは？", "引越の手続は?"),
    ("問い合わせ先", "問合せ先"),
    ("霞ヶ関", "霞ケ関"),
    ("ヴァイオリン教室", "バイオリン教室"),
    ("  住民票\n\tの写し ", "住民票 の写し"),
    ("①番窓口", "1番窓口"),
    ("9時〜17時", "9時~17時"),
    ("コンビ二で住民票", "コンビニで住民票"),                    # kanji 二 for katakana ニ
    ("センタ一に行く", "センターに行く"),                        # kanji 一 for ー
    ("カ口リー", "カロリー"),
    ("力ードの更新", "カードの更新"),
    ("ホ一ムページ", "ホームページ"),
])
def test_normalize_examples(raw, expected):
    assert normalize(raw) == expected


def test_normalize_keeps_meaning_words():
    # hyphen between ASCII/digits is not a long vowel
    assert normalize("A-1") == "a-1"
    assert normalize("コンビニ〜") == "コンビニ~"
    assert normalize("") == ""
    # kanji next to katakana that belong to a kanji word stay kanji
    for word in ("データ一覧", "ガス工事", "出口ドア", "メール一通", "ボランティア八人", "一万円",
                 "二次元コード", "入口", "人口", "努力"):
        assert normalize(word) == word
    assert normalize("一ヶ月") == "一ケ月" and normalize("二カ所") == "二カ所"
    assert normalize("八ヶ岳") == "八ケ岳" and normalize("ボタン一つで通報") == "ボタン一つで通報"


def test_strip_punctuation_for_cer():
    assert strip_punctuation("はい、承認します。「議案」（第１号）") == "はい承認します議案第1号"


def test_kana_conversion():
    assert katakana_to_hiragana("ゴミ") == "ごみ"


def test_decode_bytes_detects_japanese_office_encodings():
    from shared.text import decode_bytes
    text = "申込番号,年齢クラス\nA001,0\n"
    assert decode_bytes(text.encode("utf-8")) == (text, "utf-8")
    assert decode_bytes(b"\xef\xbb\xbf" + text.encode("utf-8")) == (text, "utf-8-sig")
    assert decode_bytes(text.encode("cp932")) == (text, "cp932")
    assert decode_bytes(text.encode("utf-16")) == (text, "utf-16")
    with pytest.raises(ValueError):
        decode_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ValueError):  # bytes cp932 leaves unassigned
        decode_bytes(b"\x85\x40\x85\x41abc")
