"""The chatbot's throughput shortcuts give the same results as the plain path: the in-memory
BM25 indexes score exactly as FTS5's bm25 queries (also after an FAQ edit), concurrent
question embeddings merged into one encoder call give each question its own vector, and the
HTTP server runs on uvicorn's C parser and event loop. Speed itself is measured by
bench/chatbot.py (``--new-rounds``), not here."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from chatbot import service, storage
from chatbot.storage import Faq
from test_chat_support import make_db

ROOT = Path(__file__).resolve().parent.parent
KANA_QUESTIONS = ["いんかん とうろく", "じゅうみんひょう こんびに", "そだいごみ", "ほいくえんのもうしこみ",
                  "まいなんばーかーど なくした", "こくほ かにゅう", "ﾏｲﾅﾝﾊﾞｰ", "abc123", "ー", ""]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The bundled sample FAQ (198 entries, shipped vectors) in a real database."""
    from shared.config import load_settings
    from shared.runtime import open_database

    settings = load_settings(environ={}, home=tmp_path_factory.mktemp("speed") / "home")
    db = open_database(settings)
    service.load_sample(db, settings, actor="test")
    yield settings, db
    db.conn.close()


def _questions(n: int = 300) -> list[str]:
    rows = service.read_queries(ROOT / "tests" / "data" / "chat_dev_queries.csv")
    return [r.query for r in rows[:n]] + KANA_QUESTIONS


def test_kana_index_scores_exactly_as_fts5(sample):
    settings, db = sample
    r = service.retriever(db, settings)
    snap = r.snapshot(db)
    some = 0
    for q in _questions():
        norm = r.prepare(snap, q)
        mem, sql = r.kana_scores(db, snap, norm), r.kana_scores(db, snap, norm, sql=True)
        assert np.array_equal(mem, sql), q  # bit for bit, not just close
        some += bool(sql.any())
    assert some > 250  # the questions do match kana trigrams


def test_lexical_index_scores_exactly_as_fts5(sample):
    from chatbot.tokenize import analyze

    settings, db = sample
    r = service.retriever(db, settings)
    snap = r.snapshot(db)
    idx = r.bm25_index(db, snap, "chat_faq_fts")
    assert idx is not None and "住" in idx.chars
    some = 0
    for q in _questions() + ["ＮＨＫの受信料", "Wi-Fiは使えますか", "ℵ𠮷野家 ǅ", "住民票 住民票"]:
        toks = analyze(r.prepare(snap, q), snap.synonyms, r.home(snap)).tokens
        mem, sql = r.lexical_scores(db, snap, toks), r.lexical_scores(db, snap, toks, sql=True)
        assert np.array_equal(mem, sql), q
        some += bool(sql.any())
    assert some > 250
    # tokens FTS5 would tokenise differently (upper case, a character no FAQ term has) are
    # sent to FTS5 itself
    for toks in (["ABC", "住民票"], ["ǅ"], ["住民票", ""], ["a-b"]):
        assert np.array_equal(r.lexical_scores(db, snap, toks),
                              r.lexical_scores(db, snap, toks, sql=True)), toks


def test_kana_index_follows_faq_edits(tmp_path):
    settings, db = make_db(tmp_path)
    r = service.retriever(db, settings)
    snap = r.snapshot(db)
    norm = r.prepare(snap, "かえるのしいくほうほう")
    before = r.kana_scores(db, snap, norm)
    faq = Faq("T99", "蛙の飼育方法を教えてください", "市では蛙の飼育についての相談は受け付けていません。",
              "その他", "環境課", "", "", "かえる")
    service.save_faqs(db, settings, [faq], actor="test")
    snap2 = r.snapshot(db)  # the edit bumped the generation: a new snapshot and kana index
    assert snap2 is not snap and not snap2.bm25
    after = r.kana_scores(db, snap2, r.prepare(snap2, "かえるのしいくほうほう"))
    assert np.array_equal(after, r.kana_scores(db, snap2, r.prepare(snap2, "かえるのしいくほうほう"),
                                               sql=True))
    assert not before.any() or len(before) < len(after)
    assert int(np.argmax(after)) == snap2.pos["T99"]
    # a deletion is seen too
    assert storage.delete_faq(db, "T99", actor="test")
    snap3 = r.snapshot(db)
    assert "T99" not in snap3.pos
    q3 = r.prepare(snap3, "かえるのしいくほうほう")
    assert np.array_equal(r.kana_scores(db, snap3, q3), r.kana_scores(db, snap3, q3, sql=True))


def test_answers_identical_with_and_without_the_shortcuts(sample, monkeypatch):
    """kind, FAQ, ranking and confidence of every question: in-memory BM25 indexes and one
    reading per question vs the FTS5 queries and a second Sudachi pass."""
    from chatbot import retrieval

    settings, db = sample
    cal = service.current_calibration(db)
    qs = _questions(200)

    def run():
        return [(o["kind"], o["faq_id"], tuple(o["ranked"]), o["confidence"])
                for o in (service.answer(db, settings, q, cal=cal) for q in qs)]

    fast = run()
    plain_kana = retrieval.Retriever.kana_scores
    plain_lex = retrieval.Retriever.lexical_scores
    plain_oos = retrieval.oos_features
    monkeypatch.setattr(retrieval.Retriever, "kana_scores",
                        lambda self, db, snap, text, read=None, sql=False:
                        plain_kana(self, db, snap, text, None, True))
    monkeypatch.setattr(retrieval.Retriever, "lexical_scores",
                        lambda self, db, snap, toks, sql=False: plain_lex(self, db, snap, toks, True))
    monkeypatch.setattr(retrieval, "oos_features", lambda *a, read=None, **k: plain_oos(*a, **k))
    assert run() == fast


# --- query micro-batching --------------------------------------------------------------------


def test_batched_question_vectors_equal_single_ones(sample):
    from chatbot.embed import QueryBatcher

    settings, _db = sample
    emb = service.embedder(settings)
    m = emb._m  # the real CTranslate2 encoder
    qs = _questions(40)[:40]
    single = np.stack([m.encode([q], True)[0] for q in qs])
    gate = threading.Event()
    started = threading.Event()

    def encode(texts):  # the real encoder; the first call waits until the others queued
        if not started.is_set():
            started.set()
            gate.wait(10)
        return m.encode(texts, True)

    b = QueryBatcher(encode, slots=1)
    out: dict[int, np.ndarray] = {}

    def ask(i):
        out[i] = b([qs[i]])[0]

    first = threading.Thread(target=ask, args=(0,))
    first.start()
    assert started.wait(10)
    rest = [threading.Thread(target=ask, args=(i,)) for i in range(1, len(qs))]
    for t in rest:
        t.start()
    while sum(len(j[0]) for j in b._pending) < len(qs) - 1:  # all queued behind the busy slot
        threading.Event().wait(0.005)
    gate.set()
    for t in [first, *rest]:
        t.join(30)
    got = np.stack([out[i] for i in range(len(qs))])
    assert np.allclose(got, single, atol=1e-6)
    # one call for the first, then the queued ones in batches of at most max_batch
    assert b.calls_by_size[1] >= 1 and max(b.calls_by_size) == b.max_batch
    assert sum(k * v for k, v in b.calls_by_size.items()) == len(qs)


def test_batcher_runs_at_once_when_idle_and_passes_errors():
    from chatbot.embed import QueryBatcher

    calls = []

    def encode(texts):
        calls.append(list(texts))
        if "bad" in texts:
            raise ValueError("encoder failed")
        return np.array([[float(len(t))] for t in texts])

    b = QueryBatcher(encode, slots=2)
    assert b(["abc", "de"]).tolist() == [[3.0], [2.0]]
    assert calls == [["abc", "de"]]  # a lone caller's texts, immediately, as one call
    with pytest.raises(ValueError):
        b(["bad"])
    assert b(["x"]).tolist() == [[1.0]] and b._running == 0 and not b._pending


def test_service_embedder_batches_concurrent_questions(sample):
    settings, _db = sample
    emb = service.embedder(settings)
    qs = _questions(60)[:60]
    single = np.stack([emb._m.encode([q], True)[0] for q in qs])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as ex:
        got = np.stack(list(ex.map(lambda q: emb.embed_queries([q])[0], qs)))
    assert np.allclose(got, single, atol=1e-6)


# --- HTTP server -----------------------------------------------------------------------------


def test_uvicorn_uses_the_c_http_parser_and_uvloop():
    import uvicorn
    from uvicorn.config import Config

    async def app(scope, receive, send):  # pragma: no cover - never called
        pass

    cfg = Config(app, loop="auto", http="auto")
    cfg.load()
    assert cfg.http_protocol_class.__module__.endswith("httptools_impl")
    import uvloop  # noqa: F401  (uvicorn's "auto" loop picks it when importable)

    assert uvicorn.__version__
