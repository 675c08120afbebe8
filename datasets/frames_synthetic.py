"""Synthetic camera frames that show time of day, rain, crowds and vehicles."""

from __future__ import annotations

import numpy as np
import pandas as pd

from datasets.synthetic_clock import local_hour


def render_frames(
    districts, times: pd.DatetimeIndex, hidden: dict, every_hours: int, size: int, rng
) -> tuple[np.ndarray, pd.DataFrame]:
    """Frames from districts with a camera, every ``every_hours`` hours.

    Brightness follows the local hour, rain greys and blurs the picture, people
    are bright dots on the lower half (as many as the crowd factor), vehicles are
    red-and-white blobs on the road band (as many as the traffic factor).

    Returns:
        ``(frames, index)``: uint8 ``(n, size, size, 3)`` and a frame index with
        ``district_id``, ``timestamp`` and ``frame``.
    """
    cameras = np.flatnonzero(districts["has_camera"].to_numpy())
    steps = np.arange(0, len(times), every_hours)
    hours = local_hour(times)
    frames = np.zeros((len(cameras) * len(steps), size, size, 3), dtype=np.uint8)
    rows = []
    road = slice(size // 2 - 2, size // 2 + 1)
    for k, (district, step) in enumerate((d, s) for d in cameras for s in steps):
        light = 0.25 + 0.75 * np.clip(np.sin((hours[step] - 5) / 15 * np.pi), 0, 1)
        wet = min(hidden["rain"][district, step] / 4, 1.0)
        sky = np.array([90, 140, 220]) * (1 - wet) + np.array([120, 120, 130]) * wet
        image = np.empty((size, size, 3))
        image[: size // 2] = sky * light
        image[size // 2 :] = np.array([70, 80, 70]) * light
        image[road] = np.array([60, 60, 65]) * light
        people = rng.poisson(2.5 * hidden["crowd"][district, step])
        rr = rng.integers(size // 2 + 1, size, people)
        cc = rng.integers(0, size, people)
        image[rr, cc] = np.array([255, 230, 200])
        cars = rng.poisson(3 * hidden["traffic"][district, step])
        cc = rng.integers(0, size - 1, cars)
        image[size // 2 - 1, cc] = np.array([220, 30, 30])
        image[size // 2 - 1, cc + 1] = np.array([240, 240, 240])
        image += rng.normal(0, 6 + 20 * wet, image.shape)
        frames[k] = np.clip(image, 0, 255).astype(np.uint8)
        rows.append((district, step, k))
    ids = districts["district_id"].to_numpy()
    index = pd.DataFrame(rows, columns=["district", "step", "frame"])
    images = pd.DataFrame(
        {
            "district_id": ids[index["district"].to_numpy()] if rows else [],
            "timestamp": times[index["step"].to_numpy()]
            if rows
            else pd.DatetimeIndex([], tz="UTC"),
            "frame": index["frame"].to_numpy(),
        }
    )
    return frames, images
