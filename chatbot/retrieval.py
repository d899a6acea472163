"""Hybrid retrieval: BM25 (SQLite FTS5 over pre-tokenised text) + dense (stored FAQ vectors),
fused with z-scores: ``fused = w_lex * z(bm25) + w_dense * z(cosine)``.

Scores are z-normalised over the whole FAQ for each query (FAQs with no lexical match score 0
before normalisation), so the two signals are comparable whatever their raw ranges. The
in-memory snapshot (FAQ rows, vector matrix, synonym table) is rebuilt when the database's
``chat_state.generation`` changes, so every process sees every FAQ edit. Nothing is embedded at
load time: FAQs without a stored vector for the current model simply get a neutral dense score
(run ``niiza-ai faq reindex`` after changing the embedding model).
"""
from __future__ import annotations

import re
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import sqlite_utils

from . import storage
from .confidence import RERANK_K, fusion_features, rerank_distinct
from .embed import Embedder
from .tokenize import (KanaLexicon, Synonyms, analyze, distinct_chars, has_kana_word, home_places,
                       normalize, reading, trigrams)

# "私の…", "私が…", "うちの…": a resident asking about their own case, which no FAQ can answer.
PERSONAL_RE = re.compile(
    r"(私|わたし|あたし|僕|ぼく|俺|おれ|自分|うち|我が家|夫|妻|主人|母|父|息子|娘|祖母|祖父)の(?!代わり|ため)"
    r"|(私|わたし|あたし|僕|ぼく|俺|おれ|自分)が")
# A personal case: the resident (or their family) asks for a figure, date or decision in their
# own file — 「私の住民税はいくら」「先週出した申請の審査結果」「うちの水道代はいくら」. No FAQ can
# answer that; 「父のおむつ代の補助はありますか」 (a general service) is not one.
PERSONAL_CASE_RE = re.compile(
    r"(?=.*((私|わたし|あたし|僕|ぼく|俺|おれ|自分|うち|我が家|夫|妻|主人|母|父|息子|娘|祖母|祖父|子ども|子供)"
    r"(の|が|は)|(出した|提出した|予約した|申請した|申し込んだ|借りて(る|いる)|払った)"
    r"|(申請|申込み?|申し込み)の(返事|回答)))"
    r"(?=.*(いくら|金額|何円|日付|結果|理由|審査|滞納|いつ届|届いて|振り込まれ|何になり|返却日"
    r"|請求額|返事|回答.{0,8}まだ|まだ(です|でしょう)?か|まだ[？?]|番号を教えて|いつ決まり))")

# bm25() column weights: faq_id (unindexed), question, answer, keywords
BM25_WEIGHTS = (0.0, 3.0, 1.0, 2.0)
# Only the best lexical matches get a score; the rest count as "no match" (0) before z-scoring.
# Keeps per-query work bounded on a large FAQ; exact for FAQs smaller than this.
MAX_LEXICAL_HITS = 300
# On a large FAQ, query terms found in more than this share of the FAQs are skipped in the BM25
# query (they add little and make SQLite score thousands of rows). Small FAQs use every term.
PRUNE_ABOVE_FAQS = 2000
PRUNE_DF_SHARE = 0.05
# FAQs whose term sets (for the coverage of the query by the #1 FAQ) are kept per snapshot.
FAQ_TERMS_CACHE = 10_000
# Up to this many FAQs, every FAQ's term set is computed when the snapshot is built (~0.5 ms per
# FAQ, once per FAQ edit), so no resident's question pays for it; larger FAQs compute them lazily.
FAQ_TERMS_EAGER = 2000


def _prune(terms: list[str], df: dict, n: int) -> list[str]:
    if n <= PRUNE_ABOVE_FAQS or not df:
        return terms
    kept = [t for t in terms if df.get(t, 0) <= PRUNE_DF_SHARE * n]
    return kept or sorted(terms, key=lambda t: df.get(t, 0))[:1]


@dataclass
class Hit:
    faq_id: str
    score: float  # fused
    lex: float  # raw BM25 (higher is better; 0 = no match)
    dense: float  # cosine
    lex_z: float
    dense_z: float


@dataclass
class Result:
    hits: list[Hit]  # best first, at most k
    top_dense: float = 0.0
    top_lex: float = 0.0
    n_tokens: int = 0
    ms: float = 0.0
    features: dict = field(default_factory=dict)

    @property
    def top(self) -> Hit | None:
        return self.hits[0] if self.hits else None

    @property
    def margin(self) -> float:
        if len(self.hits) < 2:
            return self.hits[0].score if self.hits else 0.0
        return self.hits[0].score - self.hits[1].score


@dataclass
class Snapshot:
    generation: int
    model: str
    ids: list[str]
    pos: dict[str, int]
    faqs: dict[str, dict]
    matrix: np.ndarray  # (n, dim), rows aligned with ids; zero rows where no vector
    has_vec: np.ndarray  # (n,) bool
    synonyms: Synonyms
    answer_matrix: np.ndarray | None = None  # (n, dim) question + answer vectors
    has_answer_vec: np.ndarray | None = None
    vocab: dict = field(default_factory=dict)  # term → FAQ count
    kana_vocab: dict = field(default_factory=dict)  # reading trigram → FAQ count
    built_s: float = 0.0
    kana_lexicon: KanaLexicon | None = None  # built on first use (a query with a kana word)
    # lazily filled: faq_id → its lexical terms (question + answer + keywords), and the
    # normalised mean question vector of each category
    faq_terms: dict = field(default_factory=dict)
    category_centroids: np.ndarray | None = None
    # lazily built: per FAQ (aligned with ids) the kanji / katakana characters and pairs of its
    # question + keywords, and their IDF over the FAQ (``Retriever.distinct_index``)
    distinct: tuple | None = None
    # lazily computed: the municipality the FAQ is about (``tokenize.home_places``)
    home: tuple | None = None
    # lazily built: the FTS5 indexes in memory (``Bm25Index``), by table
    bm25: dict = field(default_factory=dict)


def load_snapshot(db: sqlite_utils.Database, embedder: Embedder) -> Snapshot:
    t0 = time.perf_counter()
    gen = storage.generation(db)
    faqs = {f["faq_id"]: f for f in storage.list_faqs(db)}
    ids = list(faqs)
    pos = {fid: i for i, fid in enumerate(ids)}
    mats = {}
    for kind in storage.VECTOR_TABLES:
        matrix = np.zeros((len(ids), embedder.dim), dtype=np.float32)
        has = np.zeros(len(ids), dtype=bool)
        for fid, (_h, v) in storage.stored_vectors(db, embedder.name, kind).items():
            i = pos.get(fid)
            if i is not None and v.shape[0] == embedder.dim:
                matrix[i] = v
                has[i] = True
        mats[kind] = (matrix, has)
    return Snapshot(gen, embedder.name, ids, pos, faqs, *mats["question"], storage.load_synonyms(db),
                    *mats["answer"], storage.vocabulary(db), storage.kana_vocabulary(db),
                    time.perf_counter() - t0)


# FTS5's bm25() constants; the column weights of the kana query (faq_id, question, keywords)
BM25_K1, BM25_B = 1.2, 0.75
KANA_BM25_WEIGHTS = (0.0, 2.0, 1.0)
FTS_COLUMNS = {"chat_faq_fts": ("faq_id", "question", "answer", "keywords"),
               "chat_faq_kana": ("faq_id", "question", "keywords")}
# Up to this many FAQs both FTS5 indexes are also held in memory (``Bm25Index``, built on the
# first question after each FAQ edit: ~90 ms for the 198-entry sample); larger FAQs are scored by
# the FTS5 queries (the same scores, ~0.3-0.6 ms more per question).
IN_MEMORY_INDEX_MAX_FAQS = 2000


@dataclass
class Bm25Index:
    """An FTS5 table held in memory: per term, the snapshot rows that contain it and the term's
    share of FTS5's ``bm25(table, *weights)`` for each of them.

    FTS5's bm25 is a sum over the query's phrases of ``idf * f * (k1 + 1) / (f + k1 * (1 - b +
    b * D / avgdl))`` (f: the column-weighted count of the phrase in the row, D: the row's token
    count, idf: ``log((N - n + 0.5) / (n + 0.5))``, 1e-6 when not positive); every factor is
    fixed per row and term, so the shares are computed once per snapshot with the same
    double-precision operations in the same order as FTS5's ``fts5Bm25Function``, and a
    question's score is their sum in phrase order: the same scores, bit for bit, as the SQL query
    (checked in tests/test_chat_speed.py) without a query per question. Term counts, token counts
    and totals are FTS5's own (its ``fts5vocab`` instance view), so the tokenizer is FTS5's."""
    terms: dict[str, tuple[np.ndarray, np.ndarray]]  # term → (row positions, bm25 shares)
    n: int  # snapshot rows
    chars: frozenset = frozenset()  # every character of every term

    def scores(self, phrases: list[str]) -> np.ndarray:
        """bm25 (higher is better, 0 = no match) of each snapshot row for single-term phrases,
        only the best ``MAX_LEXICAL_HITS`` rows kept, as the SQL query's ``ORDER BY s LIMIT``."""
        out = np.zeros(self.n, dtype=np.float32)
        found = [self.terms[p] for p in phrases if p in self.terms]
        if not found:
            return out
        pos = np.concatenate([f[0] for f in found])
        score = np.bincount(pos, weights=np.concatenate([f[1] for f in found]),
                            minlength=self.n)  # each row's sum in phrase order, as FTS5's
        hit = np.flatnonzero(score)
        if len(hit) > MAX_LEXICAL_HITS:
            hit = hit[np.argsort(-score[hit], kind="stable")[:MAX_LEXICAL_HITS]]
        out[hit] = score[hit]
        return out


def build_bm25_index(db: sqlite_utils.Database, snap: "Snapshot", table: str,
                     weights: tuple[float, ...]) -> Bm25Index:
    conn = db.conn
    view = f"{table}_instance"
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{view}"
                 f" USING fts5vocab(main, '{table}', 'instance')")
    rows = conn.execute(f"SELECT rowid, faq_id FROM {table}").fetchall()
    n_row = len(rows)
    pos_of_rowid = {rid: snap.pos.get(fid, -1) for rid, fid in rows}
    weight = dict(zip(FTS_COLUMNS[table], weights))
    freq: dict[str, dict[int, float]] = {}
    size: dict[int, int] = {}
    for term, doc, col in conn.execute(f"SELECT term, doc, col FROM temp.{view}"):
        size[doc] = size.get(doc, 0) + 1
        f = freq.setdefault(term, {})
        f[doc] = f.get(doc, 0.0) + weight.get(col, 1.0)
    n_token = sum(size.values())
    avgdl = n_token / n_row if n_row else 1.0
    k1, b = BM25_K1, BM25_B
    terms = {}
    for term, docs in freq.items():
        n_hit = len(docs)
        idf = float(np.log((0.5 + n_row - n_hit) / (0.5 + n_hit)))
        if idf <= 0.0:
            idf = 1e-6
        pos, share = [], []
        for doc, f in docs.items():
            p = pos_of_rowid.get(doc, -1)
            if p < 0:
                continue
            num = f * (k1 + 1.0)
            denom = f + k1 * (1 - b + b * float(size[doc]) / avgdl)
            pos.append(p)
            share.append(idf * num / denom)
        if pos:
            terms[sys.intern(term)] = (np.array(pos, dtype=np.intp),
                                       np.array(share, dtype=np.float64))
    return Bm25Index(terms, len(snap.ids), frozenset("".join(freq)))


def fts_query(toks: list[str]) -> str:
    uniq = list(dict.fromkeys(t for t in toks if t))
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in uniq)


def _z(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x
    sd = float(x.std())
    if sd < 1e-9:
        return np.zeros_like(x)
    return (x - float(x.mean())) / sd


class Retriever:
    """Per-process retriever over one database file; thread-safe."""

    def __init__(self, embedder: Embedder, cache_size: int = 2048):
        self.embedder = embedder
        self._snap: Snapshot | None = None
        self._lock = threading.Lock()
        self._qcache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._qcache_size = cache_size

    def snapshot(self, db: sqlite_utils.Database) -> Snapshot:
        gen = storage.generation(db)
        snap = self._snap
        if snap is None or snap.generation != gen:
            with self._lock:
                snap = self._snap
                if snap is None or snap.generation != gen:
                    snap = load_snapshot(db, self.embedder)
                    if len(snap.ids) <= FAQ_TERMS_EAGER:
                        for fid in snap.ids:
                            self.faq_terms(snap, fid)
                        self.home(snap)
                    self._snap = snap
        return snap

    def lexicon(self, snap: Snapshot) -> KanaLexicon:
        """The FAQ's kana → kanji lexicon (questions and keywords), built once per snapshot."""
        lex = snap.kana_lexicon
        if lex is None:
            with self._lock:
                lex = snap.kana_lexicon
                if lex is None:
                    lex = KanaLexicon((f["question"] + " " + (f["keywords"] or "").replace(";", " ")
                                       for f in snap.faqs.values()), snap.synonyms)
                    snap.kana_lexicon = lex
        return lex

    def home(self, snap: Snapshot) -> tuple:
        """The FAQ's own city (read from its first ``FAQ_TERMS_EAGER`` questions and answers),
        not counted as "another municipality" in a question; once per snapshot."""
        h = snap.home
        if h is None:
            h = home_places(f["question"] + "\n" + (f["answer"] or "")
                            for f in list(snap.faqs.values())[:FAQ_TERMS_EAGER])
            snap.home = h
        return h

    def faq_terms(self, snap: Snapshot, faq_id: str) -> frozenset:
        """The FAQ's lexical terms, tokenised as in the FTS index (question + answer + keywords)."""
        terms = snap.faq_terms.get(faq_id)
        if terms is None:
            f = snap.faqs[faq_id]
            text = " ".join((f["question"], f["answer"] or "",
                             (f["keywords"] or "").replace(";", " ").replace(",", " ")))
            terms = frozenset(sys.intern(t) for t in analyze(text, snap.synonyms).tokens)
            if len(snap.faq_terms) >= FAQ_TERMS_CACHE:  # bounded memory on a large FAQ
                snap.faq_terms.clear()
            snap.faq_terms[faq_id] = terms
        return terms

    def centroids(self, snap: Snapshot) -> np.ndarray:
        """Normalised mean question vector per FAQ category (only FAQs with a vector)."""
        c = snap.category_centroids
        if c is None:
            groups: dict[str, list[int]] = {}
            for i, fid in enumerate(snap.ids):
                if snap.has_vec[i]:
                    groups.setdefault(snap.faqs[fid]["category"] or "", []).append(i)
            rows = []
            for ix in groups.values():
                m = snap.matrix[ix].mean(0)
                n = float(np.linalg.norm(m))
                if n > 0:
                    rows.append(m / n)
            c = np.stack(rows).astype(np.float32) if rows else np.zeros((0, snap.matrix.shape[1]),
                                                                        np.float32)
            snap.category_centroids = c
        return c

    def distinct_index(self, snap: Snapshot) -> tuple[list, dict]:
        """Per FAQ (aligned with ``snap.ids``) the characters of its question + keywords
        (``tokenize.distinct_chars``), and each character's IDF over the FAQ; once per snapshot."""
        idx = snap.distinct
        if idx is None:
            with self._lock:
                idx = snap.distinct
                if idx is None:
                    sets = [distinct_chars(snap.faqs[fid]["question"] + " "
                                           + (snap.faqs[fid]["keywords"] or "").replace(";", " "))
                            for fid in snap.ids]
                    df: dict[str, int] = {}
                    for cs in sets:
                        for c in cs:
                            df[c] = df.get(c, 0) + 1
                    n = len(sets)
                    idf = {c: float(np.log((n + 1) / (k + 0.5))) for c, k in df.items()}
                    idx = (sets, idf, float(np.log((n + 1) / 0.5)))
                    snap.distinct = idx
        return idx[0], idx[1]

    def query_chars(self, snap: Snapshot, norm: str) -> dict:
        """The question's characters (``distinct_chars``) → IDF weight (characters no FAQ has
        weigh most)."""
        _sets, idf = self.distinct_index(snap)
        unknown = snap.distinct[2]
        return {c: idf.get(c, unknown) for c in distinct_chars(norm)}

    def coverage(self, snap: Snapshot, toks: list[str], faq_id: str) -> float:
        """IDF-weighted share of the query's terms that the FAQ's text contains."""
        return term_coverage(toks, self.faq_terms(snap, faq_id), snap.vocab, len(snap.ids))

    def scope_features(self, snap: Snapshot, norm: str, has_dense: bool = True) -> dict:
        """Query-level signals that need the snapshot: the best cosine to a category centroid
        (how close the question is to any FAQ topic area at all) and personal-case wording."""
        cat = 0.0
        if has_dense and snap.has_vec.any():
            c = self.centroids(snap)
            if len(c):
                cat = float((c @ self.query_vector(norm)).max())
        return {"cat_max": cat, "personal_case": 1.0 if PERSONAL_CASE_RE.search(norm) else 0.0}

    def prepare(self, snap: Snapshot, query: str) -> str:
        """Normalised query text, words typed in kana rewritten as the FAQ writes them."""
        norm = normalize(query)
        return self.lexicon(snap).convert(norm) if has_kana_word(norm) else norm

    def query_vector(self, text: str) -> np.ndarray:
        v = self._qcache.get(text)
        if v is not None:
            return v
        v = self.embedder.embed_queries([text])[0]
        with self._lock:
            self._qcache[text] = v
            while len(self._qcache) > self._qcache_size:
                self._qcache.popitem(last=False)
        return v

    def bm25_index(self, db: sqlite_utils.Database, snap: Snapshot, table: str) -> Bm25Index | None:
        """The FTS5 table held in memory for this snapshot (None above
        ``IN_MEMORY_INDEX_MAX_FAQS``: the SQL query then)."""
        if len(snap.ids) > IN_MEMORY_INDEX_MAX_FAQS:
            return None
        idx = snap.bm25.get(table)
        if idx is None:
            with self._lock:
                idx = snap.bm25.get(table)
                if idx is None:
                    w = BM25_WEIGHTS if table == "chat_faq_fts" else KANA_BM25_WEIGHTS
                    idx = snap.bm25[table] = build_bm25_index(db, snap, table, w)
        return idx

    def lexical_scores(self, db: sqlite_utils.Database, snap: Snapshot, toks: list[str],
                       sql: bool = False) -> np.ndarray:
        """BM25 over the FAQ's tokens, from the in-memory index (``sql=True``, or a token the
        index has no character of: FTS5's own query)."""
        terms = [t for t in _prune(list(dict.fromkeys(toks)), snap.vocab, len(snap.ids)) if t]
        if not terms:
            return np.zeros(len(snap.ids), dtype=np.float32)
        idx = None if sql else self.bm25_index(db, snap, "chat_faq_fts")
        # A token made of characters that FAQ terms have is a single FTS5 token (the terms are
        # unicode61's output, case-folded): in memory. Otherwise FTS5 tokenises it (it might
        # split or fold it).
        if idx is not None and all(t in idx.terms or (t.lower() == t and idx.chars.issuperset(t))
                                   for t in terms):
            return idx.scores(terms)
        out = np.zeros(len(snap.ids), dtype=np.float32)
        q = fts_query(terms)
        w = ",".join(str(x) for x in BM25_WEIGHTS)
        rows = db.conn.execute(
            f"SELECT faq_id, bm25(chat_faq_fts, {w}) AS s FROM chat_faq_fts WHERE chat_faq_fts MATCH ?"
            " ORDER BY s LIMIT ?", (q, MAX_LEXICAL_HITS)).fetchall()
        for fid, s in rows:
            i = snap.pos.get(fid)
            if i is not None:
                out[i] = -s  # FTS5 bm25 is "lower is better"
        return out

    def kana_scores(self, db: sqlite_utils.Database, snap: Snapshot, text: str,
                    read: str | None = None, sql: bool = False) -> np.ndarray:
        """BM25 over character trigrams of the hiragana reading (question + keywords), from the
        in-memory index (``sql=True``: FTS5's own query). ``read``: the text's reading with the
        synonyms applied, when the caller has it."""
        out = np.zeros(len(snap.ids), dtype=np.float32)
        if read is None:
            read = reading(text, snap.synonyms)
        grams = _prune(trigrams(read, limit=40), snap.kana_vocab, len(snap.ids))
        if not grams:
            return out
        idx = None if sql else self.bm25_index(db, snap, "chat_faq_kana")
        if idx is not None:  # a reading trigram is one trigram-tokenizer token
            return idx.scores(grams)
        q = " OR ".join('"' + g.replace('"', '""') + '"' for g in grams)
        rows = db.conn.execute(
            "SELECT faq_id, bm25(chat_faq_kana, 0, 2.0, 1.0) AS s FROM chat_faq_kana"
            " WHERE chat_faq_kana MATCH ? ORDER BY s LIMIT ?", (q, MAX_LEXICAL_HITS)).fetchall()
        for fid, sc in rows:
            i = snap.pos.get(fid)
            if i is not None:
                out[i] = -sc
        return out

    def dense_scores(self, snap: Snapshot, text: str, kind: str = "question") -> np.ndarray:
        """Cosine with the FAQs' question vectors (``kind="answer"``: question + answer vectors);
        one query vector serves both."""
        matrix, has = (snap.matrix, snap.has_vec) if kind == "question" else \
            (snap.answer_matrix, snap.has_answer_vec)
        if not len(snap.ids) or matrix is None or not has.any():
            return np.zeros(len(snap.ids), dtype=np.float32)
        q = self.query_vector(text)
        s = matrix @ q
        if not has.all():
            s[~has] = float(s[has].mean())
        return s

    def search(self, db: sqlite_utils.Database, query: str, *, w_lex: float = 0.3,
               w_dense: float = 0.7, w_kana: float = 0.0, w_answer: float = 0.0,
               w_distinct: float = 0.0, k: int = 10, mode: str = "hybrid") -> Result:
        """``mode``: hybrid | lexical | dense. ``w_distinct``: second-stage rerank of the fused top
        ``RERANK_K`` by distinguishing characters (``confidence.rerank_distinct``)."""
        t0 = time.perf_counter()
        snap = self.snapshot(db)
        if not snap.ids:
            return Result([], ms=(time.perf_counter() - t0) * 1000)
        norm = self.prepare(snap, query)
        home = self.home(snap)
        an = analyze(norm, snap.synonyms, home)
        toks = an.tokens
        lex = self.lexical_scores(db, snap, toks) if mode != "dense" else np.zeros(len(snap.ids), np.float32)
        dense = self.dense_scores(snap, norm) if mode != "lexical" else np.zeros(len(snap.ids), np.float32)
        # the reading with the synonyms applied (the kana index) and without (the OOS features)
        # are one Sudachi pass when no synonym occurs in the question (the usual case)
        read = plain_read = None
        if mode == "hybrid" and w_kana:
            read = reading(norm, snap.synonyms)
            nn = normalize(norm)
            if snap.synonyms.apply(nn) == nn:
                plain_read = read
        kana = self.kana_scores(db, snap, norm, read=read) if (mode == "hybrid" and w_kana) else None
        lz, dz = _z(lex), _z(dense)
        kz = _z(kana) if kana is not None else None
        az = _z(self.dense_scores(snap, norm, "answer")) if (mode == "hybrid" and w_answer) else None
        if mode == "lexical":
            fused = lz
        elif mode == "dense":
            fused = dz
        else:
            fused = w_lex * lz + w_dense * dz
            if kz is not None:
                fused = fused + w_kana * kz
            if az is not None:
                fused = fused + w_answer * az
        # Second stage (``w_distinct``): the order of the fused top few only. The decision's
        # signals below still describe the fusion, as in the calibration (``_fused_feats``).
        ranking = fused
        if w_distinct:
            sets, _idf = self.distinct_index(snap)
            ranking = rerank_distinct(fused, self.query_chars(snap, norm), sets.__getitem__,
                                      w_distinct, RERANK_K)
        k = min(k, len(snap.ids))
        if mode == "lexical":
            # only FAQs with a lexical match are candidates for the lexical-only baseline
            order = [i for i in np.argsort(-ranking, kind="stable")[:k] if lex[i] > 0]
        else:
            order = (list(np.argpartition(-ranking, k - 1)[:k]) if k < len(ranking)
                     else list(range(len(ranking))))
            order.sort(key=lambda i: -ranking[i])
        hits = [Hit(snap.ids[i], float(ranking[i]), float(lex[i]), float(dense[i]), float(lz[i]),
                    float(dz[i])) for i in order]
        feats = oos_features(an, snap.vocab, norm, fused, dense, lz, snap.kana_vocab, home,
                             read=plain_read)
        feats.update(fusion_features(fused, lz, dz, kz, az))
        feats.update(self.scope_features(snap, norm, has_dense=mode != "lexical"))
        feats["top_cov"] = self.coverage(snap, toks, snap.ids[int(np.argmax(fused))])
        return Result(hits, top_dense=float(dense.max()) if dense.size else 0.0,
                      top_lex=float(lex.max()) if lex.size else 0.0, n_tokens=len(toks),
                      ms=(time.perf_counter() - t0) * 1000, features=feats)


def term_coverage(toks: list[str], terms, vocab: dict, n_faqs: int) -> float:
    """IDF-weighted share (IDF over the FAQ, unknown terms weigh most) of the query's distinct
    terms found in ``terms``."""
    uniq = list(dict.fromkeys(toks))
    if not uniq:
        return 0.0
    w = [np.log((n_faqs + 1) / (vocab.get(t, 0) + 0.5)) for t in uniq]
    total = float(sum(w))
    return float(sum(wi for t, wi in zip(uniq, w) if t in terms)) / total if total > 0 else 0.0


MOVING_RE = re.compile(r"(引っ?越|引越|転出|転入|転居|住んで|住む|移り|移る)")


def oos_features(an, vocab: set, norm: str, fused: np.ndarray, dense: np.ndarray,
                 lz: np.ndarray, kana_vocab: set | None = None, home: tuple = (),
                 read: str | None = None) -> dict:
    """Query-level signals for "is this question covered by the FAQ at all?". ``home``: the
    FAQ's own city (``Retriever.home``; Niiza when not given). ``read``: ``reading(norm)``,
    when the caller has it."""
    def top2(x):
        if x.size == 0:
            return 0.0, 0.0
        if x.size == 1:
            return float(x[0]), float(x[0])
        a = np.partition(-x, 1)[:2]
        return float(-a[0]), float(-a[1])

    f1, f2 = top2(fused)
    d1, d2 = top2(dense)
    uniq = set(an.tokens)
    nouns = set(an.nouns)
    grams = trigrams(reading(norm) if read is None else read, limit=200)
    kana_cov = (sum(g in kana_vocab for g in grams) / len(grams)) if (grams and kana_vocab) else 0.0
    # another municipality named, unless the question is about moving or also names the FAQ's
    # own city
    other = (an.other_municipality and not any(h in norm for h in (home or ("新座",)))
             and not MOVING_RE.search(norm))
    return {
        "top": f1,
        "margin": f1 - f2,
        "top_dense": d1,
        "dense_margin": d1 - d2,
        "top_lex_z": float(lz.max()) if lz.size else 0.0,
        # no FAQ shares a single term with the question (greetings, chit-chat, 花粉 予報)
        "lex_none": 0.0 if (lz.size and float(lz.max()) > 1e-9) else 1.0,
        "coverage": (sum(t in vocab for t in uniq) / len(uniq)) if uniq else 0.0,
        "noun_cov": (sum(t in vocab for t in nouns) / len(nouns)) if nouns else 1.0,
        "kana_cov": kana_cov,
        "other_municipality": 1.0 if other else 0.0,
        "personal": 1.0 if PERSONAL_RE.search(norm) else 0.0,
        "n_tokens": float(min(len(uniq), 12)),
    }


_retrievers: dict[str, Retriever] = {}
_rlock = threading.Lock()


def get_retriever(db_key: str, embedder: Embedder) -> Retriever:
    key = f"{db_key}|{embedder.name}"
    r = _retrievers.get(key)
    if r is None:
        with _rlock:
            r = _retrievers.get(key)
            if r is None:
                r = Retriever(embedder)
                _retrievers[key] = r
    return r
