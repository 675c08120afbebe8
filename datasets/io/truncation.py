"""Telling a file that was cut short from one that is broken in other ways.

Readers (GDAL, HDF5, pyarrow) report a cut file with the same vague error as a
damaged one. Many formats say how long they are, or how they end, so after a
failed read we look: a Parquet file ends with ``PAR1``, a zip with its central
directory, an HDF5 (NetCDF-4), SQLite (GeoPackage) or ``.shp`` header states the
file's size, a PNG ends with ``IEND`` and a JPEG with ``FFD9``. For JSON text, a parse
error at the very end means the text stopped early.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SQLITE_SIGNATURE = b"SQLite format 3\x00"
SHAPEFILE_SIGNATURE = b"\x00\x00\x27\x0a"


def binary_truncation(path: str | Path) -> str | None:
    """Why ``path`` looks cut short, or None when its format cannot tell (or it is whole).

    Args:
        path: A Parquet, zip, HDF5/NetCDF-4, SQLite/GeoPackage, PNG or JPEG file.
    """
    path = Path(path)
    if not path.is_file():
        return None
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(64)
        file.seek(max(size - 64, 0))
        tail = file.read()
    if head.startswith(b"PAR1") and not tail.endswith(b"PAR1"):
        return f"the Parquet footer is missing after {size} bytes: the file was cut short"
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):
        return f"the zip directory is missing after {size} bytes: the file was cut short"
    if head.startswith(b"\x89PNG") and not tail.endswith(b"IEND\xaeB`\x82"):
        return f"the PNG stops after {size} bytes without its IEND chunk: the file was cut short"
    if head.startswith(b"\xff\xd8") and not tail.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return f"the JPEG stops after {size} bytes without its end marker: the file was cut short"
    stated = _stated_size(head)
    if stated is not None and size < stated:
        return f"the header says {stated} bytes but the file has {size}: it was cut short"
    return None


def _stated_size(head: bytes) -> int | None:
    """The file size an HDF5 superblock, a SQLite or a Shapefile header records, if any."""
    if head.startswith(SHAPEFILE_SIGNATURE) and len(head) >= 28:
        return 2 * int.from_bytes(head[24:28], "big")  # counted in 16-bit words
    if head.startswith(HDF5_SIGNATURE):
        version = head[8]
        if version in (0, 1):
            offset_size = head[13]
            start = (24 if version == 0 else 28) + 2 * offset_size
        elif version in (2, 3):
            offset_size = head[9]
            start = 12 + 2 * offset_size
        else:
            return None
        return int.from_bytes(head[start : start + offset_size], "little")
    if head.startswith(SQLITE_SIGNATURE) and len(head) >= 32:
        page_size = int.from_bytes(head[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        return page_size * int.from_bytes(head[28:32], "big")
    return None


def json_ran_out(text: str, error: json.JSONDecodeError) -> bool:
    """Whether a JSON parse error means the text stopped early (not a typo inside)."""
    return error.msg.startswith("Unterminated string") or error.pos >= len(text.rstrip())


def geojson_truncated_row(text: str) -> int | None:
    """The feature a cut-off GeoJSON text stops in, or None when it is not cut off.

    Args:
        text: The file's text.

    Returns:
        The 0-based index of the first incomplete feature (the count of complete
        ones), or None when the text parses or is broken before its end.
    """
    try:
        json.loads(text)
        return None
    except json.JSONDecodeError as error:
        if not json_ran_out(text, error):
            return None
    features = re.search(r'"features"\s*:\s*\[', text)
    if features is None:
        return 0
    decoder = json.JSONDecoder()
    position, row = features.end(), 0
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            _, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return row
        row += 1
