"""Camera frames from a folder of images plus an index CSV, decoded with Pillow.

The index lists one image per row: ``district_id, timestamp, file`` (``file``
relative to the folder). Each image is converted to RGB, centre-cropped to a
square and resized to ``frame_size`` pixels, so frames of any camera stack into
the ``frames`` array of a City; row ``i`` of the index becomes frame ``i``.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from datasets.errors import CityNotFoundError, RecordsFileError, UnreadableImageError
from datasets.io.formats import IMAGE_FORMATS, resolve_format
from datasets.io.tables import RECORD_ERRORS, parse_timestamps, read_csv, require_values
from datasets.io.truncation import binary_truncation
from datasets.schema import check_known_districts, validate_frames, validate_records

INDEX_COLUMNS = ("district_id", "timestamp", "file")
IMAGE_COLUMNS = ["district_id", "timestamp", "frame"]
DEFAULT_FRAME_SIZE = 16


def read_images(
    folder: str | Path,
    index: str | Path | None = None,
    district_ids: Collection[str] | None = None,
    frame_size: int = DEFAULT_FRAME_SIZE,
    format: str | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Decode the images a folder's index lists into frames and a frame index.

    Args:
        folder: The folder of PNG/JPEG (any format Pillow reads) images.
        index: The index CSV; ``folder / "index.csv"`` by default.
        district_ids: The known districts; None skips that check.
        frame_size: Side of the square frames in pixels.
        format: Only ``folder`` (the default) for now.

    Returns:
        ``frames``, uint8 ``(n, frame_size, frame_size, 3)``, and ``images``
        with ``district_id``, ``timestamp`` (UTC) and ``frame`` (row in frames).

    Raises:
        CityNotFoundError: The folder or index does not exist.
        UnreadableImageError: A listed image is missing or cannot be decoded.
        UnknownRecordDistrictError: A row names an unknown district.
        NaiveRecordTimestampError: A timestamp has no time zone.
        RecordsFileError: The index is malformed (TruncatedRecordsFileError if cut).
    """
    folder = Path(folder)
    resolve_format(folder, format or "folder", IMAGE_FORMATS, RecordsFileError)
    if not folder.is_dir():
        raise CityNotFoundError(folder, "image folder does not exist")
    if frame_size < 1:
        raise ValueError(f"frame_size must be positive, got {frame_size}")
    index = folder / "index.csv" if index is None else Path(index)
    table = read_csv(index, INDEX_COLUMNS, RECORD_ERRORS)
    require_values(table, ["district_id", "file"], index, RECORD_ERRORS)
    if district_ids is not None:
        check_known_districts(table["district_id"], index, district_ids)
    stamps = parse_timestamps(table["timestamp"], index, RECORD_ERRORS)
    decoded = [
        _decode_frame(folder / str(name).strip(), index, row, frame_size)
        for row, name in enumerate(table["file"])
    ]
    frames = np.stack(decoded) if decoded else empty_frames(frame_size)
    images = pd.DataFrame(
        {
            "district_id": table["district_id"].astype(str).to_numpy(),
            "timestamp": stamps.to_numpy(),
            "frame": np.arange(len(table), dtype=np.int64),
        }
    )
    known = images["district_id"] if district_ids is None else district_ids
    return validate_frames(frames, index), validate_records(images, index, IMAGE_COLUMNS, known)


def empty_frames(frame_size: int = DEFAULT_FRAME_SIZE) -> np.ndarray:
    """No frames: uint8 ``(0, frame_size, frame_size, 3)``."""
    return np.zeros((0, frame_size, frame_size, 3), dtype=np.uint8)


def _decode_frame(path: Path, index: Path, row: int, frame_size: int) -> np.ndarray:
    where = f"{index.name} row {row}"
    if not path.is_file():
        raise UnreadableImageError(path, "the image file does not exist", row=where)
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image).convert("RGB")
            frame = ImageOps.fit(upright, (frame_size, frame_size), Image.Resampling.LANCZOS)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = binary_truncation(path) or str(error)
        raise UnreadableImageError(path, f"cannot decode the image ({reason})", row=where) from None
    return np.asarray(frame, dtype=np.uint8)
