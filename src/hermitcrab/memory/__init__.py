"""Long-term memory: Markdown files in the workspace are the truth (MEMORY.md, and daily
notes memory/YYYY-MM-DD.md); an index in the store finds lines in them by BM25, with a
boost for what is recent. Searched and written through the memory tools and
`hermitcrab memory search|reindex`."""

from hermitcrab.memory.search import Memory, MemoryHit

__all__ = ["Memory", "MemoryHit"]
