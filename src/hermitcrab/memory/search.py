"""Searching and keeping the index: a search first re-reads the memory files that changed
(a person's edit a second ago included), then asks FTS5 for the query's words (any of
them: BM25 ranks those that match more, and better), then favours recent notes."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from hermitcrab.memory.files import chunks, day_of, memory_files, read_memory_file

if TYPE_CHECKING:
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
CANDIDATES = 50  # ranked by BM25 first, then re-ranked with recency


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


class Memory:
    def __init__(self, index: MemoryIndex, agent: str, workspace: Path) -> None:
        self.index, self.agent, self.workspace = index, agent, workspace

    def sync(self) -> int:
        """Re-read what changed since it was indexed; forget what is gone. Returns the
        number of files read."""
        now = memory_files(self.workspace)
        known = self.index.stamps(self.agent)
        read = 0
        for path, stamp in now.items():
            if known.get(path) != stamp:
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
        self.index.replace(self.agent, path, stamp, chunks(text))

    def reindex(self) -> int:
        for path in self.index.stamps(self.agent):
            self.index.forget(self.agent, path)
        return self.sync()

    def search(self, query: str, limit: int = 5, today: date | None = None) -> list[MemoryHit]:
        self.sync()
        match = fts_query(query)
        if match is None:
            return []
        today = today or date.fromtimestamp(time.time())
        hits = []
        for hit in self.index.search(self.agent, match, CANDIDATES):
            relevance = -hit.bm25  # FTS5 ranks lower-is-better
            hits.append(
                MemoryHit(hit.path, hit.line, hit.text, hit.heading, relevance * self._boost(hit.path, today))
            )
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:limit]

    def _boost(self, path: str, today: date) -> float:
        day = day_of(path)
        if day is None:
            return 1.0 + RECENCY_WEIGHT  # MEMORY.md: what the agent keeps, always current
        try:
            age = max((today - date(*day)).days, 0)
        except ValueError:
            return 1.0
        return 1.0 + RECENCY_WEIGHT * math.exp(-age / RECENCY_DAYS)
