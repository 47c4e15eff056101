"""Searching and keeping the index: a search first re-reads the memory files that changed
(a person's edit a second ago included), then asks FTS5 for the query's words (any of
them: BM25 ranks those that match more, and better) and, where the embedding model is
installed, compares the query's vector with every line's; the two scores are blended and
recent notes favoured."""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermitcrab.memory import embeddings
from hermitcrab.memory.files import chunks, day_of, memory_files, read_memory_file
from hermitcrab.store.memory_index import Chunk, Vectors

if TYPE_CHECKING:
    from hermitcrab.memory.embeddings import MiniLM
    from hermitcrab.store.memory_index import MemoryIndex

WORD = re.compile(r"\w+", re.UNICODE)
# Asked in plain words ("what is the boat called"), these carry nothing to match on.
# fmt: off
STOP_WORDS = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do",
    "does", "for", "from", "had", "has", "have", "he", "her", "his", "how", "i", "if", "in",
    "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "she", "so", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "to", "up", "us", "was",
    "we", "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would",
    "you", "your", "about", "any", "some",
])
# fmt: on
RECENCY_DAYS = 30.0  # a note this old counts about a third as much extra as today's
RECENCY_WEIGHT = 0.3
CANDIDATES = 50  # from each ranking, then blended and re-ranked with recency
# The blend, as OpenClaw weighs its hybrid search: meaning first, exact words second.
VECTOR_WEIGHT, TEXT_WEIGHT = 0.7, 0.3
# A line no query word matches must be at least this close in meaning to be shown: below
# it, all-MiniLM-L6-v2 finds "related" in anything.
MIN_COSINE = 0.3
AUTO: Any = object()


@dataclass(frozen=True)
class MemoryHit:
    path: str
    line: int
    text: str
    heading: str
    score: float

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def fts_query(text: str) -> str | None:
    """Any of the words, each quoted (nothing of FTS5's syntax gets through), stop words
    dropped unless nothing else is left."""
    words = [w.lower() for w in WORD.findall(text)]
    kept = [w for w in words if w not in STOP_WORDS] or words
    unique = list(dict.fromkeys(kept))[:32]
    return " OR ".join(f'"{w}"' for w in unique) if unique else None


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class Memory:
    def __init__(
        self, index: MemoryIndex, agent: str, workspace: Path, embedder: MiniLM | None = AUTO
    ) -> None:
        """`embedder`: the model that makes vectors; by default the installed one, if any;
        None: BM25 alone."""
        self.index, self.agent, self.workspace = index, agent, workspace
        self._embedder = embedder

    @property
    def embedder(self) -> MiniLM | None:
        if self._embedder is AUTO:
            self._embedder = embeddings.embedder()
        return self._embedder

    @property
    def model(self) -> str:
        """The model behind this index's vectors, '' for none."""
        return embeddings.MODEL_NAME if self.embedder is not None else ""

    def sync(self) -> int:
        """Re-read what changed since it was indexed (or was indexed by another model);
        forget what is gone. Returns the number of files read."""
        now = memory_files(self.workspace)
        known = self.index.stamps(self.agent)
        read = 0
        for path, stamp in now.items():
            if known.get(path) != (stamp, self.model):
                self.index_file(path, stamp)
                read += 1
        for path in known.keys() - now.keys():
            self.index.forget(self.agent, path)
        return read

    def index_file(self, path: str, stamp: tuple[int, int] | None = None) -> None:
        text = read_memory_file(self.workspace, path)
        if text is None:
            self.index.forget(self.agent, path)
            return
        if stamp is None:
            stamp = memory_files(self.workspace).get(path, (0, 0))
        lines = chunks(text)
        self.index.replace(self.agent, path, stamp, lines, self._vectors(lines))

    def _vectors(self, lines: list[Chunk]) -> Vectors | None:
        """A vector a line: those of texts seen before are reused, the rest embedded."""
        model = self.embedder
        if model is None:
            return None
        texts = [c.text for c in lines]
        digests = [digest(t) for t in texts]
        known = self.index.known_vectors(self.agent, list(set(digests)))
        missing = list(dict.fromkeys(t for t, d in zip(texts, digests, strict=True) if d not in known))
        if missing:
            for text, vector in zip(missing, model.encode(missing), strict=True):
                known[digest(text)] = embeddings.as_blob(vector)
        return Vectors(self.model, {c.line: (d, known[d]) for c, d in zip(lines, digests, strict=True)})

    def reindex(self) -> int:
        for path in self.index.stamps(self.agent):
            self.index.forget(self.agent, path)
        return self.sync()

    def search(self, query: str, limit: int = 5, today: date | None = None) -> list[MemoryHit]:
        self.sync()
        today = today or date.fromtimestamp(time.time())
        match = fts_query(query)
        found = self.index.search(self.agent, match, CANDIDATES) if match else []
        if self.embedder is None:
            hits = [MemoryHit(h.path, h.line, h.text, h.heading, -h.bm25) for h in found]
        else:
            hits = self._blend(query, found)
        hits = [
            MemoryHit(h.path, h.line, h.text, h.heading, h.score * self._boost(h.path, today)) for h in hits
        ]
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:limit]

    def _blend(self, query: str, found: list[Any]) -> list[MemoryHit]:
        """BM25 (scaled to the best match's) and cosine similarity, weighed together."""
        matrix = self._matrix()
        closeness = matrix.closeness(self._query_vector(query))
        best = max((-h.bm25 for h in found), default=0.0) or 1.0
        text_score = {(h.path, h.line): -h.bm25 / best for h in found}
        shown = {(h.path, h.line): (h.heading, h.text) for h in found}
        for row in matrix.top(closeness, CANDIDATES):
            if closeness[row] >= MIN_COSINE:
                path, line, heading, text = matrix.rows[row]
                shown.setdefault((path, line), (heading, text))
        hits = []
        for key, (heading, text) in shown.items():
            row = matrix.row_of.get(key)
            cosine = max(float(closeness[row]), 0.0) if row is not None else 0.0
            score = VECTOR_WEIGHT * cosine + TEXT_WEIGHT * text_score.get(key, 0.0)
            hits.append(MemoryHit(key[0], key[1], text, heading, score))
        return hits

    def _matrix(self) -> _Matrix:
        """Every line's vector as one matrix, built again only when the index changed."""
        version = self.index.version()
        cached = self.index.derived.get(f"vectors:{self.agent}")
        if cached is None or cached.version != version:
            cached = _Matrix(version, self.index.all_vectors(self.agent))
            self.index.derived[f"vectors:{self.agent}"] = cached
        return cached

    def _query_vector(self, query: str) -> Any:
        with _QUERY_LOCK:
            vector = _QUERIES.get(query)
            if vector is not None:
                _QUERIES.move_to_end(query)
                return vector
        model = self.embedder
        assert model is not None
        vector = model.encode([query])[0]
        with _QUERY_LOCK:
            _QUERIES[query] = vector
            while len(_QUERIES) > 256:
                _QUERIES.popitem(last=False)
        return vector

    def _boost(self, path: str, today: date) -> float:
        day = day_of(path)
        if day is None:
            return 1.0 + RECENCY_WEIGHT  # MEMORY.md: what the agent keeps, always current
        try:
            age = max((today - date(*day)).days, 0)
        except ValueError:
            return 1.0
        return 1.0 + RECENCY_WEIGHT * math.exp(-age / RECENCY_DAYS)


# A person asks the same thing again; the agent often does.
_QUERIES: OrderedDict[str, Any] = OrderedDict()
_QUERY_LOCK = threading.Lock()


def forget_queries() -> None:
    """Empty the cache of query vectors (a benchmark times a question asked the first time)."""
    with _QUERY_LOCK:
        _QUERIES.clear()


class _Matrix:
    def __init__(self, version: tuple[int, int], rows: list[tuple[str, int, str, str, bytes]]) -> None:
        import numpy as np

        self.version = version
        self.rows = [(path, line, heading, text) for path, line, heading, text, _ in rows]
        self.row_of = {(path, line): n for n, (path, line, _, _) in enumerate(self.rows)}
        blob = b"".join(r[4] for r in rows)
        width = len(rows[0][4]) // 2 if rows else 0
        self.vectors = np.frombuffer(blob, dtype=np.float16).reshape(len(rows), width).astype(np.float32)

    def closeness(self, query: Any) -> Any:
        """Cosine similarity to each row (the vectors are unit length)."""
        return self.vectors @ query if len(self.rows) else query[:0]

    def top(self, closeness: Any, count: int) -> list[int]:
        import numpy as np

        if len(closeness) <= count:
            return list(range(len(closeness)))
        best = np.argpartition(-closeness, count)[:count]
        return [int(i) for i in best]
