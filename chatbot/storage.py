"""Chatbot tables (prefix ``chat_``) and the transactional FAQ / index writes.

The lexical index is an FTS5 table over pre-tokenised text (see ``chatbot.tokenize``) living in the
same SQLite file, so an FAQ edit, its index row, its stored vector and its history entry commit or
roll back together. ``chat_state.generation`` is bumped by every such write; readers in any
process compare it to reload their in-memory index.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import asdict, dataclass, fields
from typing import Iterable, Iterator

import numpy as np
import sqlite_utils

from shared.db import Migration, now_iso

from .tokenize import Synonyms, reading, token_text

FAQ_FIELDS = ("faq_id", "category", "question", "answer", "department", "contact", "url",
              "keywords", "updated_at")


def _m1(db: sqlite_utils.Database) -> None:
    c = db.conn
    c.execute(
        """CREATE TABLE chat_faq (
            faq_id TEXT PRIMARY KEY,
            category TEXT NOT NULL DEFAULT '',
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            department TEXT NOT NULL DEFAULT '',
            contact TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL DEFAULT '',
            keywords TEXT NOT NULL DEFAULT '',
            updated_at TEXT NOT NULL DEFAULT '',
            is_sample INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL DEFAULT 1,
            changed_at TEXT NOT NULL
        )""")
    c.execute("CREATE INDEX chat_faq_category ON chat_faq(category)")
    c.execute(
        """CREATE TABLE chat_faq_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            faq_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            action TEXT NOT NULL,          -- create | update | delete | import | replace
            data TEXT NOT NULL,            -- JSON of the FAQ after the change (before, for delete)
            actor TEXT NOT NULL DEFAULT '',
            at TEXT NOT NULL
        )""")
    c.execute("CREATE INDEX chat_faq_history_faq ON chat_faq_history(faq_id, id)")
    c.execute(
        """CREATE TABLE chat_synonym (
            term TEXT PRIMARY KEY,
            synonyms TEXT NOT NULL DEFAULT '',
            updated_at TEXT NOT NULL
        )""")
    c.execute(
        """CREATE TABLE chat_faq_vector (
            faq_id TEXT PRIMARY KEY REFERENCES chat_faq(faq_id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            text_hash TEXT NOT NULL,
            vector BLOB NOT NULL
        )""")
    c.execute(
        "CREATE VIRTUAL TABLE chat_faq_fts USING fts5("
        " faq_id UNINDEXED, question, answer, keywords,"
        " tokenize = 'unicode61 remove_diacritics 0')")
    c.execute(
        """CREATE TABLE chat_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            session_id TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL,          -- masked (phones, e-mails, 12-digit numbers)
            kind TEXT NOT NULL,             -- answer | suggest | out_of_scope
            faq_id TEXT,                    -- the FAQ answered directly, if any
            top_faq_id TEXT,
            confidence REAL NOT NULL DEFAULT 0,
            candidates TEXT NOT NULL DEFAULT '[]',
            latency_ms REAL NOT NULL DEFAULT 0,
            channel TEXT NOT NULL DEFAULT 'web'
        )""")
    c.execute("CREATE INDEX chat_log_at ON chat_log(at)")
    c.execute("CREATE INDEX chat_log_session ON chat_log(session_id)")
    c.execute(
        """CREATE TABLE chat_feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            session_id TEXT NOT NULL DEFAULT '',
            log_id INTEGER,
            faq_id TEXT NOT NULL DEFAULT '',
            helpful INTEGER NOT NULL
        )""")
    c.execute("CREATE INDEX chat_feedback_faq ON chat_feedback(faq_id)")
    c.execute(
        """CREATE TABLE chat_calibration (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            data TEXT NOT NULL
        )""")
    c.execute("CREATE TABLE chat_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    c.execute("INSERT INTO chat_state VALUES ('generation', '0')")


def _m2(db: sqlite_utils.Database) -> None:
    # term → number of FAQs containing it (read-only view over the FTS index)
    db.conn.execute("CREATE VIRTUAL TABLE chat_faq_vocab USING fts5vocab(chat_faq_fts, 'row')")


def _m5(db: sqlite_utils.Database) -> None:
    # second vector per FAQ (question + keywords + answer); filled by `faq reindex` / FAQ writes
    db.conn.execute(
        """CREATE TABLE chat_faq_answer_vector (
            faq_id TEXT PRIMARY KEY REFERENCES chat_faq(faq_id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            text_hash TEXT NOT NULL,
            vector BLOB NOT NULL
        )""")


# vector kind → table: "question" = question + keywords, "answer" = question + keywords + answer
VECTOR_TABLES = {"question": "chat_faq_vector", "answer": "chat_faq_answer_vector"}


MIGRATIONS: list[Migration] = [
    Migration(service="chat", version=1, name="faq, index, vectors, log, feedback, calibration",
              apply=_m1),
    Migration(service="chat", version=2, name="fts vocabulary view", apply=_m2),
    Migration(service="chat", version=3, name="kana reading trigram index", apply=lambda db: _m3(db)),
    Migration(service="chat", version=4, name="kana trigram vocabulary view",
              apply=lambda db: db.conn.execute(
                  "CREATE VIRTUAL TABLE chat_faq_kana_vocab USING fts5vocab(chat_faq_kana, 'row')")),
    Migration(service="chat", version=5, name="answer-text vectors", apply=_m5),
]


def _m3(db: sqlite_utils.Database) -> None:
    c = db.conn
    c.execute("CREATE VIRTUAL TABLE chat_faq_kana USING fts5(faq_id UNINDEXED, question, keywords,"
              " tokenize = 'trigram')")
    syn = Synonyms.from_rows(c.execute("SELECT term, synonyms FROM chat_synonym").fetchall())
    for fid, q, k in c.execute("SELECT faq_id, question, keywords FROM chat_faq").fetchall():
        _kana_insert(c, fid, q, k, syn)


@dataclass
class Faq:
    faq_id: str
    question: str
    answer: str
    category: str = ""
    department: str = ""
    contact: str = ""
    url: str = ""
    keywords: str = ""
    updated_at: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, row) -> "Faq":
        return cls(**{f.name: (row[f.name] if row[f.name] is not None else "") for f in fields(cls)})

    def embed_text(self) -> str:
        """The text whose vector represents this FAQ for dense retrieval."""
        kw = f" {self.keywords}" if self.keywords else ""
        return f"{self.question}{kw}"

    def answer_embed_text(self) -> str:
        """Question, keywords and answer: the second stored vector, which lets a question meet an
        FAQ whose answer (not its question) covers what was asked (「住民票ってコンビニで取れる？」
        → 「コンビニで取れる証明書の種類…」, whose answer lists 住民票の写し)."""
        return f"{self.embed_text()}\n{self.answer}"


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE chat_state SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")


def vocabulary(db: sqlite_utils.Database) -> dict[str, int]:
    """term → number of FAQs containing it."""
    return {r[0]: r[1] for r in db.conn.execute("SELECT term, doc FROM chat_faq_vocab")}


def kana_vocabulary(db: sqlite_utils.Database) -> dict[str, int]:
    return {r[0]: r[1] for r in db.conn.execute("SELECT term, doc FROM chat_faq_kana_vocab")}


def generation(db: sqlite_utils.Database) -> int:
    row = db.conn.execute("SELECT value FROM chat_state WHERE key='generation'").fetchone()
    return int(row[0]) if row else 0


# --- synonyms --------------------------------------------------------------------------------


def load_synonyms(db: sqlite_utils.Database) -> Synonyms:
    rows = db.conn.execute("SELECT term, synonyms FROM chat_synonym ORDER BY term").fetchall()
    return Synonyms.from_rows(rows)


def list_synonyms(db: sqlite_utils.Database) -> list[dict]:
    return [{"term": r[0], "synonyms": [s for s in r[1].split(";") if s], "updated_at": r[2]}
            for r in db.conn.execute(
                "SELECT term, synonyms, updated_at FROM chat_synonym ORDER BY term").fetchall()]


def _reindex_all(conn: sqlite3.Connection, syn: Synonyms) -> None:
    _fts_delete(conn)
    rows = conn.execute("SELECT faq_id, question, answer, keywords FROM chat_faq").fetchall()
    for r in rows:
        _fts_insert(conn, r[0], r[1], r[2], r[3], syn)


def set_synonyms(db: sqlite_utils.Database, rows: Iterable[tuple[str, Iterable[str]]],
                 *, replace: bool = False, delete_terms: Iterable[str] = ()) -> int:
    """Upsert (term, variants) rows (or replace the table) and re-tokenise the index, atomically."""
    now = now_iso()
    with transaction(db) as conn:
        if replace:
            conn.execute("DELETE FROM chat_synonym")
        for t in delete_terms:
            conn.execute("DELETE FROM chat_synonym WHERE term = ?", (t,))
        n = 0
        for term, variants in rows:
            term = (term or "").strip()
            vs = [v.strip() for v in variants if v and v.strip() and v.strip() != term]
            if not term:
                continue
            conn.execute(
                "INSERT INTO chat_synonym (term, synonyms, updated_at) VALUES (?,?,?)"
                " ON CONFLICT(term) DO UPDATE SET synonyms=excluded.synonyms,"
                " updated_at=excluded.updated_at", (term, ";".join(dict.fromkeys(vs)), now))
            n += 1
        syn = Synonyms.from_rows(conn.execute("SELECT term, synonyms FROM chat_synonym").fetchall())
        _reindex_all(conn, syn)
        _bump(conn)
    return n


# --- FAQ writes ------------------------------------------------------------------------------


def _kana_insert(conn, faq_id, question, keywords, syn: Synonyms) -> None:
    conn.execute("INSERT INTO chat_faq_kana (faq_id, question, keywords) VALUES (?,?,?)",
                 (faq_id, reading(question, syn),
                  " ".join(reading(k, syn) for k in (keywords or "").replace(",", ";").split(";"))))


def _fts_delete(conn, faq_id: str | None = None) -> None:
    for t in ("chat_faq_fts", "chat_faq_kana"):
        if faq_id is None:
            conn.execute(f"DELETE FROM {t}")
        else:
            conn.execute(f"DELETE FROM {t} WHERE faq_id = ?", (faq_id,))


def _fts_insert(conn, faq_id, question, answer, keywords, syn: Synonyms) -> None:
    _kana_insert(conn, faq_id, question, keywords, syn)
    conn.execute(
        "INSERT INTO chat_faq_fts (faq_id, question, answer, keywords) VALUES (?,?,?,?)",
        (faq_id, token_text(question, syn), token_text(answer, syn),
         token_text((keywords or "").replace(";", " ").replace(",", " "), syn)))


def _write_vector(conn, faq_id: str, vec: np.ndarray | None, model: str, text_hash: str,
                  kind: str = "question") -> None:
    table = VECTOR_TABLES[kind]
    conn.execute(f"DELETE FROM {table} WHERE faq_id = ?", (faq_id,))
    if vec is not None:
        v = np.asarray(vec, dtype=np.float32)
        conn.execute(
            f"INSERT INTO {table} (faq_id, model, dim, text_hash, vector) VALUES (?,?,?,?,?)",
            (faq_id, model, int(v.shape[0]), text_hash, v.tobytes()))


def _history(conn, faq: dict, version: int, action: str, actor: str, at: str) -> None:
    conn.execute(
        "INSERT INTO chat_faq_history (faq_id, version, action, data, actor, at) VALUES (?,?,?,?,?,?)",
        (faq["faq_id"], version, action, json.dumps(faq, ensure_ascii=False), actor, at))


def get_faq(db: sqlite_utils.Database, faq_id: str) -> dict | None:
    cur = db.conn.execute("SELECT * FROM chat_faq WHERE faq_id = ?", (faq_id,))
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row))


def list_faqs(db: sqlite_utils.Database) -> list[dict]:
    cur = db.conn.execute("SELECT * FROM chat_faq ORDER BY category, faq_id")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def count_faqs(db: sqlite_utils.Database) -> int:
    return db.conn.execute("SELECT count(*) FROM chat_faq").fetchone()[0]


def write_faqs(db: sqlite_utils.Database, faqs: list[Faq], *, vectors: dict[str, np.ndarray] | None,
               model: str, actor: str = "", action: str = "import", replace: bool = False,
               is_sample: bool = False, hashes: dict[str, str] | None = None,
               answer_vectors: dict[str, np.ndarray] | None = None,
               answer_hashes: dict[str, str] | None = None) -> dict:
    """Insert or update FAQs (or replace the whole FAQ) with index, vectors and history, in one
    transaction. ``vectors`` / ``answer_vectors`` map faq_id → vector (question, and question +
    answer) for the FAQs whose text changed (computed by the caller before the transaction, since
    embedding is slow)."""
    now = now_iso()
    vectors = vectors or {}
    hashes = hashes or {}
    answer_vectors = answer_vectors or {}
    answer_hashes = answer_hashes or {}
    created = updated = deleted = 0
    with transaction(db) as conn:
        syn = Synonyms.from_rows(conn.execute("SELECT term, synonyms FROM chat_synonym").fetchall())
        if replace:
            old = conn.execute("SELECT * FROM chat_faq").fetchall()
            cols = [d[0] for d in conn.execute("SELECT * FROM chat_faq LIMIT 0").description]
            keep = {f.faq_id for f in faqs}
            for r in old:
                d = dict(zip(cols, r))
                if d["faq_id"] not in keep:
                    _history(conn, {k: d[k] for k in FAQ_FIELDS}, d["version"] + 1, "delete", actor, now)
                    deleted += 1
            _fts_delete(conn)
            for table in VECTOR_TABLES.values():
                conn.execute(f"DELETE FROM {table} WHERE faq_id NOT IN (%s)" %
                             ",".join("?" * len(keep)) if keep else f"DELETE FROM {table}",
                             tuple(keep))
            conn.execute("DELETE FROM chat_faq WHERE faq_id NOT IN (%s)" %
                         ",".join("?" * len(keep)) if keep else "DELETE FROM chat_faq", tuple(keep))
        for f in faqs:
            d = f.to_dict()
            if not d["updated_at"]:
                d["updated_at"] = now[:10]
            row = conn.execute("SELECT version FROM chat_faq WHERE faq_id = ?", (f.faq_id,)).fetchone()
            if row is None:
                version = 1
                conn.execute(
                    "INSERT INTO chat_faq (faq_id, category, question, answer, department, contact,"
                    " url, keywords, updated_at, is_sample, version, changed_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (d["faq_id"], d["category"], d["question"], d["answer"], d["department"],
                     d["contact"], d["url"], d["keywords"], d["updated_at"], int(is_sample),
                     version, now))
                created += 1
                hist_action = "create" if action == "edit" else action
            else:
                version = row[0] + 1
                conn.execute(
                    "UPDATE chat_faq SET category=?, question=?, answer=?, department=?, contact=?,"
                    " url=?, keywords=?, updated_at=?, is_sample=?, version=?, changed_at=?"
                    " WHERE faq_id=?",
                    (d["category"], d["question"], d["answer"], d["department"], d["contact"],
                     d["url"], d["keywords"], d["updated_at"], int(is_sample), version, now,
                     d["faq_id"]))
                _fts_delete(conn, f.faq_id)
                updated += 1
                hist_action = "update" if action == "edit" else action
            _fts_insert(conn, f.faq_id, d["question"], d["answer"], d["keywords"], syn)
            if f.faq_id in vectors:
                _write_vector(conn, f.faq_id, vectors[f.faq_id], model, hashes.get(f.faq_id, ""))
            if f.faq_id in answer_vectors:
                _write_vector(conn, f.faq_id, answer_vectors[f.faq_id], model,
                              answer_hashes.get(f.faq_id, ""), kind="answer")
            _history(conn, d, version, hist_action, actor, now)
        if replace:
            # rows kept across a replace were re-inserted into FTS above; nothing else to do
            pass
        _bump(conn)
    return {"created": created, "updated": updated, "deleted": deleted}


def delete_faq(db: sqlite_utils.Database, faq_id: str, actor: str = "") -> bool:
    now = now_iso()
    with transaction(db) as conn:
        cur = conn.execute("SELECT * FROM chat_faq WHERE faq_id = ?", (faq_id,))
        row = cur.fetchone()
        if row is None:
            return False
        d = dict(zip([x[0] for x in cur.description], row))
        _history(conn, {k: d[k] for k in FAQ_FIELDS}, d["version"] + 1, "delete", actor, now)
        _fts_delete(conn, faq_id)
        for table in VECTOR_TABLES.values():
            conn.execute(f"DELETE FROM {table} WHERE faq_id = ?", (faq_id,))
        conn.execute("DELETE FROM chat_faq WHERE faq_id = ?", (faq_id,))
        _bump(conn)
    return True


def faq_history(db: sqlite_utils.Database, faq_id: str) -> list[dict]:
    rows = db.conn.execute(
        "SELECT id, version, action, data, actor, at FROM chat_faq_history WHERE faq_id = ?"
        " ORDER BY id", (faq_id,)).fetchall()
    return [{"id": r[0], "version": r[1], "action": r[2], "data": json.loads(r[3]),
             "actor": r[4], "at": r[5]} for r in rows]


def stored_vectors(db: sqlite_utils.Database, model: str,
                   kind: str = "question") -> dict[str, tuple[str, np.ndarray]]:
    """faq_id → (text_hash, vector) for vectors of ``kind`` made by ``model``."""
    out = {}
    for fid, th, blob in db.conn.execute(
            f"SELECT faq_id, text_hash, vector FROM {VECTOR_TABLES[kind]} WHERE model = ?", (model,)):
        out[fid] = (th, np.frombuffer(blob, dtype=np.float32))
    return out


def store_vectors(db: sqlite_utils.Database, vectors: dict[str, np.ndarray], model: str,
                  hashes: dict[str, str], kind: str = "question") -> None:
    with transaction(db) as conn:
        for fid, v in vectors.items():
            if conn.execute("SELECT 1 FROM chat_faq WHERE faq_id=?", (fid,)).fetchone():
                _write_vector(conn, fid, v, model, hashes.get(fid, ""), kind=kind)
        _bump(conn)


# --- calibration -----------------------------------------------------------------------------


def save_calibration(db: sqlite_utils.Database, data: dict, source: str = "") -> None:
    with transaction(db) as conn:
        conn.execute("INSERT INTO chat_calibration (at, source, data) VALUES (?,?,?)",
                     (now_iso(), source, json.dumps(data, ensure_ascii=False)))
        _bump(conn)


def latest_calibration(db: sqlite_utils.Database) -> dict | None:
    row = db.conn.execute("SELECT data FROM chat_calibration ORDER BY id DESC LIMIT 1").fetchone()
    return json.loads(row[0]) if row else None
