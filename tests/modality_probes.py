"""Linear probes that ask what each modality of a synthetic city can see.

Used by the signal tests: a probe per modality is trained on the early windows
and scored (AUROC) on the late ones, against a hidden factor from the oracle.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from datasets import static_features

_HASHER = HashingVectorizer(n_features=64, alternate_sign=False, norm=None)


def hashed_words(texts: list[str]) -> np.ndarray:
    """A bag-of-words embedding: enough for a probe, no model needed."""
    return _HASHER.transform(texts).toarray().astype(np.float32).reshape(len(texts), -1)


def modality_features(samples, city) -> dict[str, np.ndarray]:
    """One flat feature matrix per modality, for every sample."""
    series = np.where(samples.series_mask, samples.series, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sensor = np.concatenate(
                [np.nanmean(series, 1), np.nanmax(series, 1), series[:, -1]], axis=1
            )
    sensor = np.nan_to_num(sensor)
    frames = samples.frames[np.maximum(samples.frame_index, 0)].astype(np.float32) / 255
    size = frames.shape[1] // 4
    pooled = frames.reshape(len(frames), 4, size, 4, size, 3).mean((2, 4)).reshape(len(frames), -1)
    bright = (frames.min(-1) > 0.75).mean((1, 2))[:, None]  # people and cars are bright dots
    image = np.concatenate([pooled, bright], 1) * (samples.frame_index >= 0)[:, None]
    pooled_text = samples.pooled_text()
    text = np.log1p(pooled_text) if pooled_text.min() >= 0 else pooled_text
    static = static_features(city)[samples.district]
    return {"image": image, "text": text, "sensor": sensor, "static": static}


def probe_auroc(features: np.ndarray, labels: np.ndarray, train: np.ndarray) -> float:
    """AUROC on the non-train samples of a logistic probe fit on ``train``."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    model.fit(features[train], labels[train])
    test = ~train
    return float(roc_auc_score(labels[test], model.predict_proba(features[test])[:, 1]))
