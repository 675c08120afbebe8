"""Report embeddings kept on disk, so a site embeds each report once, not once per process.

In a deployment, Flower starts a fresh ClientApp process for every message, so
the embedder's in-memory cache is empty each round and a site would run MiniLM
over all its reports again every round. The store is one SQLite file per text
model (its name, package version and token limit are in the file name): the
SHA-256 of a text maps to its float32 vector. It is only a cache: a file that
cannot be read or written is warned about once and left as it is, and the
embedder computes what it could not find.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import warnings
from pathlib import Path

import numpy as np

CACHE_DIR_VARIABLE = "KIZASHI_CACHE_DIR"
# SQLite allows 999 bound parameters per statement in older builds.
_LOOKUP_CHUNK = 500


def text_key(text: str) -> bytes:
    """The key of a text in the store: its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def cache_dir_from_environment() -> Path | None:
    """``$KIZASHI_CACHE_DIR`` when set and not empty: where caches live on this machine."""
    value = os.environ.get(CACHE_DIR_VARIABLE, "").strip()
    return Path(value) if value else None


class EmbeddingStore:
    """Vectors of one text model, by text, in a SQLite file.

    Args:
        path: The SQLite file (created, with its folder, on first write).
        dim: Length of every vector; a stored row of another length is ignored.
    """

    def __init__(self, path: Path, dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        self.broken: str | None = None
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Simulated sites share the file across processes: wait for a writer.
            connection = sqlite3.connect(self.path, timeout=60)
            connection.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, vector BLOB NOT NULL)"
            )
            connection.commit()
            self._connection = connection
        return self._connection

    def _give_up(self, error: Exception) -> None:
        self.broken = f"{type(error).__name__}: {error}"
        warnings.warn(
            f"embedding cache {self.path} is not usable ({self.broken}); "
            "embedding without it, and leaving the file as it is",
            RuntimeWarning,
            stacklevel=3,
        )
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def get(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those ``texts`` the store has."""
        if self.broken or not texts or not self.path.exists():
            return {}
        by_key = {text_key(text): text for text in texts}
        keys = list(by_key)
        found: dict[str, np.ndarray] = {}
        try:
            connection = self._connect()
            for begin in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[begin : begin + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = connection.execute(
                    f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk
                )
                for key, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape == (self.dim,) and np.isfinite(vector).all():
                        found[by_key[bytes(key)]] = vector.copy()
        except (sqlite3.Error, OSError) as error:  # OSError: a folder that cannot be made
            self._give_up(error)
            return {}
        return found

    def put(self, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors by text; texts already stored keep their vectors."""
        if self.broken or not vectors:
            return
        rows = [
            (text_key(text), np.ascontiguousarray(vector, dtype=np.float32).tobytes())
            for text, vector in vectors.items()
        ]
        try:
            connection = self._connect()
            with connection:
                connection.executemany(
                    "INSERT OR IGNORE INTO embeddings (key, vector) VALUES (?, ?)", rows
                )
        except (sqlite3.Error, OSError) as error:  # OSError: a folder that cannot be made
            self._give_up(error)
