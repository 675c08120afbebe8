"""Synthetic camera frames that show time of day, rain, crowds and vehicles."""

from __future__ import annotations

import numpy as np
import pandas as pd

from datasets.synthetic_clock import local_hour

CHUNK = 4096  # frames rendered at once: bounds memory for big cities
SKY, WET_SKY = np.array([90, 140, 220]), np.array([120, 120, 130])
GROUND, ROAD = np.array([70, 80, 70]), np.array([60, 60, 65])
LANTERN = np.array([255, 190, 40])
PERSON, CAR_FRONT, CAR_BACK = (
    np.array([255, 230, 200]),
    np.array([220, 30, 30]),
    np.array([240] * 3),
)


def render_frames(
    districts, times: pd.DatetimeIndex, hidden: dict, every_hours: int, size: int, rng
) -> tuple[np.ndarray, pd.DataFrame]:
    """Frames from districts with a camera, every ``every_hours`` hours.

    Brightness follows the local hour, rain greys the sky and adds noise, people
    are bright dots on the lower half (as many as the crowd factor), vehicles are
    red-and-white blobs on the road (as many as the traffic factor), and on a
    festival day a string of lanterns hangs over the stalls from the morning on.

    Returns:
        ``(frames, index)``: uint8 ``(n, size, size, 3)`` and a frame index with
        ``district_id``, ``timestamp`` and ``frame``.
    """
    cameras = np.flatnonzero(districts["has_camera"].to_numpy())
    steps = np.arange(0, len(times), every_hours)
    district = np.repeat(cameras, len(steps))
    step = np.tile(steps, len(cameras))
    frames = np.zeros((len(district), size, size, 3), dtype=np.uint8)
    hours = local_hour(times)
    for begin in range(0, len(district), CHUNK):
        chunk = slice(begin, begin + CHUNK)
        frames[chunk] = _render_chunk(district[chunk], step[chunk], hours, hidden, size, rng)
    images = pd.DataFrame(
        {
            "district_id": districts["district_id"].to_numpy()[district],
            "timestamp": times[step],
            "frame": np.arange(len(district)),
        }
    )
    return frames, images


def _render_chunk(district, step, hours, hidden, size: int, rng) -> np.ndarray:
    n, half = len(district), size // 2
    light = (0.25 + 0.75 * np.clip(np.sin((hours[step] - 5) / 15 * np.pi), 0, 1))[:, None]
    wet = np.minimum(hidden["rain"][district, step] / 4, 1.0)[:, None]
    image = np.empty((n, size, size, 3), dtype=np.float32)
    image[:, :half] = ((SKY * (1 - wet) + WET_SKY * wet) * light)[:, None, None, :]
    image[:, half:] = (GROUND * light)[:, None, None, :]
    image[:, half - 2 : half + 1] = (ROAD * light)[:, None, None, :]
    festive = hidden["preparing"][district, step] > 0
    lanterns = rng.random((n, size)) < 0.5
    row = half - 4
    image[:, row][festive[:, None] & lanterns] = LANTERN
    people = rng.poisson(6 * hidden["crowd"][district, step])
    owner = np.repeat(np.arange(n), people)
    image[owner, rng.integers(half + 1, size, len(owner)), rng.integers(0, size, len(owner))] = (
        PERSON
    )
    cars = rng.poisson(3 * hidden["traffic"][district, step])
    owner = np.repeat(np.arange(n), cars)
    column = rng.integers(0, size - 1, len(owner))
    image[owner, half - 1, column] = CAR_FRONT
    image[owner, half - 1, column + 1] = CAR_BACK
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    image += noise * (6 + 20 * wet)[:, :, None, None]
    return np.clip(image, 0, 255).astype(np.uint8)
